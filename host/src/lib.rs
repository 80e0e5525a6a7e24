//! Runs WebAssembly detection rules in a sandbox, over CloudTrail logs.
//!
//! A rule is a component of the `detect:rule` WIT world: it exports `describe`,
//! `configure` and `process-event`, and imports only `wasi:keyvalue`. This crate loads
//! such a component with hard limits ([`Sandbox`], [`Limits`]), gives it a state store
//! ([`state`]), feeds it records ([`input`]) and turns its alerts into JSON lines
//! ([`output`]). The `rule-harness` binary is a thin command line over it.
//!
//! ```no_run
//! use rule_harness::{Limits, Sandbox, state::MemoryStore};
//!
//! let sandbox = Sandbox::new(Limits::default())?;
//! let rule = sandbox.load(rule_harness::DEFAULT_RULE)?;
//! let mut runner = rule.start(Box::new(MemoryStore::new()), None)?;
//! let record = r#"{"eventSource": "ssm.amazonaws.com", "eventName": "StartSession", "eventTime": "2025-02-19T20:13:49Z"}"#;
//! match runner.process(record)? {
//!     Ok(outcome) => println!("{} alert(s)", outcome.alerts.len()),
//!     Err(failure) => eprintln!("{}: {}", failure.kind(), failure.message()),
//! }
//! # Ok::<(), rule_harness::HarnessError>(())
//! ```

pub mod bindings;
pub mod cache;
pub mod corpus;
mod error;
pub mod fixtures;
pub mod hosts;
pub mod input;
pub mod judge;
pub mod kv;
pub mod output;
mod runner;
mod sandbox;
pub mod state;

pub use bindings::{RuleError, RuleInfo, Severity};
pub use error::HarnessError;
pub use runner::{Outcome, RecordFailure, RuleRunner};
pub use sandbox::{
    ALLOWED_IMPORTS, DETECTOR_EXPORT, Item, Limits, LoadedRule, Sandbox, component_bytes,
};

/// The project's SSM session rule (`rules/ssm/`), as a component of the `detect:rule`
/// world: the harness's default rule. Built by this crate's build script.
pub const DEFAULT_RULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/component.wasm"));

/// The same rule as a Fluent Bit `filter_wasm` filter: functions `ssm_alerts` and
/// `ssm_enrich`.
pub const FLUENT_BIT_FILTER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fluent-bit.wasm"));

/// The same rule as a Fluvio SmartModule (`init`, `array_map`, `look_back`).
pub const FLUVIO_SMARTMODULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fluvio.wasm"));
