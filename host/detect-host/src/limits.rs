//! The limits a host sets on a rule, and what each rule instance's wasmtime store holds.

use std::time::Duration;

use wasmtime::{ResourceLimiter, Store, StoreLimits};

use crate::kv::{KvHost, KvLimits, WithKv};

/// How often the engine's epoch advances: the resolution of call deadlines.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Hard limits on a rule.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Wall-clock time one call may run before it is interrupted.
    pub deadline: Duration,
    /// Fuel per call (about one unit per wasm instruction), for deterministic limits in
    /// tests; `None` leaves fuel metering off, which is faster.
    pub fuel: Option<u64>,
    /// Linear memory one instance may grow to.
    pub max_memory_bytes: usize,
    /// Bytes of alerts one call may return.
    pub max_output_bytes: usize,
    /// Largest record handed to the rule; larger ones are dead-lettered unread.
    pub max_record_bytes: usize,
    /// Traps in a row after which the harness gives up on the rule.
    pub max_consecutive_traps: u32,
    /// How far past the wall clock a record's event time may be; later ones are rejected.
    pub max_clock_skew: Duration,
    /// What the rule may do with its key-value state.
    pub kv: KvLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(300),
            fuel: None,
            max_memory_bytes: 64 * 1024 * 1024,
            max_output_bytes: 1024 * 1024,
            max_record_bytes: 1024 * 1024,
            max_consecutive_traps: 10,
            max_clock_skew: Duration::from_secs(3600),
            kv: KvLimits::default(),
        }
    }
}

impl Limits {
    /// The deadline in epoch ticks, rounded up, plus the tick already under way.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        self.deadline.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64 + 1
    }

    /// The limiter of one instance's memory and tables.
    pub(crate) fn limiter(&self) -> Limiter {
        Limiter {
            max_memory_bytes: self.max_memory_bytes,
            tables: wasmtime::StoreLimitsBuilder::new()
                .trap_on_grow_failure(true)
                .build(),
        }
    }
}

/// A `memory.grow` past the instance's memory limit, which traps the call (rather than
/// returning -1: an allocation bomb ends the call instead of sending the rule down an
/// error path it may not have). The runner tells it from other traps by its type.
#[derive(Debug, thiserror::Error)]
#[error(
    "the rule exceeded its memory limit of {} MiB (it asked for {desired} bytes)",
    .limit >> 20
)]
pub(crate) struct MemoryLimitExceeded {
    /// The memory size the rule asked for, in bytes.
    pub(crate) desired: usize,
    /// The limit it went past, in bytes: [`Limits::max_memory_bytes`], or the lower
    /// maximum the rule's own memory declares.
    pub(crate) limit: usize,
}

/// Limits one instance: its memory with a typed trap ([`MemoryLimitExceeded`]), its tables
/// and instance counts as wasmtime's [`StoreLimits`] do.
pub(crate) struct Limiter {
    max_memory_bytes: usize,
    tables: StoreLimits,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let limit = maximum.map_or(self.max_memory_bytes, |max| max.min(self.max_memory_bytes));
        if desired > limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded { desired, limit }));
        }
        Ok(true)
    }

    /// Within the limit, but the host could not provide the memory: a trap too.
    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("the host could not grow the rule's memory"))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.tables.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.tables.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.tables.instances()
    }

    fn tables(&self) -> usize {
        self.tables.tables()
    }

    fn memories(&self) -> usize {
        self.tables.memories()
    }
}

/// What a wasmtime `Store` holds for one rule instance.
pub(crate) struct StoreData {
    /// The rule's key-value state.
    pub kv: KvHost,
    /// Its memory and table limits.
    pub limiter: Limiter,
}

/// A call into an instance reaches its state through the instance's store.
impl WithKv for Store<StoreData> {
    fn kv(&mut self) -> &mut KvHost {
        &mut self.data_mut().kv
    }
}
