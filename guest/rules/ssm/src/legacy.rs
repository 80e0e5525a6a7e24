//! The state of format 2, which kept each fact under a key of its own, and how it is
//! upgraded: an operator who installs this version keeps the baselines the earlier one
//! learnt.
//!
//! | key | value |
//! |---|---|
//! | `l/#(identity)` | latest successful session, decimal milliseconds |
//! | `s/{t,n,d}/#(identity, value)` | when the identity last used a target, source network or document |
//! | `t/#(identity)` | latest StartSession per target ([`RecentTargets`]) |
//! | `d/{detection}/#(dedup key)` | time of the last alert (the SDK's dedup keys) |
//!
//! A key holds a hash of the identity together with the value, so these keys cannot be
//! told apart by identity and moved at once. Instead, while they may still be of use
//! ([`History::legacy_until`](detect_sdk::history::History)), each session start also
//! reads the ones it would have read before, folds what they hold into the identity's
//! value and deletes them; the sweep deletes the rest as they expire. Once the watermark
//! passes the longest retention after the upgrade, no record reads them again.

use detect_sdk::kv::{decode_time, hashed_key};
use detect_sdk::{Detection, KeyValue, Millis, RuleError, dedup};

use crate::SsmSessions;
use crate::baseline::{Feature, Verdict};
use crate::catalog;
use crate::config::Config;
use crate::identity::FeatureValue;
use crate::multiple_sessions::{self, RecentTargets};
use crate::rule::State;
use crate::session::SessionStart;

/// An identity's latest successful session.
fn last_session_key(identity: &str) -> String {
    hashed_key(&["l"], &[identity])
}

/// When an identity last used a value of a feature.
fn seen_key(feature: Feature, identity: &str, value: &str) -> String {
    let letter = match feature {
        Feature::Target => "t",
        Feature::SourceNetwork => "n",
        Feature::Document => "d",
    };
    hashed_key(&["s", letter], &[identity, value])
}

/// An identity's recent targets.
fn targets_key(identity: &str) -> String {
    hashed_key(&["t"], &[identity])
}

/// Every detection and the dedup key an alert of it for `session` has.
fn dedup_keys(session: &SessionStart) -> [(&'static Detection, String); 4] {
    let of = |v: Verdict| (v.detection(), v.dedup_key(session));
    [
        of(Verdict::Started),
        of(Verdict::UnusualIdentity),
        of(Verdict::UnusualSession(Vec::new())),
        (
            &catalog::MULTIPLE_SESSIONS,
            multiple_sessions::dedup_key(session),
        ),
    ]
}

/// The keys of format 2 that `session` would have read, in the order [`fold`] reads them.
fn keys_of(session: &SessionStart) -> (Vec<String>, [(&'static Detection, String); 4]) {
    let identity = &session.identity;
    let mut keys = vec![last_session_key(identity), targets_key(identity)];
    keys.extend(Feature::ALL.map(|f| seen_key(f, identity, f.value(session))));
    let dedup = dedup_keys(session);
    keys.extend(
        (dedup.iter()).map(|(detection, key)| dedup::state_key(&catalog::ALL, detection, key)),
    );
    (keys, dedup)
}

/// Reads the keys of format 2 that `session` would have read, in one batch, and folds
/// what they hold into what the rule knows of the identity (and its dedup marks): the
/// later time of each fact. Returns the keys that held something, for the record to
/// delete with its writes.
pub(crate) fn fold(
    session: &SessionStart,
    kv: &mut impl KeyValue,
    config: &Config,
    state: &mut State,
) -> Result<Vec<String>, RuleError> {
    let (keys, dedup) = keys_of(session);
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let values = kv.get_many(&names).map_err(RuleError::State)?;
    let time = |n: usize| decode_time(&keys[n], values[n].as_deref());
    let known = &mut state.known;
    if let Some(at) = time(0)? {
        known.last_session = Some(known.last_session.map_or(at, |t| t.max(at)));
    }
    known
        .targets
        .merge(RecentTargets::decode(&keys[1], values[1].as_deref())?);
    for (n, feature) in Feature::ALL.into_iter().enumerate() {
        if let Some(at) = time(2 + n)? {
            known.see(FeatureValue::new(feature, feature.value(session)), at);
        }
    }
    for (n, (detection, key)) in dedup.iter().enumerate() {
        if let Some(at) = time(5 + n)? {
            let marks = &mut state.entity.marks;
            dedup::merge_mark::<SsmSessions>(marks, config, detection, key, at)?;
        }
    }
    let held = keys.into_iter().zip(&values).filter(|(_, v)| v.is_some());
    Ok(held.map(|(key, _)| key).collect())
}

/// The last event time at which a record could use the entry `key` = `value` of format
/// 2; `None` for a key of no prefix of that format.
pub fn usable_until(config: &Config, key: &str, value: &[u8]) -> Result<Option<Millis>, RuleError> {
    let Some((prefix, _)) = key.split_once('/') else {
        return Ok(None);
    };
    let (time, retention) = match prefix {
        "l" | "s" => (
            decode_time(key, Some(value))?,
            config.baseline.training_period,
        ),
        "t" => (
            RecentTargets::decode(key, Some(value))?.latest(),
            config.multiple_sessions.window,
        ),
        "d" => return dedup::usable_until::<SsmSessions>(config, key, value),
        _ => return Ok(None),
    };
    Ok(time.map(|t| t.saturating_add(retention.millis())))
}

#[cfg(test)]
mod tests {
    use detect_sdk::codec::Writer;
    use detect_sdk::entity::Marks;
    use detect_sdk::history::{History, Retention};
    use detect_sdk::time::{DAY, HOUR};
    use detect_sdk::{Detection, MemoryKv};

    use super::*;
    use crate::testkit::SAMPLE;

    /// When a detection last alerted for a dedup key: the SDK's key, in this rule's state.
    fn dedup_key(detection: &Detection, key: &str) -> String {
        dedup::state_key(&catalog::ALL, detection, key)
    }

    fn targets(entries: &[(&str, Millis)]) -> Vec<u8> {
        let mut recent = RecentTargets::default();
        for (target, at) in entries {
            recent.record(target, *at, Millis::MAX);
        }
        let mut w = Writer::default();
        recent.write(&mut w);
        w.0
    }

    /// Format 2's state files hold these keys: they are read as they were written.
    #[test]
    fn keys_are_those_format_2_wrote() {
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
    fn a_start_folds_in_what_format_2_kept_for_it() {
        let session = SessionStart::parse(SAMPLE).unwrap();
        let (keys, dedup) = keys_of(&session);
        let at = session.time;
        let mut kv = MemoryKv::with_entries([
            (keys[0].clone(), (at - DAY).to_string().into_bytes()),
            (keys[1].clone(), targets(&[("i-old", at - 10)])),
            (keys[3].clone(), (at - 2 * DAY).to_string().into_bytes()),
            (keys[8].clone(), (at - HOUR).to_string().into_bytes()),
            ("l/other".to_owned(), b"1".to_vec()),
        ]);
        let config = Config::default();
        let mut state = State::read(&mut kv, "i/x".to_owned(), &config).unwrap();
        let held = fold(&session, &mut kv, &config, &mut state).unwrap();
        assert_eq!(held, [0, 1, 3, 8].map(|n| keys[n].clone()));
        let known = &state.known;
        assert_eq!(known.last_session, Some(at - DAY));
        assert_eq!(known.targets.latest(), Some(at - 10));
        let network = Feature::SourceNetwork;
        assert_eq!(
            known.last_seen(FeatureValue::new(network, network.value(&session))),
            Some(at - 2 * DAY)
        );
        assert_eq!(
            known.last_seen(FeatureValue::new(Feature::Target, &session.target)),
            None,
            "not kept"
        );
        let mut expected = Marks::default();
        let (multiple, key) = &dedup[3];
        dedup::merge_mark::<SsmSessions>(&mut expected, &config, multiple, key, at - HOUR).unwrap();
        assert_eq!(state.entity.marks, expected);
        // Damage is an error, never "no history".
        kv.entries.set(keys[2].clone(), Some(b"soon".to_vec()));
        let err = fold(&session, &mut kv, &config, &mut state).unwrap_err();
        assert!(err.to_string().contains(&keys[2]), "{err}");
    }

    #[test]
    fn the_sweep_deletes_exactly_the_legacy_entries_that_expired() {
        let now = 100 * DAY;
        let day = |d: i64| (now - d * DAY).to_string();
        let (fresh, old) = (day(30), (now - 30 * DAY - 1).to_string());
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
        let mut kv = MemoryKv::with_entries(kept.iter().chain(&expired).cloned());
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
        let err = Config::default().usable_until("l/x", b"soon").unwrap_err();
        assert!(err.to_string().contains("`l/x`"), "{err}");
    }
}
