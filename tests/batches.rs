//! Records in batches (`process-batch`) keep every guarantee of records one at a time:
//! the same alerts and the same state, a failure costs only its record, and the limits
//! grow with the batch.

use detect_host::kv::KvLimits;
use detect_host::state::MemoryStore;
use detect_host::{Limits, Outcome, RecordFailure, RuleRunner, Sandbox};

use crate::support::*;

fn start(component: &[u8], limits: Limits) -> RuleRunner {
    let sandbox = Sandbox::new(limits)
        .unwrap()
        .with_cache_dir(Some(shared_cache().to_owned()));
    let rule = sandbox.load(component).unwrap();
    rule.start(Box::new(MemoryStore::new()), None).unwrap()
}

/// What a result comes to: the alert lines, or the failure's kind.
fn summary(result: Result<Outcome, RecordFailure>) -> Result<(bool, Vec<String>), String> {
    result
        .map(|outcome| {
            let lines = outcome
                .alerts
                .iter()
                .map(|a| serde_json::to_string(a).unwrap());
            (outcome.relevant, lines.collect())
        })
        .map_err(|failure| failure.kind().to_owned())
}

fn keys(runner: RuleRunner) -> Vec<(String, String, Vec<u8>)> {
    runner.into_store().entries().unwrap()
}

/// A generated SSM-heavy stream with bad records mixed in, as one run of single records
/// and as runs of batches of several sizes: the same results and the same state.
#[test]
fn batches_give_the_same_alerts_and_state_as_single_records() {
    let mut records: Vec<String> = String::from_utf8(generated_log(3000, 11))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    for at in [5, 700, 701, 1999] {
        let bad = r#"{"eventSource": "ssm.amazonaws.com", "eventName": "StartSession", "eventTime": "soon"}"#;
        records.insert(at, bad.to_owned());
    }
    let mut single = start(default_rule(), Limits::default());
    let expected: Vec<_> = records
        .iter()
        .map(|r| summary(record(single.process(r))))
        .collect();
    assert!(expected.iter().filter(|r| r.is_err()).count() == 4);
    let expected_state = keys(single);
    for size in [2, 7, 64, 500] {
        let mut batched = start(default_rule(), Limits::default());
        let got: Vec<_> = records
            .chunks(size)
            .flat_map(|batch| batched.process_batch(batch).unwrap())
            .map(summary)
            .collect();
        assert_eq!(got, expected, "batches of {size}");
        assert!(
            batched.rerun_batches() <= 4,
            "only batches with a bad record run again"
        );
        assert!(
            keys(batched) == expected_state,
            "state after batches of {size}"
        );
    }
}

/// A record that traps in the middle of a batch costs that record: the others' writes
/// are kept, its own are not, and the instance goes on.
#[test]
fn a_trap_in_a_batch_loses_only_its_record() {
    let mut runner = start(
        &hostile(KV_IMPORTS, WRITE_THEN_MAYBE_TRAP),
        Limits::default(),
    );
    let batch = ["a", "b", "!boom", "c"].map(str::to_owned);
    let results: Vec<_> = runner
        .process_batch(&batch)
        .unwrap()
        .into_iter()
        .map(summary)
        .collect();
    let fine = Ok((false, Vec::new()));
    assert_eq!(
        results,
        [fine.clone(), fine.clone(), Err("trap".to_owned()), fine]
    );
    assert_eq!(runner.traps(), 1, "the trap is counted once");
    assert_eq!(runner.rerun_batches(), 1);
    // A fault of the record's own costs no more in a batch: batching goes on.
    let again = ["d", "!boom"].map(str::to_owned);
    let results: Vec<_> = runner.process_batch(&again).unwrap();
    assert!(matches!(results[1], Err(RecordFailure::Trapped(_))));
    assert_eq!(runner.rerun_batches(), 2, "the batch was tried");
    let stored: Vec<String> = keys(runner).into_iter().map(|(_, key, _)| key).collect();
    assert_eq!(stored, ["a", "b", "c", "d"]);
}

/// A batch of n records may write n records' worth: what one record may write, each of
/// the batch may too. The budget is the batch's, shared: the limits bound what the
/// sandbox may cost in all, so a record over one record's limit may pass among cheap ones.
#[test]
fn the_write_budget_grows_with_the_batch() {
    let limits = Limits {
        kv: KvLimits {
            max_call_write_bytes: 40,
            ..KvLimits::default()
        },
        ..Limits::default()
    };
    let mut runner = start(&hostile(KV_IMPORTS, WRITE_THEN_MAYBE_TRAP), limits);
    let record = |n: usize| format!("{n:030}");
    let batch: Vec<String> = (0..5).map(record).collect();
    let results = runner.process_batch(&batch).unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(runner.rerun_batches(), 0, "the batch ran as one call");
    // A single record over the per-record budget still traps.
    let over = crate::support::record(runner.process(&"x".repeat(45)));
    assert!(matches!(over, Err(RecordFailure::Trapped(_))), "{over:?}");
    // A record that exhausts the batch's budget traps it; it is found alone, and the
    // next records go one at a time rather than risk n records' budget again.
    let mut exhausting: Vec<String> = (5..9).map(record).collect();
    exhausting.push("y".repeat(300));
    let results = runner.process_batch(&exhausting).unwrap();
    assert!(results[..4].iter().all(Result::is_ok), "{results:?}");
    assert!(matches!(results[4], Err(RecordFailure::Trapped(_))));
    assert_eq!(runner.rerun_batches(), 1);
    let results = runner.process_batch(&(9..14).map(record).collect::<Vec<_>>());
    assert!(results.unwrap().iter().all(Result::is_ok));
    assert_eq!(runner.rerun_batches(), 1, "no batch was tried");
}
