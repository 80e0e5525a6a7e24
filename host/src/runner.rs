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
//! Two failures are not the record's but the state's, and stop the harness instead: the
//! backing store failing under a call, and the rule reporting its state unreadable. Going
//! on would judge every later record against state that is not what it should be.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::{Engine, Store, Trap};

use crate::bindings::{CallContext, Outcome, Rule, RuleError, RuleInfo, RulePre};
use crate::error::HarnessError;
use crate::kv::{KvHost, KvLimitExceeded};
use crate::sandbox::{Limits, StoreData};
use crate::state::{StateStore, StoreError};

/// Why one record produced no outcome. The harness goes on with the next record.
#[derive(Debug, Clone)]
pub enum RecordFailure {
    /// The rule rejected the record (bad input); it wrote no state.
    Rejected(RuleError),
    /// The rule trapped on the record; the instance was replaced.
    Trapped(String),
    /// The rule returned more than [`Limits::max_output_bytes`]; its writes were dropped.
    OutputTooLarge { bytes: usize, limit: usize },
    /// The record is larger than [`Limits::max_record_bytes`] and was not handed over.
    RecordTooLarge { bytes: usize, limit: usize },
}

impl RecordFailure {
    /// A stable, short name for dead-letter lines and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            RecordFailure::Rejected(e) => match e {
                RuleError::InvalidJson(_) => "invalid-json",
                RuleError::NotAnObject(_) => "not-an-object",
                RuleError::InvalidField(_) => "invalid-field",
                RuleError::InvalidTime(_) => "invalid-time",
                RuleError::InvalidConfig(_) => "invalid-config",
                RuleError::State(_) => "state",
            },
            RecordFailure::Trapped(_) => "trap",
            RecordFailure::OutputTooLarge { .. } => "output-too-large",
            RecordFailure::RecordTooLarge { .. } => "record-too-large",
        }
    }

    pub fn message(&self) -> String {
        match self {
            RecordFailure::Rejected(e) => match e {
                RuleError::InvalidJson(m) => format!("not JSON: {m}"),
                RuleError::NotAnObject(m) => format!("not a JSON object: the record is {m}"),
                RuleError::InvalidField(f) => format!("field `{}`: {}", f.field, f.message),
                RuleError::InvalidTime(m) => format!("eventTime: {m}"),
                RuleError::InvalidConfig(m) => format!("configuration: {m}"),
                RuleError::State(m) => format!("key-value store: {m}"),
            },
            RecordFailure::Trapped(reason) => format!("the rule trapped: {reason}"),
            RecordFailure::OutputTooLarge { bytes, limit } => {
                format!("the rule returned {bytes} bytes of alerts; the limit is {limit}")
            }
            RecordFailure::RecordTooLarge { bytes, limit } => {
                format!("the record has {bytes} bytes; the limit is {limit}")
            }
        }
    }
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
    live: Option<Live>,
    consecutive_traps: u32,
    traps: u64,
}

impl RuleRunner {
    pub(crate) fn start(
        engine: Engine,
        pre: RulePre<StoreData>,
        limits: Limits,
        store: Box<dyn StateStore>,
        config: Option<String>,
    ) -> Result<RuleRunner, HarnessError> {
        let kv = KvHost::new(store, "", limits.kv.clone());
        let mut live = instantiate(&engine, &pre, &limits, kv, config.as_deref())?;
        arm(&mut live.store, &limits);
        let info = live
            .rule
            .detect_rule_detector()
            .call_describe(&mut live.store)
            .map_err(HarnessError::Instantiate)?;
        // The rule's state is kept under its name, so rules can share one state file.
        if info.name.is_empty() || info.name.contains(['/', '\0']) {
            return Err(HarnessError::WrongWorld(format!(
                "its name {:?} cannot name its state: it must be non-empty, without `/`",
                info.name
            )));
        }
        live.store.data_mut().kv.set_rule(&info.name);
        Ok(RuleRunner {
            engine,
            pre,
            limits,
            config,
            info,
            live: Some(live),
            consecutive_traps: 0,
            traps: 0,
        })
    }

    /// The rule's own description, with the configuration in force.
    pub fn info(&self) -> &RuleInfo {
        &self.info
    }

    /// Traps since the start.
    pub fn traps(&self) -> u64 {
        self.traps
    }

    /// Processes one record, with the wall clock plus [`Limits::max_clock_skew`] as the
    /// latest event time accepted. The outer error stops the harness; the inner one is this
    /// record's problem only.
    pub fn process(
        &mut self,
        record: &str,
    ) -> Result<Result<Outcome, RecordFailure>, HarnessError> {
        let not_after = wall_clock_millis().saturating_add(millis(self.limits.max_clock_skew));
        self.process_at(record, not_after)
    }

    /// Processes one record, accepting event times up to `not_after` (milliseconds since
    /// the Unix epoch), for hosts with a clock of their own.
    pub fn process_at(
        &mut self,
        record: &str,
        not_after: i64,
    ) -> Result<Result<Outcome, RecordFailure>, HarnessError> {
        self.call(record, not_after, None)
    }

    /// Processes one record with a fuel budget of its own, to cut the call short at a
    /// chosen point. The sandbox must count fuel ([`Limits::fuel`]).
    pub fn process_with_fuel(
        &mut self,
        record: &str,
        fuel: u64,
    ) -> Result<Result<Outcome, RecordFailure>, HarnessError> {
        let not_after = wall_clock_millis().saturating_add(millis(self.limits.max_clock_skew));
        self.call(record, not_after, Some(fuel))
    }

    fn call(
        &mut self,
        record: &str,
        not_after: i64,
        fuel: Option<u64>,
    ) -> Result<Result<Outcome, RecordFailure>, HarnessError> {
        let limit = self.limits.max_record_bytes;
        if record.len() > limit {
            return Ok(Err(RecordFailure::RecordTooLarge {
                bytes: record.len(),
                limit,
            }));
        }
        let live = self
            .live
            .as_mut()
            .expect("an instance is live between calls");
        arm(&mut live.store, &self.limits);
        if let Some(fuel) = fuel {
            live.store
                .set_fuel(fuel)
                .map_err(|_| HarnessError::Engine(wasmtime::format_err!("fuel is not counted")))?;
        }
        let context = CallContext { not_after };
        let result =
            live.rule
                .detect_rule_detector()
                .call_process_event(&mut live.store, record, context);
        let kv = &mut live.store.data_mut().kv;
        match result {
            Ok(Ok(outcome)) => {
                let (bytes, limit) = (output_bytes(&outcome), self.limits.max_output_bytes);
                if bytes > limit {
                    kv.discard();
                    return Ok(Err(RecordFailure::OutputTooLarge { bytes, limit }));
                }
                kv.commit()?;
                self.consecutive_traps = 0;
                Ok(Ok(outcome))
            }
            Ok(Err(RuleError::State(message))) => {
                kv.discard();
                Err(HarnessError::RuleState(message))
            }
            Ok(Err(rejected)) => {
                kv.discard();
                self.consecutive_traps = 0;
                Ok(Err(RecordFailure::Rejected(rejected)))
            }
            Err(trap) if trap.is::<StoreError>() => {
                kv.discard();
                Err(HarnessError::Store(trap.downcast().expect("checked")))
            }
            Err(trap) => {
                let reason = describe_trap(&trap, &self.limits);
                self.traps += 1;
                self.consecutive_traps += 1;
                if self.consecutive_traps >= self.limits.max_consecutive_traps {
                    return Err(HarnessError::TooManyTraps {
                        count: self.consecutive_traps,
                        last: reason,
                    });
                }
                self.restart()?;
                Ok(Err(RecordFailure::Trapped(reason)))
            }
        }
    }

    /// The state store, holding every processed record's state: to add the host's own
    /// entries, and to commit them all.
    pub fn store(&mut self) -> &mut dyn StateStore {
        self.live
            .as_mut()
            .expect("an instance is live between calls")
            .store
            .data_mut()
            .kv
            .store()
    }

    /// Makes the state of every record processed so far durable.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        self.store().commit()
    }

    /// Stops the rule and hands back its state store, as it is (uncommitted changes
    /// included).
    pub fn into_store(mut self) -> Box<dyn StateStore> {
        let live = self.live.take().expect("an instance is live between calls");
        live.store.into_data().kv.into_store()
    }

    /// Replaces the poisoned instance; the state (and its store) carries over.
    fn restart(&mut self) -> Result<(), HarnessError> {
        let old = self.live.take().expect("an instance is live between calls");
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

fn instantiate(
    engine: &Engine,
    pre: &RulePre<StoreData>,
    limits: &Limits,
    kv: KvHost,
    config: Option<&str>,
) -> Result<Live, HarnessError> {
    let mut store = Store::new(
        engine,
        StoreData {
            kv,
            limits: limits.store_limits(),
        },
    );
    store.limiter(|data| &mut data.limits);
    arm(&mut store, limits);
    let rule = pre
        .instantiate(&mut store)
        .map_err(HarnessError::Instantiate)?;
    if let Some(config) = config {
        arm(&mut store, limits);
        let configured = rule
            .detect_rule_detector()
            .call_configure(&mut store, config);
        match configured.map_err(HarnessError::Instantiate)? {
            Ok(()) => {}
            Err(RuleError::InvalidConfig(m)) => return Err(HarnessError::Config(m)),
            Err(other) => return Err(HarnessError::Config(format!("{other:?}"))),
        }
    }
    Ok(Live { store, rule })
}

/// Gives the next call its full deadline and fuel.
fn arm(store: &mut Store<StoreData>, limits: &Limits) {
    store.set_epoch_deadline(limits.deadline_ticks());
    if let Some(fuel) = limits.fuel {
        store
            .set_fuel(fuel)
            .expect("fuel is enabled with the limit");
    }
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

fn describe_trap(error: &wasmtime::Error, limits: &Limits) -> String {
    if let Some(limit) = error.downcast_ref::<KvLimitExceeded>() {
        return limit.to_string();
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
        None if format!("{error:#}").contains("memory") => {
            format!(
                "the rule exceeded its memory limit of {} MiB ({error:#})",
                limits.max_memory_bytes >> 20
            )
        }
        None => format!("{error:#}"),
    }
}

/// Bytes of text in the alerts: what the host will have to carry and print.
fn output_bytes(outcome: &Outcome) -> usize {
    outcome
        .alerts
        .iter()
        .map(|a| {
            let mitre: usize = a
                .mitre
                .iter()
                .map(|m| {
                    m.tactic_id.len() + m.tactic.len() + m.technique_id.len() + m.technique.len()
                })
                .sum();
            a.rule_id.len()
                + a.name.len()
                + a.title.len()
                + a.dedup_key.len()
                + a.runbook.len()
                + a.reference.len()
                + a.context.len()
                + a.event_id.as_ref().map_or(0, String::len)
                + mitre
        })
        .sum()
}
