//! The Cortex XDR family: one alert for each successful SSM session start, raised at the
//! level its history calls for.
//!
//! * `AWS.SSM.SessionStarted` (informational): every session start, until the detector
//!   is active, and afterwards every start that matches the identity's history.
//! * `AWS.SSM.UnusualIdentity` (low): the detector is active and the identity has no
//!   session within the training period before this one.
//! * `AWS.SSM.UnusualSession` (medium): the detector is active, the identity has history,
//!   but the target, source network or document was not seen with it in the training period.
//!
//! The detector is active once its history spans the activation period: from the first
//! successful session since history (re)started to this record. All comparisons are on event time;
//! state holds maxima and minima, so a record that arrives late is judged against
//! everything seen so far, including later records.

use detect_sdk::json::ObjectWriter;
use detect_sdk::time::format_rfc3339;
use detect_sdk::{Alert, Detection, Millis};

use crate::catalog;
use crate::config::BaselineConfig;
use crate::session::SessionStart;

/// A property of a session that an identity's history can know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    // Stored as these numbers (`identity`): a change is a new state format.
    Target = 0,
    SourceNetwork = 1,
    Document = 2,
}

impl Feature {
    /// In the order `unusual_features` lists them.
    pub const ALL: [Feature; 3] = [Feature::Target, Feature::SourceNetwork, Feature::Document];

    pub fn name(self) -> &'static str {
        match self {
            Feature::Target => "target",
            Feature::SourceNetwork => "source_network",
            Feature::Document => "document",
        }
    }

    pub fn value<'s>(self, session: &'s SessionStart) -> &'s str {
        match self {
            Feature::Target => &session.target,
            Feature::SourceNetwork => &session.source_network,
            Feature::Document => &session.document,
        }
    }
}

/// What the state knew before this record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prior {
    /// The first successful session since history (re)started, in arrival order.
    pub history_start: Option<Millis>,
    /// The identity's latest successful session.
    pub last_session: Option<Millis>,
    /// When the identity last used this record's value of each feature, in `Feature::ALL` order.
    pub last_seen: [Option<Millis>; 3],
}

/// Which alert of the family a session start raises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Started,
    UnusualIdentity,
    UnusualSession(Vec<Feature>),
}

/// Decides the variant for a session at `at`.
pub fn classify(at: Millis, history: &Prior, config: &BaselineConfig) -> Verdict {
    let active = history
        .history_start
        .is_some_and(|e| at.saturating_sub(e) >= config.activation_period.millis());
    if !active {
        return Verdict::Started;
    }
    let training = config.training_period.millis();
    // "Within the training period before" this record; a later record (seen first, out
    // of order) is history too.
    let known = |seen: Option<Millis>| seen.is_some_and(|t| at.saturating_sub(t) <= training);
    if !known(history.last_session) {
        return Verdict::UnusualIdentity;
    }
    let unusual: Vec<Feature> = Feature::ALL
        .into_iter()
        .zip(history.last_seen)
        .filter(|(_, seen)| !known(*seen))
        .map(|(feature, _)| feature)
        .collect();
    if unusual.is_empty() {
        Verdict::Started
    } else {
        Verdict::UnusualSession(unusual)
    }
}

impl Verdict {
    pub fn detection(&self) -> &'static Detection {
        match self {
            Verdict::Started => &catalog::SESSION_STARTED,
            Verdict::UnusualIdentity => &catalog::UNUSUAL_IDENTITY,
            Verdict::UnusualSession(_) => &catalog::UNUSUAL_SESSION,
        }
    }

    /// Started: one per identity and target; UnusualIdentity: one per identity;
    /// UnusualSession: one per distinct combination of features.
    pub fn dedup_key(&self, s: &SessionStart) -> String {
        match self {
            Verdict::Started => [&*s.identity, "|", &s.target].concat(),
            Verdict::UnusualIdentity => s.identity.to_string(),
            Verdict::UnusualSession(_) => {
                let parts = [&*s.identity, &s.target, &s.source_network, &s.document];
                parts.join("|")
            }
        }
    }

    /// The alert for `session`.
    pub fn alert(&self, session: &SessionStart, history: &Prior) -> Alert {
        let s = session;
        let (prefix, action) = match self {
            Verdict::Started => ("", " started an AWS SSM session on "),
            Verdict::UnusualIdentity => ("Unusual identity ", " started an AWS SSM session on "),
            Verdict::UnusualSession(_) => ("", " started an unusual AWS SSM session on "),
        };
        let mut title = [
            prefix,
            s.identity_name(),
            action,
            &s.target,
            " in ",
            &s.account,
        ]
        .concat();
        if let Verdict::UnusualSession(features) = self {
            let names: Vec<&str> = features.iter().map(|f| f.name()).collect();
            title += &format!(" (new {})", names.join(", "));
        }
        Alert {
            detection: self.detection(),
            title,
            event_time: s.time,
            dedup_key: self.dedup_key(s),
            context: context(s, history, self).into(),
            event_id: s.event_id.as_deref().map(str::to_owned),
            dedup_in: None,
        }
    }
}

/// The facts of a session alert, in this order.
fn context(s: &SessionStart, history: &Prior, verdict: &Verdict) -> ObjectWriter {
    let previous = history.last_session.map(format_rfc3339);
    let mut facts = ObjectWriter::with_capacity(512);
    facts
        .str("account", &s.account)
        .str("actor", &s.actor)
        .str("document", &s.document)
        .str("identity", &s.identity)
        .opt_str("identity_type", s.identity_type.as_deref())
        .opt_str("previous_session_time", previous.as_deref())
        .opt_str("region", s.region.as_deref())
        .opt_str("session_id", s.session_id.as_deref())
        .opt_str("source_ip", s.source_ip.as_deref())
        .str("source_network", &s.source_network)
        .str("target", &s.target);
    if let Verdict::UnusualSession(features) = verdict {
        facts.strs("unusual_features", features.iter().map(|f| f.name()));
    }
    facts.opt_str("user_agent", s.user_agent.as_deref());
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use detect_sdk::config::Period;
    use detect_sdk::time::DAY;

    const T: Millis = 1_000 * DAY;

    fn config() -> BaselineConfig {
        BaselineConfig::default()
    }

    /// An active detector and an identity that has seen everything yesterday.
    fn familiar() -> Prior {
        Prior {
            history_start: Some(T - 100 * DAY),
            last_session: Some(T - DAY),
            last_seen: [Some(T - DAY); 3],
        }
    }

    #[test]
    fn everything_is_informational_until_activation() {
        let c = config();
        let new_identity = Prior {
            history_start: Some(T - 14 * DAY + 1),
            ..Prior::default()
        };
        assert_eq!(classify(T, &new_identity, &c), Verdict::Started);
        assert_eq!(classify(T, &Prior::default(), &c), Verdict::Started);
        // Activation is reached exactly 14 days after the earliest session.
        let active = Prior {
            history_start: Some(T - 14 * DAY),
            ..Prior::default()
        };
        assert_eq!(classify(T, &active, &c), Verdict::UnusualIdentity);
    }

    #[test]
    fn history_reaches_back_exactly_the_training_period() {
        let c = config();
        let mut h = familiar();
        h.last_session = Some(T - 30 * DAY);
        assert_eq!(classify(T, &h, &c), Verdict::Started);
        h.last_session = Some(T - 30 * DAY - 1);
        assert_eq!(classify(T, &h, &c), Verdict::UnusualIdentity);
        h.last_session = None;
        assert_eq!(classify(T, &h, &c), Verdict::UnusualIdentity);
    }

    #[test]
    fn each_unknown_feature_is_named_in_order() {
        let c = config();
        for (i, feature) in Feature::ALL.into_iter().enumerate() {
            let mut h = familiar();
            h.last_seen[i] = None;
            assert_eq!(classify(T, &h, &c), Verdict::UnusualSession(vec![feature]));
            h.last_seen[i] = Some(T - 30 * DAY - 1);
            assert_eq!(classify(T, &h, &c), Verdict::UnusualSession(vec![feature]));
            h.last_seen[i] = Some(T - 30 * DAY);
            assert_eq!(classify(T, &h, &c), Verdict::Started);
        }
        let mut h = familiar();
        h.last_seen = [None, Some(T), None];
        assert_eq!(
            classify(T, &h, &c),
            Verdict::UnusualSession(vec![Feature::Target, Feature::Document])
        );
    }

    #[test]
    fn later_records_count_as_history() {
        let c = config();
        let mut h = familiar();
        h.last_session = Some(T + 5 * DAY);
        h.last_seen = [Some(T + DAY); 3];
        assert_eq!(classify(T, &h, &c), Verdict::Started);
        // ...but a record older than the earliest session cannot make the detector active.
        h.history_start = Some(T + DAY);
        assert_eq!(
            classify(
                T,
                &Prior {
                    last_session: None,
                    ..h
                },
                &c
            ),
            Verdict::Started
        );
    }

    #[test]
    fn periods_come_from_the_config() {
        let c = BaselineConfig {
            activation_period: Period::days(1),
            training_period: Period::days(2),
            ..config()
        };
        let h = Prior {
            history_start: Some(T - DAY),
            last_session: Some(T - 3 * DAY),
            last_seen: [None; 3],
        };
        assert_eq!(classify(T, &h, &c), Verdict::UnusualIdentity);
        assert_eq!(
            classify(
                T,
                &Prior {
                    last_session: Some(T - 2 * DAY),
                    ..h.clone()
                },
                &c
            ),
            Verdict::UnusualSession(Feature::ALL.to_vec())
        );
    }
}
