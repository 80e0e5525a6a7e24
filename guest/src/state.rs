//! The rule's state, kept in the host's key-value store.
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
//! | `meta`                                | [`Meta`] as JSON              | always   |
//! | `last/{identity}`                     | latest successful session     | training period |
//! | `seen/{feature}/{identity}␟{value}`   | when the identity last used a target, network or document | training period |
//! | `targets/{identity}`                  | latest StartSession per target, as JSON | multiple-sessions window |
//! | `dedup/{detection}/{dedup key}`       | time of the last alert        | that detection's dedup period |
//!
//! Times are decimal milliseconds. State stays bounded by a sweep that walks the keys a
//! page per record, once per day of event time, and deletes what no detection can use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Period};
use crate::error::RuleError;
use crate::multiple_sessions::RecentTargets;
use crate::timestamp::{DAY, Millis};

/// The part of `wasi:keyvalue` the rule uses. The wasm glue implements it over the host's
/// bucket; [`MemoryKv`] implements it for native tests.
pub trait KeyValue {
    /// The values of `keys`, in order, `None` where a key is absent.
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, String>;
    fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), String>;
    fn delete_many(&mut self, keys: Vec<String>) -> Result<(), String>;
    /// One page of keys and the cursor of the next page (`None` after the last).
    fn list_keys(&mut self, cursor: Option<u64>) -> Result<(Vec<String>, Option<u64>), String>;
}

pub const META: &str = "meta";

pub fn last_session_key(identity: &str) -> String {
    format!("last/{identity}")
}

pub fn seen_key(feature: &str, identity: &str, value: &str) -> String {
    format!("seen/{feature}/{identity}\u{1f}{value}")
}

pub fn targets_key(identity: &str) -> String {
    format!("targets/{identity}")
}

pub fn dedup_key(detection_id: &str, key: &str) -> String {
    format!("dedup/{detection_id}/{key}")
}

/// Facts about the whole stream.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The first successful StartSession since history (re)started, in arrival order: the
    /// start of the activation period. A late record does not move it back, so a forged
    /// old record cannot shorten the activation.
    pub history_start: Option<Millis>,
    /// The latest event time seen: "now" for deciding what state has expired.
    pub watermark: Option<Millis>,
    /// When the next sweep starts.
    pub next_sweep: Option<Millis>,
    /// Where a sweep under way goes on.
    pub sweep_cursor: Option<u64>,
}

impl Meta {
    pub fn decode(bytes: Option<&[u8]>) -> Result<Meta, RuleError> {
        let decoded =
            bytes.map(|b| serde_json::from_slice(b).map_err(|e| RuleError::damaged(META, e)));
        Ok(decoded.transpose()?.unwrap_or_default())
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("meta always serializes")
    }
}

pub fn encode_time(at: Millis) -> Vec<u8> {
    at.to_string().into_bytes()
}

/// A stored time.
pub fn decode_time(key: &str, bytes: Option<&[u8]>) -> Result<Option<Millis>, RuleError> {
    let Some(bytes) = bytes else { return Ok(None) };
    let text = std::str::from_utf8(bytes).map_err(|e| RuleError::damaged(key, e))?;
    text.parse()
        .map(Some)
        .map_err(|e| RuleError::damaged(key, e))
}

/// How often (in event time) a sweep of the whole store starts.
pub const SWEEP_INTERVAL: Millis = DAY;

/// Whether this record should advance a sweep.
pub fn sweep_due(meta: &Meta) -> bool {
    let started = meta.sweep_cursor.is_some();
    started || matches!((meta.next_sweep, meta.watermark), (Some(next), Some(now)) if now >= next)
}

/// Advances the sweep by one page of keys: deletes each entry that no record at or after
/// the watermark can use. Late records (older than the watermark by more than a window)
/// may thus find less history than an in-order run would have given them.
pub fn sweep_page(
    kv: &mut impl KeyValue,
    meta: &mut Meta,
    config: &Config,
) -> Result<(), RuleError> {
    let Some(now) = meta.watermark else {
        return Ok(());
    };
    let (keys, cursor) = kv.list_keys(meta.sweep_cursor).map_err(RuleError::State)?;
    let keys: Vec<String> = keys.into_iter().filter(|k| k != META).collect();
    let values = kv.get_many(&keys).map_err(RuleError::State)?;
    let mut expired = Vec::new();
    for (key, value) in keys.into_iter().zip(values) {
        if is_expired(&key, value.as_deref(), now, config)? {
            expired.push(key);
        }
    }
    if !expired.is_empty() {
        kv.delete_many(expired).map_err(RuleError::State)?;
    }
    meta.sweep_cursor = cursor;
    if cursor.is_none() {
        meta.next_sweep = Some(now.saturating_add(SWEEP_INTERVAL));
    }
    Ok(())
}

/// How long after its time an entry can still matter; `None` for keys the rule does not own.
fn retention(key: &str, config: &Config) -> Option<Period> {
    let (prefix, rest) = key.split_once('/')?;
    match prefix {
        "last" | "seen" => Some(config.baseline.training_period),
        "targets" => Some(config.multiple_sessions.window),
        "dedup" => Some(config.dedup_period(rest.split_once('/')?.0)),
        _ => None,
    }
}

fn is_expired(
    key: &str,
    value: Option<&[u8]>,
    now: Millis,
    config: &Config,
) -> Result<bool, RuleError> {
    let Some(retention) = retention(key, config) else {
        return Ok(false);
    };
    let time = if key.starts_with("targets/") {
        RecentTargets::decode(key, value)?.latest()
    } else {
        decode_time(key, value)?
    };
    Ok(time.is_some_and(|t| now.saturating_sub(t) > retention.millis()))
}

/// An in-memory [`KeyValue`], for tests and native benchmarks. Keys are listed in order;
/// a cursor stands for the last key of its page, so deleting keys between pages (as the
/// sweep does) skips nothing.
#[derive(Debug, Default, Clone)]
pub struct MemoryKv {
    pub entries: BTreeMap<String, Vec<u8>>,
    /// Keys per `list_keys` page.
    pub page_size: usize,
    /// The last key of each page handed out; a cursor is an index here.
    cursors: Vec<String>,
}

impl MemoryKv {
    pub fn new() -> Self {
        MemoryKv {
            page_size: 100,
            ..MemoryKv::default()
        }
    }

    /// The keys, for assertions.
    pub fn keys(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }
}

impl KeyValue for MemoryKv {
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, String> {
        Ok(keys.iter().map(|k| self.entries.get(k).cloned()).collect())
    }

    fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        self.entries.extend(entries);
        Ok(())
    }

    fn delete_many(&mut self, keys: Vec<String>) -> Result<(), String> {
        for key in keys {
            self.entries.remove(&key);
        }
        Ok(())
    }

    fn list_keys(&mut self, cursor: Option<u64>) -> Result<(Vec<String>, Option<u64>), String> {
        use std::ops::Bound::{self, Excluded, Unbounded};
        let after = match cursor {
            None => None,
            Some(c) => Some(
                self.cursors
                    .get(c as usize)
                    .ok_or("unknown cursor")?
                    .clone(),
            ),
        };
        let start: Bound<&String> = after.as_ref().map_or(Unbounded, Excluded);
        let range = self.entries.range::<String, _>((start, Unbounded));
        let mut keys = range.map(|(k, _)| k.clone());
        let page: Vec<String> = keys.by_ref().take(self.page_size).collect();
        let more = keys.next().is_some();
        let next = match page.last() {
            Some(last) if more => {
                self.cursors.push(last.clone());
                Some(self.cursors.len() as u64 - 1)
            }
            _ => None,
        };
        Ok((page, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::HOUR;

    fn kv_with(entries: &[(&str, &str)]) -> MemoryKv {
        let mut kv = MemoryKv::new();
        kv.entries = entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        kv
    }

    fn sweep_all(kv: &mut MemoryKv, now: Millis) -> Meta {
        let mut meta = Meta {
            watermark: Some(now),
            next_sweep: Some(now),
            ..Meta::default()
        };
        let config = Config::default();
        sweep_page(kv, &mut meta, &config).unwrap();
        while meta.sweep_cursor.is_some() {
            sweep_page(kv, &mut meta, &config).unwrap();
        }
        meta
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
        let meta = sweep_all(&mut kv, now);
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
        assert_eq!(meta.next_sweep, Some(now + SWEEP_INTERVAL));
    }

    #[test]
    fn a_sweep_is_due_once_the_watermark_passes() {
        let mut meta = Meta {
            watermark: Some(10),
            next_sweep: Some(11),
            ..Meta::default()
        };
        assert!(!sweep_due(&meta));
        meta.watermark = Some(11);
        assert!(sweep_due(&meta));
        meta = Meta {
            sweep_cursor: Some(3),
            ..Meta::default()
        };
        assert!(sweep_due(&meta));
        assert!(!sweep_due(&Meta::default()));
    }

    #[test]
    fn damaged_values_are_errors_not_absence() {
        assert_eq!(decode_time("k", Some(b"12")), Ok(Some(12)));
        assert_eq!(decode_time("k", None), Ok(None));
        for bad in [&b"x"[..], &[0xff], b""] {
            let err = decode_time("last/a", Some(bad)).unwrap_err().to_string();
            assert!(err.contains("`last/a` is damaged"), "{err}");
        }
        let err = Meta::decode(Some(b"[]")).unwrap_err().to_string();
        assert!(err.contains("`meta`"), "{err}");
        assert_eq!(Meta::decode(None), Ok(Meta::default()));
        let mut kv = kv_with(&[("last/x", "not a time")]);
        let mut meta = Meta {
            watermark: Some(DAY),
            ..Meta::default()
        };
        let err = sweep_page(&mut kv, &mut meta, &Config::default()).unwrap_err();
        assert!(err.to_string().contains("`last/x`"), "{err}");
    }

    #[test]
    fn memory_pages_cover_every_key_once() {
        let mut kv = kv_with(&[("a", ""), ("b", ""), ("c", ""), ("d", ""), ("e", "")]);
        kv.page_size = 2;
        let (mut seen, mut cursor) = (vec![], None);
        loop {
            let (page, next) = kv.list_keys(cursor).unwrap();
            seen.extend(page);
            if next.is_none() {
                break;
            }
            cursor = next;
        }
        assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    }
}
