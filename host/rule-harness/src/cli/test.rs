//! `rule-harness test`: the fixture test cases, with a diff for each failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::RuleArgs;
use super::cases::{self, FileReport};
use detect_host::state::MemoryStore;

#[derive(Args)]
pub struct TestArgs {
    /// Case files (`*.case.json`) or directories holding them; files written for another
    /// rule (their `rule`) are skipped
    #[arg(value_name = "PATH", default_value = "guest/rules")]
    paths: Vec<PathBuf>,
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
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for file in &files {
        let reports = match cases::run_file(&rule, &name, file) {
            FileReport::Ran(reports) => reports,
            FileReport::Skipped(_) => {
                skipped += 1;
                continue;
            }
        };
        for report in reports {
            if report.passed() {
                passed += 1;
            } else {
                failed += 1;
                println!("FAIL {}: {}", report.file.display(), report.name);
                for failure in &report.failures {
                    println!("  {failure}");
                }
            }
        }
    }
    if skipped > 0 {
        println!("({skipped} case file(s) for other rules skipped)");
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
