//! The event-time bound a pipeline binding gives its rule, without a clock.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::time::HOUR;
use crate::{Context, Millis, RuleError};

/// How far past its host's stamp on a record a pipeline binding accepts event times.
pub(crate) const MAX_CLOCK_SKEW: Millis = HOUR;

/// The stamps a pipeline binding's host put on its records, and the bound they give.
///
/// A pipeline module has no clock of its own (it imports none), so the bound comes from
/// the time its host stamped the record with when it took it in: Fluent Bit's record
/// time, Fluvio's record timestamp. A stamp of 0 or less was read off no clock (unset, or
/// Fluvio's `NO_TIMESTAMP`, -1): such a record is bounded by the latest stamp seen before
/// it, since its host's clock read at least that, and refused when there was none. No
/// fixed date stands in for a clock: one early enough to be safe refuses today's records,
/// and any date grows too stale to bound anything.
pub(crate) struct Stamps {
    /// The latest real stamp seen, 0 for none. Atomic so that a binding can keep it in a
    /// static, outside a heap that a trap may make it abandon.
    latest: AtomicI64,
}

impl Stamps {
    pub const fn new() -> Self {
        Stamps {
            latest: AtomicI64::new(0),
        }
    }

    /// What the rule is told with a record its host stamped `stamp`, or why the record
    /// cannot be judged.
    pub fn context(&self, stamp: Millis) -> Result<Context, RuleError> {
        let clock = if stamp > 0 {
            self.latest.fetch_max(stamp, Ordering::Relaxed);
            stamp
        } else {
            match self.latest.load(Ordering::Relaxed) {
                0 => return Err(unstamped(stamp)),
                latest => latest,
            }
        };
        Ok(Context {
            not_after: clock.saturating_add(MAX_CLOCK_SKEW),
        })
    }
}

fn unstamped(stamp: Millis) -> RuleError {
    RuleError::InvalidTime(format!(
        "the host gave the record no timestamp ({stamp}), and none with any record before \
         it: without a clock, the rule cannot tell a record from the future, and refuses it"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_bounds_event_time_by_its_hosts_stamp() {
        let stamps = Stamps::new();
        let at = 1_800_000_000_000;
        assert_eq!(stamps.context(at).unwrap().not_after, at + HOUR);
        // An earlier stamp bounds its own record.
        assert_eq!(stamps.context(at - HOUR).unwrap().not_after, at);
    }

    #[test]
    fn an_unstamped_record_is_bounded_by_the_latest_stamp_or_refused() {
        let stamps = Stamps::new();
        for unset in [0, -1] {
            let err = stamps.context(unset).unwrap_err();
            assert_eq!(err.kind(), "invalid-time");
            assert!(err.to_string().contains("no timestamp"), "{err}");
        }
        let at = 1_800_000_000_000;
        stamps.context(at).unwrap();
        stamps.context(at - HOUR).unwrap();
        assert_eq!(stamps.context(-1).unwrap().not_after, at + HOUR);
        assert_eq!(stamps.context(0).unwrap().not_after, at + HOUR);
    }
}
