//! Why the rule could not process a record or a configuration.

use thiserror::Error;

/// A failed call. Raised before any state is written, so a failed call changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    #[error("not JSON: {0}")]
    InvalidJson(String),
    #[error("not a JSON object: the record is {0}")]
    NotAnObject(String),
    #[error("field `{field}`: {message}")]
    InvalidField { field: String, message: String },
    #[error("eventTime: {0}")]
    InvalidTime(String),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("key-value store: {0}")]
    State(String),
}

impl RuleError {
    /// A stored value the rule cannot read back. Never taken for "no history": that would
    /// turn damage into false alerts, and hide true ones.
    pub(crate) fn damaged(key: &str, what: impl std::fmt::Display) -> Self {
        RuleError::State(format!(
            "the stored value of `{key}` is damaged, or from another version of the rule: {what}"
        ))
    }

    pub(crate) fn field(field: &str, message: impl Into<String>) -> Self {
        RuleError::InvalidField {
            field: field.to_string(),
            message: message.into(),
        }
    }
}
