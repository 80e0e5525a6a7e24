//! The dedup gate every alert passes, whatever the rule: an alert whose detection raised
//! one for the same dedup key less than that detection's dedup period before (in event
//! time) is dropped; one that passes is remembered. The period is the field of the
//! configuration its detection names ([`Detection::dedup_period`]).
//!
//! The SDK keeps what it remembers in the rule's store, beside the rule's own keys:
//!
//! | key | value |
//! |-----|-------|
//! | `d/{n}/#(dedup key)` | when detection `n` (its place in [`RuleInfo::detections`](crate::RuleInfo)) last alerted for the key, decimal milliseconds |
//! | `d/#(dedup key)` | the same, for a rule of one detection |
//!
//! A rule keeps its own keys out of `d/`. A rule that sweeps its state (see
//! [`history`](crate::history)) hands these keys to [`usable_until`].

use crate::config::period_at;
use crate::entity::{Entity, Mark, Marks};
use crate::kv::{decode_time, encode_time, hash_parts, hashed_key};
use crate::{Alert, Detection, KeyValue, Millis, Rule, RuleError};

/// The key under which a rule of `detections` remembers when `detection` last alerted for
/// `dedup_key`.
pub fn state_key(detections: &[&Detection], detection: &Detection, dedup_key: &str) -> String {
    match detections {
        [_] => hashed_key(&["d"], &[dedup_key]),
        _ => hashed_key(
            &["d", &place(detections, detection).to_string()],
            &[dedup_key],
        ),
    }
}

/// Where `detection` is among `detections`: an alert of a detection the rule does not list
/// is a bug of the rule, which its own tests meet first.
fn place(detections: &[&Detection], detection: &Detection) -> usize {
    detections
        .iter()
        .position(|d| d.id == detection.id)
        .unwrap_or_else(|| panic!("`{}` is not among the rule's detections", detection.id))
}

/// The dedup period of `detection`, from the rule's configuration.
fn period(config: &impl serde::Serialize, detection: &Detection) -> Result<Millis, RuleError> {
    period_at(config, detection.dedup_period)
        .map(|p| p.millis())
        .map_err(|e| RuleError::InvalidConfig(format!("{}'s dedup period: {e}", detection.id)))
}

/// Whether an alert raised at `last_alert`, for the same detection and dedup key, still
/// silences one at `at`. A record from before that alert (out of order) is silenced too.
fn suppressed(last_alert: Option<Millis>, at: Millis, period: Millis) -> bool {
    last_alert.is_some_and(|t0| at < t0.saturating_add(period))
}

/// The alerts that pass the gate, in order; those that pass are remembered in `kv`. One
/// read and one write of the store, for all of them; an alert kept in an entity
/// ([`Alert::dedup_in`]) the rule wrote in this record reads it from the record's own
/// writes, not from the store.
pub(crate) fn gate<R: Rule>(
    alerts: Vec<Alert>,
    config: &R::Config,
    kv: &mut impl KeyValue,
) -> Result<Vec<Alert>, RuleError> {
    if alerts.is_empty() {
        return Ok(alerts);
    }
    let detections = R::info().detections;
    let places: Vec<Place> = alerts.iter().map(|a| Place::of(detections, a)).collect();
    let mut keys: Vec<String> = Vec::new();
    for place in &places {
        if !keys.contains(&place.key) {
            keys.push(place.key.clone());
        }
    }
    let stored = kv.get_many(&keys).map_err(RuleError::State)?;
    let mut slots = Vec::with_capacity(keys.len());
    for (key, value) in keys.into_iter().zip(stored) {
        slots.push(Slot::decode(key, value.as_deref(), &places)?);
    }
    let mut passed = Vec::new();
    for (alert, place) in alerts.into_iter().zip(&places) {
        let slot = slots
            .iter_mut()
            .find(|s| s.key == place.key)
            .expect("a slot per key");
        let period = period(config, alert.detection)?;
        if !slot.silences(place, alert.event_time, period) {
            slot.remember(place, alert.event_time, period);
            passed.push(alert);
        }
    }
    let writes = slots.into_iter().filter_map(Slot::into_write);
    kv.set_many(writes.collect()).map_err(RuleError::State)?;
    Ok(passed)
}

/// Where an alert's mark is kept: under `key` of its own (`within` is `None`), or as
/// `mark` in the entity of `key`.
struct Place {
    key: String,
    within: Option<(u16, u64)>,
}

impl Place {
    fn of(detections: &[&Detection], alert: &Alert) -> Place {
        match &alert.dedup_in {
            None => Place {
                key: state_key(detections, alert.detection, &alert.dedup_key),
                within: None,
            },
            Some(entity) => Place {
                key: entity.clone(),
                within: Some(mark_of(detections, alert.detection, &alert.dedup_key)),
            },
        }
    }
}

/// The (detection, dedup key) of an alert as an entity's marks name it.
fn mark_of(detections: &[&Detection], detection: &Detection, dedup_key: &str) -> (u16, u64) {
    let place = u16::try_from(place(detections, detection)).expect("at most 65,536 detections");
    (place, hash_parts(&[dedup_key]))
}

/// What one key of the gate holds, and whether the gate changed it.
struct Slot {
    key: String,
    kept: Kept,
    changed: bool,
}

enum Kept {
    /// The last alert of the one detection and dedup key the key names.
    Own(Option<Millis>),
    /// An entity, its marks among the rule's facts.
    Within(Entity),
}

impl Slot {
    fn decode(key: String, value: Option<&[u8]>, places: &[Place]) -> Result<Slot, RuleError> {
        let within = places.iter().any(|p| p.key == key && p.within.is_some());
        let kept = match within {
            true => Kept::Within(Entity::decode(&key, value)?),
            false => Kept::Own(decode_time(&key, value)?),
        };
        Ok(Slot {
            key,
            kept,
            changed: false,
        })
    }

    /// Whether an alert at `at` of `place` is silenced.
    fn silences(&self, place: &Place, at: Millis, period: Millis) -> bool {
        match (&self.kept, place.within) {
            (Kept::Own(last), _) => suppressed(*last, at, period),
            (Kept::Within(entity), Some((detection, key))) => entity
                .marks
                .until(detection, key)
                .is_some_and(|until| at < until),
            (Kept::Within(_), None) => unreachable!("a key is an entity for all its alerts"),
        }
    }

    fn remember(&mut self, place: &Place, at: Millis, period: Millis) {
        self.changed = true;
        match (&mut self.kept, place.within) {
            (Kept::Own(last), _) => *last = Some(at),
            (Kept::Within(entity), Some((detection, key))) => {
                let until = at.saturating_add(period);
                entity.marks.set(
                    Mark {
                        detection,
                        key,
                        until,
                    },
                    false,
                )
            }
            (Kept::Within(_), None) => unreachable!("a key is an entity for all its alerts"),
        }
    }

    fn into_write(self) -> Option<(String, Vec<u8>)> {
        let value = match self.kept {
            _ if !self.changed => return None,
            Kept::Own(at) => encode_time(at.expect("remembered")),
            Kept::Within(entity) => entity.encode(),
        };
        Some((self.key, value))
    }
}

/// Remembers, in `marks`, that `detection` alerted for `dedup_key` at `at`, unless it is
/// remembered later: for a rule that folds what it kept elsewhere into an entity.
pub fn merge_mark<R: Rule>(
    marks: &mut Marks,
    config: &R::Config,
    detection: &Detection,
    dedup_key: &str,
    at: Millis,
) -> Result<(), RuleError> {
    let (detection_at, key) = mark_of(R::info().detections, detection, dedup_key);
    let until = at.saturating_add(period(config, detection)?);
    let mark = Mark {
        detection: detection_at,
        key,
        until,
    };
    marks.set(mark, true);
    Ok(())
}

/// The last event time at which the SDK's entry `key` (under `d/`) = `value` can still
/// silence an alert: its detection's dedup period after the alert it remembers.
pub fn usable_until<R: Rule>(
    config: &R::Config,
    key: &str,
    value: &[u8],
) -> Result<Option<Millis>, RuleError> {
    let detections = R::info().detections;
    let rest = key.strip_prefix("d/").unwrap_or(key);
    let detection = match detections {
        [only] => Some(*only),
        _ => rest
            .split_once('/')
            .and_then(|(n, _)| n.parse::<usize>().ok())
            .and_then(|n| detections.get(n).copied()),
    };
    let detection =
        detection.ok_or_else(|| RuleError::damaged(key, "not a detection of this rule"))?;
    let until = period(config, detection)?;
    Ok(decode_time(key, Some(value))?.map(|at| at.saturating_add(until)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Severity;
    use crate::config::Period;
    use crate::time::{DAY, HOUR};
    use crate::{Context, MemoryKv, Outcome, RuleConfig, RuleInfo};

    const fn detection(id: &'static str, dedup_period: &'static str) -> Detection {
        Detection {
            id,
            name: id,
            severity: Severity::Info,
            mitre: &[],
            description: "",
            runbook: "",
            reference: "",
            tags: &[],
            dedup_period,
        }
    }

    const DAILY: Detection = detection("Daily", "daily");
    const HOURLY: Detection = detection("Hourly", "hourly");

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Periods {
        daily: Period,
        hourly: Period,
    }

    impl Default for Periods {
        fn default() -> Self {
            Periods {
                daily: Period::days(1),
                hourly: Period::hours(1),
            }
        }
    }

    impl RuleConfig for Periods {}

    use serde::{Deserialize, Serialize};

    /// Raises an alert of each detection named in the record (`"Daily Hourly"`), keyed by
    /// the record's first word, at the time after the `@`.
    struct Echo;

    impl Rule for Echo {
        type Config = Periods;
        fn info() -> RuleInfo {
            RuleInfo {
                detections: &[&DAILY, &HOURLY],
                ..crate::test_rules::info("echo", &[])
            }
        }
        fn detect(
            record: &str,
            _: &Periods,
            _: &mut impl KeyValue,
            _: &Context,
        ) -> Result<Outcome, RuleError> {
            let (words, at) = record.split_once('@').expect("words@time");
            let mut words = words.split_whitespace();
            let key = words.next().expect("a key");
            let alerts = words
                .map(|id| Alert {
                    detection: if id == "Daily" { &DAILY } else { &HOURLY },
                    title: String::new(),
                    event_time: at.parse().expect("a time"),
                    dedup_key: key.to_owned(),
                    context: crate::alert::context(&()),
                    event_id: None,
                    dedup_in: None,
                })
                .collect();
            Ok(Outcome::relevant(alerts))
        }
    }

    fn ids(
        kv: &mut MemoryKv,
        record: &str,
        not_after: Millis,
    ) -> Result<Vec<&'static str>, RuleError> {
        let outcome = Echo::process(record, &Periods::default(), kv, &Context { not_after })?;
        Ok(outcome.alerts.iter().map(|a| a.detection.id).collect())
    }

    #[test]
    fn each_detection_dedups_over_its_own_period() {
        let mut kv = MemoryKv::new();
        let far = Millis::MAX;
        assert_eq!(
            ids(&mut kv, &format!("k Daily Hourly@{DAY}"), far),
            Ok(vec!["Daily", "Hourly"])
        );
        assert_eq!(
            ids(&mut kv, &format!("k Daily Hourly@{}", DAY + HOUR), far),
            Ok(vec!["Hourly"])
        );
        assert_eq!(
            ids(&mut kv, &format!("other Daily@{}", DAY + HOUR), far),
            Ok(vec!["Daily"])
        );
        assert_eq!(
            ids(&mut kv, &format!("k Daily@{}", 2 * DAY), far),
            Ok(vec!["Daily"])
        );
        // Within one record too; and an earlier record, out of order, is silenced.
        assert_eq!(
            ids(&mut kv, &format!("k2 Hourly Hourly@{DAY}"), far),
            Ok(vec!["Hourly"])
        );
        assert_eq!(
            ids(&mut kv, &format!("k Daily@{}", DAY / 2), far),
            Ok(vec![])
        );
        let key = state_key(Echo::info().detections, &HOURLY, "k");
        assert_eq!(kv.entries[&key], encode_time(DAY + HOUR));
    }

    #[test]
    fn marks_kept_in_an_entity_live_in_its_value_beside_the_rules_facts() {
        let entity = Entity {
            facts: b"facts".to_vec(),
            ..Entity::default()
        };
        let mut kv = MemoryKv::with_entries([("e/a".to_owned(), entity.encode())].into());
        let alert = |detection, at| Alert {
            detection,
            title: String::new(),
            event_time: at,
            dedup_key: "k".into(),
            context: crate::alert::context(&()),
            event_id: None,
            dedup_in: Some("e/a".into()),
        };
        let config = Periods::default();
        let alerts = vec![
            alert(&DAILY, DAY),
            alert(&HOURLY, DAY),
            alert(&DAILY, DAY + 1),
        ];
        let passed = gate::<Echo>(alerts, &config, &mut kv).unwrap();
        let ids: Vec<_> = passed.iter().map(|a| a.detection.id).collect();
        assert_eq!(ids, ["Daily", "Hourly"]);
        assert_eq!(kv.keys(), ["e/a"], "no key of its own");
        let stored = Entity::decode("e/a", kv.entries.get("e/a").map(Vec::as_slice)).unwrap();
        assert_eq!(stored.facts, b"facts");
        let key = hash_parts(&["k"]);
        assert_eq!(stored.marks.until(0, key), Some(2 * DAY));
        assert_eq!(stored.marks.until(1, key), Some(DAY + HOUR));
        let mut merged = Marks::default();
        merge_mark::<Echo>(&mut merged, &config, &HOURLY, "k", DAY).unwrap();
        merge_mark::<Echo>(&mut merged, &config, &HOURLY, "k", DAY - 1).unwrap();
        assert_eq!(merged.until(1, key), Some(DAY + HOUR), "the later one");
    }

    #[test]
    fn an_alert_after_the_hosts_bound_fails_its_record_and_writes_nothing() {
        let mut kv = MemoryKv::new();
        let err = ids(&mut kv, "k Daily@1001", 1000).unwrap_err();
        assert!(matches!(err, RuleError::InvalidTime(m) if m.contains("the host accepts")));
        assert!(kv.entries.is_empty());
    }

    #[test]
    fn keys_name_the_detection_unless_it_is_the_only_one() {
        // State files hold these keys: a change is a new state format.
        assert_eq!(
            state_key(&[&DAILY, &HOURLY], &HOURLY, "a"),
            "d/1/beb9a6bbf61b58b4"
        );
        assert_eq!(state_key(&[&HOURLY], &HOURLY, "a"), "d/beb9a6bbf61b58b4");
    }

    #[test]
    fn entries_are_usable_for_their_detections_period() {
        let config = Periods::default();
        let until = |key: &str| usable_until::<Echo>(&config, key, b"100");
        assert_eq!(until("d/0/x"), Ok(Some(100 + DAY)));
        assert_eq!(until("d/1/x"), Ok(Some(100 + HOUR)));
        assert!(
            until("d/2/x")
                .unwrap_err()
                .to_string()
                .contains("not a detection")
        );
        assert!(usable_until::<Echo>(&config, "d/0/x", b"soon").is_err());
    }

    #[test]
    fn dedup_silences_up_to_the_end_of_the_period() {
        assert!(!suppressed(None, 5, 10));
        assert!(suppressed(Some(100), 100, 10));
        assert!(suppressed(Some(100), 109, 10));
        assert!(!suppressed(Some(100), 110, 10));
        // An out-of-order record from before the alert is silenced too.
        assert!(suppressed(Some(100), 50, 10));
    }
}
