//! AWS Systems Manager session detections over CloudTrail: a detection rule of the
//! [`detect_sdk`], exported as a WebAssembly component, a Fluent Bit filter and a Fluvio
//! SmartModule from the one logic below.
//!
//! A reviewer's path through the crate:
//! * [`catalog`]: the detections as data (names, severities, MITRE ATT&CK, runbooks);
//! * [`baseline`] and [`multiple_sessions`]: the decisions, as pure functions, with their
//!   tests;
//! * [`session`]: what is read from a CloudTrail `StartSession` record;
//! * [`rule`], [`keys`] and [`identity`]: how state is read, updated and kept bounded;
//!   [`legacy`]: how a state of the previous format is upgraded;
//! * [`config`]: every period and threshold, and their defaults.
//!
//! Its test cases, run by `rule-harness test`, are in `cases/`; its sample records and
//! logs in `fixtures/`.

pub mod baseline;
pub mod catalog;
pub mod config;
pub mod identity;
pub mod keys;
pub mod legacy;
pub mod multiple_sessions;
pub mod rule;
pub mod session;

#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

pub use config::Config;
pub use rule::{NAME, SsmSessions};

detect_sdk::export_rule!(SsmSessions, fluent_bit: ssm_alerts, ssm_enrich);
