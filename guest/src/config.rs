//! The rule's configuration: every period and threshold of the detections, the identities
//! to ignore and the detections to turn off. The host passes it as JSON to `configure`;
//! a missing field keeps its default, an unknown one is an error (a typo must not
//! silently leave a default in force).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::catalog;
use crate::timestamp::{DAY, HOUR, MINUTE, Millis, SECOND};

/// A length of event time. In JSON: whole seconds (`3600`) or a number with a unit,
/// `s`, `m`, `h` or `d` (`"1h"`, `"14d"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period(pub Millis);

const UNITS: [(char, Millis); 4] = [('d', DAY), ('h', HOUR), ('m', MINUTE), ('s', SECOND)];

impl Period {
    pub const fn days(n: i64) -> Self {
        Period(n * DAY)
    }
    pub const fn hours(n: i64) -> Self {
        Period(n * HOUR)
    }
    pub fn millis(self) -> Millis {
        self.0
    }
    pub fn seconds(self) -> u64 {
        (self.0 / SECOND) as u64
    }
}

impl fmt::Display for Period {
    /// The largest unit that divides the period: `14d`, `90m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, size) = UNITS
            .into_iter()
            .find(|(_, size)| self.0 % size == 0)
            .unwrap_or(('s', SECOND));
        write!(f, "{}{unit}", self.0 / size)
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PeriodVisitor;
        impl Visitor<'_> for PeriodVisitor {
            type Value = Period;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a positive period: seconds, or a string such as \"90m\", \"1h\", \"14d\"",
                )
            }
            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Period, E> {
                i64::try_from(secs)
                    .ok()
                    .and_then(|s| s.checked_mul(SECOND))
                    .map(Period)
                    .ok_or_else(|| E::custom("period too long"))
            }
            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Period, E> {
                u64::try_from(secs)
                    .map_err(|_| E::custom("a period cannot be negative"))
                    .and_then(|s| self.visit_u64(s))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Period, E> {
                let bad = || {
                    E::custom(format!(
                        "`{text}` is not a period such as \"90m\", \"1h\", \"14d\""
                    ))
                };
                let unit = text.chars().last().ok_or_else(bad)?;
                let size = UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(bad)?.1;
                let count: i64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
                count
                    .checked_mul(size)
                    .filter(|m| *m >= 0)
                    .map(Period)
                    .ok_or_else(bad)
            }
        }
        d.deserialize_any(PeriodVisitor)
    }
}

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
    pub allowlist: Vec<String>,
    /// Detection ids that raise no alerts. Their state is still kept, so turning one back
    /// on needs no new training.
    pub disabled: Vec<String>,
    /// How far behind the latest event time seen a record may be and still be judged;
    /// later ones are rejected. `null`: the training period.
    pub max_lateness: Option<Period>,
}

impl Config {
    /// Parses and checks a JSON configuration.
    pub fn from_json(text: &str) -> Result<Config, String> {
        // serde would also accept a JSON array as a struct, field by field.
        if !text.trim_start().starts_with('{') {
            return Err("the configuration must be a JSON object".into());
        }
        let config: Config = serde_json::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let periods = [
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
        let lateness = self.max_lateness.map(|p| ("max_lateness", p));
        if let Some((name, _)) = periods
            .iter()
            .chain(lateness.iter())
            .find(|(_, p)| p.millis() <= 0)
        {
            return Err(format!("{name} must be longer than zero"));
        }
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
        if self.allowlist.iter().any(|p| p.is_empty()) {
            return Err("allowlist: an empty pattern would match nothing".into());
        }
        Ok(())
    }

    /// Whether the rule skips this identity.
    pub fn is_allowlisted(&self, identity: &str) -> bool {
        self.allowlist
            .iter()
            .any(|pattern| wildcard_match(pattern, identity))
    }

    /// Whether a detection may raise alerts.
    pub fn is_enabled(&self, detection_id: &str) -> bool {
        !self.disabled.iter().any(|d| d == detection_id)
    }

    /// The effective `max_lateness`.
    pub fn max_lateness(&self) -> Period {
        self.max_lateness.unwrap_or(self.baseline.training_period)
    }

    /// The dedup period of a detection.
    pub fn dedup_period(&self, detection_id: &str) -> Period {
        if detection_id == catalog::MULTIPLE_SESSIONS.id {
            self.multiple_sessions.dedup_period
        } else {
            self.baseline.dedup_period
        }
    }

    /// The effective configuration as JSON, for `describe`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a config always serializes")
    }
}

/// `*` matches any run of characters, everything else itself. Greedy with backtracking to
/// the last `*`: linear in practice, and never worse than the product of the lengths.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::from_json("{}").unwrap();
        assert_eq!(c.baseline.activation_period, Period::days(14));
        assert_eq!(c.baseline.training_period, Period::days(30));
        assert_eq!(c.baseline.dedup_period, Period::days(3));
        assert_eq!(c.multiple_sessions.window, Period::hours(1));
        assert_eq!(c.multiple_sessions.threshold, 3);
        assert_eq!(c.multiple_sessions.dedup_period, Period::hours(1));
        assert!(c.allowlist.is_empty() && c.disabled.is_empty());
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

    #[test]
    fn allowlist_patterns_match_whole_identities() {
        let c = Config::from_json(
            r#"{"allowlist": ["arn:aws:sts::111122223333:assumed-role/Patching/*", "AIDAEXACT"]}"#,
        )
        .unwrap();
        assert!(c.is_allowlisted("arn:aws:sts::111122223333:assumed-role/Patching/i-0abc"));
        assert!(c.is_allowlisted("AIDAEXACT"));
        assert!(!c.is_allowlisted("AIDAEXACT2"));
        assert!(!c.is_allowlisted("arn:aws:sts::111122223333:assumed-role/PatchingX/i-0abc"));
        assert!(!c.is_allowlisted("arn:aws:sts::999999999999:assumed-role/Patching/i-0abc"));
    }

    #[test]
    fn wildcards_backtrack() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "aXbYbZc"));
        assert!(wildcard_match("*/admin", "role/x/admin"));
        assert!(!wildcard_match("a*b", "aXbY"));
        assert!(!wildcard_match("", "x"));
    }
}
