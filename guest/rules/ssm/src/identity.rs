//! What the rule knows of one identity, kept as the facts of its one
//! [`Entity`](detect_sdk::entity::Entity) value: its latest successful session, when it
//! last used each target, source network and document, and its recent targets.
//!
//! Layout: a byte saying whether the latest session is known, then that time; the number
//! of feature values, each its feature (`u8`), the hash of its value (`u64`) and when it
//! was last used (`i64`); then the recent targets ([`RecentTargets`]).

use detect_sdk::codec::{Reader, Writer};
use detect_sdk::kv::hash_parts;
use detect_sdk::{Millis, RuleError};

use crate::baseline::Feature;
use crate::config::Config;
use crate::multiple_sessions::RecentTargets;

/// Feature values an identity remembers at most: beyond, the one used longest ago is
/// forgotten (its next use is then unusual), so that an identity that uses thousands of
/// targets keeps a value far below the host's value limit.
pub const MAX_SEEN: usize = 16_384;

/// What the rule knows of one identity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Known {
    /// The latest successful session.
    pub last_session: Option<Millis>,
    seen: Vec<Seen>,
    /// The latest start on each recent target, failed ones included.
    pub targets: RecentTargets,
}

/// A value of a feature as an identity's facts keep it: hashed once, for the lookup
/// before a verdict and the update after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureValue {
    feature: Feature,
    hash: u64,
}

impl FeatureValue {
    pub fn new(feature: Feature, value: &str) -> FeatureValue {
        FeatureValue {
            feature,
            hash: hash_parts(&[value]),
        }
    }
}

/// When an identity last used a value of a feature.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Seen {
    feature: u8,
    value: u64,
    at: Millis,
}

const SEEN_BYTES: usize = 17;

impl Known {
    /// The facts stored under `key`; none is an identity the rule has not seen.
    pub fn decode(key: &str, facts: &[u8]) -> Result<Known, RuleError> {
        if facts.is_empty() {
            return Ok(Known::default());
        }
        let mut r = Reader::new(key, facts);
        let last_session = match r.u8()? {
            0 => None,
            1 => Some(r.time()?),
            _ => return Err(r.damaged("not an identity")),
        };
        let n = r.count(SEEN_BYTES)?;
        let mut seen = Vec::with_capacity(n);
        for _ in 0..n {
            seen.push(Seen {
                feature: r.u8()?,
                value: r.u64()?,
                at: r.time()?,
            });
        }
        Ok(Known {
            last_session,
            seen,
            targets: RecentTargets::read(&mut r)?,
        })
    }

    /// The facts to store.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(13 + self.seen.len() * SEEN_BYTES + 64));
        match self.last_session {
            Some(at) => {
                w.u8(1);
                w.time(at);
            }
            None => w.u8(0),
        }
        w.count(self.seen.len());
        for seen in &self.seen {
            w.u8(seen.feature);
            w.u64(seen.value);
            w.time(seen.at);
        }
        self.targets.write(&mut w);
        w.0
    }

    /// When the identity last used `value`.
    pub fn last_seen(&self, value: FeatureValue) -> Option<Millis> {
        self.find(value).map(|at| self.seen[at].at)
    }

    fn find(&self, value: FeatureValue) -> Option<usize> {
        let feature = value.feature as u8;
        (self.seen.iter()).position(|s| s.feature == feature && s.value == value.hash)
    }

    /// Records a use of `value` at `at`, keeping the later time.
    pub fn see(&mut self, value: FeatureValue, at: Millis) {
        match self.find(value) {
            Some(found) => self.seen[found].at = self.seen[found].at.max(at),
            None => {
                if self.seen.len() == MAX_SEEN {
                    let oldest = (0..self.seen.len()).min_by_key(|&s| self.seen[s].at);
                    self.seen.swap_remove(oldest.expect("seen values"));
                }
                self.seen.push(Seen {
                    feature: value.feature as u8,
                    value: value.hash,
                    at,
                });
            }
        }
    }

    /// Forgets what no record at or after `now` can use, as the sweep would.
    pub fn prune(&mut self, now: Millis, config: &Config) {
        let training = config.baseline.training_period.millis();
        let usable = |at: Millis| now <= at.saturating_add(training);
        self.last_session = self.last_session.filter(|&at| usable(at));
        self.seen.retain(|s| usable(s.at));
        let window = config.multiple_sessions.window.millis();
        if self
            .targets
            .latest()
            .is_some_and(|at| now > at.saturating_add(window))
        {
            self.targets = RecentTargets::default();
        }
    }

    /// The last event time at which a record can use any of this.
    pub fn usable_until(&self, config: &Config) -> Option<Millis> {
        let training = config.baseline.training_period.millis();
        let window = config.multiple_sessions.window.millis();
        let seen = self.seen.iter().map(|s| s.at);
        let baseline = seen.chain(self.last_session).max();
        let baseline = baseline.map(|at| at.saturating_add(training));
        let targets = self.targets.latest().map(|at| at.saturating_add(window));
        baseline.max(targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use detect_sdk::time::{DAY, HOUR};

    #[test]
    fn what_an_identity_knows_reads_back_and_damage_is_an_error() {
        let mut known = Known {
            last_session: Some(5 * DAY),
            ..Known::default()
        };
        known.see(FeatureValue::new(Feature::Target, "i-1"), 5 * DAY);
        known.see(FeatureValue::new(Feature::Target, "i-1"), 4 * DAY);
        known.see(FeatureValue::new(Feature::Document, "i-1"), 3 * DAY);
        known.targets.record("i-1", 5 * DAY, HOUR);
        assert_eq!(
            known.last_seen(FeatureValue::new(Feature::Target, "i-1")),
            Some(5 * DAY)
        );
        assert_eq!(
            known.last_seen(FeatureValue::new(Feature::Document, "i-1")),
            Some(3 * DAY)
        );
        assert_eq!(
            known.last_seen(FeatureValue::new(Feature::SourceNetwork, "i-1")),
            None
        );
        let facts = known.encode();
        assert_eq!(Known::decode("i/x", &facts), Ok(known));
        assert_eq!(Known::decode("i/x", &[]), Ok(Known::default()));
        for cut in [&facts[..1], &facts[..12], &facts[..20]] {
            let err = Known::decode("i/x", cut).unwrap_err().to_string();
            assert!(err.contains("`i/x` is damaged"), "{err}");
        }
        assert!(Known::decode("i/x", &[7]).is_err());
    }

    #[test]
    fn pruning_forgets_exactly_what_the_sweep_would() {
        let config = Config::default();
        let now = 100 * DAY;
        let mut known = Known {
            last_session: Some(now - 30 * DAY),
            ..Known::default()
        };
        known.see(FeatureValue::new(Feature::Target, "kept"), now - 30 * DAY);
        known.see(
            FeatureValue::new(Feature::Target, "gone"),
            now - 30 * DAY - 1,
        );
        known.targets.record("i-1", now - HOUR - 1, HOUR);
        assert_eq!(known.usable_until(&config), Some(now));
        known.prune(now, &config);
        assert_eq!(known.last_session, Some(now - 30 * DAY));
        assert!(
            known
                .last_seen(FeatureValue::new(Feature::Target, "kept"))
                .is_some()
        );
        assert!(
            known
                .last_seen(FeatureValue::new(Feature::Target, "gone"))
                .is_none()
        );
        assert_eq!(known.targets, RecentTargets::default());
        known.prune(now + 1, &config);
        assert_eq!(known, Known::default());
        assert_eq!(known.usable_until(&config), None);
    }

    #[test]
    fn an_identity_remembers_at_most_its_latest_feature_values() {
        let mut known = Known::default();
        for n in 0..=MAX_SEEN as i64 {
            known.see(FeatureValue::new(Feature::Target, &n.to_string()), n);
        }
        assert_eq!(known.seen.len(), MAX_SEEN);
        assert_eq!(
            known.last_seen(FeatureValue::new(Feature::Target, "0")),
            None
        );
        assert_eq!(
            known.last_seen(FeatureValue::new(Feature::Target, "1")),
            Some(1)
        );
    }
}
