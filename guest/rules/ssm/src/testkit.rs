//! The rule's test records: the seed's Panther sample, and records derived from it by
//! overriding only the fields a test is about.

use serde_json::Value;

/// The "Sample Result" log of Panther's `AWS.SSM.MultipleSessions` test, as shipped in
/// `fixtures/records/panther_sample.json` (at the top of the workspace).
pub const SAMPLE: &str = include_str!("../../../../fixtures/records/panther_sample.json");

/// The sample as a JSON tree.
pub fn sample() -> Value {
    serde_json::from_str(SAMPLE).expect("the sample is JSON")
}

/// The sample with `overrides` merged in (see [`detect_sdk::testkit::merge`]).
pub fn record(overrides: Value) -> String {
    detect_sdk::testkit::derive(SAMPLE, overrides)
}
