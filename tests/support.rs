//! Shared helpers: running the executable, paths of fixtures, and hostile components.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use cloudtrail_corpus::{Corpus, CorpusSpec};
use serde_json::Value;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

pub fn fixture(path: &str) -> PathBuf {
    root().join("fixtures").join(path)
}

/// An artifact of a rule of the workspace, as the test build made it (`host/testing`).
pub fn artifact(rule: &str, family: &str) -> &'static [u8] {
    static ARTIFACTS: OnceLock<Mutex<HashMap<String, &'static [u8]>>> = OnceLock::new();
    let mut all = ARTIFACTS.get_or_init(Default::default).lock().unwrap();
    all.entry(format!("{rule}.{family}"))
        .or_insert_with(|| detect_testing::artifact(rule, family).leak())
}

/// The built-in rule's component (the SSM rule), as `rule-harness` embeds it.
pub fn default_rule() -> &'static [u8] {
    artifact("ssm", "component")
}

/// One record's result: its outcome or its failure; an error that stops the run fails
/// the test.
pub fn record(
    result: Result<detect_host::Outcome, detect_host::Error>,
) -> Result<detect_host::Outcome, detect_host::RecordFailure> {
    match result {
        Ok(outcome) => Ok(outcome),
        Err(detect_host::Error::Record(failure)) => Err(failure),
        Err(stop) => panic!("the run stopped: {stop}"),
    }
}

/// A compilation cache shared by every test of this run: compiling the rule once is enough.
pub fn shared_cache() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// The `rule-harness` command, with the shared cache, in the workspace root.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rule-harness"));
    command
        .arg("--cache-dir")
        .arg(shared_cache())
        .args(args)
        .current_dir(root());
    command
}

/// Runs `rule-harness` with `args`, feeding `stdin`.
pub fn harness(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rule-harness starts");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // A writer of its own, so that a large input and a large output cannot block each other.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// NDJSON of `records` generated records: SSM-heavy, many alerts.
pub fn generated_log(records: usize, seed: u64) -> Vec<u8> {
    let mut corpus = Corpus::new(CorpusSpec {
        seed,
        ssm_share: 0.3,
        identities: 40,
        step_millis: 60_000,
        ..CorpusSpec::default()
    });
    let mut log = Vec::new();
    corpus.write_ndjson(records, &mut log).unwrap();
    log
}

/// Runs `rule-harness`, which must succeed, and returns the alerts it printed.
pub fn alerts(args: &[&str], stdin: &[u8]) -> Vec<Value> {
    let out = harness(args, stdin);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines(&out.stdout)
}

/// The JSON lines of some output.
pub fn lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A hostile component (see [`detect_testing::hostile::Hostile`]) from its imports and
/// the body run for each record.
pub fn hostile(imports: &str, process_event: &str) -> Vec<u8> {
    let hostile = detect_testing::hostile::Hostile {
        items: imports,
        process_event,
        ..Default::default()
    };
    hostile.component()
}

/// Calls into the rule never return.
pub const ENDLESS_LOOP: &str = "(loop $again (br $again)) unreachable";
/// Grows memory until the cap stops it.
pub const ALLOCATION_BOMB: &str =
    "(loop $again (drop (memory.grow (i32.const 256))) (br $again)) unreachable";
pub const ALWAYS_TRAP: &str = "unreachable";

/// Imports for [`WRITE_THEN_MAYBE_TRAP`].
pub const KV_IMPORTS: &str = r#"
    (import "wasi:keyvalue/store@0.2.0-draft" "open" (func $open (param i32 i32 i32)))
    (import "wasi:keyvalue/store@0.2.0-draft" "[method]bucket.set" (func $set (param i32 i32 i32 i32 i32 i32)))
    (import "wasi:keyvalue/store@0.2.0-draft" "[resource-drop]bucket" (func $drop (param i32)))"#;

/// Stores the record itself as a key (value `1`), then traps if it starts with `!`.
pub const WRITE_THEN_MAYBE_TRAP: &str = r#"
    (call $open (i32.const 16) (i32.const 7) (i32.const 64))
    (local.set $bucket (i32.load (i32.const 68)))
    (call $set (local.get $bucket) (local.get $ptr) (local.get $len) (i32.const 32) (i32.const 1) (i32.const 96))
    (call $drop (local.get $bucket))
    (if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 33)) (then unreachable))
    (i32.const 128)"#;

/// Returns one alert whose context is 2 MiB long (the zeros at the end of memory).
/// An `alert` record is 56 bytes; its `context` string sits at offset 32.
pub const HUGE_OUTPUT: &str = r#"
    (i32.store8 (i32.const 132) (i32.const 1))
    (i32.store (i32.const 136) (i32.const 4096))
    (i32.store (i32.const 140) (i32.const 1))
    (i32.store (i32.const 4128) (i32.const 2097152))
    (i32.store (i32.const 4132) (i32.const 2097152))
    (i32.const 128)"#;
