//! What the harness writes: one JSON line per alert on stdout, one per failed record on
//! the dead-letter stream.

use std::collections::HashMap;

pub use detect_sdk::alert::{AlertLine, MitreLine};
use detect_sdk::time::format_event_time;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::bindings::{Alert, Detection, Mitre, Severity};
use crate::input::{Unusable, hex};

/// What a rule declares of each detection, by id: what the host adds to its alerts.
#[derive(Clone, Debug, Default)]
pub struct Catalog(HashMap<String, Declared>);

#[derive(Clone, Debug)]
struct Declared {
    name: String,
    severity: &'static str,
    mitre: Vec<MitreLine>,
    runbook: String,
    reference: String,
}

impl Catalog {
    pub fn new(detections: &[Detection]) -> Catalog {
        let declared = detections.iter().map(|d| {
            let declared = Declared {
                name: d.name.clone(),
                severity: severity_name(d.severity),
                mitre: d.mitre.iter().map(mitre_line).collect(),
                runbook: d.runbook.clone(),
                reference: d.reference.clone(),
            };
            (d.id.clone(), declared)
        });
        Catalog(declared.collect())
    }

    /// Whether the rule declared a detection `id`.
    pub fn declares(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }

    /// An alert of the rule as the JSON line every host of this project writes, with what
    /// its detection declares; `None` for a detection the rule did not declare. The
    /// context is kept as the rule wrote it, once checked to be a JSON object; anything
    /// else is wrapped as `{"text": ...}`.
    pub fn line(&self, alert: Alert) -> Option<AlertLine> {
        let declared = self.0.get(&alert.rule_id)?;
        let context = match RawValue::from_string(alert.context) {
            Ok(raw) if raw.get().starts_with('{') => raw,
            Ok(raw) => text_context(raw.get()),
            Err(e) => text_context(&format!("the rule's context is not JSON: {e}")),
        };
        Some(AlertLine {
            rule_id: alert.rule_id,
            name: declared.name.clone(),
            title: alert.title,
            severity: declared.severity.to_owned(),
            event_time: format_event_time(alert.event_time),
            dedup_key: alert.dedup_key,
            mitre: declared.mitre.clone(),
            runbook: declared.runbook.clone(),
            reference: declared.reference.clone(),
            context,
            event_id: alert.event_id,
        })
    }
}

fn text_context(text: &str) -> Box<RawValue> {
    serde_json::value::to_raw_value(&serde_json::json!({ "text": text })).expect("JSON serializes")
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
