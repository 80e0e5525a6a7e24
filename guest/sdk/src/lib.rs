//! Write a detection rule once, in plain Rust; run it sandboxed in the pipelines people use.
//!
//! A rule is a type implementing [`Rule`]: data about its detections, a configuration,
//! and one pure function from (record, state) to alerts, with all state in a
//! [`KeyValue`] store that the host keeps. The SDK does the rest for every rule alike:
//! alerts dated after what the host accepts fail their record, and each alert passes the
//! dedup gate of its detection ([`dedup`]). One line exports the rule to every host
//! family this SDK binds, chosen by the rule crate's cargo features:
//!
//! ```ignore
//! detect_sdk::export_rule!(MyRule);
//! ```
//!
//! * `component`: a WebAssembly component of the `detect:rule` world (wasmtime,
//!   `rule-harness`, wasmCloud, jco), its state in the host's `wasi:keyvalue`;
//! * `fluent-bit`: a `filter_wasm` filter (a WASI preview 1 module that imports only file
//!   calls) with two functions, one that turns records into alerts and one that enriches
//!   them, its state in memory and, if the operator grants a `rule-state/` directory, on
//!   disk;
//! * `fluvio`: a SmartModule (`init`, `array_map`, `look_back`) that imports only the
//!   engine's `copy_records`, its state in memory, rebuilt after a restart by looking back
//!   over the topic.
//!
//! Shared pieces: the detection [`catalog`], [`alert`]s, [`time`], event-time bounds
//! ([`timeline`]), state history and its sweep ([`history`]), configurations
//! ([`config`]), and CloudTrail helpers ([`cloudtrail`]).

#![deny(missing_docs)]

pub mod alert;
pub mod bytes;
pub mod catalog;
pub mod cloudtrail;
pub mod codec;
pub mod config;
pub mod dedup;
pub mod entity;
pub mod error;
pub mod history;
pub mod json;
pub mod kv;
pub mod ocsf;
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
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct NoConfig {}

    impl RuleConfig for NoConfig {}
}

/// What most rules use, in one import: `use detect_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::alert::context;
    pub use crate::catalog::{Detection, Mitre, Severity};
    pub use crate::cloudtrail::Record;
    pub use crate::config::Period;
    pub use crate::time::parse_event_time;
    pub use crate::{Alert, Context, KeyValue, Outcome, Rule, RuleConfig, RuleError, RuleInfo};

    /// A result whose error is, unless said otherwise, a [`RuleError`].
    pub type Result<T, E = RuleError> = std::result::Result<T, E>;
}

pub use alert::{Alert, AlertLine};
pub use catalog::{Detection, Mitre, Severity};
pub use config::Configured;
pub use error::RuleError;
pub use kv::{KeyValue, MemoryKv};
pub use time::Millis;

/// A detection rule.
///
/// A rule keeps nothing in memory between records but its configuration: everything it
/// learns goes to the [`KeyValue`] store, which the host owns. That is what lets a host
/// replace a crashed instance, replay history through it, or apply a record's writes
/// only when it succeeded.
pub trait Rule: Sized + 'static {
    /// The rule's configuration: JSON, missing fields taking their defaults.
    type Config: RuleConfig;

    /// What the rule is.
    fn info() -> RuleInfo;

    /// What the rule makes of one record (JSON text): whether it examines it, and the
    /// alerts it raises, before the SDK's checks (see [`Rule::process`]). No dedup state
    /// to keep, and no check of `context.not_after` for the alerts' event times: the SDK
    /// does both.
    fn detect(
        record: &str,
        config: &Self::Config,
        kv: &mut impl KeyValue,
        context: &Context,
    ) -> Result<Outcome, RuleError>;

    /// One record as every host processes it: [`Rule::detect`], then the SDK's checks on
    /// the alerts: one dated after `context.not_after` fails the record, and each passes
    /// its detection's dedup gate ([`dedup`]). All or nothing: the record's writes reach
    /// `kv` only if it succeeds. Provided; a rule implements `detect`.
    fn process(
        record: &str,
        config: &Configured<Self>,
        kv: &mut impl KeyValue,
        context: &Context,
    ) -> Result<Outcome, RuleError> {
        let mut pending = kv::Changes::new();
        let mut overlay = kv::Overlay {
            base: kv,
            pending: &mut pending,
        };
        let mut outcome = Self::detect(record, config.config(), &mut overlay, context)?;
        for alert in &outcome.alerts {
            timeline::check_not_after(alert.event_time, context.not_after)
                .map_err(RuleError::InvalidTime)?;
        }
        let entities = &mut outcome.entities;
        outcome.alerts = dedup::gate::<Self>(outcome.alerts, entities, config, &mut overlay)?;
        if !entities.is_empty() {
            let writes = entities.drain(..).map(|(key, e)| (key, e.encode()));
            overlay
                .set_many(writes.collect())
                .map_err(RuleError::State)?;
        }
        overlay.flush().map_err(RuleError::State)?;
        Ok(outcome)
    }
}

/// A rule's configuration: a `serde` struct with `#[serde(deny_unknown_fields, default)]`
/// (a typo must not silently leave a default in force) and a [`Default`] of the values
/// documented. The JSON side is provided; a rule adds [`RuleConfig::check`] for what
/// serde cannot say. Each detection's dedup period is one of its fields
/// ([`Detection::dedup_period`]).
pub trait RuleConfig: serde::Serialize + serde::de::DeserializeOwned + Default + 'static {
    /// Checks what the types do not: ranges, and fields that must agree.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// Parses and checks a configuration; an unknown field is an error.
    fn from_json(text: &str) -> Result<Self, String> {
        // serde would also read a JSON array as a struct, field by field.
        if !text.trim_start().starts_with('{') {
            return Err("the configuration must be a JSON object".into());
        }
        let config: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    /// The configuration in force, as JSON.
    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a configuration serializes")
    }
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
    /// The entities this record writes, by key: the SDK adds the dedup marks of the
    /// alerts kept in them ([`Alert::dedup_in`]) and writes each once, after the rule's
    /// own writes, so that an entity is read and written once per record.
    pub entities: Vec<(String, entity::Entity)>,
}

impl Outcome {
    /// A record the rule examined, and the alerts it raises (perhaps none).
    pub fn relevant(alerts: Vec<Alert>) -> Self {
        Outcome {
            relevant: true,
            alerts,
            entities: Vec::new(),
        }
    }

    /// The outcome, with `entity` to write under `key` ([`Outcome::entities`]).
    pub fn writing(mut self, key: String, entity: entity::Entity) -> Self {
        self.entities.push((key, entity));
        self
    }
}

/// Exports a [`Rule`] to every host family enabled by the SDK's features.
///
/// The Fluent Bit filter has two functions (what operators set as `Function_Name`): one
/// that turns each record into its alerts, one that passes each record on with its
/// alerts added. They are named after the rule: its library's name (`[lib] name` in the
/// rule's `Cargo.toml`, the rule's directory name by convention; else the package's,
/// `-` written `_`): `<name>_alerts` and `<name>_enrich`. `fluent_bit:` names them
/// instead:
///
/// ```ignore
/// detect_sdk::export_rule!(MyRule);                                   // my_rule_alerts, my_rule_enrich
/// detect_sdk::export_rule!(MyRule, fluent_bit: mine_alerts, mine_enrich);
/// ```
#[macro_export]
macro_rules! export_rule {
    ($rule:ty $(,)?) => {
        $crate::__export_all!(
            $rule,
            concat!(env!("CARGO_CRATE_NAME"), "_alerts"),
            concat!(env!("CARGO_CRATE_NAME"), "_enrich")
        );
    };
    ($rule:ty, fluent_bit: $alerts:ident, $enrich:ident $(,)?) => {
        $crate::__export_all!($rule, stringify!($alerts), stringify!($enrich));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_all {
    ($rule:ty, $alerts:expr, $enrich:expr) => {
        $crate::__export_component!($rule);
        $crate::__export_fluent_bit!($rule, $alerts, $enrich);
        $crate::__export_fluvio!($rule);
    };
}
