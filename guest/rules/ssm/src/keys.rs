//! The rule's state: which keys a record reads and writes, and how long each matters.
//!
//! The rule holds nothing between calls: each record reads the few keys it needs, and
//! writes them back in one batch at the end, after every check has passed. A trapped
//! or replaced instance therefore loses nothing, and a failed call writes nothing.
//!
//! Keys name what they are about by a hash ([`hashed_key`]): identities are ARNs, long
//! and alike, and a key is never parsed back but for its prefix.
//!
//! | key                            | value                         | kept for |
//! |--------------------------------|-------------------------------|----------|
//! | `meta`                         | the stream's [`History`](detect_sdk::history::History) | always |
//! | `l/#(identity)`                | latest successful session     | training period |
//! | `s/{feature}/#(identity, value)` | when the identity last used a target (`t`), source network (`n`) or document (`d`) | training period |
//! | `t/#(identity)`                | latest StartSession per target ([`RecentTargets`]) | multiple-sessions window |
//! | `d/{detection}/#(dedup key)`   | time of the last alert, kept by the SDK's [dedup gate](detect_sdk::dedup); detections numbered as in the catalog | that detection's dedup period |
//!
//! Prefixes are a letter: keys that begin alike cost every comparison of the store.
//!
//! Times are decimal milliseconds. State stays bounded by the SDK's sweep, which deletes
//! what [`Retention`] says no later record can use.

use detect_sdk::history::Retention;
use detect_sdk::kv::{decode_time, hashed_key};
use detect_sdk::time::DAY;
use detect_sdk::{Millis, RuleError, dedup};

use crate::SsmSessions;
use crate::baseline::Feature;
use crate::config::Config;
use crate::multiple_sessions::RecentTargets;

/// An identity's latest successful session.
pub fn last_session_key(identity: &str) -> String {
    hashed_key(&["l"], &[identity])
}

/// When an identity last used a value of a feature.
pub fn seen_key(feature: Feature, identity: &str, value: &str) -> String {
    let letter = match feature {
        Feature::Target => "t",
        Feature::SourceNetwork => "n",
        Feature::Document => "d",
    };
    hashed_key(&["s", letter], &[identity, value])
}

/// An identity's recent targets.
pub fn targets_key(identity: &str) -> String {
    hashed_key(&["t"], &[identity])
}

impl Retention for Config {
    fn usable_until(&self, key: &str, value: &[u8]) -> Result<Option<Millis>, RuleError> {
        let Some((prefix, _)) = key.split_once('/') else {
            return Ok(None);
        };
        let (time, retention) = match prefix {
            "l" | "s" => (
                decode_time(key, Some(value))?,
                self.baseline.training_period,
            ),
            "t" => (
                RecentTargets::decode(key, Some(value))?.latest(),
                self.multiple_sessions.window,
            ),
            "d" => return dedup::usable_until::<SsmSessions>(self, key, value),
            _ => return Ok(None),
        };
        Ok(time.map(|t| t.saturating_add(retention.millis())))
    }

    /// A quarter of the training period: the baselines, most of the state, are kept for
    /// that long anyway; the short-lived entries (recent targets, dedup) then outlive
    /// their use by up to this, so a sweep reads the store only four times per period.
    fn sweep_interval(&self) -> Millis {
        (self.baseline.training_period.millis() / 4).max(DAY)
    }
}

#[cfg(test)]
mod tests {
    use detect_sdk::history::History;
    use detect_sdk::time::{DAY, HOUR};
    use detect_sdk::{Detection, MemoryKv};

    use super::*;
    use crate::catalog;

    /// When a detection last alerted for a dedup key: the SDK's key, in this rule's state.
    fn dedup_key(detection: &Detection, key: &str) -> String {
        dedup::state_key(&catalog::ALL, detection, key)
    }

    /// State files hold these keys: a change here is a new state format.
    #[test]
    fn keys_never_change() {
        let alice = "arn:aws:iam::111122223333:user/alice";
        let keys = [
            last_session_key(alice),
            seen_key(Feature::Target, alice, "i-1"),
            seen_key(Feature::SourceNetwork, alice, "203.0.113.0/24"),
            seen_key(Feature::Document, alice, "SSM-SessionManagerRunShell"),
            targets_key(alice),
        ]
        .into_iter()
        .chain(catalog::ALL.map(|d| dedup_key(d, alice)));
        let alice_hash = "0322f24c5769b071";
        let expected = [
            format!("l/{alice_hash}"),
            "s/t/7a816902abed5471".into(),
            "s/n/208e597c133ad6e6".into(),
            "s/d/9014de53116b855b".into(),
            format!("t/{alice_hash}"),
            format!("d/0/{alice_hash}"),
            format!("d/1/{alice_hash}"),
            format!("d/2/{alice_hash}"),
            format!("d/3/{alice_hash}"),
        ];
        assert_eq!(keys.collect::<Vec<_>>(), expected);
    }

    #[test]
    fn the_sweep_deletes_exactly_what_expired() {
        let now = 100 * DAY;
        let day = |d: i64| (now - d * DAY).to_string();
        let (fresh, old) = (day(30), (now - 30 * DAY - 1).to_string());
        let targets = |entries: &[(&str, Millis)]| {
            let mut recent = RecentTargets::default();
            for (target, at) in entries {
                recent.record(target, *at, Millis::MAX);
            }
            recent.encode()
        };
        let kept = [
            (last_session_key("a"), fresh.clone().into_bytes()),
            (
                seen_key(Feature::Target, "a", "i-1"),
                fresh.clone().into_bytes(),
            ),
            (
                dedup_key(&catalog::SESSION_STARTED, "a|i-1"),
                (now - 3 * DAY + 1).to_string().into_bytes(),
            ),
            (
                dedup_key(&catalog::MULTIPLE_SESSIONS, "a"),
                (now - HOUR).to_string().into_bytes(),
            ),
            (
                targets_key("a"),
                targets(&[("i-1", now - 2 * HOUR), ("i-2", now - HOUR + 5)]),
            ),
            ("meta".to_owned(), History::default().encode()),
            ("other/kept".to_owned(), b"anything".to_vec()),
        ];
        let expired = [
            (last_session_key("b"), old.clone().into_bytes()),
            (
                seen_key(Feature::Target, "b", "i-1"),
                old.clone().into_bytes(),
            ),
            (
                dedup_key(&catalog::UNUSUAL_IDENTITY, "b"),
                (now - 3 * DAY - 1).to_string().into_bytes(),
            ),
            (
                dedup_key(&catalog::MULTIPLE_SESSIONS, "b"),
                (now - HOUR - 1).to_string().into_bytes(),
            ),
            (targets_key("b"), targets(&[("i-1", now - HOUR - 1)])),
        ];
        let mut kv = MemoryKv::with_entries(kept.iter().chain(&expired).cloned().collect());
        kv.page_size = 3;
        let mut history = History {
            watermark: Some(now),
            next_sweep: Some(now),
            ..History::default()
        };
        let config = Config::default();
        history.sweep(&mut kv, &config).unwrap();
        while history.sweep_cursor.is_some() {
            history.sweep(&mut kv, &config).unwrap();
        }
        let mut expected: Vec<&str> = kept.iter().map(|(k, _)| k.as_str()).collect();
        expected.sort();
        assert_eq!(kv.keys(), expected);
        assert_eq!(history.next_sweep, Some(now + 30 * DAY / 4));
    }

    #[test]
    fn damaged_entries_stop_the_sweep() {
        let err = Config::default().usable_until("l/x", b"soon").unwrap_err();
        assert!(err.to_string().contains("`l/x`"), "{err}");
    }
}
