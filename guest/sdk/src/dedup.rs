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

use crate::bytes;
use crate::catalog::index_of;
use crate::config::{Configured, dedup_period};
use crate::entity::{Entity, Mark, Marks};
use crate::kv::{decode_time, encode_time, hash_parts, hashed_key};
use crate::{Alert, Detection, KeyValue, Millis, Rule, RuleError};

/// The key under which a rule of `detections` remembers when `detection` last alerted for
/// `dedup_key`.
pub fn state_key(detections: &[&Detection], detection: &Detection, dedup_key: &str) -> String {
    match detections {
        [_] => hashed_key(&["d"], &[dedup_key]),
        _ => hashed_key(
            &["d", &index_of(detections, detection).to_string()],
            &[dedup_key],
        ),
    }
}

/// The dedup period of `detection`, from the rule's configuration.
fn period(config: &impl serde::Serialize, detection: &Detection) -> Result<Millis, RuleError> {
    dedup_period(config, detection).map_err(RuleError::InvalidConfig)
}

/// Whether an alert raised at `last_alert`, for the same detection and dedup key, still
/// silences one at `at`. A record from before that alert (out of order) is silenced too.
fn suppressed(last_alert: Option<Millis>, at: Millis, period: Millis) -> bool {
    last_alert.is_some_and(|t0| at < t0.saturating_add(period))
}

/// The alerts that pass the gate, in order; those that pass are remembered: in the
/// entities the record writes (`entities`, which the caller then writes), or in `kv`, with
/// one read and one write of the store for all of them.
pub(crate) fn gate<R: Rule>(
    alerts: Vec<Alert>,
    entities: &mut [(String, Entity)],
    config: &Configured<R>,
    kv: &mut impl KeyValue,
) -> Result<Vec<Alert>, RuleError> {
    if alerts.is_empty() {
        return Ok(alerts);
    }
    let detections = R::info().detections;
    let places: Vec<Place> = (alerts.iter())
        .map(|a| Place::of(detections, a, entities))
        .collect();
    let mut stored = Stored::read(&places, kv)?;
    let mut passed = Vec::with_capacity(alerts.len());
    for (alert, place) in alerts.into_iter().zip(&places) {
        let period = config.dedup_period(index_of(detections, alert.detection));
        let at = alert.event_time;
        let admitted = match place {
            Place::Written { entity, mark } => {
                admit(&mut entities[*entity].1.marks, *mark, at, period)
            }
            place => stored.admit(place, at, period),
        };
        if admitted {
            passed.push(alert);
        }
    }
    stored.write(kv)?;
    Ok(passed)
}

/// Where an alert's mark is kept.
enum Place {
    /// Under a key of its own: the time of the last alert.
    Own(String),
    /// In the stored entity of this key.
    Stored { key: String, mark: (u16, u64) },
    /// In the entity this record writes, at this place among the outcome's.
    Written { entity: usize, mark: (u16, u64) },
}

impl Place {
    fn of(detections: &[&Detection], alert: &Alert, entities: &[(String, Entity)]) -> Place {
        let Some(key) = &alert.dedup_in else {
            return Place::Own(state_key(detections, alert.detection, &alert.dedup_key));
        };
        let mark = mark_of(detections, alert.detection, &alert.dedup_key);
        match (entities.iter()).position(|(k, _)| bytes::same_text(k, key)) {
            Some(entity) => Place::Written { entity, mark },
            None => Place::Stored {
                key: key.clone(),
                mark,
            },
        }
    }

    /// The key read for it, if it is read from the store.
    fn stored_key(&self) -> Option<&str> {
        match self {
            Place::Own(key) | Place::Stored { key, .. } => Some(key),
            Place::Written { .. } => None,
        }
    }
}

/// Whether an alert at `at` of `mark` passes `marks`; if it does, it is remembered.
fn admit(marks: &mut Marks, (detection, key): (u16, u64), at: Millis, period: Millis) -> bool {
    if marks.until(detection, key).is_some_and(|until| at < until) {
        return false;
    }
    let until = at.saturating_add(period);
    marks.set(
        Mark {
            detection,
            key,
            until,
        },
        false,
    );
    true
}

/// The (detection, dedup key) of an alert as an entity's marks name it.
fn mark_of(detections: &[&Detection], detection: &Detection, dedup_key: &str) -> (u16, u64) {
    let place = u16::try_from(index_of(detections, detection)).expect("at most 65,536 detections");
    (place, hash_parts(&[dedup_key]))
}

/// The marks kept in the store, read in one batch: each key's value, and whether the gate
/// changed it.
struct Stored(Vec<(String, Kept, bool)>);

enum Kept {
    /// The last alert of the one detection and dedup key the key names.
    Own(Option<Millis>),
    /// An entity, its marks among the rule's facts.
    Within(Entity),
}

impl Stored {
    fn read(places: &[Place], kv: &mut impl KeyValue) -> Result<Stored, RuleError> {
        let mut keys: Vec<&str> = Vec::new();
        for key in places.iter().filter_map(Place::stored_key) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Ok(Stored(Vec::new()));
        }
        let values = kv.get_many(&keys).map_err(RuleError::State)?;
        let mut stored = Vec::with_capacity(keys.len());
        for (key, value) in keys.into_iter().zip(values) {
            let key = key.to_owned();
            let within =
                (places.iter()).any(|p| matches!(p, Place::Stored { key: k, .. } if *k == key));
            let kept = match within {
                true => Kept::Within(Entity::decode(&key, value.as_deref())?),
                false => Kept::Own(decode_time(&key, value.as_deref())?),
            };
            stored.push((key, kept, false));
        }
        Ok(Stored(stored))
    }

    /// Whether an alert at `at` of `place` passes; if it does, it is remembered.
    fn admit(&mut self, place: &Place, at: Millis, period: Millis) -> bool {
        let key = place.stored_key().expect("a stored place");
        let (_, kept, changed) = (self.0.iter_mut())
            .find(|(k, ..)| k == key)
            .expect("read for each place");
        let admitted = match (kept, place) {
            (Kept::Own(last), _) => {
                let pass = !suppressed(*last, at, period);
                if pass {
                    *last = Some(at);
                }
                pass
            }
            (Kept::Within(entity), Place::Stored { mark, .. }) => {
                admit(&mut entity.marks, *mark, at, period)
            }
            (Kept::Within(_), _) => unreachable!("a key is an entity for all its alerts"),
        };
        *changed |= admitted;
        admitted
    }

    fn write(self, kv: &mut impl KeyValue) -> Result<(), RuleError> {
        let writes: Vec<(String, Vec<u8>)> = (self.0.into_iter())
            .filter(|(_, _, changed)| *changed)
            .map(|(key, kept, _)| match kept {
                Kept::Own(at) => (key, encode_time(at.expect("remembered"))),
                Kept::Within(entity) => (key, entity.encode()),
            })
            .collect();
        match writes.is_empty() {
            true => Ok(()),
            false => kv.set_many(writes).map_err(RuleError::State),
        }
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
        let config = Configured::defaults();
        let outcome = Echo::process(record, &config, kv, &Context { not_after })?;
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
        let mut kv = MemoryKv::with_entries([("e/a".to_owned(), entity.encode())]);
        let alert = |detection, at| Alert {
            detection,
            title: String::new(),
            event_time: at,
            dedup_key: "k".into(),
            context: crate::alert::context(&()),
            event_id: None,
            dedup_in: Some("e/a".into()),
        };
        let config = Configured::<Echo>::defaults();
        let alerts = vec![
            alert(&DAILY, DAY),
            alert(&HOURLY, DAY),
            alert(&DAILY, DAY + 1),
        ];
        let passed = gate::<Echo>(alerts.clone(), &mut [], &config, &mut kv).unwrap();
        let ids: Vec<_> = passed.iter().map(|a| a.detection.id).collect();
        assert_eq!(ids, ["Daily", "Hourly"]);
        // An entity the record writes is marked where it is, and the store not read.
        let mut written = [("e/a".to_owned(), entity.clone())];
        let passed = gate::<Echo>(alerts, &mut written, &config, &mut MemoryKv::new()).unwrap();
        assert_eq!(passed.len(), 2);
        assert_eq!(
            written[0].1.marks.until(0, hash_parts(&["k"])),
            Some(2 * DAY)
        );
        assert_eq!(kv.keys(), ["e/a"], "no key of its own");
        let stored = Entity::decode("e/a", kv.entries.get("e/a").map(Vec::as_slice)).unwrap();
        assert_eq!(stored.facts, b"facts");
        let key = hash_parts(&["k"]);
        assert_eq!(stored.marks.until(0, key), Some(2 * DAY));
        assert_eq!(stored.marks.until(1, key), Some(DAY + HOUR));
        let mut merged = Marks::default();
        merge_mark::<Echo>(&mut merged, config.config(), &HOURLY, "k", DAY).unwrap();
        merge_mark::<Echo>(&mut merged, config.config(), &HOURLY, "k", DAY - 1).unwrap();
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
