//! What the harness writes: one JSON line per alert on stdout, one per failed record on
//! the dead-letter stream.

pub use detect_sdk::alert::{AlertLine, MitreLine};
use detect_sdk::time::format_event_time;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::bindings::{Alert, Mitre, Severity};
use crate::input::{Unusable, hex};

/// An alert of a rule component as the JSON line every host of this project writes. A
/// context that is not a JSON object is wrapped as `{"text": ...}`.
pub fn alert_line(a: &Alert) -> AlertLine {
    let context = match serde_json::from_str(&a.context) {
        Ok(Value::Object(object)) => Value::Object(object),
        _ => serde_json::json!({ "text": a.context }),
    };
    AlertLine {
        rule_id: a.rule_id.clone(),
        name: a.name.clone(),
        title: a.title.clone(),
        severity: severity_name(a.severity).to_owned(),
        event_time: format_event_time(a.event_time),
        dedup_key: a.dedup_key.clone(),
        mitre: a.mitre.iter().map(mitre_line).collect(),
        runbook: a.runbook.clone(),
        reference: a.reference.clone(),
        context,
        event_id: a.event_id.clone(),
    }
}

pub fn mitre_line(m: &Mitre) -> MitreLine {
    MitreLine {
        tactic_id: m.tactic_id.clone(),
        tactic: m.tactic.clone(),
        technique_id: m.technique_id.clone(),
        technique: m.technique.clone(),
    }
}

pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// A record the harness could not process, as a JSON line: where it was, why it failed,
/// and the record itself, so that the dead-letter file can be fixed and fed again.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    /// The file, or `-` for standard input.
    pub source: String,
    /// 1-based line where the item starts.
    pub line: Option<u64>,
    /// 1-based count of items in the source.
    pub index: u64,
    /// A short, stable kind: `invalid-json`, `invalid-time`, `trap`, `input`, ...
    pub kind: String,
    pub error: String,
    /// The record's text, when it is UTF-8 and within the size limit.
    pub record: Option<String>,
    /// The record's bytes in base64, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_base64: Option<String>,
    /// For a record over the size limit: its first bytes (as text, for a person), its
    /// size and its SHA-256; never the whole record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl DeadLetter {
    /// Keeps the record's bytes: as text when they are UTF-8, else in base64.
    pub fn with_bytes(mut self, bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.record = Some(text.to_owned()),
            Err(_) => self.record_base64 = Some(BASE64.encode(bytes)),
        }
        self
    }

    /// For an unusable item: its bytes, or its excerpt, size and digest.
    pub fn with_unusable(self, unusable: &Unusable) -> Self {
        match unusable.digest {
            None if unusable.bytes.is_empty() => self,
            None => self.with_bytes(unusable.bytes),
            Some((size, sha256)) => DeadLetter {
                excerpt: Some(String::from_utf8_lossy(unusable.bytes).into_owned()),
                size: Some(size),
                sha256: Some(hex(&sha256)),
                ..self
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_keep_bytes_that_are_not_text() {
        let text = DeadLetter::default().with_bytes(b"{\"a\": 1}");
        assert_eq!(text.record.as_deref(), Some("{\"a\": 1}"));
        let bytes = DeadLetter::default().with_bytes(b"{\"a\": \"\xff\"}");
        assert_eq!(
            (bytes.record, bytes.record_base64.as_deref()),
            (None, Some("eyJhIjogIv8ifQ=="))
        );
        let line = serde_json::to_string(&DeadLetter::default()).unwrap();
        assert!(
            !line.contains("excerpt") && line.contains("\"record\":null"),
            "{line}"
        );
    }
}
