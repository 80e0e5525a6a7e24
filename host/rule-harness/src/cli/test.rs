//! `rule-harness test`: a rule's test cases, a line each, a diff for each failure, the
//! totals; a name filter; JUnit XML for CI systems.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::RuleArgs;
use super::{cases, junit};
use detect_host::state::MemoryStore;
use detect_sdk::testkit::cases::Summary;

#[derive(Args)]
pub struct TestArgs {
    /// Case files (`*.case.json`) or directories holding them; files written for another
    /// rule (their `rule`) are skipped
    #[arg(value_name = "PATH", default_value = "guest/rules")]
    paths: Vec<PathBuf>,
    /// Run only the cases whose name contains this text
    #[arg(long, value_name = "TEXT")]
    filter: Option<String>,
    /// Also write the results as JUnit XML to this file, for CI systems
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

pub fn test(rule_args: &RuleArgs, args: &TestArgs) -> anyhow::Result<ExitCode> {
    let files = cases::discover(&args.paths).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        !files.is_empty(),
        "no *.case.json files under {:?}",
        args.paths
    );
    let rule = rule_args.load()?;
    let name = rule
        .start(Box::new(MemoryStore::new()), None)?
        .info()
        .name
        .clone();
    let mut summary = Summary::default();
    let mut console = Console::default();
    for file in &files {
        let ran = cases::run_file(&rule, &name, file, args.filter.as_deref());
        summary.add(ran, &mut console)?;
    }
    summary.finish(&mut console)?;
    console.flush()?;
    anyhow::ensure!(
        !summary.reports.is_empty(),
        "{}",
        nothing_ran(&summary, &name, args)
    );
    if let Some(path) = &args.junit {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        junit::write(BufWriter::new(file), &name, &summary.reports)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(e) = console.failed {
        return Err(e).context("cannot write the results to standard output");
    }
    Ok(if summary.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Why no case ran, and what to change: a run that tests nothing must not pass.
fn nothing_ran(summary: &Summary, rule: &str, args: &TestArgs) -> String {
    let mut why = format!("no case ran for the rule {rule}");
    if let (Some(filter), 1..) = (&args.filter, summary.filtered) {
        why += &format!(
            "; no name of the {} case(s) found contains {filter:?}: check --filter",
            summary.filtered
        );
    }
    if summary.skipped_files > 0 {
        let others: Vec<&str> = summary.other_rules.iter().map(String::as_str).collect();
        why += &format!(
            "; {} case file(s) are for {}: load that rule's component with --rule",
            summary.skipped_files,
            others.join(", ")
        );
    }
    why
}

/// Standard output that, once a write fails, takes the rest unwritten and keeps the error:
/// the cases still run and the JUnit file is still written when stdout is gone.
#[derive(Default)]
struct Console {
    failed: Option<io::Error>,
}

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed.is_none() {
            self.failed = io::stdout().write_all(buf).err();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.failed.is_none() {
            self.failed = io::stdout().flush().err();
        }
        Ok(())
    }
}
