//! The rule's test cases ([`detect_sdk::testkit::cases`]), run against a rule component,
//! each case in a fresh in-memory state.

use std::path::Path;

use detect_sdk::testkit::cases::{self, Rejection, Run};

use detect_host::output::{Alert, AlertLine};
use detect_host::state::MemoryStore;
use detect_host::{Error, LoadedRule, RuleRunner};

pub use detect_sdk::testkit::cases::{FileReport, discover};

/// Runs the cases of one file whose name contains `filter` (all without one) against
/// `rule`, whose name is `rule_name`.
pub fn run_file(
    rule: &LoadedRule,
    rule_name: &str,
    path: &Path,
    filter: Option<&str>,
) -> FileReport {
    let start = |config| {
        let runner = rule
            .start(Box::new(MemoryStore::new()), config)
            .map_err(|e| e.to_string())?;
        Ok(Box::new(Case(runner)) as Box<dyn Run>)
    };
    cases::run_file(&start, rule_name, path, filter)
}

/// A runner, as the test kit runs cases.
struct Case(RuleRunner);

impl Run for Case {
    fn process(&mut self, record: &str) -> Result<Result<Vec<AlertLine>, Rejection>, String> {
        match self.0.process(record) {
            Ok(outcome) => Ok(Ok(outcome.alerts.iter().map(Alert::line).collect())),
            Err(Error::Record(failure)) => Ok(Err((failure.kind().to_owned(), failure.message()))),
            Err(stop) => Err(stop.to_string()),
        }
    }
}
