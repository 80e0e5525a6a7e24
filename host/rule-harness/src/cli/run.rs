//! `rule-harness run`: the pipeline stage, over the library's [`Pipeline`]. Records in
//! (files or stdin), alerts out (JSON lines on stdout), failed records to the dead-letter
//! stream, a summary on stderr; SIGINT and SIGTERM commit and stop.

use std::fs;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::RuleArgs;
use super::summary::Summary;
use crate::native::Native;
use detect_host::input::Source;
use detect_host::judge::Judge;
use detect_host::output::AlertFormat;
use detect_host::pipeline::{self, Options, Pipeline, Sink, Stop};
use detect_host::state::{MemoryStore, RedbStore, StateStore};

#[derive(Args)]
pub struct RunArgs {
    /// CloudTrail logs: NDJSON, JSON arrays or {"Records": [...]} files, optionally gzipped; `-` is stdin
    #[arg(value_name = "FILE", default_value = "-")]
    files: Vec<PathBuf>,
    /// The rule's configuration (JSON)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// State file, or `memory` for state that ends with the run
    #[arg(long, value_name = "PATH", default_value = "rule-state.redb")]
    state: String,
    /// Where failed records go, appended one JSON line each [default: stderr]
    #[arg(long, value_name = "FILE")]
    dead_letter: Option<PathBuf>,
    /// How alerts are written: `json`, the harness's alert lines, or `ocsf`, an OCSF 1.8.0
    /// Detection Finding (class 2004) each
    #[arg(long, value_name = "FORMAT", default_value = "json", value_parser = parse_format)]
    format: AlertFormat,
    /// Records between commits of alerts and state
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    commit_every: u64,
    /// Longest time between commits, however slowly records come
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval)]
    commit_interval: Duration,
    /// Read every file from its start, even the records earlier runs have handled
    #[arg(long)]
    reprocess: bool,
    /// Hand every record to the rule, which then parses and checks each. By default the
    /// records that the rule's prefilter rules out are skipped unread, and only those not
    /// framed as a JSON object are dead-lettered
    #[arg(long)]
    validate_all: bool,
    /// Let the alerts go to a standard output that is /dev/null (or was closed) while a
    /// state file records them as raised; refused otherwise, as they would be lost
    #[arg(long)]
    discard_alerts: bool,
    /// Never show a progress bar
    #[arg(long)]
    no_progress: bool,
    /// Run the built-in rule compiled into the harness, outside the sandbox, with no
    /// limits: the same pipeline, to measure what the sandbox costs
    #[arg(long)]
    unsandboxed: bool,
}

fn parse_format(text: &str) -> Result<AlertFormat, String> {
    text.parse()
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d.is_zero() || d > Duration::from_secs(3600) {
        return Err("must be more than 0 and at most 1h".into());
    }
    Ok(d)
}

pub fn run(rule_args: &RuleArgs, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let stop = Stop::new();
    let signals = super::signals::Signals::register(&stop)?;
    let pipeline = Pipeline::new(&args.files, options(rule_args, args))?;
    let alerts = Sink::stdout(&stop)?;
    if alerts.is_null() {
        let what =
            "standard output is /dev/null (or was closed): this run's alerts would be discarded";
        anyhow::ensure!(
            args.state == "memory" || args.discard_alerts,
            "{what}, and the state file would record them as raised, so that no later run \
             raises them again; send the alerts somewhere, or pass --discard-alerts"
        );
        eprintln!("rule-harness: {what}");
    }
    let dead_letters = match &args.dead_letter {
        Some(path) => Sink::append(path, &stop)?,
        None => Sink::stderr(&stop)?,
    };
    if args.files.iter().any(|f| f == Path::new("-")) && io::stdin().is_terminal() {
        eprintln!("rule-harness: reading records from the terminal; end with Ctrl-D");
    }
    let pipeline = pipeline.alerts(alerts).dead_letters(dead_letters);
    // Before the state is opened: a refused run creates no state file.
    let state = (args.state != "memory").then(|| Path::new(&args.state));
    pipeline.check_outputs(state)?;
    let judge = judge(rule_args, args)?;
    let progress = progress_bar(args);
    let bar = progress.clone();
    let started = Instant::now();
    let report = pipeline
        .notices(Box::new(|notice| eprintln!("rule-harness: {notice}")))
        .progress(Arc::new(move |bytes| bar.inc(bytes)))
        .run(judge, &stop);
    progress.finish_and_clear();
    let report = report?;
    let undelivered = report.undelivered.clone();
    eprintln!(
        "{}",
        Summary {
            report,
            elapsed: started.elapsed()
        }
    );
    Ok(signals.exit_code(undelivered))
}

/// The rule in the sandbox, or compiled in with `--unsandboxed`, over the state named.
fn judge(rule_args: &RuleArgs, args: &RunArgs) -> anyhow::Result<Box<dyn Judge>> {
    let config = match &args.config {
        Some(path) => Some(
            fs::read_to_string(path)
                .with_context(|| format!("cannot read the config {}", path.display()))?,
        ),
        None => None,
    };
    let store: Box<dyn StateStore> = if args.state == "memory" {
        Box::new(MemoryStore::new())
    } else {
        let inputs: Vec<Source> = args.files.iter().map(|f| Source::from_arg(f)).collect();
        pipeline::check_state_path(Path::new(&args.state), &inputs)?;
        Box::new(RedbStore::open(Path::new(&args.state))?)
    };
    if !args.unsandboxed {
        return Ok(Box::new(rule_args.load()?.start(store, config)?));
    }
    anyhow::ensure!(
        rule_args.rule.is_none(),
        "--unsandboxed runs the built-in rule; it takes no --rule"
    );
    let skew = rule_args.limits()?.max_clock_skew;
    Ok(Box::new(Native::<ssm_rule::SsmSessions>::new(
        store,
        config.as_deref(),
        skew,
    )?))
}

fn options(rule_args: &RuleArgs, args: &RunArgs) -> Options {
    let mut options = Options {
        commit_every: args.commit_every,
        commit_interval: args.commit_interval,
        reprocess: args.reprocess,
        validate_all: args.validate_all,
        discard_alerts: args.discard_alerts,
        format: args.format,
        ..Options::default()
    };
    options.frame.max_record_bytes = rule_args.max_record_bytes;
    options
}

/// A bar over the input files' bytes on a terminal; hidden otherwise.
fn progress_bar(args: &RunArgs) -> ProgressBar {
    if args.no_progress || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let files: Option<u64> = args
        .files
        .iter()
        .map(|path| {
            fs::metadata(path)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len())
        })
        .sum();
    let (bar, template) = match files {
        Some(total) => (
            ProgressBar::new(total),
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{spinner} {bytes} read, {bytes_per_sec}",
        ),
    };
    bar.with_style(ProgressStyle::with_template(template).expect("the template is valid"))
}
