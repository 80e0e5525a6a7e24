//! Write a detection rule once, in plain Rust; run it sandboxed in the pipelines people use.
//!
//! A rule is a type implementing [`Rule`]: data about its detections, a configuration,
//! and one pure function from (record, state) to alerts, with all state in a
//! [`KeyValue`] store that the host keeps. One line exports it to every host family this
//! SDK binds, chosen by the rule crate's cargo features:
//!
//! ```ignore
//! detect_sdk::export_rule!(MyRule, fluent_bit: my_alerts, my_enrich);
//! ```
//!
//! * `component`: a WebAssembly component of the `detect:rule` world (wasmtime,
//!   `rule-harness`, wasmCloud, jco), its state in the host's `wasi:keyvalue`;
//! * `fluent-bit`: a `filter_wasm` filter (a WASI preview 1 module) with two functions, one
//!   that turns records into alerts and one that enriches them, its state in memory and,
//!   if the operator grants a `rule-state/` directory, on disk;
//! * `fluvio`: a SmartModule (`init`, `array_map`, `look_back`), its state in memory,
//!   rebuilt after a restart by looking back over the topic.
//!
//! Shared pieces: the detection [`catalog`], [`alert`]s and their dedup gate, [`time`],
//! event-time bounds ([`timeline`]), state history and its sweep ([`history`]), config
//! helpers ([`config`]), and CloudTrail helpers ([`cloudtrail`]).

#![deny(missing_docs)]

pub mod alert;
pub mod catalog;
pub mod cloudtrail;
pub mod config;
pub mod error;
pub mod history;
pub mod kv;
pub mod prefilter;
pub mod time;
pub mod timeline;

#[cfg(feature = "component")]
pub mod component;
#[cfg(any(test, feature = "fluent-bit"))]
pub mod fluent_bit;
#[cfg(feature = "fluvio")]
pub mod fluvio;
#[cfg(feature = "testkit")]
pub mod testkit;

mod binding;

/// For the SDK's own tests.
#[cfg(test)]
mod test_rules {
    use crate::{RuleConfig, RuleInfo};

    /// What a test rule says of itself.
    pub fn info(name: &'static str, prefilter: &'static [&'static [&'static str]]) -> RuleInfo {
        RuleInfo {
            name,
            version: "0",
            description: "a rule for a test",
            detections: &[],
            prefilter,
        }
    }

    /// The configuration of a test rule that has none.
    #[derive(Default)]
    pub struct NoConfig;

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
}

pub use alert::{Alert, AlertLine};
pub use catalog::{Detection, Mitre, Severity};
pub use error::RuleError;
pub use kv::{KeyValue, MemoryKv};
pub use time::Millis;

/// A detection rule.
///
/// A rule keeps nothing in memory between records but its configuration: everything it
/// learns goes to the [`KeyValue`] store, which the host owns. That is what lets a host
/// replace a crashed instance, replay history through it, or apply a record's writes
/// only when it succeeded.
pub trait Rule: 'static {
    /// The rule's configuration: JSON, missing fields taking their defaults.
    type Config: RuleConfig;

    /// What the rule is.
    fn info() -> RuleInfo;

    /// Processes one record (JSON text). A returned error must leave the store unchanged.
    fn process(
        record: &str,
        config: &Self::Config,
        kv: &mut impl KeyValue,
        context: &Context,
    ) -> Result<Outcome, RuleError>;
}

/// A rule's configuration.
pub trait RuleConfig: Default + Sized + 'static {
    /// Parses and checks a configuration; an unknown field is an error.
    fn from_json(text: &str) -> Result<Self, String>;

    /// The configuration in force, as JSON.
    fn to_json(&self) -> String;

    /// The dedup period of one of the rule's detections, in seconds.
    fn dedup_period_seconds(&self, detection_id: &str) -> u64;
}

/// What a rule is, for people and for tooling.
#[derive(Clone, Debug)]
pub struct RuleInfo {
    /// Short name; hosts keep the rule's state under it.
    pub name: &'static str,
    /// The rule's version.
    pub version: &'static str,
    /// One sentence on what the rule detects.
    pub description: &'static str,
    /// Every detection the rule can raise.
    pub detections: &'static [&'static Detection],
    /// Strings every relevant record contains, in groups: a record can be relevant only
    /// if it contains one string of each group ([`prefilter`] says how they are matched).
    /// Hosts skip other records unparsed. Empty: every record is handed to the rule.
    pub prefilter: &'static [&'static [&'static str]],
}

/// What the host tells a rule with each record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// The latest event time the host accepts: its clock plus the skew it allows.
    pub not_after: Millis,
}

/// What one record produced.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// The record is of a kind the rule examines.
    pub relevant: bool,
    /// The alerts it raises.
    pub alerts: Vec<Alert>,
}

/// Exports a [`Rule`] to every host family enabled by the SDK's features.
///
/// `fluent_bit:` names the filter's two functions (what operators set as
/// `Function_Name`): one that turns each record into its alerts, one that passes each
/// record on with its alerts added.
#[macro_export]
macro_rules! export_rule {
    ($rule:ty, fluent_bit: $alerts:ident, $enrich:ident $(,)?) => {
        $crate::__export_component!($rule);
        $crate::__export_fluent_bit!($rule, $alerts, $enrich);
        $crate::__export_fluvio!($rule);
    };
}
