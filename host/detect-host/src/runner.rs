//! A running rule: one live instance, and what happens when it fails.
//!
//! A trap (a panic in the rule, the deadline, the memory cap, fuel) leaves a component
//! instance unusable. The runner then drops the instance and its uncommitted writes,
//! builds a new one from the pre-instantiated component, configures it again and goes on
//! with the next record. Since the rule's state lives in the host, the new instance picks
//! up where the old one stopped; only the record that trapped is lost, and it is reported.
//! A rule that traps on record after record is stopped after
//! [`Limits::max_consecutive_traps`], so a broken rule cannot spin the harness.
//!
//! Records go in batches (one call, `process-batch`) with the same guarantees as one at a
//! time: a batch gets its records' deadline, fuel, output and write budget together, and
//! its writes are kept only if every record succeeded. If one fails (a rejection, a trap,
//! too much output), the batch's writes are dropped and its records run again one by one,
//! so each failure costs its own record and nothing else.
//!
//! Two failures are not the record's but the state's, and stop the harness instead: the
//! backing store failing under a call, and the rule reporting its state unreadable. Going
//! on would judge every later record against state that is not what it should be.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::{Engine, Store, Trap};

use detect_sdk::prefilter::Prefilter;

use crate::bindings::{self, CallContext, Rule, RuleError, RuleInfo, RulePre};
use crate::error::{Error, RecordFailure};
use crate::kv::{Call, DeadlineExceeded, KvHost, KvLimitExceeded, Phase};
use crate::limits::{Limits, MemoryLimitExceeded, StoreData};
use crate::output::{Alert, Catalog};
use crate::state::{StateStore, StoreError};

/// What one record produced.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The record is of a kind the rule examines.
    pub relevant: bool,
    /// Its alerts, as the harness writes them.
    pub alerts: Vec<Alert>,
}

/// A live instance and its typed exports.
struct Live {
    store: Store<StoreData>,
    rule: Rule,
}

/// A rule instance fed one record at a time.
pub struct RuleRunner {
    engine: Engine,
    pre: RulePre<StoreData>,
    limits: Limits,
    config: Option<String>,
    info: RuleInfo,
    catalog: Catalog,
    prefilter: Prefilter,
    live: Option<Live>,
    consecutive_traps: u32,
    traps: u64,
    rerun_batches: u64,
    /// Records to run one at a time before batching again, after a batch trapped.
    single_for: usize,
}

/// Between calls an instance is always live: one that traps is replaced at once.
const LIVE: &str = "an instance is live between calls";

impl RuleRunner {
    /// Instantiates the rule, has it describe itself, and configures it; its state is
    /// kept in `store` under the name it gives.
    pub(crate) fn start(
        engine: Engine,
        pre: RulePre<StoreData>,
        limits: Limits,
        store: Box<dyn StateStore>,
        config: Option<String>,
    ) -> Result<RuleRunner, Error> {
        let mut kv = KvHost::new(store, limits.kv.clone());
        // The epoch stops wasm code at the deadline; the host stops its own work there.
        kv.set_deadline(limits.deadline);
        let mut live = instantiate(&engine, &pre, &limits, kv, config.as_deref())?;
        arm(&mut live.store, &limits, 1);
        let info = live
            .rule
            .detect_rule_detector()
            .call_describe(&mut *Call::begin(&mut live.store, Phase::Setup))
            .map_err(Error::Instantiate)?;
        // The rule's state is kept under its name, so rules can share one state file.
        if info.name.is_empty() || info.name.contains(['/', '\0']) {
            return Err(Error::WrongWorld(format!(
                "its name {:?} cannot name its state: it must be non-empty, without `/`",
                info.name
            )));
        }
        let prefilter = Prefilter::new(&info.prefilter)
            .map_err(|e| Error::WrongWorld(format!("its prefilter is invalid: {e}")))?;
        live.store.data_mut().kv.set_rule(&info.name);
        Ok(RuleRunner {
            engine,
            pre,
            limits,
            config,
            catalog: Catalog::new(&info),
            info,
            prefilter,
            live: Some(live),
            consecutive_traps: 0,
            traps: 0,
            rerun_batches: 0,
            single_for: 0,
        })
    }

    /// The rule's own description, with the configuration in force.
    pub fn info(&self) -> &RuleInfo {
        &self.info
    }

    /// What every record the rule may find relevant contains, as the rule declares it.
    pub fn prefilter(&self) -> &Prefilter {
        &self.prefilter
    }

    /// Traps since the start.
    pub fn traps(&self) -> u64 {
        self.traps
    }

    /// Batches that had to run again one record at a time, since one of them failed.
    pub fn rerun_batches(&self) -> u64 {
        self.rerun_batches
    }

    /// Processes one record, with the wall clock plus [`Limits::max_clock_skew`] as the
    /// latest event time accepted. [`Error::Record`] is this record's problem only; any
    /// other error stops the run.
    pub fn process(&mut self, record: &str) -> Result<Outcome, Error> {
        flatten(self.call(record, self.not_after(), None))
    }

    /// Processes one record, accepting event times up to `not_after` (milliseconds since
    /// the Unix epoch), for hosts with a clock of their own.
    pub fn process_at(&mut self, record: &str, not_after: i64) -> Result<Outcome, Error> {
        flatten(self.call(record, not_after, None))
    }

    /// Processes one record with a fuel budget of its own, to cut the call short at a
    /// chosen point. The sandbox must count fuel ([`Limits::fuel`]).
    pub fn process_with_fuel(&mut self, record: &str, fuel: u64) -> Result<Outcome, Error> {
        flatten(self.call(record, self.not_after(), Some(fuel)))
    }

    /// Processes records in order, in one call into the sandbox when they all succeed;
    /// each result is what [`RuleRunner::process`] would have given for its record.
    pub fn process_batch(
        &mut self,
        records: &[String],
    ) -> Result<Vec<Result<Outcome, RecordFailure>>, Error> {
        let not_after = self.not_after();
        let max = self.limits.max_record_bytes;
        if records.len() > 1 && self.single_for == 0 && records.iter().all(|r| r.len() <= max) {
            if let Some(outcomes) = self.call_batch(records, not_after)? {
                return Ok(outcomes.into_iter().map(Ok).collect());
            }
            self.rerun_batches += 1;
        }
        self.single_for = self.single_for.saturating_sub(records.len());
        records
            .iter()
            .map(|record| self.call(record, not_after, None))
            .collect()
    }

    fn not_after(&self) -> i64 {
        wall_clock_millis().saturating_add(millis(self.limits.max_clock_skew))
    }

    /// One record in one call.
    fn call(
        &mut self,
        record: &str,
        not_after: i64,
        fuel: Option<u64>,
    ) -> Result<Result<Outcome, RecordFailure>, Error> {
        let limit = self.limits.max_record_bytes;
        if record.len() > limit {
            let bytes = record.len();
            return Ok(Err(RecordFailure::RecordTooLarge { bytes, limit }));
        }
        let live = self.live.as_mut().expect(LIVE);
        arm(&mut live.store, &self.limits, 1);
        set_fuel(&mut live.store, fuel)?;
        let mut call = Call::begin(&mut live.store, Phase::Records(1));
        let context = CallContext { not_after };
        let detector = live.rule.detect_rule_detector();
        let outcome = match detector.call_process_event(&mut *call, record, context) {
            Err(trap) => {
                drop(call);
                return self.trapped(trap).map(Err);
            }
            Ok(Err(RuleError::State(message))) => return Err(Error::RuleState(message)),
            // A rejection is the record's fault, not a trap: the rule works.
            Ok(Err(rejected)) => Err(RecordFailure::Rejected(rejected)),
            Ok(Ok(outcome)) => accept(&self.catalog, &self.limits, outcome),
        };
        if matches!(outcome, Ok(_) | Err(RecordFailure::Rejected(_))) {
            self.consecutive_traps = 0;
        }
        if outcome.is_ok() {
            call.commit()?;
        }
        Ok(outcome)
    }

    /// Several records in one call: their outcomes if every one succeeded, else `None`,
    /// with nothing written.
    fn call_batch(
        &mut self,
        records: &[String],
        not_after: i64,
    ) -> Result<Option<Vec<Outcome>>, Error> {
        let live = self.live.as_mut().expect(LIVE);
        arm(&mut live.store, &self.limits, records.len());
        let mut call = Call::begin(&mut live.store, Phase::Records(records.len()));
        let context = CallContext { not_after };
        let result = live
            .rule
            .detect_rule_detector()
            .call_process_batch(&mut *call, records, context);
        let results = match result {
            Ok(results) if results.len() == records.len() => results,
            Ok(_) => return Ok(None),
            Err(trap) => {
                drop(call);
                return self.batch_trapped(trap).map(|()| None);
            }
        };
        let mut outcomes = Vec::with_capacity(results.len());
        for result in results {
            match result.map(|outcome| accept(&self.catalog, &self.limits, outcome)) {
                Ok(Ok(outcome)) => outcomes.push(outcome),
                Err(RuleError::State(message)) => return Err(Error::RuleState(message)),
                Ok(Err(_)) | Err(_) => return Ok(None),
            }
        }
        call.commit()?;
        self.consecutive_traps = 0;
        Ok(Some(outcomes))
    }

    /// After a batch trapped: the store's own failure stops the harness; otherwise the
    /// instance is replaced, and the records run again one by one, where the one that
    /// traps is reported. A batch shares n records' budget, so a record that exhausts it
    /// costs up to n times a record's deadline: the next records go one at a time.
    fn batch_trapped(&mut self, trap: wasmtime::Error) -> Result<(), Error> {
        if trap.is::<StoreError>() {
            return Err(Error::Store(trap.downcast().expect("checked")));
        }
        if exhausted_budget(&trap) {
            self.single_for = SINGLE_AFTER_TRAP;
        }
        self.restart()
    }

    /// After a trap: the store's own failure stops the harness; otherwise the instance is
    /// replaced, and the record is reported, unless the rule keeps trapping.
    fn trapped(&mut self, trap: wasmtime::Error) -> Result<RecordFailure, Error> {
        if trap.is::<StoreError>() {
            return Err(Error::Store(trap.downcast().expect("checked")));
        }
        let reason = describe_trap(&trap, &self.limits);
        self.traps += 1;
        self.consecutive_traps += 1;
        if self.consecutive_traps >= self.limits.max_consecutive_traps {
            return Err(Error::TooManyTraps {
                count: self.consecutive_traps,
                last: reason,
            });
        }
        self.restart()?;
        Ok(RecordFailure::Trapped(reason))
    }

    /// The state store, holding every processed record's state: to add the host's own
    /// entries, and to commit them all.
    pub fn store(&mut self) -> &mut dyn StateStore {
        self.live.as_mut().expect(LIVE).store.data_mut().kv.store()
    }

    /// Makes the state of every record processed so far durable.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        self.store().commit()
    }

    /// Stops the rule and hands back its state store, as it is (uncommitted changes
    /// included).
    pub fn into_store(mut self) -> Box<dyn StateStore> {
        let live = self.live.take().expect(LIVE);
        live.store.into_data().kv.into_store()
    }

    /// Replaces the poisoned instance; the state (and its store) carries over.
    fn restart(&mut self) -> Result<(), Error> {
        let old = self.live.take().expect(LIVE);
        let mut kv = old.store.into_data().kv;
        kv.reset();
        self.live = Some(instantiate(
            &self.engine,
            &self.pre,
            &self.limits,
            kv,
            self.config.as_deref(),
        )?);
        Ok(())
    }
}

/// A new instance over `kv`, configured with `config`. Neither instantiation nor
/// `configure` may use the store: they run in calls of [`Phase::Setup`].
fn instantiate(
    engine: &Engine,
    pre: &RulePre<StoreData>,
    limits: &Limits,
    kv: KvHost,
    config: Option<&str>,
) -> Result<Live, Error> {
    let limiter = limits.limiter();
    let mut store = Store::new(engine, StoreData { kv, limiter });
    store.limiter(|data| &mut data.limiter);
    arm(&mut store, limits, 1);
    let rule = pre
        .instantiate(&mut *Call::begin(&mut store, Phase::Setup))
        .map_err(Error::Instantiate)?;
    if let Some(config) = config {
        arm(&mut store, limits, 1);
        let configured = rule
            .detect_rule_detector()
            .call_configure(&mut *Call::begin(&mut store, Phase::Setup), config);
        match configured.map_err(Error::Instantiate)? {
            Ok(()) => {}
            Err(RuleError::InvalidConfig(m)) => return Err(Error::Config(m)),
            Err(other) => return Err(Error::Config(format!("{other:?}"))),
        }
    }
    Ok(Live { store, rule })
}

/// Gives the next call a fuel budget of its own, if one is chosen.
fn set_fuel(store: &mut Store<StoreData>, fuel: Option<u64>) -> Result<(), Error> {
    match fuel {
        Some(fuel) => store
            .set_fuel(fuel)
            .map_err(|_| Error::Engine(wasmtime::format_err!("fuel is not counted"))),
        None => Ok(()),
    }
}

/// Records run one at a time after a batch ran out of its budget.
const SINGLE_AFTER_TRAP: usize = 1024;

/// Gives the next call, over `records` records, their deadline and fuel (its write
/// budget comes with its [`Call`]).
fn arm(store: &mut Store<StoreData>, limits: &Limits, records: usize) {
    let records = records.max(1) as u64;
    store.set_epoch_deadline(limits.deadline_ticks().saturating_mul(records));
    if let Some(fuel) = limits.fuel {
        store
            .set_fuel(fuel.saturating_mul(records))
            .expect("fuel is enabled with the limit");
    }
}

/// Whether a call trapped for running out of time, fuel or write budget (rather than
/// for a fault of its own, which costs no more in a batch than alone).
fn exhausted_budget(trap: &wasmtime::Error) -> bool {
    trap.is::<KvLimitExceeded>()
        || trap.is::<DeadlineExceeded>()
        || matches!(
            trap.downcast_ref::<Trap>(),
            Some(Trap::Interrupt | Trap::OutOfFuel)
        )
}

/// One record's result, its failure as [`Error::Record`].
fn flatten(result: Result<Result<Outcome, RecordFailure>, Error>) -> Result<Outcome, Error> {
    result?.map_err(Error::Record)
}

fn wall_clock_millis() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    millis(now)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Why a call trapped, for the record's dead letter: from the trap's type (a wasmtime
/// [`Trap`] code, a harness limit, the memory limiter's refusal), never from its text.
fn describe_trap(error: &wasmtime::Error, limits: &Limits) -> String {
    if let Some(limit) = error.downcast_ref::<KvLimitExceeded>() {
        return limit.to_string();
    }
    // The host's own check of the deadline: the same message as the epoch's.
    if let Some(deadline) = error.downcast_ref::<DeadlineExceeded>() {
        return deadline.to_string();
    }
    if let Some(memory) = error.downcast_ref::<MemoryLimitExceeded>() {
        return memory.to_string();
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!("the call ran past its deadline of {:?}", limits.deadline),
        Some(Trap::OutOfFuel) => format!(
            "the call used up its fuel ({})",
            limits.fuel.unwrap_or_default()
        ),
        Some(Trap::UnreachableCodeReached) => {
            "the rule panicked or aborted (unreachable)".to_string()
        }
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    }
}

/// A rule's outcome as the harness writes it, if it is within the limits and raises
/// only detections the rule declares.
fn accept(
    catalog: &Catalog,
    limits: &Limits,
    outcome: bindings::Outcome,
) -> Result<Outcome, RecordFailure> {
    let (bytes, limit) = (output_bytes(&outcome), limits.max_output_bytes);
    if bytes > limit {
        return Err(RecordFailure::OutputTooLarge { bytes, limit });
    }
    if let Some(alert) = outcome
        .alerts
        .iter()
        .find(|a| !catalog.declares(&a.rule_id))
    {
        return Err(RecordFailure::UndeclaredDetection(alert.rule_id.clone()));
    }
    Ok(Outcome {
        relevant: outcome.relevant,
        alerts: outcome
            .alerts
            .into_iter()
            .filter_map(|a| catalog.alert(a))
            .collect(),
    })
}

/// Bytes of text in the alerts: what the host will have to carry and print.
fn output_bytes(outcome: &bindings::Outcome) -> usize {
    outcome
        .alerts
        .iter()
        .map(|a| {
            a.rule_id.len()
                + a.title.len()
                + a.dedup_key.len()
                + a.context.len()
                + a.event_id.as_ref().map_or(0, String::len)
        })
        .sum()
}
