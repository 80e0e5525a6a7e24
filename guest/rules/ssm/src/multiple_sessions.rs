//! `AWS.SSM.MultipleSessions`: one identity starting sessions on several targets at once.
//!
//! Panther runs this as a scheduled query: `count(distinct requestParameters.target)`
//! per `userIdentity.arn` over the last hour of `StartSession` records, failed ones
//! included, firing above 2. Here it is streaming: each identity keeps the latest start
//! time of every target it used recently, and a record fires when the distinct targets
//! started less than `window` from it, on either side, number at least `threshold`.

use std::collections::BTreeMap;

use serde_json::json;

use detect_sdk::alert::context;

use detect_sdk::{Alert, Millis, RuleError};

use crate::catalog;
use crate::config::MultipleSessionsConfig;
use crate::session::SessionStart;

/// Latest StartSession time per target, for one identity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecentTargets(BTreeMap<String, Millis>);

impl RecentTargets {
    /// The value of `key`; nothing stored is no targets.
    pub fn decode(key: &str, bytes: Option<&[u8]>) -> Result<Self, RuleError> {
        let mut targets = BTreeMap::new();
        let mut rest = bytes.unwrap_or_default();
        let damaged = || RuleError::damaged(key, "cut short");
        while !rest.is_empty() {
            let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(damaged)?;
            let len = u32::from_le_bytes(*len) as usize;
            let target = tail.get(..len).ok_or_else(damaged)?;
            let (at, tail) = tail[len..].split_first_chunk::<8>().ok_or_else(damaged)?;
            let target = std::str::from_utf8(target).map_err(|e| RuleError::damaged(key, e))?;
            targets.insert(target.to_owned(), Millis::from_le_bytes(*at));
            rest = tail;
        }
        Ok(RecentTargets(targets))
    }

    /// The value to store: each target's length, text and time.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (target, at) in &self.0 {
            out.extend_from_slice(&(target.len() as u32).to_le_bytes());
            out.extend_from_slice(target.as_bytes());
            out.extend_from_slice(&at.to_le_bytes());
        }
        out
    }

    pub fn latest(&self) -> Option<Millis> {
        self.0.values().copied().max()
    }

    /// Records a start on `target` at `at`, and forgets targets started a window or more
    /// before the identity's newest start. That bounds the state; the price is that a
    /// record arriving later than that (by event time) no longer finds them.
    pub fn record(&mut self, target: &str, at: Millis, window: Millis) {
        let latest = self.0.entry(target.to_owned()).or_insert(at);
        *latest = (*latest).max(at);
        let newest = self.latest().unwrap_or(at);
        self.0.retain(|_, t| newest.saturating_sub(*t) < window);
    }

    /// The distinct targets started less than `window` from `at`. The record's own target
    /// always counts: it was started at `at` even if a later start is stored.
    pub fn near(&self, target: &str, at: Millis, window: Millis) -> Vec<String> {
        self.0
            .iter()
            .filter(|(t, latest)| *t == target || latest.abs_diff(at) < window.unsigned_abs())
            .map(|(t, _)| t.clone())
            .collect()
    }
}

/// The targets behind an alert, when this record makes the identity cross the threshold.
pub fn evaluate(
    session: &SessionStart,
    recent: &RecentTargets,
    config: &MultipleSessionsConfig,
) -> Option<Vec<String>> {
    let targets = recent.near(&session.target, session.time, config.window.millis());
    (targets.len() >= config.threshold).then_some(targets)
}

/// The alert, titled as Panther's `title()` and with Panther's `aws_rule_context`.
pub fn alert(session: &SessionStart, targets: Vec<String>) -> Alert {
    let mut facts = session.panther_context();
    facts["target_count"] = json!(targets.len());
    facts["targets"] = json!(targets);
    Alert {
        detection: &catalog::MULTIPLE_SESSIONS,
        title: format!(
            "Multiple SSM Sessions Started by {} in {}",
            session.actor, session.account
        ),
        event_time: session.time,
        dedup_key: session.identity.to_string(),
        context: context(&facts),
        event_id: session.event_id.as_deref().map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use detect_sdk::time::{HOUR, MINUTE};

    const T: Millis = 1_739_996_029_000;

    fn recent(entries: &[(&str, Millis)]) -> RecentTargets {
        RecentTargets(entries.iter().map(|(t, at)| (t.to_string(), *at)).collect())
    }

    #[test]
    fn counts_targets_less_than_a_window_away_on_either_side() {
        let r = recent(&[
            ("a", T - HOUR),
            ("b", T - HOUR + 1),
            ("c", T + HOUR - 1),
            ("d", T + HOUR),
            ("e", T),
        ]);
        assert_eq!(r.near("e", T, HOUR), ["b", "c", "e"]);
    }

    #[test]
    fn the_records_own_target_always_counts() {
        let r = recent(&[("a", T + 2 * HOUR)]);
        assert_eq!(r.near("a", T, HOUR), ["a"]);
    }

    #[test]
    fn recording_keeps_maxima_and_forgets_what_left_the_window() {
        let mut r = RecentTargets::default();
        r.record("a", T, HOUR);
        r.record("a", T - 10 * MINUTE, HOUR);
        assert_eq!(r, recent(&[("a", T)]));
        r.record("b", T + HOUR - 1, HOUR);
        assert_eq!(r, recent(&[("a", T), ("b", T + HOUR - 1)]));
        r.record("c", T + HOUR, HOUR);
        assert_eq!(r, recent(&[("b", T + HOUR - 1), ("c", T + HOUR)]));
        assert_eq!(RecentTargets::decode("k", Some(&r.encode())), Ok(r));
        assert!(RecentTargets::decode("k", Some(b"oops")).is_err());
        assert_eq!(
            RecentTargets::decode("k", None),
            Ok(RecentTargets::default())
        );
    }
}
