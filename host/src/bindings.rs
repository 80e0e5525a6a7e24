//! Rust types and traits for the `detect:rule` world, generated from `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "rule",
    imports: { default: trappable },
    with: {
        "wasi:keyvalue/store.bucket": crate::kv::BucketHandle,
    },
});

pub use exports::detect::rule::detector::{
    Alert, CallContext, Detection, FieldError, Mitre, Outcome, RuleError, RuleInfo, Severity,
};
pub use wasi::keyvalue::{batch, store};
