//! The limits a host sets on a rule, and what each rule instance's wasmtime store holds.

use std::time::Duration;

use wasmtime::StoreLimits;

use crate::kv::{KvHost, KvLimits};

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

    pub(crate) fn store_limits(&self) -> StoreLimits {
        wasmtime::StoreLimitsBuilder::new()
            .memory_size(self.max_memory_bytes)
            // A failed `memory.grow` traps instead of returning -1: an allocation bomb
            // ends the call instead of sending the rule down an error path it may not have.
            .trap_on_grow_failure(true)
            .build()
    }
}

/// What a wasmtime `Store` holds for one rule instance.
pub(crate) struct StoreData {
    pub kv: KvHost,
    pub limits: StoreLimits,
}

