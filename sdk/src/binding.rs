//! What the pipeline bindings share: a rule hosted in its own module's memory, and the
//! macros that export bindings (empty for the families the SDK is built without).
//!
//! In a pipeline module the host keeps nothing for the rule: its state lives in the
//! module's memory, and the host may cut any call short with a trap, then go on calling
//! the same instance. [`Resident`] keeps each record whole or absent even so: a record's
//! writes collect apart from the committed state, which they reach only once the record
//! succeeded, and a call that finds the previous one unfinished discards what it left.

use std::any::Any;
use std::cell::UnsafeCell;

use crate::kv::{Changes, MemoryKv, Overlay};
use crate::{Context, Outcome, Rule, RuleError};

/// Where a record's committed writes also go: a journal on disk, say.
pub(crate) trait Durable {
    /// Records one record's writes, before they are applied in memory.
    fn record(&mut self, changes: &Changes, state: &MemoryKv) -> std::io::Result<()>;
}

/// A rule, its configuration and its state, resident in the module.
pub(crate) struct Resident<R: Rule> {
    pub config: R::Config,
    pub kv: MemoryKv,
    pending: Changes,
    /// A call is under way; seen set at the start of a call, it means the last one trapped.
    busy: bool,
    /// The last call trapped while applying its writes: memory may hold part of them.
    applying: bool,
}

/// Whether the state in memory can be trusted after the previous call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recovered {
    /// Yes (if that call trapped, its writes were discarded whole).
    Intact,
    /// A trap cut the previous call short while its writes were applied: reload the state
    /// from where it is kept, if it is kept anywhere.
    Torn,
}

impl<R: Rule> Resident<R> {
    pub fn new(config: R::Config, kv: MemoryKv) -> Self {
        Resident {
            config,
            kv,
            pending: Changes::new(),
            busy: false,
            applying: false,
        }
    }

    /// To be called first in every call: clears what a trapped call left behind.
    pub fn recover(&mut self) -> Recovered {
        let torn = self.busy && self.applying;
        self.pending.clear();
        self.busy = false;
        self.applying = false;
        if torn {
            Recovered::Torn
        } else {
            Recovered::Intact
        }
    }

    /// Processes one record; its writes reach the state (and `durable`) only if it succeeds.
    pub fn process(
        &mut self,
        record: &str,
        context: &Context,
        durable: Option<&mut dyn Durable>,
    ) -> Result<Outcome, ProcessError> {
        self.busy = true;
        let mut overlay = Overlay {
            base: &mut self.kv,
            pending: &mut self.pending,
        };
        let outcome = R::process(record, &self.config, &mut overlay, context);
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                self.pending.clear();
                self.busy = false;
                return Err(ProcessError::Rule(e));
            }
        };
        let durable = durable.map(|d| d.record(&self.pending, &self.kv));
        self.applying = true;
        self.kv.apply(std::mem::take(&mut self.pending));
        self.applying = false;
        self.busy = false;
        match durable {
            Some(Err(e)) => Err(ProcessError::Durable(outcome, e)),
            _ => Ok(outcome),
        }
    }
}

/// Why a resident call did not simply succeed.
#[derive(Debug)]
pub(crate) enum ProcessError {
    /// The rule rejected the record; nothing changed.
    Rule(RuleError),
    /// The record was processed and applied in memory, but could not be made durable.
    Durable(Outcome, std::io::Error),
}

/// The one value a module-wide binding keeps between calls.
///
/// It holds no Rust borrow across calls: a host that traps a call leaves no borrow flag
/// set behind, as a `RefCell` would. Sound because a WebAssembly module runs one call at a
/// time on one thread, and the host never re-enters it.
pub(crate) struct Slot(UnsafeCell<Option<Box<dyn Any>>>);

// SAFETY: see the type's documentation: there is one thread and no re-entry.
unsafe impl Sync for Slot {}

impl Slot {
    pub const fn new() -> Self {
        Slot(UnsafeCell::new(None))
    }

    /// The value, made by `init` on first use.
    ///
    /// # Safety
    /// No other reference from `get` may be alive: call it once per exported call.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get<T: 'static>(&self, init: impl FnOnce() -> T) -> &mut T {
        // SAFETY: the caller guarantees exclusive access.
        let slot = unsafe { &mut *self.0.get() };
        if slot.as_ref().is_none_or(|v| !v.is::<T>()) {
            *slot = Some(Box::new(init()));
        }
        slot.as_mut()
            .and_then(|v| v.downcast_mut())
            .expect("set above")
    }
}

/// The wall clock (WASI's) plus `skew`, in milliseconds: the latest event time a pipeline
/// binding accepts. The rule itself never reads a clock.
pub(crate) fn not_after(skew: std::time::Duration) -> crate::Millis {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from((now + skew).as_millis()).unwrap_or(i64::MAX)
}

#[cfg(all(feature = "component", target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_component {
    ($rule:ty) => {
        const _: () = {
            type DetectRuleComponent = $crate::component::Component<$rule>;
            $crate::component::bindings::__export_rule_world!(
                DetectRuleComponent with_types_in $crate::component::bindings
            );
        };
    };
}

#[cfg(not(all(feature = "component", target_arch = "wasm32")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_component {
    ($rule:ty) => {};
}

#[cfg(all(feature = "fluent-bit", target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_fluent_bit {
    ($rule:ty, $alerts:ident, $enrich:ident) => {
        /// Fluent Bit filter: each record's alerts, as `{"alerts": [...]}`; records that
        /// raise none are dropped.
        #[unsafe(no_mangle)]
        pub extern "C" fn $alerts(
            tag: *const u8,
            tag_len: u32,
            sec: u32,
            nsec: u32,
            record: *const u8,
            record_len: u32,
        ) -> *const u8 {
            let _ = (tag, tag_len, sec, nsec);
            $crate::fluent_bit::filter::<$rule>(
                $crate::fluent_bit::Mode::Alerts,
                record,
                record_len,
            )
        }

        /// Fluent Bit filter: every record, with an `alerts` array added to those that
        /// raise alerts.
        #[unsafe(no_mangle)]
        pub extern "C" fn $enrich(
            tag: *const u8,
            tag_len: u32,
            sec: u32,
            nsec: u32,
            record: *const u8,
            record_len: u32,
        ) -> *const u8 {
            let _ = (tag, tag_len, sec, nsec);
            $crate::fluent_bit::filter::<$rule>(
                $crate::fluent_bit::Mode::Enrich,
                record,
                record_len,
            )
        }
    };
}

#[cfg(not(all(feature = "fluent-bit", target_arch = "wasm32")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_fluent_bit {
    ($rule:ty, $alerts:ident, $enrich:ident) => {};
}

#[cfg(all(feature = "fluvio", target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_fluvio {
    ($rule:ty) => {
        type DetectSmartModuleRule = $rule;

        /// The Fluvio SmartModule. The rule crate depends on `fluvio-smartmodule` itself:
        /// its macros name it.
        mod detect_smartmodule {
            use fluvio_smartmodule::dataplane::smartmodule::SmartModuleExtraParams;
            use fluvio_smartmodule::{RecordData, Result, SmartModuleRecord, smartmodule};

            use super::DetectSmartModuleRule as Rule;

            #[smartmodule(init)]
            fn init(params: SmartModuleExtraParams) -> Result<()> {
                $crate::fluvio::init::<Rule>(params)
            }

            #[smartmodule(array_map)]
            fn array_map(
                record: &SmartModuleRecord,
            ) -> Result<Vec<(Option<RecordData>, RecordData)>> {
                $crate::fluvio::array_map::<Rule>(record)
            }

            #[smartmodule(look_back)]
            fn look_back(record: &SmartModuleRecord) -> Result<()> {
                $crate::fluvio::look_back::<Rule>(record)
            }
        }
    };
}

#[cfg(not(all(feature = "fluvio", target_arch = "wasm32")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_fluvio {
    ($rule:ty) => {};
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KeyValue;
    use crate::{RuleConfig, RuleInfo};

    /// Counts records in the store; rejects `bad`.
    struct Counter;

    #[derive(Default)]
    struct NoConfig;

    impl RuleConfig for NoConfig {
        fn from_json(_: &str) -> Result<Self, String> {
            Ok(NoConfig)
        }
        fn to_json(&self) -> String {
            "{}".into()
        }
        fn dedup_period_seconds(&self, _: &str) -> u64 {
            0
        }
    }

    impl Rule for Counter {
        type Config = NoConfig;
        fn info() -> RuleInfo {
            RuleInfo {
                name: "counter",
                version: "0",
                description: "counts",
                detections: &[],
                prefilter: &[],
            }
        }
        fn process(
            record: &str,
            _: &NoConfig,
            kv: &mut impl KeyValue,
            _: &Context,
        ) -> Result<Outcome, RuleError> {
            let n = kv.get_many(&["n".into()]).unwrap()[0]
                .as_ref()
                .map_or(0, |v| v.len());
            kv.set_many(vec![("n".into(), vec![0; n + 1])]).unwrap();
            if record == "bad" {
                return Err(RuleError::InvalidJson("bad".into()));
            }
            Ok(Outcome::default())
        }
    }

    const CONTEXT: Context = Context { not_after: 0 };

    #[test]
    fn a_rejected_record_leaves_nothing_and_a_trap_is_recovered() {
        let mut resident = Resident::<Counter>::new(NoConfig, MemoryKv::new());
        resident.process("ok", &CONTEXT, None).unwrap();
        assert!(resident.process("bad", &CONTEXT, None).is_err());
        assert_eq!(resident.kv.entries["n"].len(), 1);
        // A call cut short while the rule ran: its writes are discarded whole.
        resident.busy = true;
        resident.pending.insert("n".into(), None);
        assert_eq!(resident.recover(), Recovered::Intact);
        resident.process("ok", &CONTEXT, None).unwrap();
        assert_eq!(resident.kv.entries["n"].len(), 2);
        // Cut short while applying: the state must come back from where it is kept.
        resident.busy = true;
        resident.applying = true;
        assert_eq!(resident.recover(), Recovered::Torn);
    }

    #[test]
    fn a_slot_keeps_one_value_across_calls() {
        static SLOT: Slot = Slot::new();
        // SAFETY: one reference at a time.
        unsafe { *SLOT.get(|| 1u32) += 1 };
        assert_eq!(unsafe { *SLOT.get(|| 1u32) }, 2);
    }
}
