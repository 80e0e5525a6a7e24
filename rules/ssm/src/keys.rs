//! The rule's state: which keys a record reads and writes, and how long each matters.
//!
//! The rule holds nothing between calls: each record reads the few keys it needs, and
//! writes them back in one batch at the end, after every check has passed. A trapped
//! or replaced instance therefore loses nothing, and a failed call writes nothing.
//!
//! Keys (identities are ARNs and may hold `/`; keys are never parsed back but for their
//! prefix):
//!
//! | key                                   | value                         | kept for |
//! |---------------------------------------|-------------------------------|----------|
//! | `meta`                                | the stream's [`History`](detect_sdk::history::History) | always |
//! | `last/{identity}`                     | latest successful session     | training period |
//! | `seen/{feature}/{identity}␟{value}`   | when the identity last used a target, network or document | training period |
//! | `targets/{identity}`                  | latest StartSession per target, as JSON | multiple-sessions window |
//! | `dedup/{detection}/{dedup key}`       | time of the last alert        | that detection's dedup period |
//!
//! Times are decimal milliseconds. State stays bounded by the SDK's sweep, which deletes
//! what [`Retention`] says no later record can use.

use detect_sdk::history::Retention;
use detect_sdk::kv::decode_time;
use detect_sdk::{Millis, RuleError};

use crate::config::Config;
use crate::multiple_sessions::RecentTargets;

/// An identity's latest successful session.
pub fn last_session_key(identity: &str) -> String {
    format!("last/{identity}")
}

/// When an identity last used a value of a feature.
pub fn seen_key(feature: &str, identity: &str, value: &str) -> String {
    format!("seen/{feature}/{identity}\u{1f}{value}")
}

/// An identity's recent targets.
pub fn targets_key(identity: &str) -> String {
    format!("targets/{identity}")
}

/// When a detection last alerted for a dedup key.
pub fn dedup_key(detection_id: &str, key: &str) -> String {
    format!("dedup/{detection_id}/{key}")
}

impl Retention for Config {
    fn usable_until(&self, key: &str, value: &[u8]) -> Result<Option<Millis>, RuleError> {
        let Some((prefix, rest)) = key.split_once('/') else {
            return Ok(None);
        };
        let (time, retention) = match prefix {
            "last" | "seen" => (
                decode_time(key, Some(value))?,
                self.baseline.training_period,
            ),
            "targets" => (
                RecentTargets::decode(key, Some(value))?.latest(),
                self.multiple_sessions.window,
            ),
            "dedup" => {
                let detection = rest.split_once('/').map_or(rest, |(d, _)| d);
                (decode_time(key, Some(value))?, self.dedup_period(detection))
            }
            _ => return Ok(None),
        };
        Ok(time.map(|t| t.saturating_add(retention.millis())))
    }
}

#[cfg(test)]
mod tests {
    use detect_sdk::MemoryKv;
    use detect_sdk::history::{History, SWEEP_INTERVAL};
    use detect_sdk::time::{DAY, HOUR};

    use super::*;

    fn kv_with(entries: &[(&str, &str)]) -> MemoryKv {
        MemoryKv::with_entries(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn the_sweep_deletes_exactly_what_expired() {
        let now = 100 * DAY;
        let day = |d: i64| (now - d * DAY).to_string();
        let (fresh, old) = (day(30), (now - 30 * DAY - 1).to_string());
        let mut kv = kv_with(&[
            ("meta", "{}"),
            ("last/a", &fresh),
            ("last/b", &old),
            ("seen/target/a\u{1f}i-1", &fresh),
            ("seen/target/b\u{1f}i-1", &old),
            (
                "dedup/AWS.SSM.SessionStarted/a|i-1",
                &(now - 3 * DAY + 1).to_string(),
            ),
            (
                "dedup/AWS.SSM.UnusualIdentity/b",
                &(now - 3 * DAY - 1).to_string(),
            ),
            (
                "dedup/AWS.SSM.MultipleSessions/a",
                &(now - HOUR).to_string(),
            ),
            (
                "dedup/AWS.SSM.MultipleSessions/b",
                &(now - HOUR - 1).to_string(),
            ),
            (
                "targets/a",
                &format!(
                    r#"{{"i-1": {}, "i-2": {}}}"#,
                    now - 2 * HOUR,
                    now - HOUR + 5
                ),
            ),
            ("targets/b", &format!(r#"{{"i-1": {}}}"#, now - HOUR - 1)),
            ("other/kept", "anything"),
        ]);
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
        assert_eq!(
            kv.keys(),
            [
                "dedup/AWS.SSM.MultipleSessions/a",
                "dedup/AWS.SSM.SessionStarted/a|i-1",
                "last/a",
                "meta",
                "other/kept",
                "seen/target/a\u{1f}i-1",
                "targets/a",
            ]
        );
        assert_eq!(history.next_sweep, Some(now + SWEEP_INTERVAL));
    }

    #[test]
    fn damaged_entries_stop_the_sweep() {
        let err = Config::default()
            .usable_until("last/x", b"soon")
            .unwrap_err();
        assert!(err.to_string().contains("`last/x`"), "{err}");
    }
}
