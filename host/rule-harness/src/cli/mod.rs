//! The `rule-harness` command line: argument parsing and the commands, over the library.

mod bench;
mod build;
mod cases;
mod export;
mod inspect;
mod junit;
mod run;
mod signals;
mod summary;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::built_in;
use detect_host::{Limits, LoadedRule, Sandbox, cache};

#[derive(Parser)]
#[command(
    name = "rule-harness",
    version,
    about = "Run sandboxed WebAssembly detection rules over CloudTrail logs"
)]
struct Cli {
    #[command(flatten)]
    rule: RuleArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Feed CloudTrail records to the rule and print its alerts as JSON lines
    Run(run::RunArgs),
    /// Run fixture test cases against the rule
    Test(test::TestArgs),
    /// Show the rule's imports, exports and detections
    Inspect(inspect::InspectArgs),
    /// Write a rule's artifact for a host: the built-in rule's, or one built from a rule
    /// crate (--from), checked and made ready
    Export(export::ExportArgs),
    /// Build rules of this workspace (directories under guest/rules/) into their three
    /// artifacts, each checked and made ready for its host
    Build(build::BuildArgs),
    /// Measure the built-in rule's throughput on generated CloudTrail, next to a plain
    /// read and a substring scan of the same bytes, and to the rule compiled in
    Bench(bench::BenchArgs),
}

/// Which rule to load, and the sandbox's limits.
#[derive(Args)]
struct RuleArgs {
    /// Rule component to load [default: the built-in AWS SSM session rule]
    #[arg(long, global = true, value_name = "PATH")]
    rule: Option<PathBuf>,
    /// Wall-clock time one call into the rule may take
    #[arg(long, global = true, value_name = "MS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    deadline_ms: u64,
    /// Fuel per call (roughly wasm instructions), for deterministic limits
    #[arg(long, global = true, value_name = "UNITS",
          value_parser = clap::value_parser!(u64).range(1..))]
    fuel: Option<u64>,
    /// Memory one rule instance may use
    #[arg(long, global = true, value_name = "MIB", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_memory_mib: u64,
    /// Largest record read; larger ones are dead-lettered with an excerpt and a digest
    #[arg(long, global = true, value_name = "BYTES", default_value_t = 1 << 20,
          value_parser = parse_record_bytes)]
    pub max_record_bytes: usize,
    /// How far past this machine's clock an eventTime may be; later records are rejected
    #[arg(long, global = true, value_name = "DURATION", default_value = "1h",
          value_parser = parse_skew)]
    max_clock_skew: Duration,
    /// Where compiled rules are cached [default: $XDG_CACHE_HOME/rule-harness]
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile the rule afresh, without reading or writing the cache
    #[arg(long, global = true)]
    no_cache: bool,
}

impl RuleArgs {
    fn limits(&self) -> anyhow::Result<Limits> {
        let max_memory_bytes = (self.max_memory_mib as usize) << 20;
        // A rule holds a record and what it parses from it: a record must leave it room.
        anyhow::ensure!(
            self.max_record_bytes <= max_memory_bytes / 4,
            "--max-record-bytes {} leaves the rule no room to read the record: it may be at \
             most a quarter of --max-memory-mib ({} bytes here)",
            self.max_record_bytes,
            max_memory_bytes / 4
        );
        Ok(Limits {
            deadline: Duration::from_millis(self.deadline_ms),
            fuel: self.fuel,
            max_memory_bytes,
            max_record_bytes: self.max_record_bytes,
            max_clock_skew: self.max_clock_skew,
            ..Limits::default()
        })
    }

    /// Loads the rule named by `--rule`, or the built-in one.
    fn load(&self) -> anyhow::Result<LoadedRule> {
        let cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(cache::default_dir)
        };
        let sandbox = Sandbox::new(self.limits()?)?.with_cache_dir(cache_dir);
        let rule = match &self.rule {
            None => sandbox.load(built_in::COMPONENT)?,
            Some(path) => {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("cannot read the rule {}", path.display()))?;
                sandbox
                    .load(&bytes)
                    .with_context(|| format!("cannot load the rule {}", path.display()))?
            }
        };
        for warning in rule.warnings() {
            eprintln!("rule-harness: warning: {warning}");
        }
        Ok(rule)
    }
}

fn parse_record_bytes(text: &str) -> Result<usize, String> {
    let bytes: usize = text.parse().map_err(|e| format!("{e}"))?;
    let (min, max) = (1024, 64 << 20);
    if !(min..=max).contains(&bytes) {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(bytes)
}

fn parse_skew(text: &str) -> Result<Duration, String> {
    let skew = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if skew > Duration::from_secs(365 * 86_400) {
        return Err("must be at most 365 days".into());
    }
    Ok(skew)
}

/// Runs the command line; the binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => run::run(&cli.rule, args),
        Command::Test(args) => test::test(&cli.rule, args),
        Command::Inspect(args) => inspect::inspect(&cli.rule, args),
        Command::Export(args) => export::export(&cli.rule, args),
        Command::Bench(args) => bench::bench(args),
        Command::Build(args) => build::build(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rule-harness: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
