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
    pub(crate) fn field(field: &str, message: impl Into<String>) -> Self {
        RuleError::InvalidField {
            field: field.to_string(),
            message: message.into(),
        }
    }
}
