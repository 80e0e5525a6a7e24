//! What a pipeline hands its records to: a rule in the sandbox ([`RuleRunner`]), or
//! anything else that judges records and keeps its state in a [`StateStore`] (a rule
//! compiled in, to measure what the sandbox costs).

use std::path::PathBuf;

use detect_sdk::prefilter::Prefilter;

use crate::error::{Error, RecordFailure};
use crate::runner::{Outcome, RuleRunner};
use crate::state::StateStore;

/// A rule that judges records, and the store that keeps what it learns.
pub trait Judge {
    /// What every record the rule may find relevant contains.
    fn prefilter(&self) -> &Prefilter;

    /// Processes records in order: each result as if it were processed alone. The outer
    /// error stops the run.
    fn process_batch(
        &mut self,
        records: &[String],
    ) -> Result<Vec<Result<Outcome, RecordFailure>>, Error>;

    /// The state store, to add the run's own entries and to commit.
    fn store(&mut self) -> &mut dyn StateStore;

    /// Records that trapped so far.
    fn traps(&self) -> u64;

    /// The file the state is kept in, if it outlives the run.
    fn state_path(&mut self) -> Option<PathBuf> {
        self.store().path().map(Into::into)
    }
}

impl Judge for RuleRunner {
    fn prefilter(&self) -> &Prefilter {
        RuleRunner::prefilter(self)
    }

    fn process_batch(
        &mut self,
        records: &[String],
    ) -> Result<Vec<Result<Outcome, RecordFailure>>, Error> {
        RuleRunner::process_batch(self, records)
    }

    fn store(&mut self) -> &mut dyn StateStore {
        RuleRunner::store(self)
    }

    fn traps(&self) -> u64 {
        RuleRunner::traps(self)
    }
}
