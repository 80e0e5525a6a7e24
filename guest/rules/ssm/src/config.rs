//! The rule's configuration: every period and threshold of the detections, the identities
//! to ignore and the detections to turn off. The host passes it as JSON to `configure`;
//! a missing field keeps its default, an unknown one is an error (a typo must not
//! silently leave a default in force). Each detection names its dedup period here
//! (`catalog`), and the SDK's dedup gate reads it.

use detect_sdk::RuleConfig;
use detect_sdk::config::{Patterns, Period, check_positive};
use serde::{Deserialize, Serialize};

use crate::catalog;

/// Settings of the Cortex XDR family (`SessionStarted`, `UnusualIdentity`, `UnusualSession`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaselineConfig {
    /// Unusual-* alerts start once the rule has seen this much SSM history.
    pub activation_period: Period,
    /// How far back an identity's sessions, and the targets, networks and documents it
    /// used, count as its history.
    pub training_period: Period,
    /// Quiet time after an alert for the same detection and dedup key.
    pub dedup_period: Period,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            activation_period: Period::days(14),
            training_period: Period::days(30),
            dedup_period: Period::days(3),
        }
    }
}

/// Settings of `AWS.SSM.MultipleSessions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MultipleSessionsConfig {
    /// Sessions count together when they start less than this far apart.
    pub window: Period,
    /// Distinct targets within the window that raise the alert.
    pub threshold: usize,
    /// Quiet time after an alert for the same identity.
    pub dedup_period: Period,
}

impl Default for MultipleSessionsConfig {
    fn default() -> Self {
        MultipleSessionsConfig {
            window: Period::hours(1),
            threshold: 3,
            dedup_period: Period::hours(1),
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub baseline: BaselineConfig,
    pub multiple_sessions: MultipleSessionsConfig,
    /// Identities (ARN, else principal id) whose records the rule skips entirely, such as
    /// automation roles. `*` matches any run of characters:
    /// `arn:aws:sts::111122223333:assumed-role/Patching/*`.
    pub allowlist: Patterns,
    /// Detection ids that raise no alerts. Their state is still kept, so turning one back
    /// on needs no new training.
    pub disabled: Vec<String>,
    /// How far behind the latest event time seen a record may be and still be judged;
    /// later ones are rejected. `null`: the training period.
    pub max_lateness: Option<Period>,
}

impl RuleConfig for Config {
    fn check(&self) -> Result<(), String> {
        let mut periods = vec![
            (
                "baseline.activation_period",
                self.baseline.activation_period,
            ),
            ("baseline.training_period", self.baseline.training_period),
            ("baseline.dedup_period", self.baseline.dedup_period),
            ("multiple_sessions.window", self.multiple_sessions.window),
            (
                "multiple_sessions.dedup_period",
                self.multiple_sessions.dedup_period,
            ),
        ];
        periods.extend(self.max_lateness.map(|p| ("max_lateness", p)));
        check_positive(&periods)?;
        if self.multiple_sessions.threshold < 2 {
            return Err("multiple_sessions.threshold must be at least 2".into());
        }
        if let Some(id) = self.disabled.iter().find(|id| catalog::by_id(id).is_none()) {
            let known: Vec<_> = catalog::ALL.iter().map(|d| d.id).collect();
            return Err(format!(
                "disabled: unknown detection `{id}` (known: {})",
                known.join(", ")
            ));
        }
        self.allowlist.check("allowlist")
    }
}

impl Config {
    /// Whether the rule skips this identity.
    pub fn is_allowlisted(&self, identity: &str) -> bool {
        self.allowlist.matches(identity)
    }

    /// Whether a detection may raise alerts.
    pub fn is_enabled(&self, detection_id: &str) -> bool {
        !self.disabled.iter().any(|d| d == detection_id)
    }

    /// The effective `max_lateness`.
    pub fn max_lateness(&self) -> Period {
        self.max_lateness.unwrap_or(self.baseline.training_period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use detect_sdk::time::{MINUTE, SECOND};

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::from_json("{}").unwrap();
        assert_eq!(c.baseline.activation_period, Period::days(14));
        assert_eq!(c.baseline.training_period, Period::days(30));
        assert_eq!(c.baseline.dedup_period, Period::days(3));
        assert_eq!(c.multiple_sessions.window, Period::hours(1));
        assert_eq!(c.multiple_sessions.threshold, 3);
        assert_eq!(c.multiple_sessions.dedup_period, Period::hours(1));
        assert!(c.allowlist.0.is_empty() && c.disabled.is_empty());
        assert_eq!(c.max_lateness(), Period::days(30));
        let c = Config::from_json(r#"{"baseline": {"training_period": "60d"}}"#).unwrap();
        assert_eq!(
            c.max_lateness(),
            Period::days(60),
            "follows the training period"
        );
        let c = Config::from_json(r#"{"max_lateness": "2h"}"#).unwrap();
        assert_eq!(c.max_lateness(), Period::hours(2));
    }

    #[test]
    fn periods_take_units_or_seconds() {
        let c = Config::from_json(
            r#"{"baseline": {"activation_period": "2d", "training_period": 86400, "dedup_period": "90m"},
                "multiple_sessions": {"window": "30s", "threshold": 5}}"#,
        )
        .unwrap();
        assert_eq!(c.baseline.activation_period, Period::days(2));
        assert_eq!(c.baseline.training_period, Period::days(1));
        assert_eq!(c.baseline.dedup_period.millis(), 90 * MINUTE);
        assert_eq!(c.multiple_sessions.window.millis(), 30 * SECOND);
        assert_eq!(c.multiple_sessions.threshold, 5);
        assert_eq!(c.baseline.dedup_period.to_string(), "90m");
        assert_eq!(c.baseline.activation_period.to_string(), "2d");
    }

    #[test]
    fn the_effective_config_round_trips() {
        let c = Config::from_json(
            r#"{"allowlist": ["arn:*"], "disabled": ["AWS.SSM.SessionStarted"]}"#,
        )
        .unwrap();
        assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn rejects_bad_configs_with_a_reason() {
        for (json, needle) in [
            (
                r#"{"baseline": {"activation_period": "0d"}}"#,
                "longer than zero",
            ),
            (r#"{"baseline": {"training_period": "3w"}}"#, "not a period"),
            (r#"{"baseline": {"dedup_period": -5}}"#, "negative"),
            (r#"{"multiple_sessions": {"threshold": 1}}"#, "at least 2"),
            (
                r#"{"max_lateness": 0}"#,
                "max_lateness must be longer than zero",
            ),
            (r#"{"disabled": ["AWS.SSM.Nope"]}"#, "unknown detection"),
            (r#"{"allowlist": [""]}"#, "empty pattern"),
            (r#"{"baseline": {"activation": "1d"}}"#, "unknown field"),
            (r#"{"dedup_period": "1d"}"#, "unknown field"),
            ("[]", "must be a JSON object"),
            ("{", "EOF"),
        ] {
            let err = Config::from_json(json).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }
}
