//! Runs WebAssembly detection rules in a sandbox, over CloudTrail logs: the library to
//! embed.
//!
//! A rule is a component of the `detect:rule` WIT world: it exports `describe`,
//! `configure`, `process-event` and `process-batch`, and imports only `wasi:keyvalue`.
//! This crate loads such a component with hard limits ([`Sandbox`], [`Limits`]), gives it
//! a state store ([`state`]), and runs it over files or streams ([`pipeline`]): resume
//! marks, batching, alerts and dead letters delivered before the state that records them
//! is committed, and a clean stop on request. The `rule-harness` binary is a thin command
//! line over it.
//!
//! ```no_run
//! use detect_host::{Limits, Sandbox, state::MemoryStore};
//!
//! let sandbox = Sandbox::new(Limits::default())?;
//! let rule = sandbox.load(&std::fs::read("rule.wasm")?)?;
//! let mut runner = rule.start(Box::new(MemoryStore::new()), None)?;
//! let record = r#"{"eventSource": "ssm.amazonaws.com", "eventName": "StartSession", "eventTime": "2025-02-19T20:13:49Z"}"#;
//! match runner.process(record) {
//!     Ok(outcome) => println!("{} alert(s)", outcome.alerts.len()),
//!     Err(detect_host::Error::Record(failure)) => eprintln!("{}: {}", failure.kind(), failure.message()),
//!     Err(stop) => return Err(stop.into()),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bindings;
pub mod cache;
mod error;
pub mod input;
pub mod judge;
pub mod kv;
mod limits;
pub mod output;
pub mod pipeline;
mod runner;
mod sandbox;
pub mod state;

pub use bindings::{ALLOWED_IMPORTS, DETECTOR_EXPORT, RuleError, RuleInfo, Severity};
pub use error::{Error, RecordFailure};
pub use limits::Limits;
pub use runner::{Outcome, RuleRunner};
pub use sandbox::{Item, LoadedRule, Sandbox, component_bytes};
