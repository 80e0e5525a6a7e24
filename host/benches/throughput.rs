//! Records per second through the sandboxed rule, against the same rule compiled natively.
//!
//! `cargo bench -p rule-harness` (a plain `main`: each figure is the median of several
//! runs, and ratios are taken within one run, since shared machines are noisy).

use std::hint::black_box;
use std::time::{Duration, Instant};

use detect_sdk::Rule;
use rule_harness::state::{MemoryStore, RedbStore, StateStore};
use rule_harness::{Limits, Sandbox};
use serde_json::{Value, json};
use ssm_rule::SsmSessions;

const RECORDS: usize = 20_000;
const RUNS: usize = 5;

/// StartSession records by 200 identities on 50 targets over 20 days, from the sample.
fn relevant() -> Vec<String> {
    let sample: Value = serde_json::from_str(include_str!(
        "../../rules/ssm/fixtures/records/panther_sample.json"
    ))
    .unwrap();
    let start = 1_735_689_600_000i64; // 2025-01-01
    (0..RECORDS)
        .map(|i| {
            let mut r = sample.clone();
            let at = start + (i as i64) * 86_400_000 / 1000;
            r["eventTime"] = json!(time_text(at));
            r["userIdentity"]["arn"] =
                json!(format!("arn:aws:iam::111122223333:user/u{}", i % 200));
            r["requestParameters"]["target"] = json!(format!("i-{:017}", i % 50));
            r["sourceIPAddress"] = json!(format!("10.0.{}.{}", i % 7, i % 250));
            r.to_string()
        })
        .collect()
}

/// Records of other services, of the same size: what a CloudTrail stream mostly is.
fn irrelevant() -> Vec<String> {
    relevant()
        .into_iter()
        .map(|r| {
            r.replace("\"StartSession\"", "\"DescribeInstances\"")
                .replace("ssm.amazonaws.com\"", "ec2.amazonaws.com\"")
        })
        .collect()
}

fn time_text(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms / 1000).unwrap();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn sandboxed(records: &[String], store: impl Fn() -> Box<dyn StateStore>) -> Duration {
    let rule = Sandbox::new(Limits::default())
        .unwrap()
        .load(rule_harness::DEFAULT_RULE)
        .unwrap();
    median(
        (0..RUNS)
            .map(|_| {
                let mut runner = rule.start(store(), None).unwrap();
                let started = Instant::now();
                for r in records {
                    black_box(runner.process(r).unwrap().unwrap());
                }
                runner.commit().unwrap();
                started.elapsed()
            })
            .collect(),
    )
}

fn native(records: &[String]) -> Duration {
    let config = ssm_rule::Config::default();
    let context = detect_sdk::Context {
        not_after: i64::MAX,
    };
    median(
        (0..RUNS)
            .map(|_| {
                let mut kv = detect_sdk::MemoryKv::new();
                kv.page_size = 1000;
                let started = Instant::now();
                for r in records {
                    black_box(SsmSessions::process(r, &config, &mut kv, &context).unwrap());
                }
                started.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let (relevant, irrelevant) = (relevant(), irrelevant());
    let dir = tempfile::tempdir().unwrap();
    // A fresh state file for every run.
    let files = std::cell::Cell::new(0);
    let redb = || -> Box<dyn StateStore> {
        files.set(files.get() + 1);
        Box::new(RedbStore::open(&dir.path().join(format!("state-{}.redb", files.get()))).unwrap())
    };
    let rows = [
        ("irrelevant, native", native(&irrelevant)),
        (
            "irrelevant, sandboxed, memory",
            sandboxed(&irrelevant, || Box::new(MemoryStore::new())),
        ),
        ("StartSession, native", native(&relevant)),
        (
            "StartSession, sandboxed, memory",
            sandboxed(&relevant, || Box::new(MemoryStore::new())),
        ),
        ("StartSession, sandboxed, redb", sandboxed(&relevant, redb)),
    ];
    println!("{RECORDS} records per run, median of {RUNS} runs");
    println!("{:<34} {:>12} {:>14}", "", "records/s", "µs/record");
    for (name, elapsed) in &rows {
        let secs = elapsed.as_secs_f64();
        println!(
            "{name:<34} {:>12.0} {:>14.2}",
            RECORDS as f64 / secs,
            secs * 1e6 / RECORDS as f64
        );
    }
    let ratio = |a: usize, b: usize| rows[a].1.as_secs_f64() / rows[b].1.as_secs_f64();
    println!(
        "sandboxed / native: irrelevant {:.1}x, StartSession {:.1}x",
        ratio(1, 0),
        ratio(3, 2)
    );
    println!("redb / memory state: {:.1}x", ratio(4, 3));
}
