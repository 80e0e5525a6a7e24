//! Embedding a sandboxed rule in your own tool: any rule component, over CloudTrail logs,
//! through the library's pipeline (resume, alerts delivered before the state is
//! committed), one JSON alert line each on stdout.
//!
//! ```sh
//! cargo run --release -p detect-host --example embed -- RULE.wasm STATE.redb FILE...
//! ```
//!
//! Run it twice over the same files: the second run resumes after the first and prints
//! no alert again.

use std::path::PathBuf;

use detect_host::pipeline::{Options, Pipeline, Sink, Stop};
use detect_host::state::RedbStore;
use detect_host::{Limits, Sandbox};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [rule, state, files @ ..] = &args[..] else {
        return Err("usage: embed RULE.wasm STATE.redb FILE...".into());
    };
    let stop = Stop::new();
    let pipeline = Pipeline::new(files, Options::default())?
        .alerts(Sink::stdout(&stop)?)
        .dead_letters(Sink::stderr(&stop)?);
    pipeline.check_outputs(Some(state))?; // before the state is opened
    // 300 ms and 64 MiB per call; the rule may import only wasi:keyvalue.
    let rule = Sandbox::new(Limits::default())?.load(&std::fs::read(rule)?)?;
    let runner = rule.start(Box::new(RedbStore::open(state)?), None)?;
    let report = pipeline.run(Box::new(runner), &stop)?;
    eprintln!(
        "{} records ({} handled by earlier runs), {} alerts",
        report.records,
        report.skipped,
        report.alert_count()
    );
    Ok(())
}
