//! `rule-harness run`: the pipeline stage. Records in (files or stdin), alerts out (JSON
//! lines on stdout), failed records to the dead-letter stream, a summary on stderr.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::RuleArgs;
use super::summary::Summary;
use crate::HarnessError;
use crate::input::{self, Item, Position};
use crate::output::{AlertLine, DeadLetter};
use crate::state::{MemoryStore, RedbStore, StateStore};

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
    /// Where failed records go, one JSON line each [default: stderr]
    #[arg(long, value_name = "FILE")]
    dead_letter: Option<PathBuf>,
    /// Records between commits of the state file
    #[arg(long, value_name = "N", default_value_t = 1000)]
    commit_every: usize,
    /// Never show a progress bar
    #[arg(long)]
    no_progress: bool,
}

pub fn run(rule_args: &RuleArgs, args: &RunArgs) -> anyhow::Result<std::process::ExitCode> {
    // Check every input before reading any, so a typo fails at once, not an hour in.
    for file in args.files.iter().filter(|f| f.as_os_str() != "-") {
        File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    }
    let config = match &args.config {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the config {}", path.display()))?,
        ),
        None => None,
    };
    let store: Box<dyn StateStore> = if args.state == "memory" {
        Box::new(MemoryStore::new())
    } else {
        Box::new(RedbStore::open(Path::new(&args.state))?.with_batch_size(args.commit_every))
    };
    let rule = rule_args.load()?;
    let mut runner = rule.start(store, config)?;

    let mut alerts = BufWriter::new(io::stdout().lock());
    let mut dead_letters: Box<dyn Write> = match &args.dead_letter {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(io::stderr()),
    };
    let progress = progress_bar(args);
    let mut summary = Summary::default();
    let started = Instant::now();

    for file in &args.files {
        let source = file.display().to_string();
        let reader: Box<dyn Read> = if source == "-" {
            if io::stdin().is_terminal() {
                eprintln!("rule-harness: reading records from the terminal; end with Ctrl-D");
            }
            Box::new(io::stdin().lock())
        } else {
            Box::new(File::open(file).with_context(|| format!("cannot open {}", file.display()))?)
        };
        let reader = progress.wrap_read(reader);
        let mut handle = |position: Position, item: Item| -> anyhow::Result<()> {
            summary.records += 1;
            let dead = |kind: &str, error: String, record: Option<&str>| DeadLetter {
                source: source.clone(),
                line: position.line,
                index: position.index,
                kind: kind.to_owned(),
                error,
                record: record.map(str::to_owned),
            };
            let record = match item {
                Ok(record) => record,
                Err(message) => {
                    summary.error("input");
                    return write_line(&mut dead_letters, &dead("input", message, None));
                }
            };
            summary.bytes += record.len() as u64;
            match runner.process(record)? {
                Ok(outcome) => {
                    summary.relevant += u64::from(outcome.relevant);
                    for alert in &outcome.alerts {
                        *summary.alerts.entry(alert.rule_id.clone()).or_default() += 1;
                        write_line(&mut alerts, &AlertLine::from(alert))?;
                    }
                }
                Err(failure) => {
                    summary.error(failure.kind());
                    write_line(
                        &mut dead_letters,
                        &dead(failure.kind(), failure.message(), Some(record)),
                    )?;
                }
            }
            Ok(())
        };
        input::read_records(reader, &mut handle)?;
    }
    progress.finish_and_clear();
    summary.traps = runner.traps();
    runner.flush().map_err(HarnessError::from)?;
    alerts.flush()?;
    dead_letters.flush()?;
    summary.elapsed = started.elapsed();
    eprintln!("{summary}");
    Ok(std::process::ExitCode::SUCCESS)
}

fn write_line(out: &mut dyn Write, line: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n").context("writing output")
}

/// A bar over the input files' bytes on a terminal; hidden otherwise.
fn progress_bar(args: &RunArgs) -> ProgressBar {
    if args.no_progress || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let files: Option<u64> = args
        .files
        .iter()
        .map(|f| {
            (f.as_os_str() != "-")
                .then(|| std::fs::metadata(f).map(|m| m.len()).ok())
                .flatten()
        })
        .sum();
    match files {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("the template is valid"),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {bytes} read, {bytes_per_sec}")
                .expect("the template is valid"),
        ),
    }
}
