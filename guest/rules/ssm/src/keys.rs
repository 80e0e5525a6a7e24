//! The rule's state: which keys a record reads and writes, and how long each matters.
//!
//! The rule holds nothing between calls: each record reads the two keys it needs, and
//! writes them back in one batch at the end, after every check has passed. A trapped
//! or replaced instance therefore loses nothing, and a failed call writes nothing.
//!
//! | key | value | kept for |
//! |---|---|---|
//! | `meta` | the stream's [`History`](detect_sdk::history::History) | always |
//! | `i/#(identity)` | all the rule knows of the identity: an [`Entity`] whose facts are [`Known`] (latest successful session, when each target, source network and document was last used, recent targets) and whose marks are its alerts' dedup entries | the longest of what it holds |
//!
//! An identity's key names it by a hash ([`hashed_key`]): identities are ARNs, long and
//! alike. Inside its value, feature values and dedup keys are 64-bit hashes too.
//!
//! Every write of an identity's value forgets what no record at or after the watermark
//! can use; the SDK's sweep deletes the values of identities no longer seen, and the keys
//! a state of format 2 left ([`legacy`](crate::legacy)), as [`Retention`] says.

use detect_sdk::entity::Entity;
use detect_sdk::history::Retention;
use detect_sdk::kv::hashed_key;
use detect_sdk::time::DAY;
use detect_sdk::{Millis, RuleError};

use crate::config::Config;
use crate::identity::Known;
use crate::legacy;

/// The key of all the rule knows of an identity.
pub fn identity_key(identity: &str) -> String {
    hashed_key(&["i"], &[identity])
}

/// The last event time at which a record can use the identity value `value` of `key`.
pub fn identity_usable_until(
    config: &Config,
    key: &str,
    value: &[u8],
) -> Result<Option<Millis>, RuleError> {
    let entity = Entity::decode(key, Some(value))?;
    let known = Known::decode(key, &entity.facts)?;
    Ok(known.usable_until(config).max(entity.marks.usable_until()))
}

impl Retention for Config {
    fn usable_until(&self, key: &str, value: &[u8]) -> Result<Option<Millis>, RuleError> {
        match key.split_once('/') {
            Some(("i", _)) => identity_usable_until(self, key, value),
            Some(_) => legacy::usable_until(self, key, value),
            None => Ok(None),
        }
    }

    /// A quarter of the training period: the baselines, most of the state, are kept for
    /// that long anyway; the short-lived facts (recent targets, dedup) of identities no
    /// longer seen then outlive their use by up to this, so a sweep reads the store only
    /// four times per period.
    fn sweep_interval(&self) -> Millis {
        (self.baseline.training_period.millis() / 4).max(DAY)
    }

    fn longest(&self) -> Millis {
        let b = &self.baseline;
        let m = &self.multiple_sessions;
        [b.training_period, b.dedup_period, m.window, m.dedup_period]
            .map(|p| p.millis())
            .into_iter()
            .max()
            .expect("periods")
    }
}

#[cfg(test)]
mod tests {
    use detect_sdk::history::History;
    use detect_sdk::time::{DAY, HOUR};
    use detect_sdk::{MemoryKv, RuleConfig};

    use super::*;
    use crate::SsmSessions;
    use crate::baseline::Feature;
    use crate::catalog;
    use crate::identity::FeatureValue;
    use detect_sdk::dedup;

    /// State files hold these keys: a change here is a new state format.
    #[test]
    fn keys_never_change() {
        let alice = "arn:aws:iam::111122223333:user/alice";
        assert_eq!(identity_key(alice), "i/0322f24c5769b071");
    }

    /// An identity's value: its latest session at `session`, and a SessionStarted mark at
    /// `mark`.
    fn identity(session: Millis, mark: Millis) -> Vec<u8> {
        let mut known = Known::default();
        known.last_session = Some(session);
        known.see(FeatureValue::new(Feature::Target, "i-1"), session);
        let mut entity = Entity {
            facts: known.encode(),
            ..Entity::default()
        };
        let started = &catalog::SESSION_STARTED;
        let config = Config::default();
        dedup::merge_mark::<SsmSessions>(&mut entity.marks, &config, started, "a|i-1", mark)
            .unwrap();
        entity.encode()
    }

    #[test]
    fn the_sweep_deletes_exactly_the_identities_no_record_can_use() {
        let now = 100 * DAY;
        let config = Config::default();
        let (training, dedup) = (30 * DAY, 3 * DAY);
        let kept = [
            (identity_key("a"), identity(now - training, now - dedup)),
            ("meta".to_owned(), History::default().encode()),
            ("other/kept".to_owned(), b"anything".to_vec()),
        ];
        let expired = [(
            identity_key("b"),
            identity(now - training - 1, now - dedup - 1),
        )];
        let mut kv = MemoryKv::with_entries(kept.iter().chain(&expired).cloned());
        kv.page_size = 2;
        let mut history = History {
            watermark: Some(now),
            next_sweep: Some(now),
            ..History::default()
        };
        history.sweep(&mut kv, &config).unwrap();
        while history.sweep_cursor.is_some() {
            history.sweep(&mut kv, &config).unwrap();
        }
        let mut expected: Vec<&str> = kept.iter().map(|(k, _)| k.as_str()).collect();
        expected.sort();
        assert_eq!(kv.keys(), expected);
        assert_eq!(history.next_sweep, Some(now + 30 * DAY / 4));
        // A mark keeps its identity for its own period.
        let value = identity(now - training - 1, now - HOUR);
        assert_eq!(
            config.usable_until("i/b", &value),
            Ok(Some(now - HOUR + dedup))
        );
    }

    #[test]
    fn damaged_entries_stop_the_sweep() {
        let err = Config::default().usable_until("i/x", b"\x01").unwrap_err();
        assert!(err.to_string().contains("`i/x`"), "{err}");
    }

    #[test]
    fn the_longest_retention_is_the_longest_period() {
        assert_eq!(Config::default().longest(), 30 * DAY);
        let long = Config::from_json(r#"{"multiple_sessions": {"dedup_period": "40d"}}"#);
        assert_eq!(long.unwrap().longest(), 40 * DAY);
    }
}
