//! Errors that stop the harness, each saying what to do about it. Problems with single
//! records are not errors of this kind: see [`RecordFailure`](crate::RecordFailure).

use crate::state::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "this is a core WebAssembly module without a component type (a Fluent Bit or Fluvio artifact, perhaps): \
         the harness runs the rule built with the SDK's `component` feature for wasm32-unknown-unknown, \
         or any component of the detect:rule world (docs/writing-a-rule.md)"
    )]
    NotAComponent,
    #[error("this is not WebAssembly (no `\\0asm` header, and not WAT text)")]
    NotWasm,
    #[error("the component imports what the sandbox does not provide: {}. A rule may import only {}", .0.join(", "), crate::ALLOWED_IMPORTS.join(" and "))]
    ForbiddenImports(Vec<String>),
    #[error("the component is not a rule of the detect:rule world: {0}")]
    WrongWorld(String),
    #[error(
        "the rule was built for detect:rule@{0}; this harness runs detect:rule@{current} rules. \
         Rebuild it against this harness's wit/ (the SDK of the same version does it)",
        current = crate::DETECTOR_EXPORT.rsplit('@').next().unwrap_or_default()
    )]
    OtherVersion(String),
    #[error("the file is not valid WebAssembly: {0}")]
    Invalid(String),
    #[error("compiling the component failed: {0:#}")]
    Compile(wasmtime::Error),
    #[error("linking the component failed: {0:#}")]
    Link(wasmtime::Error),
    #[error("instantiating the rule failed: {0:#}")]
    Instantiate(wasmtime::Error),
    #[error("setting up the WebAssembly engine failed: {0:#}")]
    Engine(wasmtime::Error),
    #[error("the rule rejected its configuration: {0}")]
    Config(String),
    #[error(
        "the rule trapped {count} times in a row (last: {last}); it is stopped rather than retried forever"
    )]
    TooManyTraps { count: u32, last: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the rule cannot read its state: {0}. Every later record would be judged against it, so \
         the harness stops; restore the state file from a backup, or move it away to start \
         again with no history"
    )]
    RuleState(String),
}
