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
use detect_sdk::codec::{Reader, Writer};
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
        RecentTargets::read(&mut Reader::new(key, bytes.unwrap_or_default()))
    }

    /// Reads targets up to the end of the value: each target's length, text and time.
    pub fn read(r: &mut Reader) -> Result<Self, RuleError> {
        let mut targets = BTreeMap::new();
        while !r.is_empty() {
            let target = r.str()?;
            targets.insert(target.to_owned(), r.time()?);
        }
        Ok(RecentTargets(targets))
    }

    /// Writes what [`RecentTargets::read`] reads.
    pub fn write(&self, w: &mut Writer) {
        for (target, at) in &self.0 {
            w.str(target);
            w.time(*at);
        }
    }

    /// Folds in `other`, keeping each target's later start.
    pub fn merge(&mut self, other: RecentTargets) {
        for (target, at) in other.0 {
            let latest = self.0.entry(target).or_insert(at);
            *latest = (*latest).max(at);
        }
    }

    pub fn latest(&self) -> Option<Millis> {
        self.0.values().copied().max()
    }

    /// Records a start on `target` at `at`, and forgets targets started a window or more
    /// before the identity's newest start. That bounds the state; the price is that a
    /// record arriving later than that (by event time) no longer finds them.
    pub fn record(&mut self, target: &str, at: Millis, window: Millis) {
        match self.0.get_mut(target) {
            Some(latest) => *latest = (*latest).max(at),
            None => {
                self.0.insert(target.to_owned(), at);
            }
        }
        let newest = self.latest().unwrap_or(at);
        self.0.retain(|_, t| newest.saturating_sub(*t) < window);
    }

    /// The distinct targets started less than `window` from `at`, in order. The record's
    /// own target always counts: it was started at `at` even if a later start is stored.
    pub fn near<'s>(
        &'s self,
        target: &'s str,
        at: Millis,
        window: Millis,
    ) -> impl Iterator<Item = &'s str> + 's {
        (self.0.iter())
            .filter(move |(t, latest)| *t == target || latest.abs_diff(at) < window.unsigned_abs())
            .map(|(t, _)| t.as_str())
    }
}

/// The targets behind an alert, when this record makes the identity cross the threshold.
pub fn evaluate(
    session: &SessionStart,
    recent: &RecentTargets,
    config: &MultipleSessionsConfig,
) -> Option<Vec<String>> {
    let near: Vec<&str> =
        (recent.near(&session.target, session.time, config.window.millis())).collect();
    (near.len() >= config.threshold).then(|| near.into_iter().map(str::to_owned).collect())
}

/// One alert per identity and dedup period.
pub fn dedup_key(session: &SessionStart) -> String {
    session.identity.to_string()
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
        dedup_key: dedup_key(session),
        context: context(&facts),
        event_id: session.event_id.as_deref().map(str::to_owned),
        dedup_in: None,
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
        assert_eq!(r.near("e", T, HOUR).collect::<Vec<_>>(), ["b", "c", "e"]);
    }

    #[test]
    fn the_records_own_target_always_counts() {
        let r = recent(&[("a", T + 2 * HOUR)]);
        assert_eq!(r.near("a", T, HOUR).collect::<Vec<_>>(), ["a"]);
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
        let mut w = Writer::default();
        r.write(&mut w);
        assert_eq!(RecentTargets::decode("k", Some(&w.0)), Ok(r));
        assert!(RecentTargets::decode("k", Some(b"oops")).is_err());
        assert_eq!(
            RecentTargets::decode("k", None),
            Ok(RecentTargets::default())
        );
    }
}
