//! Which event times the rule judges.
//!
//! The rule has no clock: its "now" is the latest event time it has seen (the watermark),
//! and only records move it. So that one forged or corrupt record cannot move it far, or
//! rewrite the rule's history:
//!
//! * a record dated after the host's bound (its wall clock plus the skew it allows) is
//!   rejected: it would push the watermark into the future, and the sweep would then delete
//!   baselines that are still current. The SDK refuses every alert dated so
//!   ([`check_not_after`]); a rule that learns from records that raise nothing places
//!   them with [`History::admit`](crate::history::History::admit);
//! * a record more than `max_lateness` behind the watermark is rejected: the state it
//!   would be judged against has moved on, and it could suppress or switch on detections
//!   for a past the rule has already judged;
//! * a record more than the training period after the watermark starts history afresh:
//!   nothing the rule knows is recent enough to count, and activation counts again from
//!   this record. A forged record dated long ago that arrives first on an empty state is
//!   thus forgotten as soon as real records come.
//!
//! Ordinary lateness (CloudTrail delivers minutes to hours out of order) is judged as usual.

use crate::config::Period;
use crate::time::{Millis, format_rfc3339};

/// Where a record's time puts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Within the rule's history.
    Continues,
    /// So far after everything seen that history starts again from it.
    Afresh,
}

/// The bounds a record's time must respect.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// The host's bound: its clock plus the skew it allows.
    pub not_after: Millis,
    /// How far behind the watermark a record may be.
    pub max_lateness: Period,
    /// A gap in event time longer than this starts history afresh.
    pub fresh_after: Period,
}

/// Refuses a record at `at` dated after the host's bound, `not_after`.
pub fn check_not_after(at: Millis, not_after: Millis) -> Result<(), String> {
    if at > not_after {
        return Err(format!(
            "{} is after the latest time the host accepts ({}, its clock plus the allowed \
             skew): a record from the future is forged or damaged",
            format_rfc3339(at),
            format_rfc3339(not_after)
        ));
    }
    Ok(())
}

/// Places a record at `at`, given the latest event time seen.
pub fn place(at: Millis, watermark: Option<Millis>, bounds: &Bounds) -> Result<Placement, String> {
    check_not_after(at, bounds.not_after)?;
    let Some(watermark) = watermark else {
        return Ok(Placement::Continues);
    };
    if watermark.saturating_sub(at) > bounds.max_lateness.millis() {
        return Err(format!(
            "{} is more than {} before the latest event time the rule has seen ({}): too late \
             to be judged (see max_lateness)",
            format_rfc3339(at),
            bounds.max_lateness,
            format_rfc3339(watermark)
        ));
    }
    if at.saturating_sub(watermark) > bounds.fresh_after.millis() {
        return Ok(Placement::Afresh);
    }
    Ok(Placement::Continues)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{DAY, HOUR};

    const NOW: Millis = 1_000 * DAY;

    fn bounds() -> Bounds {
        Bounds {
            not_after: NOW + HOUR,
            max_lateness: Period::days(30),
            fresh_after: Period::days(30),
        }
    }

    #[test]
    fn the_future_is_bounded_by_the_host() {
        assert_eq!(place(NOW + HOUR, None, &bounds()), Ok(Placement::Continues));
        let err = place(NOW + HOUR + 1, None, &bounds()).unwrap_err();
        assert!(
            err.contains("after the latest time the host accepts"),
            "{err}"
        );
        assert!(place(i64::MAX, Some(NOW), &bounds()).is_err());
    }

    #[test]
    fn lateness_is_bounded_by_the_watermark() {
        let late = NOW - 30 * DAY;
        assert_eq!(place(late, Some(NOW), &bounds()), Ok(Placement::Continues));
        let err = place(late - 1, Some(NOW), &bounds()).unwrap_err();
        assert!(err.contains("more than 30d before"), "{err}");
        assert!(place(i64::MIN, Some(NOW), &bounds()).is_err());
        // Nothing seen yet: any past time is acceptable, even a forged one.
        assert_eq!(place(0, None, &bounds()), Ok(Placement::Continues));
    }

    #[test]
    fn a_long_gap_starts_history_afresh() {
        let watermark = NOW - 30 * DAY;
        assert_eq!(
            place(NOW, Some(watermark), &bounds()),
            Ok(Placement::Continues)
        );
        assert_eq!(
            place(NOW, Some(watermark - 1), &bounds()),
            Ok(Placement::Afresh)
        );
        assert_eq!(place(NOW, Some(0), &bounds()), Ok(Placement::Afresh));
    }
}
