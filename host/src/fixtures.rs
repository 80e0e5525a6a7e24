//! The rule's test cases ([`detect_sdk::testkit::cases`]), run against a rule component,
//! each case in a fresh in-memory state.

use std::path::Path;

use detect_sdk::testkit::cases::{self, Rejection, Run};

use crate::output::AlertLine;
use crate::runner::RuleRunner;
use crate::sandbox::LoadedRule;
use crate::state::MemoryStore;

pub use detect_sdk::testkit::cases::{FileReport, discover};

/// Runs every case of one file against `rule`, whose name is `rule_name`.
pub fn run_file(rule: &LoadedRule, rule_name: &str, path: &Path) -> FileReport {
    let start = |config| {
        let runner = rule
            .start(Box::new(MemoryStore::new()), config)
            .map_err(|e| e.to_string())?;
        Ok(Box::new(runner) as Box<dyn Run>)
    };
    cases::run_file(&start, rule_name, path)
}

impl Run for RuleRunner {
    fn process(&mut self, record: &str) -> Result<Result<Vec<AlertLine>, Rejection>, String> {
        let outcome = RuleRunner::process(self, record).map_err(|e| e.to_string())?;
        Ok(match outcome {
            Ok(outcome) => Ok(outcome.alerts),
            Err(failure) => Err((failure.kind().to_owned(), failure.message())),
        })
    }
}
