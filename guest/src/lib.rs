//! AWS Systems Manager session detections over CloudTrail, written to run as a sandboxed
//! WebAssembly component inside a log pipeline.
//!
//! The rule is plain Rust: [`process_event`] takes one record, the [`Config`] and a
//! [`KeyValue`] store, and returns alerts. The `component` module (wasm32 only) binds it
//! to the `detect:rule` WIT world, where the store is the host's `wasi:keyvalue`.
//!
//! A reviewer's path through the crate:
//! * [`catalog`]: the detections as data (names, severities, MITRE ATT&CK, runbooks);
//! * [`baseline`] and [`multiple_sessions`]: the decisions, as pure functions, with
//!   their tests;
//! * [`record`] and [`actor`]: what is read from a CloudTrail record;
//! * [`rule`] and [`state`]: how state is read, updated and kept bounded.

pub mod actor;
pub mod alert;
pub mod baseline;
pub mod catalog;
pub mod config;
pub mod error;
pub mod multiple_sessions;
pub mod record;
pub mod rule;
pub mod state;
pub mod timeline;
pub mod timestamp;

#[cfg(target_arch = "wasm32")]
mod component;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

pub use alert::Alert;
pub use config::Config;
pub use error::RuleError;
pub use rule::{Context, NAME, Outcome, process_event};
pub use state::{KeyValue, MemoryKv};
