//! The contract with a rule: the `detect:rule` world's Rust types and traits, generated
//! from `wit/`, and the names a rule must import and export.

// The generated items carry the WIT's documentation where it has some.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "rule",
    imports: { default: trappable },
    with: {
        "wasi:keyvalue/store.bucket": BucketHandle,
    },
});

pub use exports::detect::rule::detector::{
    Alert, CallContext, Detection, FieldError, Mitre, Outcome, RuleError, RuleInfo, Severity,
};
pub use wasi::keyvalue::{batch, store};

/// The only imports a rule may have.
pub const ALLOWED_IMPORTS: [&str; 2] = [
    "wasi:keyvalue/store@0.2.0-draft",
    "wasi:keyvalue/batch@0.2.0-draft",
];

/// The interface a rule must export: the version of the `detect:rule` world this host runs.
pub const DETECTOR_EXPORT: &str = "detect:rule/detector@0.3.0";

/// An open bucket, as the rule holds it: the name of its table in the store.
pub struct BucketHandle {
    pub(crate) table: std::sync::Arc<str>,
}
