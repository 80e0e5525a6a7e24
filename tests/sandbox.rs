//! Each sandbox limit, with a hostile component that runs into it.

use std::time::{Duration, Instant};

use detect_host::kv::KvLimits;
use detect_host::state::MemoryStore;
use detect_host::{Error, Limits, RecordFailure, RuleRunner, Sandbox};

use crate::support::*;

fn start(component: &[u8], limits: Limits) -> RuleRunner {
    let rule = Sandbox::new(limits).unwrap().load(component).unwrap();
    rule.start(Box::new(MemoryStore::new()), None).unwrap()
}

fn trap_reason(result: Result<detect_host::Outcome, Error>) -> String {
    match record(result) {
        Err(RecordFailure::Trapped(reason)) => reason,
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn an_endless_loop_is_stopped_at_the_deadline_and_the_next_record_runs() {
    let limits = Limits {
        deadline: Duration::from_millis(50),
        ..Limits::default()
    };
    let mut runner = start(
        &hostile(
            "",
            &format!(
                "(if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 33)) (then {ENDLESS_LOOP})) (i32.const 128)"
            ),
        ),
        limits,
    );
    let started = Instant::now();
    let reason = trap_reason(runner.process("!loop"));
    assert_eq!(reason, "the call ran past its deadline of 50ms");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline bounds the call"
    );
    assert!(
        record(runner.process("{}")).is_ok(),
        "a fresh instance serves the next record"
    );
    assert_eq!(runner.traps(), 1);
}

#[test]
fn fuel_bounds_a_call_deterministically() {
    let limits = Limits {
        fuel: Some(100_000),
        deadline: Duration::from_secs(60),
        ..Limits::default()
    };
    let mut runner = start(&hostile("", ENDLESS_LOOP), limits);
    let reason = trap_reason(runner.process("{}"));
    // The harness's words, not wasmtime's ("all fuel consumed by WebAssembly").
    assert_eq!(reason, "the call used up its fuel (100000)");
}

/// `unreachable`, what a Rust rule's panic becomes, is reported as a panic.
#[test]
fn unreachable_is_reported_as_a_panic_or_abort() {
    let mut runner = start(&hostile("", ALWAYS_TRAP), Limits::default());
    let reason = trap_reason(runner.process("{}"));
    // Not wasmtime's text ("wasm trap: wasm `unreachable` instruction executed").
    assert_eq!(reason, "the rule panicked or aborted (unreachable)");
}

#[test]
fn an_allocation_bomb_hits_the_memory_cap() {
    let limits = Limits {
        max_memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let mut runner = start(&hostile("", ALLOCATION_BOMB), limits);
    let reason = trap_reason(runner.process("{}"));
    assert!(
        reason.starts_with("the rule exceeded its memory limit of 16 MiB"),
        "{reason}"
    );
}

#[test]
fn a_panic_on_one_record_loses_only_that_record() {
    let mut runner = start(
        &hostile(KV_IMPORTS, WRITE_THEN_MAYBE_TRAP),
        Limits::default(),
    );
    assert!(record(runner.process("a")).is_ok());
    let reason = trap_reason(runner.process("!boom"));
    assert_eq!(reason, "the rule panicked or aborted (unreachable)");
    assert!(record(runner.process("b")).is_ok());
    // The trapped call's write is gone; the writes before and after it are kept, across
    // the replaced instance.
    let mut store = runner.into_store();
    let keys: Vec<String> = store
        .entries()
        .unwrap()
        .into_iter()
        .map(|(_, key, _)| key)
        .collect();
    assert_eq!(keys, ["a", "b"]);
}

#[test]
fn a_rule_that_always_traps_is_stopped() {
    let limits = Limits {
        max_consecutive_traps: 3,
        ..Limits::default()
    };
    let mut runner = start(&hostile("", ALWAYS_TRAP), limits);
    assert!(record(runner.process("1")).is_err());
    assert!(record(runner.process("2")).is_err());
    match runner.process("3") {
        Err(Error::TooManyTraps { count: 3, last }) => {
            assert_eq!(last, "the rule panicked or aborted (unreachable)")
        }
        other => panic!("expected the harness to give up, got {other:?}"),
    }
}

#[test]
fn output_beyond_the_cap_is_refused_and_its_writes_dropped() {
    let mut runner = start(&hostile("", HUGE_OUTPUT), Limits::default());
    match record(runner.process("{}")) {
        Err(RecordFailure::OutputTooLarge { bytes, limit }) => assert!(bytes > limit),
        other => panic!("expected output-too-large, got {other:?}"),
    }
    // With the real rule: its alert for the sample is larger than a 100-byte cap, so the
    // record fails and its state is not kept: the retry is again the first session.
    let limits = Limits {
        max_output_bytes: 100,
        ..Limits::default()
    };
    let mut runner = start(default_rule(), limits);
    let sample = std::fs::read_to_string(fixture("records/panther_sample.json")).unwrap();
    assert!(matches!(
        record(runner.process(&sample)),
        Err(RecordFailure::OutputTooLarge { .. })
    ));
    assert!(runner.into_store().entries().unwrap().is_empty());
}

#[test]
fn oversized_keys_and_values_trap_the_call() {
    let sample = std::fs::read_to_string(fixture("records/panther_sample.json")).unwrap();
    for kv in [
        KvLimits {
            max_value_bytes: 8,
            ..KvLimits::default()
        },
        KvLimits {
            max_key_bytes: 16,
            ..KvLimits::default()
        },
        KvLimits {
            max_call_write_bytes: 64,
            ..KvLimits::default()
        },
    ] {
        let mut runner = start(
            default_rule(),
            Limits {
                kv: kv.clone(),
                ..Limits::default()
            },
        );
        match record(runner.process(&sample)) {
            Err(failure) => {
                assert_eq!(failure.kind(), "trap", "{kv:?}");
                assert!(
                    failure.message().contains("harness limit"),
                    "{}",
                    failure.message()
                );
            }
            Ok(outcome) => panic!("{kv:?}: expected a trap, got {outcome:?}"),
        }
        assert!(runner.into_store().entries().unwrap().is_empty());
    }
}

#[test]
fn oversized_records_are_not_handed_over() {
    let limits = Limits {
        max_record_bytes: 10,
        ..Limits::default()
    };
    let mut runner = start(&hostile("", ALWAYS_TRAP), limits);
    assert!(matches!(
        record(runner.process("01234567890")),
        Err(RecordFailure::RecordTooLarge {
            bytes: 11,
            limit: 10
        })
    ));
    assert_eq!(runner.traps(), 0);
}

#[test]
fn forbidden_imports_are_refused_before_instantiation_by_name() {
    let component = wat::parse_str(
        r#"(component
            (import "wasi:cli/environment@0.2.0" (instance (export "get-arguments" (func (result (list string))))))
            (import "wasi:filesystem/preopens@0.2.0" (instance))
        )"#,
    )
    .unwrap();
    let err = Sandbox::new(Limits::default())
        .unwrap()
        .load(&component)
        .err()
        .expect("refused");
    let message = err.to_string();
    assert!(
        matches!(err, Error::ForbiddenImports(ref names) if names.len() == 2),
        "{message}"
    );
    assert!(
        message.contains("wasi:cli/environment@0.2.0")
            && message.contains("wasi:filesystem/preopens@0.2.0"),
        "{message}"
    );
}

#[test]
fn what_is_not_a_rule_is_refused_with_a_reason() {
    let sandbox = Sandbox::new(Limits::default()).unwrap();
    let core = wat::parse_str("(module)").unwrap();
    assert!(matches!(sandbox.load(&core), Err(Error::NotAComponent)));
    assert!(matches!(
        sandbox.load(b"PK\x03\x04 a zip file"),
        Err(Error::NotWasm)
    ));
    let empty = wat::parse_str("(component)").unwrap();
    match sandbox.load(&empty) {
        Err(Error::WrongWorld(why)) => {
            assert!(why.contains("detect:rule/detector"), "{why}")
        }
        other => panic!("expected wrong world, got {:?}", other.err()),
    }
}

#[test]
fn the_command_line_dead_letters_a_trap_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("hostile.wasm");
    std::fs::write(&rule, hostile(KV_IMPORTS, WRITE_THEN_MAYBE_TRAP)).unwrap();
    let out = harness(
        &["--rule", rule.to_str().unwrap(), "run", "--state", "memory"],
        b"a\n!boom\nb\n",
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let dead = lines(&out.stderr);
    assert_eq!(dead.len(), 1, "{stderr}");
    assert_eq!(
        (dead[0]["kind"].as_str(), dead[0]["line"].as_u64()),
        (Some("trap"), Some(2))
    );
    assert_eq!(dead[0]["record"], "!boom");
    assert!(
        stderr.contains("3 records") && stderr.contains("traps: 1"),
        "{stderr}"
    );
}
