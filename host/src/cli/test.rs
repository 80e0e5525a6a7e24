//! `rule-harness test`: the fixture test cases, with a diff for each failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::RuleArgs;
use crate::fixtures;

#[derive(Args)]
pub struct TestArgs {
    /// Case files (`*.case.json`) or directories holding them
    #[arg(value_name = "PATH", default_value = "fixtures")]
    paths: Vec<PathBuf>,
}

pub fn test(rule_args: &RuleArgs, args: &TestArgs) -> anyhow::Result<ExitCode> {
    let files = fixtures::discover(&args.paths).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        !files.is_empty(),
        "no *.case.json files under {:?}",
        args.paths
    );
    let rule = rule_args.load()?;
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        for report in fixtures::run_file(&rule, file) {
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
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
