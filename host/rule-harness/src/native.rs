//! The built-in rule compiled into the harness, outside the sandbox: the same pipeline, to
//! measure what the sandbox costs (`run --unsandboxed`, `bench`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use detect_host::bindings::{FieldError, RuleError};
use detect_host::judge::Judge;
use detect_host::kv::{Call, KvHost, KvLimits, Phase};
use detect_host::state::StateStore;
use detect_host::{Error, Outcome, RecordFailure};
use detect_sdk::prefilter::Prefilter;
use detect_sdk::{AlertLine, Context, KeyValue, Rule, RuleConfig};

/// The bucket the SDK's rules keep their state in.
const BUCKET: &str = "default";

/// A rule compiled into the harness: the same store, call transactions and write limits
/// as in the sandbox, but no sandbox. For comparison only: nothing bounds its CPU or
/// memory.
pub struct Native<R: Rule> {
    kv: KvHost,
    config: R::Config,
    prefilter: Prefilter,
    max_clock_skew: Duration,
}

impl<R: Rule> Native<R> {
    /// The rule over `store`, configured with `config` (JSON; `None`: its defaults),
    /// accepting event times up to `max_clock_skew` past the wall clock.
    pub fn new(
        store: Box<dyn StateStore>,
        config: Option<&str>,
        max_clock_skew: Duration,
    ) -> Result<Self, Error> {
        let info = R::info();
        let config = match config {
            Some(json) => R::Config::from_json(json).map_err(Error::Config)?,
            None => R::Config::default(),
        };
        let prefilter = Prefilter::new(info.prefilter)
            .map_err(|e| Error::WrongWorld(format!("its prefilter is invalid: {e}")))?;
        let mut kv = KvHost::new(store, KvLimits::default());
        kv.set_rule(info.name);
        Ok(Native {
            kv,
            config,
            prefilter,
            max_clock_skew,
        })
    }

    /// One record in one call: its writes are committed if it succeeds. The rule
    /// reporting its state unreadable stops the run.
    fn process(
        &mut self,
        record: &str,
        context: &Context,
    ) -> Result<Result<Outcome, RecordFailure>, Error> {
        let mut call = Call::begin(&mut self.kv, Phase::Records(1));
        let mut bucket = Bucket { call: &mut call };
        match R::process(record, &self.config, &mut bucket, context) {
            Ok(outcome) => {
                call.commit()?;
                Ok(Ok(Outcome {
                    relevant: outcome.relevant,
                    alerts: outcome.alerts.iter().map(AlertLine::from).collect(),
                }))
            }
            Err(detect_sdk::RuleError::State(message)) => Err(Error::RuleState(message)),
            Err(e) => Ok(Err(RecordFailure::Rejected(wit_error(e)))),
        }
    }
}

impl<R: Rule> Judge for Native<R> {
    fn prefilter(&self) -> &Prefilter {
        &self.prefilter
    }

    fn process_batch(
        &mut self,
        records: &[String],
    ) -> Result<Vec<Result<Outcome, RecordFailure>>, Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let not_after = i64::try_from((now + self.max_clock_skew).as_millis()).unwrap_or(i64::MAX);
        let context = Context { not_after };
        records
            .iter()
            .map(|record| self.process(record, &context))
            .collect()
    }

    fn store(&mut self) -> &mut dyn StateStore {
        self.kv.store()
    }

    fn traps(&self) -> u64 {
        0
    }
}

/// The rule's bucket, within the call under way, as a [`KeyValue`].
struct Bucket<'c, 'k> {
    call: &'c mut Call<'k, KvHost>,
}

impl KeyValue for Bucket<'_, '_> {
    fn get_many(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, String> {
        self.call.read(BUCKET, keys).map_err(|e| format!("{e:#}"))
    }

    fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        for (key, value) in entries {
            self.call
                .write(BUCKET, key, Some(value))
                .map_err(|e| format!("{e:#}"))?;
        }
        Ok(())
    }

    fn delete_many(&mut self, keys: Vec<String>) -> Result<(), String> {
        for key in keys {
            self.call
                .write(BUCKET, key, None)
                .map_err(|e| format!("{e:#}"))?;
        }
        Ok(())
    }

    fn list_keys(&mut self, cursor: Option<u64>) -> Result<(Vec<String>, Option<u64>), String> {
        let page = self
            .call
            .list(BUCKET, cursor)
            .map_err(|e| format!("{e:#}"))?;
        Ok((page.keys, page.cursor))
    }
}

/// An SDK error as the `detect:rule` world carries it.
fn wit_error(e: detect_sdk::RuleError) -> RuleError {
    use detect_sdk::RuleError as E;
    match e {
        E::InvalidJson(m) => RuleError::InvalidJson(m),
        E::NotAnObject(m) => RuleError::NotAnObject(m),
        E::InvalidField { field, message } => {
            RuleError::InvalidField(FieldError { field, message })
        }
        E::InvalidTime(m) => RuleError::InvalidTime(m),
        E::InvalidConfig(m) => RuleError::InvalidConfig(m),
        E::State(m) => RuleError::State(m),
    }
}
