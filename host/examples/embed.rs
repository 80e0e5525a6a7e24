//! Embedding a sandboxed rule in your own tool: load the built-in SSM rule, feed it the
//! records of a CloudTrail log, and print each alert's title.
//!
//! ```sh
//! cargo run -p rule-harness --example embed -- fixtures/logs/ssm_sessions.json
//! ```

use std::fs::File;

use anyhow::Context;
use rule_harness::state::MemoryStore;
use rule_harness::{Limits, Sandbox, input, output::AlertLine};

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: embed CLOUDTRAIL_LOG")?;

    // A sandbox with the default limits: 300 ms per call, 64 MiB of memory.
    let sandbox = Sandbox::new(Limits::default())?;
    // Any component of the detect:rule world loads the same way.
    let rule = sandbox.load(rule_harness::DEFAULT_RULE)?;
    // State in memory; `rule_harness::state::RedbStore` keeps it across runs.
    let mut runner = rule.start(Box::new(MemoryStore::new()), None)?;

    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    input::read_records(file, &mut |position, item| -> anyhow::Result<()> {
        let record = match item {
            Ok(record) => record,
            Err(unreadable) => {
                eprintln!("record {}: {unreadable}", position.index);
                return Ok(());
            }
        };
        // The outer `?` is for errors that stop the rule; the inner result is this record's.
        match runner.process(record)? {
            Ok(outcome) => {
                for alert in &outcome.alerts {
                    let line = AlertLine::from(alert);
                    println!("{} [{}] {}", line.event_time, line.severity, line.title);
                }
            }
            Err(failure) => eprintln!("record {}: {}", position.index, failure.message()),
        }
        Ok(())
    })
}
