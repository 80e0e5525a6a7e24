//! Hostile rules against the key-value store: components in WAT that open buckets they
//! should not be able to afford, or write where no record is being processed.

use detect_host::state::{MemoryStore, RedbStore, StateStore};
use detect_host::{Error, Limits, RecordFailure, RuleRunner, Sandbox};
use detect_testing::hostile::Hostile;

/// The key-value functions hostile rules call, and `$try_set`.
const ITEMS: &str = r#"
            (import "wasi:keyvalue/store@0.2.0-draft" "open" (func $open (param i32 i32 i32)))
            (import "wasi:keyvalue/store@0.2.0-draft" "[method]bucket.get" (func $get (param i32 i32 i32 i32)))
            (import "wasi:keyvalue/store@0.2.0-draft" "[method]bucket.exists" (func $exists (param i32 i32 i32 i32)))
            (import "wasi:keyvalue/store@0.2.0-draft" "[method]bucket.list-keys" (func $list (param i32 i32 i64 i32)))
            (import "wasi:keyvalue/store@0.2.0-draft" "[method]bucket.set" (func $set (param i32 i32 i32 i32 i32 i32)))
            (import "wasi:keyvalue/store@0.2.0-draft" "[method]bucket.delete" (func $delete (param i32 i32 i32 i32)))
            (import "wasi:keyvalue/store@0.2.0-draft" "[resource-drop]bucket" (func $drop (param i32)))
            (import "wasi:keyvalue/batch@0.2.0-draft" "get-many" (func $get_many (param i32 i32 i32 i32)))
            (import "wasi:keyvalue/batch@0.2.0-draft" "delete-many" (func $delete_many (param i32 i32 i32 i32)))
            (data (i32.const 40) "describe")
            (data (i32.const 48) "configure")
            ;; Opens the bucket named by (ptr, len) and sets its key `key` to `1`, if the
            ;; store lets it; returns whether it did.
            (func $try_set (param $ptr i32) (param $len i32) (param $key i32) (param $key_len i32) (result i32)
                (local $bucket i32)
                (call $open (local.get $ptr) (local.get $len) (i32.const 64))
                (if (i32.load8_u (i32.const 64)) (then (return (i32.const 0))))
                (local.set $bucket (i32.load (i32.const 68)))
                (call $set (local.get $bucket) (local.get $key) (local.get $key_len) (i32.const 32) (i32.const 1) (i32.const 96))
                (call $drop (local.get $bucket))
                (i32.const 1))"#;

/// A hostile component (see [`Hostile`]) with [`ITEMS`].
fn component(describe: &str, configure: &str, process_event: &str) -> Vec<u8> {
    Hostile {
        items: ITEMS,
        describe,
        configure,
        process_event,
    }
    .component()
}

/// Opens the bucket the record names, which must succeed, and only reads it: `get`,
/// `exists` and `list-keys`.
const READ_A_NEW_BUCKET: &str = r#"
    (call $open (local.get $ptr) (local.get $len) (i32.const 64))
    (if (i32.load8_u (i32.const 64)) (then unreachable))
    (local.set $bucket (i32.load (i32.const 68)))
    (call $get (local.get $bucket) (i32.const 32) (i32.const 1) (i32.const 96))
    (call $exists (local.get $bucket) (i32.const 32) (i32.const 1) (i32.const 96))
    (call $list (local.get $bucket) (i32.const 0) (i64.const 0) (i32.const 192))
    (call $drop (local.get $bucket))
    (i32.const 128)"#;

/// Sets the key `1` in the bucket the record names; traps if it cannot open it.
const WRITE_A_NEW_BUCKET: &str = r#"
    (if (i32.eqz (call $try_set (local.get $ptr) (local.get $len) (i32.const 32) (i32.const 1)))
        (then unreachable))
    (i32.const 128)"#;

/// Writes the key `describe` (or `configure`) into the bucket `default`, if it may.
const WRITE_IN_DESCRIBE: &str =
    "(drop (call $try_set (i32.const 16) (i32.const 7) (i32.const 40) (i32.const 8)))";
const WRITE_IN_CONFIGURE: &str =
    "(drop (call $try_set (i32.const 16) (i32.const 7) (i32.const 48) (i32.const 9)))";

fn start(component: &[u8], store: Box<dyn StateStore>, config: Option<&str>) -> RuleRunner {
    start_with(Limits::default(), component, store, config)
}

fn start_with(
    limits: Limits,
    component: &[u8],
    store: Box<dyn StateStore>,
    config: Option<&str>,
) -> RuleRunner {
    let sandbox = Sandbox::new(limits).unwrap();
    let rule = sandbox.load(component).unwrap();
    rule.start(store, config.map(str::to_owned)).unwrap()
}

/// A bucket name of `len` bytes, different for each `n`.
fn name(n: usize, len: usize) -> String {
    format!("{n:0len$}")
}

fn trap_reason(result: Result<detect_host::Outcome, Error>) -> String {
    match result {
        Err(Error::Record(RecordFailure::Trapped(reason))) => reason,
        other => panic!("expected a trap, got {other:?}"),
    }
}

/// State file size after `records` records, each reading a bucket of a new 250-byte name.
fn size_after_reading(records: usize) -> (u64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let store = RedbStore::open(&path).unwrap();
    let mut runner = start(&component("", "", READ_A_NEW_BUCKET), Box::new(store), None);
    for n in 0..records {
        runner.process(&name(n, 250)).unwrap();
        if n % 100 == 99 {
            runner.commit().unwrap();
        }
    }
    runner.commit().unwrap();
    assert_eq!(runner.store().tables("").unwrap(), ["harness/format"]);
    let entries = runner.store().entries().unwrap();
    let entries = entries
        .iter()
        .filter(|(t, _, _)| t.starts_with("rule/"))
        .count();
    drop(runner);
    (std::fs::metadata(&path).unwrap().len(), entries)
}

#[test]
fn reading_buckets_that_do_not_exist_creates_nothing() {
    let (small, small_entries) = size_after_reading(100);
    let (large, large_entries) = size_after_reading(2000);
    eprintln!("state file: {small} bytes after 100 records, {large} after 2000");
    assert_eq!((small_entries, large_entries), (0, 0));
    assert!(
        large <= small + 64 * 1024,
        "the state file grew from {small} bytes after 100 read-only records to {large} \
         after 2000"
    );
}

#[test]
fn a_rule_may_have_only_so_many_buckets() {
    let limit = Limits::default().kv.max_buckets;
    let mut runner = start(
        &component("", "", WRITE_A_NEW_BUCKET),
        Box::new(MemoryStore::new()),
        None,
    );
    for n in 0..limit {
        runner.process(&name(n, 8)).unwrap();
    }
    // Writing to a bucket that exists is fine; creating one more is not.
    runner.process(&name(0, 8)).unwrap();
    let reason = trap_reason(runner.process(&name(limit, 8)));
    assert!(
        reason.contains(&format!("a rule may have at most {limit} buckets")),
        "{reason}"
    );
    let tables: std::collections::BTreeSet<String> = runner
        .store()
        .entries()
        .unwrap()
        .into_iter()
        .map(|(table, _, _)| table)
        .collect();
    assert_eq!(tables.len(), limit);
}

#[test]
fn a_bucket_name_is_bounded() {
    let limit = Limits::default().kv.max_bucket_name_bytes;
    let mut runner = start(
        &component("", "", READ_A_NEW_BUCKET),
        Box::new(MemoryStore::new()),
        None,
    );
    runner.process(&name(1, limit)).unwrap();
    let reason = trap_reason(runner.process(&name(2, limit + 1)));
    assert!(
        reason.contains(&format!(
            "a bucket name of {} bytes exceeds the limit of {limit}",
            limit + 1
        )),
        "{reason}"
    );
}

#[test]
fn describe_and_configure_write_nothing() {
    let mut runner = start(
        &component(WRITE_IN_DESCRIBE, WRITE_IN_CONFIGURE, WRITE_A_NEW_BUCKET),
        Box::new(MemoryStore::new()),
        Some("{}"),
    );
    runner.process("record").unwrap();
    // A trap replaces the instance, which is configured again.
    let _ = runner.process(&name(0, 1000));
    runner.process("after").unwrap();
    runner.commit().unwrap();
    let entries: Vec<(String, String)> = runner
        .store()
        .entries()
        .unwrap()
        .into_iter()
        .map(|(table, key, _)| (table, key))
        .collect();
    assert_eq!(
        entries,
        [
            ("rule/hostile/after".to_owned(), "1".to_owned()),
            ("rule/hostile/record".to_owned(), "1".to_owned()),
        ]
    );
}

/// The memory limit is told from the limiter's typed refusal, not from a trap's text.
#[test]
fn an_allocation_bomb_is_reported_as_the_memory_limit() {
    let limits = Limits {
        max_memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let bomb = "(loop $again (drop (memory.grow (i32.const 256))) (br $again)) unreachable";
    let rule = Sandbox::new(limits)
        .unwrap()
        .load(&component("", "", bomb))
        .unwrap();
    let mut runner = rule.start(Box::new(MemoryStore::new()), None).unwrap();
    let reason = trap_reason(runner.process("{}"));
    assert!(
        reason.starts_with("the rule exceeded its memory limit of 16 MiB (it asked for "),
        "{reason}"
    );
    // The instance is replaced and the next record runs.
    assert!(matches!(trap_reason(runner.process("{}")), r if r.contains("memory limit")));
}

/// Opens the bucket the record names, sets `keys` keys of `key_bytes` bytes in it (`A...`,
/// `B...`, ...), lists its first page, which must have a next page, and deletes them all:
/// the bucket is gone again at the end of the record. The heap is reset for each record.
fn fill_list_empty(keys: usize, key_bytes: usize) -> String {
    format!(
        r#"
    (global.set $heap (i32.const 65536))
    (call $open (local.get $ptr) (local.get $len) (i32.const 64))
    (if (i32.load8_u (i32.const 64)) (then unreachable))
    (local.set $bucket (i32.load (i32.const 68)))
    (memory.fill (i32.const 8192) (i32.const 107) (i32.const {key_bytes}))
    (block $done (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.const {keys})))
        (i32.store8 (i32.const 8192) (i32.add (i32.const 65) (local.get $i)))
        (call $set (local.get $bucket) (i32.const 8192) (i32.const {key_bytes}) (i32.const 32) (i32.const 1) (i32.const 96))
        (if (i32.load8_u (i32.const 96)) (then unreachable))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    ;; result<key-response>: the cursor's option sits at offset 16 of the result.
    (call $list (local.get $bucket) (i32.const 0) (i64.const 0) (i32.const 192))
    (if (i32.load8_u (i32.const 192)) (then unreachable))
    (if (i32.eqz (i32.load8_u (i32.const 208))) (then unreachable))
    (local.set $i (i32.const 0))
    (block $done (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.const {keys})))
        (i32.store8 (i32.const 8192) (i32.add (i32.const 65) (local.get $i)))
        (call $delete (local.get $bucket) (i32.const 8192) (i32.const {key_bytes}) (i32.const 96))
        (if (i32.load8_u (i32.const 96)) (then unreachable))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $drop (local.get $bucket))
    (i32.const 128)"#
    )
}

/// The state file's size and its `harness/cursors` entries after `records` records of
/// [`fill_list_empty`], with pages of two keys and three keys of 4,000 bytes per record.
fn size_after_emptying(records: usize) -> (u64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let store = RedbStore::open(&path).unwrap();
    let mut limits = Limits::default();
    limits.kv.page_size = 2;
    let guest = component("", "", &fill_list_empty(3, 4000));
    let mut runner = start_with(limits, &guest, Box::new(store), None);
    for n in 0..records {
        runner.process(&name(n, 8)).unwrap();
        if n % 100 == 99 {
            runner.commit().unwrap();
        }
    }
    runner.commit().unwrap();
    let entries = runner.store().entries().unwrap();
    let cursors = entries
        .iter()
        .filter(|(t, _, _)| t == "harness/cursors")
        .count();
    assert_eq!(
        runner.store().tables("rule/").unwrap(),
        Vec::<String>::new()
    );
    drop(runner);
    (std::fs::metadata(&path).unwrap().len(), cursors)
}

/// A listing of a bucket that its record then empties leaves nothing behind: the
/// bucket's cursors go with it, so neither `harness/cursors` nor the file grows with the
/// records.
#[test]
fn an_emptied_bucket_takes_its_cursors_along() {
    let (small, small_cursors) = size_after_emptying(100);
    let (large, large_cursors) = size_after_emptying(1000);
    eprintln!("state file: {small} bytes after 100 records, {large} after 1000");
    assert_eq!((small_cursors, large_cursors), (0, 0));
    assert!(
        large <= small + 64 * 1024,
        "the state file grew from {small} bytes after 100 records to {large} after 1000"
    );
}

/// `delete-many` of `count` distinct 4-byte keys (each byte `0x40 | 6 bits of n`), built
/// in grown memory: the keys at 1 MiB, the list of (ptr, len) at 4 MiB.
fn delete_many_distinct(count: usize) -> String {
    format!(
        r#"
    (drop (memory.grow (i32.const 128)))
    (call $open (i32.const 16) (i32.const 7) (i32.const 64))
    (if (i32.load8_u (i32.const 64)) (then unreachable))
    (local.set $bucket (i32.load (i32.const 68)))
    (block $done (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.const {count})))
        (i32.store (i32.add (i32.const 0x100000) (i32.mul (local.get $i) (i32.const 4)))
            (i32.or (i32.const 0x40404040)
                (i32.or
                    (i32.or (i32.and (local.get $i) (i32.const 0x3f))
                            (i32.shl (i32.and (i32.shr_u (local.get $i) (i32.const 6)) (i32.const 0x3f)) (i32.const 8)))
                    (i32.or (i32.shl (i32.and (i32.shr_u (local.get $i) (i32.const 12)) (i32.const 0x3f)) (i32.const 16))
                            (i32.shl (i32.and (i32.shr_u (local.get $i) (i32.const 18)) (i32.const 0x3f)) (i32.const 24))))))
        (i32.store (i32.add (i32.const 0x400000) (i32.mul (local.get $i) (i32.const 8)))
            (i32.add (i32.const 0x100000) (i32.mul (local.get $i) (i32.const 4))))
        (i32.store (i32.add (i32.const 0x400004) (i32.mul (local.get $i) (i32.const 8))) (i32.const 4))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $delete_many (local.get $bucket) (i32.const 0x400000) (i32.const {count}) (i32.const 96))
    (call $drop (local.get $bucket))
    (i32.const 128)"#
    )
}

/// One `delete-many` of many small keys costs the host far more than their bytes: each
/// key counts against the call's entries, and too many trap the call.
#[test]
fn one_huge_delete_many_traps() {
    let limits = Limits {
        deadline: std::time::Duration::from_secs(60),
        ..Limits::default()
    };
    let max = limits.kv.max_call_entries;
    let guest = component("", "", &delete_many_distinct(max + max / 8));
    let mut runner = start_with(limits, &guest, Box::new(MemoryStore::new()), None);
    let reason = trap_reason(runner.process("{}"));
    assert_eq!(
        reason,
        format!("harness limit: one call of 1 record(s) may write or delete at most {max} keys"),
    );
    // Within the limit, the same call goes through.
    let limits = Limits {
        deadline: std::time::Duration::from_secs(60),
        ..Limits::default()
    };
    let guest = component("", "", &delete_many_distinct(1000));
    let mut runner = start_with(limits, &guest, Box::new(MemoryStore::new()), None);
    runner.process("{}").unwrap();
}

/// Time spent in the host counts against the call's deadline: a call that keeps the host
/// busy past it traps, with the deadline's own message, even if it never runs wasm again
/// (the epoch is checked only in wasm code, and a rule's last host call may be its
/// longest). Here one `delete-many` within the entries limit outlasts a 5 ms deadline.
#[test]
fn host_work_past_the_deadline_traps() {
    let limits = Limits {
        deadline: std::time::Duration::from_millis(5),
        ..Limits::default()
    };
    let message = format!("the call ran past its deadline of {:?}", limits.deadline);
    let keys = limits.kv.max_call_entries - 1000;
    let guest = component("", "", &delete_many_distinct(keys));
    let mut runner = start_with(limits, &guest, Box::new(MemoryStore::new()), None);
    let started = std::time::Instant::now();
    let result = runner.process("{}");
    eprintln!("returned after {:?}", started.elapsed());
    assert_eq!(trap_reason(result), message);
    // The same work, within a generous deadline, goes through.
    let limits = Limits {
        deadline: std::time::Duration::from_secs(60),
        ..Limits::default()
    };
    let mut runner = start_with(limits, &guest, Box::new(MemoryStore::new()), None);
    runner.process("{}").unwrap();
}
