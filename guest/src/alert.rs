//! An alert as the rule raises it; the wasm glue turns it into the WIT `alert` record.

use serde_json::Value;

use crate::catalog::Detection;
use crate::timestamp::Millis;

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Which detection fired; carries the name, severity, MITRE mapping and runbook.
    pub detection: &'static Detection,
    pub title: String,
    pub event_time: Millis,
    pub dedup_key: String,
    /// A JSON object.
    pub context: Value,
    pub event_id: Option<String>,
}

/// Whether an alert for the same detection and dedup key, raised at `last_alert`, still
/// silences one at `at`.
pub fn suppressed(last_alert: Option<Millis>, at: Millis, period: Millis) -> bool {
    last_alert.is_some_and(|t0| at < t0.saturating_add(period))
}

#[cfg(test)]
mod tests {
    use super::*;

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
