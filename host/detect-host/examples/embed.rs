//! Embedding a sandboxed rule in your own tool: load the built-in SSM rule, feed it the
//! records of a CloudTrail log, and print each alert's title.
//!
//! ```sh
//! cargo run -p rule-harness --example embed -- rules/ssm/fixtures/logs/ssm_sessions.json
//! ```

use std::fs::File;
use std::ops::ControlFlow;

use anyhow::Context;
use rule_harness::input::{self, Ending, Item};
use rule_harness::state::MemoryStore;
use rule_harness::{Limits, Sandbox};

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
    let mut failed = None;
    input::read_records(
        file,
        &Default::default(),
        Ending::Deliver,
        |position, item| {
            let record = match item {
                Item::Record(record) => record,
                // What a visitor rules out (`Visit::wants`); this closure wants every record.
                Item::RuledOut(_) => return ControlFlow::Continue(()),
                Item::Unusable(unusable) => {
                    eprintln!("record {}: {}", position.index, unusable.reason);
                    return ControlFlow::Continue(());
                }
            };
            // An error of the outer result stops the rule; the inner one is this record's.
            match runner.process(record) {
                Ok(Ok(outcome)) => {
                    for alert in &outcome.alerts {
                        println!("{} [{}] {}", alert.event_time, alert.severity, alert.title);
                    }
                }
                Ok(Err(failure)) => eprintln!("record {}: {}", position.index, failure.message()),
                Err(stop) => {
                    failed = Some(stop);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        },
    );
    match failed {
        Some(stop) => Err(stop.into()),
        None => Ok(()),
    }
}
