//! The built-in rule compiled into the harness, outside the sandbox: the same pipeline, to
//! measure what the sandbox costs (`run --unsandboxed`, `bench`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use detect_host::bindings::{self, FieldError, RuleError};
use detect_host::judge::Judge;
use detect_host::kv::{Call, KvHost, KvLimits, Phase};
use detect_host::output::{Catalog, Declared};
use detect_host::state::{StateStore, StoreError};
use detect_host::{Error, Outcome, RecordFailure};
use detect_sdk::ocsf::Product;
use detect_sdk::prefilter::Prefilter;
use detect_sdk::{Configured, Context, KeyValue, Rule};

/// The bucket the SDK's rules keep their state in.
const BUCKET: &str = "default";

/// A rule compiled into the harness: the same store, call transactions and write limits
/// as in the sandbox, but no sandbox. For comparison only: nothing bounds its CPU or
/// memory.
pub struct Native<R: Rule> {
    kv: KvHost,
    config: Configured<R>,
    catalog: Catalog,
    prefilter: Prefilter,
    max_clock_skew: Duration,
    traps: u64,
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
            Some(json) => Configured::from_json(json).map_err(Error::Config)?,
            None => Configured::new(R::Config::default()).map_err(Error::Config)?,
        };
        let prefilter = Prefilter::new(info.prefilter)
            .map_err(|e| Error::WrongWorld(format!("its prefilter is invalid: {e}")))?;
        let mut kv = KvHost::new(store, KvLimits::default());
        kv.set_rule(info.name);
        let declared = info.detections.iter().map(|d| Declared::from(*d));
        let catalog = Catalog::of(declared, &Product::of(&info));
        Ok(Native {
            kv,
            config,
            catalog,
            prefilter,
            max_clock_skew,
            traps: 0,
        })
    }

    /// One record in one call: its writes are committed if it succeeds. As in the
    /// sandbox, whatever the rule makes of a failure of the host under it: the store
    /// failing stops the run, and a limit traps the record (its writes dropped). The rule
    /// reporting its state unreadable stops the run.
    fn process(
        &mut self,
        record: &str,
        context: &Context,
    ) -> Result<Result<Outcome, RecordFailure>, Error> {
        let mut call = Call::begin(&mut self.kv, Phase::Records(1));
        let mut bucket = Bucket {
            call: &mut call,
            failure: None,
        };
        let result = R::process(record, &self.config, &mut bucket, context);
        if let Some(failure) = bucket.failure {
            return match failure.downcast::<StoreError>() {
                Ok(store) => Err(Error::Store(store)),
                Err(trap) => {
                    self.traps += 1;
                    Ok(Err(RecordFailure::Trapped(format!("{trap:#}"))))
                }
            };
        }
        match result {
            Ok(outcome) => {
                call.commit()?;
                // As the sandbox's alerts: checked by the host, which adds the catalog's.
                let alerts = outcome.alerts.into_iter().filter_map(|a| {
                    self.catalog.alert(bindings::Alert {
                        rule_id: a.detection.id.to_owned(),
                        title: a.title,
                        event_time: a.event_time,
                        dedup_key: a.dedup_key,
                        context: a.context.into_string(),
                        event_id: a.event_id,
                    })
                });
                Ok(Ok(Outcome {
                    relevant: outcome.relevant,
                    alerts: alerts.collect(),
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
        self.traps
    }
}

/// The rule's bucket, within the call under way, as a [`KeyValue`].
struct Bucket<'c, 'k> {
    call: &'c mut Call<'k, KvHost>,
    /// The first failure of the host (a limit, the store): in the sandbox it would trap
    /// the call, so it decides the record's fate, not the rule.
    failure: Option<wasmtime::Error>,
}

impl Bucket<'_, '_> {
    /// `result`, a failure kept and handed to the rule as text.
    fn host<T>(&mut self, result: wasmtime::Result<T>) -> Result<T, String> {
        result.map_err(|e| {
            let message = format!("{e:#}");
            self.failure.get_or_insert(e);
            message
        })
    }
}

impl KeyValue for Bucket<'_, '_> {
    fn get_many(&mut self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, String> {
        let values = self.call.read(BUCKET, keys);
        self.host(values)
    }

    fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        for (key, value) in entries {
            let written = self.call.write(BUCKET, key, Some(value));
            self.host(written)?;
        }
        Ok(())
    }

    fn delete_many(&mut self, keys: Vec<String>) -> Result<(), String> {
        for key in keys {
            let written = self.call.write(BUCKET, key, None);
            self.host(written)?;
        }
        Ok(())
    }

    fn list_keys(&mut self, cursor: Option<u64>) -> Result<(Vec<String>, Option<u64>), String> {
        let page = self.call.list(BUCKET, cursor);
        let page = self.host(page)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use detect_host::state::{Changes, MemoryStore};
    use ssm_rule::SsmSessions;

    fn sample() -> String {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/records/panther_sample.json"
        );
        std::fs::read_to_string(path).unwrap()
    }

    fn native(store: Box<dyn StateStore>, limits: KvLimits) -> Native<SsmSessions> {
        let mut native = Native::new(Box::new(MemoryStore::new()), None, Duration::ZERO).unwrap();
        native.kv = KvHost::new(store, limits);
        native.kv.set_rule(SsmSessions::info().name);
        native
    }

    fn context() -> Context {
        Context {
            not_after: i64::MAX,
        }
    }

    /// A store that fails every use.
    struct Broken;

    impl StateStore for Broken {
        fn get_many(&mut self, _: &str, _: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
            Err(StoreError("the disk is gone".into()))
        }
        fn keys_after(
            &mut self,
            _: &str,
            _: Option<&str>,
            _: usize,
        ) -> Result<Vec<String>, StoreError> {
            Err(StoreError("the disk is gone".into()))
        }
        fn has_table(&mut self, _: &str) -> Result<bool, StoreError> {
            Err(StoreError("the disk is gone".into()))
        }
        fn apply(&mut self, _: Changes) -> Result<(), StoreError> {
            Err(StoreError("the disk is gone".into()))
        }
        fn commit(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
        fn entries(&mut self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
            Ok(Vec::new())
        }
    }

    /// The store failing under the rule stops the run as the store's error, as in the
    /// sandbox, not as the rule's report of unreadable state.
    #[test]
    fn a_store_failure_is_the_stores_error() {
        let mut native = native(Box::new(Broken), KvLimits::default());
        match native.process(&sample(), &context()) {
            Err(Error::Store(e)) => assert_eq!(e.0, "the disk is gone"),
            other => panic!("expected the store's error, got {other:?}"),
        }
    }

    /// A limit costs the record, which traps with the limit's message, its writes dropped;
    /// the run goes on.
    #[test]
    fn a_limit_traps_the_record() {
        let limits = KvLimits {
            max_value_bytes: 8,
            ..KvLimits::default()
        };
        let mut native = native(Box::new(MemoryStore::new()), limits);
        match native.process(&sample(), &context()) {
            Ok(Err(RecordFailure::Trapped(m))) => {
                assert!(m.starts_with("harness limit: a value of "), "{m}")
            }
            other => panic!("expected a trap, got {other:?}"),
        }
        assert_eq!(native.traps(), 1);
        assert!(native.store().entries().unwrap().is_empty());
    }
}
