//! Why a rule could not process a record or a configuration.

use thiserror::Error;

/// A failed call. Raised before any state is written, so a failed call changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    /// The text is not JSON.
    #[error("not JSON: {0}")]
    InvalidJson(String),
    /// The JSON is not an object; the text says what it is.
    #[error("not a JSON object: the record is {0}")]
    NotAnObject(String),
    /// A field the rule reads has the wrong type.
    #[error("field `{field}`: {message}")]
    InvalidField {
        /// Dotted path of the field, e.g. `userIdentity.arn`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The event time is missing, unreadable, or outside the span the rule judges.
    #[error("eventTime: {0}")]
    InvalidTime(String),
    /// The configuration was rejected; the previous one stays in force.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The state could not be read or is damaged. Hosts stop rather than judge more
    /// records against it.
    #[error("key-value store: {0}")]
    State(String),
}

impl RuleError {
    /// A stored value the rule cannot read back. Never taken for "no history": that would
    /// turn damage into false alerts, and hide true ones.
    pub fn damaged(key: &str, what: impl std::fmt::Display) -> Self {
        RuleError::State(format!(
            "the stored value of `{key}` is damaged, or from another version of the rule: {what}"
        ))
    }

    /// A field of the record that is present but unusable.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        RuleError::InvalidField {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// A short, stable name for dead letters and error records: `invalid-json`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            RuleError::InvalidJson(_) => "invalid-json",
            RuleError::NotAnObject(_) => "not-an-object",
            RuleError::InvalidField { .. } => "invalid-field",
            RuleError::InvalidTime(_) => "invalid-time",
            RuleError::InvalidConfig(_) => "invalid-config",
            RuleError::State(_) => "state",
        }
    }
}
