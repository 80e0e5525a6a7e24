//! For a rule's own tests: records derived from a sample by overriding only the fields a
//! test is about, test cases as data ([`cases`]), and the contract every binding of a
//! rule must keep ([`contract`]).

pub mod cases;

use serde_json::Value;

/// Merges `overrides` into `base`: objects merge key by key, `null` removes a key,
/// anything else replaces.
pub fn merge(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (key, value) in overrides {
                match value {
                    Value::Null => {
                        base.remove(&key);
                    }
                    Value::Object(_) if base.get(&key).is_some_and(Value::is_object) => {
                        merge(base.get_mut(&key).expect("checked"), value)
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

/// `sample` (JSON text) with `overrides` merged in, as JSON text.
pub fn derive(sample: &str, overrides: Value) -> String {
    let mut record: Value = serde_json::from_str(sample).expect("the sample is JSON");
    merge(&mut record, overrides);
    record.to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn merging_replaces_removes_and_recurses() {
        let mut base = json!({"a": 1, "o": {"x": 1, "y": 2}, "gone": true});
        super::merge(
            &mut base,
            json!({"a": 2, "o": {"y": 3}, "gone": null, "new": [1]}),
        );
        assert_eq!(base, json!({"a": 2, "o": {"x": 1, "y": 3}, "new": [1]}));
    }
}

pub mod contract {
    //! What every binding of a rule must do, whatever its host: run against each one
    //! (the rule natively, the component in a host, the pipeline modules in replays of
    //! their hosts). The checks compare what a binding raises on two streams that must
    //! give the same alerts, so they need nothing but the binding's output.

    /// One alert, as far as the contract compares them.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub struct AlertKey {
        /// The detection.
        pub rule_id: String,
        /// What the alert is about.
        pub dedup_key: String,
        /// `YYYY-MM-DDTHH:MM:SSZ`.
        pub event_time: String,
        /// `info`, `low`, ...
        pub severity: String,
    }

    /// What a binding made of one record.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Step {
        /// Alerts (perhaps none).
        Alerts(Vec<AlertKey>),
        /// The record was rejected; the kind says why (`invalid-json`, ...).
        Rejected(String),
        /// The call trapped.
        Trapped,
    }

    /// A rule, as some host runs it.
    pub trait Binding {
        /// Processes one record.
        fn process(&mut self, record: &str) -> Step;

        /// Processes one record, with the call cut short at a point that `cut` picks
        /// (larger: later), as a host that traps mid-call would.
        fn process_cut_short(&mut self, record: &str, cut: u64) -> Step;

        /// Processes records in one call, for hosts that take batches: the alerts of
        /// them all, in order. By default one record at a time.
        fn process_batch(&mut self, records: &[String]) -> Vec<AlertKey> {
            alerts(self.as_dyn(), records)
        }

        /// `self` as a trait object (the default methods need one).
        fn as_dyn(&mut self) -> &mut dyn Binding;
    }

    /// The alerts a binding raises over `records`, the rejected and trapped ones left out.
    pub fn alerts(binding: &mut dyn Binding, records: &[String]) -> Vec<AlertKey> {
        records
            .iter()
            .flat_map(|r| match binding.process(r) {
                Step::Alerts(alerts) => alerts,
                Step::Rejected(_) | Step::Trapped => Vec::new(),
            })
            .collect()
    }

    /// A rejected record changes no state: `stream` with `rejected` records in between
    /// raises exactly what `stream` alone raises, and each of them is rejected.
    pub fn a_rejected_record_changes_no_state(
        new: &mut dyn FnMut() -> Box<dyn Binding>,
        stream: &[String],
        rejected: &[String],
    ) {
        let expected = alerts(new().as_mut(), stream);
        let mut binding = new();
        let mut got = Vec::new();
        for (n, record) in stream.iter().enumerate() {
            let bad = &rejected[n % rejected.len()];
            let step = binding.process(bad);
            assert!(matches!(step, Step::Rejected(_)), "{bad}: {step:?}");
            got.extend(alerts(binding.as_mut(), std::slice::from_ref(record)));
        }
        assert_eq!(got, expected, "rejected records changed what followed");
    }

    /// An irrelevant record touches nothing: it raises nothing, and `stream` with
    /// `irrelevant` records in between raises what `stream` alone raises.
    pub fn an_irrelevant_record_touches_nothing(
        new: &mut dyn FnMut() -> Box<dyn Binding>,
        stream: &[String],
        irrelevant: &[String],
    ) {
        let expected = alerts(new().as_mut(), stream);
        let mut binding = new();
        let mut got = Vec::new();
        for (n, record) in stream.iter().enumerate() {
            let other = &irrelevant[n % irrelevant.len()];
            assert_eq!(binding.process(other), Step::Alerts(Vec::new()), "{other}");
            got.extend(alerts(binding.as_mut(), std::slice::from_ref(record)));
        }
        assert_eq!(got, expected, "irrelevant records changed what followed");
    }

    /// Batch equals single: `stream` in batches of each of `sizes` raises what it raises
    /// one record at a time.
    pub fn batch_equals_single(
        new: &mut dyn FnMut() -> Box<dyn Binding>,
        stream: &[String],
        sizes: &[usize],
    ) {
        let expected = alerts(new().as_mut(), stream);
        for &size in sizes {
            let mut binding = new();
            let got: Vec<AlertKey> = stream
                .chunks(size)
                .flat_map(|batch| binding.process_batch(batch))
                .collect();
            assert_eq!(
                got, expected,
                "batches of {size} differ from single records"
            );
        }
    }

    /// A trap loses only its record: the record at `victim` of `stream`, which must
    /// raise alerts, is cut short at `points` places spread over its whole call; each time
    /// it is lost, whole, and the rest raise what they raise without it.
    pub fn a_trap_loses_only_its_record(
        new: &mut dyn FnMut() -> Box<dyn Binding>,
        stream: &[String],
        victim: usize,
        points: u64,
    ) {
        let mut without = stream.to_vec();
        without.remove(victim);
        let expected = alerts(new().as_mut(), &without);
        let length = call_length(new, &stream[..=victim]);
        let mut trapped = 0;
        for cut in (1..=points).map(|n| n * length / (points + 1)) {
            let mut binding = new();
            let mut got = alerts(binding.as_mut(), &stream[..victim]);
            match binding.process_cut_short(&stream[victim], cut) {
                Step::Trapped => trapped += 1,
                other => panic!("cut at {cut} of {length}, the call did not trap: {other:?}"),
            }
            got.extend(alerts(binding.as_mut(), &stream[victim + 1..]));
            assert_eq!(
                got, expected,
                "a trap at {cut} of {length} changed what followed"
            );
        }
        assert_eq!(trapped, points);
    }

    /// How long the call for the last of `records` is, in `process_cut_short`'s units:
    /// the least allowance with which it completes. The record must raise alerts.
    pub fn call_length(new: &mut dyn FnMut() -> Box<dyn Binding>, records: &[String]) -> u64 {
        let (last, before) = records.split_last().expect("a record");
        let mut completes = |allowance| {
            let mut binding = new();
            alerts(binding.as_mut(), before);
            match binding.process_cut_short(last, allowance) {
                Step::Trapped => false,
                Step::Alerts(alerts) if !alerts.is_empty() => true,
                other => panic!("the record must raise alerts: {other:?}"),
            }
        };
        let mut high = 1024;
        while !completes(high) {
            high *= 2;
        }
        let mut low = high / 2;
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if completes(middle) {
                high = middle;
            } else {
                low = middle;
            }
        }
        high
    }
}
