//! The event-time bound a pipeline binding gives its rule, without a clock.

use crate::time::HOUR;
use crate::{Context, Millis};

/// How far past its host's stamp on a record a pipeline binding accepts event times.
pub(crate) const MAX_CLOCK_SKEW: Millis = HOUR;

/// The earliest stamp a pipeline binding takes for a clock's: 2026-01-01T00:00:00Z, when
/// no host ran this SDK yet.
pub(crate) const EARLIEST_STAMP: Millis = 1_767_225_600_000;

/// What a pipeline binding tells the rule: the latest event time it accepts.
///
/// A pipeline module has no clock of its own (it imports none), so the bound comes from
/// the time its host stamped the record with when it took it in: Fluent Bit's record
/// time, Fluvio's record timestamp. A stamp before [`EARLIEST_STAMP`] was not read off a
/// clock (an unset 0, say), and the bound falls back to that date: a module that has seen
/// no clock believes no event time later than it. Records the host hands over unstamped
/// (`None`: Fluvio's look-back, whose records the engine stamps 0 although they were
/// stamped when they arrived) are not bounded.
pub(crate) fn pipeline_context(stamp: Option<Millis>) -> Context {
    let not_after = stamp.map_or(Millis::MAX, |at| {
        at.max(EARLIEST_STAMP).saturating_add(MAX_CLOCK_SKEW)
    });
    Context { not_after }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_bounds_event_time_by_its_hosts_stamp() {
        let at = EARLIEST_STAMP + 5 * HOUR;
        assert_eq!(pipeline_context(Some(at)).not_after, at + HOUR);
        // Not a clock's: the SDK's own date stands in for it.
        assert_eq!(pipeline_context(Some(0)).not_after, EARLIEST_STAMP + HOUR);
        assert_eq!(pipeline_context(None).not_after, Millis::MAX);
    }
}
