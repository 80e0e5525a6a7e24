//! The one error type: what stops a run, each saying what to do about it, and apart from
//! those, what costs one record only ([`Error::Record`], a [`RecordFailure`]).

use crate::bindings::{ALLOWED_IMPORTS, DETECTOR_EXPORT, RuleError};
use crate::state::StoreError;

/// What went wrong. Every variant but [`Error::Record`] stops the run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This record only: the run goes on with the next.
    #[error("{}", .0.message())]
    Record(RecordFailure),
    /// A core module where a component was expected.
    #[error(
        "this is a core WebAssembly module without a component type (a Fluent Bit or Fluvio artifact, perhaps): \
         the harness runs the rule built with the SDK's `component` feature for wasm32-unknown-unknown, \
         or any component of the detect:rule world (docs/writing-a-rule.md)"
    )]
    NotAComponent,
    /// Neither WebAssembly nor WAT.
    #[error("this is not WebAssembly (no `\\0asm` header, and not WAT text)")]
    NotWasm,
    /// The component imports what the sandbox does not provide (those imports).
    #[error("the component imports what the sandbox does not provide: {}. A rule may import only {}", .0.join(", "), ALLOWED_IMPORTS.join(" and "))]
    ForbiddenImports(Vec<String>),
    /// The component is not of the `detect:rule` world (why not).
    #[error("the component is not a rule of the detect:rule world: {0}")]
    WrongWorld(String),
    /// The component is of another version of the world (that version).
    #[error(
        "the rule was built for detect:rule@{0}; this harness runs detect:rule@{current} rules. \
         Rebuild it against this harness's wit/ (the SDK of the same version does it)",
        current = DETECTOR_EXPORT.rsplit('@').next().unwrap_or_default()
    )]
    OtherVersion(String),
    /// The bytes are not valid WebAssembly (the parser's message).
    #[error("the file is not valid WebAssembly: {0}")]
    Invalid(String),
    /// wasmtime could not compile the component.
    #[error("compiling the component failed: {0:#}")]
    Compile(wasmtime::Error),
    /// wasmtime could not link the component to the host.
    #[error("linking the component failed: {0:#}")]
    Link(wasmtime::Error),
    /// Instantiating the rule, or its `describe` or `configure`, trapped or failed.
    #[error("instantiating the rule failed: {0:#}")]
    Instantiate(wasmtime::Error),
    /// The engine could not be set up.
    #[error("setting up the WebAssembly engine failed: {0:#}")]
    Engine(wasmtime::Error),
    /// The rule rejected its configuration (its message).
    #[error("the rule rejected its configuration: {0}")]
    Config(String),
    /// The rule trapped on [`Limits::max_consecutive_traps`](crate::Limits::max_consecutive_traps)
    /// records in a row.
    #[error(
        "the rule trapped {count} times in a row (last: {last}); it is stopped rather than retried forever"
    )]
    TooManyTraps {
        /// Traps in a row.
        count: u32,
        /// Why the last one trapped.
        last: String,
    },
    /// The state store failed: the state can no longer be trusted.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The rule reported its state unreadable.
    #[error(
        "the rule cannot read its state: {0}. Every later record would be judged against it, so \
         the harness stops; restore the state file from a backup, or move it away to start \
         again with no history"
    )]
    RuleState(String),
    /// An input could not be read.
    #[error("{0}")]
    Input(String),
    /// An output could not be written.
    #[error("{0}")]
    Output(String),
    /// Stopped on request while an output (named) had not taken everything.
    #[error(
        "stopped while {0} had not taken everything written to it; the state is committed up \
         to the last output delivered: the same command raises the rest again"
    )]
    Interrupted(String),
}

impl Error {
    /// The record's failure, if this error costs one record and the run goes on.
    pub fn record_failure(&self) -> Option<&RecordFailure> {
        match self {
            Error::Record(failure) => Some(failure),
            _ => None,
        }
    }
}

/// Why one record produced no outcome. The harness goes on with the next record.
#[derive(Debug, Clone)]
pub enum RecordFailure {
    /// The rule rejected the record (bad input); it wrote no state.
    Rejected(RuleError),
    /// The rule trapped on the record; the instance was replaced.
    Trapped(String),
    /// The rule returned more than
    /// [`Limits::max_output_bytes`](crate::Limits::max_output_bytes); its writes were
    /// dropped.
    OutputTooLarge {
        /// Bytes of alerts the rule returned.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The record is larger than [`Limits::max_record_bytes`](crate::Limits::max_record_bytes)
    /// and was not handed over.
    RecordTooLarge {
        /// Bytes of the record.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The rule raised an alert of a detection it does not declare; its writes were dropped.
    UndeclaredDetection(String),
}

impl RecordFailure {
    /// A stable, short name for dead-letter lines and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            RecordFailure::Rejected(e) => match e {
                RuleError::InvalidJson(_) => "invalid-json",
                RuleError::NotAnObject(_) => "not-an-object",
                RuleError::InvalidField(_) => "invalid-field",
                RuleError::InvalidTime(_) => "invalid-time",
                RuleError::InvalidConfig(_) => "invalid-config",
                RuleError::State(_) => "state",
            },
            RecordFailure::Trapped(_) => "trap",
            RecordFailure::OutputTooLarge { .. } => "output-too-large",
            RecordFailure::RecordTooLarge { .. } => "record-too-large",
            RecordFailure::UndeclaredDetection(_) => "invalid-output",
        }
    }

    /// What went wrong with the record, in a sentence.
    pub fn message(&self) -> String {
        match self {
            RecordFailure::Rejected(e) => match e {
                RuleError::InvalidJson(m) => format!("not JSON: {m}"),
                RuleError::NotAnObject(m) => format!("not a JSON object: the record is {m}"),
                RuleError::InvalidField(f) => format!("field `{}`: {}", f.field, f.message),
                RuleError::InvalidTime(m) => format!("eventTime: {m}"),
                RuleError::InvalidConfig(m) => format!("configuration: {m}"),
                RuleError::State(m) => format!("key-value store: {m}"),
            },
            RecordFailure::Trapped(reason) => format!("the rule trapped: {reason}"),
            RecordFailure::OutputTooLarge { bytes, limit } => {
                format!("the rule returned {bytes} bytes of alerts; the limit is {limit}")
            }
            RecordFailure::RecordTooLarge { bytes, limit } => {
                format!("the record has {bytes} bytes; the limit is {limit}")
            }
            RecordFailure::UndeclaredDetection(id) => {
                format!("the rule raised an alert of detection `{id}`, which it does not declare")
            }
        }
    }
}
