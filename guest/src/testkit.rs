//! Test helpers: the seed's Panther sample record, and records derived from it by
//! overriding only the fields a test is about.

use serde_json::Value;

/// The "Sample Result" log of Panther's `AWS.SSM.MultipleSessions` test, as shipped in
/// `fixtures/records/panther_sample.json`.
pub const SAMPLE: &str = include_str!("../../fixtures/records/panther_sample.json");

/// The sample as a JSON tree.
pub fn sample() -> Value {
    serde_json::from_str(SAMPLE).expect("the sample is JSON")
}

/// The sample with `overrides` merged in: objects merge key by key, `null` removes a key,
/// anything else replaces.
pub fn record(overrides: Value) -> String {
    let mut record = sample();
    merge(&mut record, overrides);
    record.to_string()
}

pub fn merge(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (key, value) in overrides {
                match value {
                    Value::Null => {
                        base.remove(&key);
                    }
                    Value::Object(_) if base.get(&key).is_some_and(Value::is_object) => {
                        merge(base.get_mut(&key).unwrap(), value)
                    }
                    value => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overrides) => *base = overrides,
    }
}
