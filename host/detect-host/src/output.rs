//! What the harness writes: one JSON line per alert on stdout, one per failed record on
//! the dead-letter stream.

use std::collections::HashMap;
use std::sync::Arc;

pub use detect_sdk::alert::{AlertFormat, AlertLine, Declared, MitreLine};
use detect_sdk::alert::{LineTemplate, Raised};
use detect_sdk::ocsf::{FindingTemplate, Product};
use detect_sdk::{Millis, json};
use serde::{Deserialize, Serialize};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::bindings::{self, Mitre, Severity};
use crate::input::{Unusable, hex};

/// What a rule declares of each detection, by id: what the host adds to its alerts.
#[derive(Clone, Debug, Default)]
pub struct Catalog(HashMap<String, Arc<Declaration>>);

/// A detection as the host writes its alerts: what the rule declares, and the parts of
/// its lines that this makes the same for every alert, written once.
#[derive(Debug)]
pub struct Declaration {
    /// What the rule declares.
    pub declared: Declared,
    line: LineTemplate,
    finding: FindingTemplate,
}

impl Catalog {
    /// The catalog of a rule that described itself as `info`.
    pub fn new(info: &bindings::RuleInfo) -> Catalog {
        let product = Product {
            name: info.name.clone(),
            version: info.version.clone(),
        };
        let detections = info.detections.iter().map(|d| Declared {
            id: d.id.clone(),
            name: d.name.clone(),
            severity: severity(d.severity),
            mitre: d.mitre.iter().map(mitre_line).collect(),
            description: d.description.clone(),
            runbook: d.runbook.clone(),
            reference: d.reference.clone(),
        });
        Catalog::of(detections, &product)
    }

    /// The catalog of `detections`, of the rule `product`.
    pub fn of(detections: impl IntoIterator<Item = Declared>, product: &Product) -> Catalog {
        let declared = detections.into_iter().map(|declared| {
            let line = LineTemplate::new(&declared);
            let finding = FindingTemplate::new(&declared, product);
            let declaration = Declaration {
                declared,
                line,
                finding,
            };
            (declaration.declared.id.clone(), Arc::new(declaration))
        });
        Catalog(declared.collect())
    }

    /// Whether the rule declared a detection `id`.
    pub fn declares(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }

    /// An alert of the rule, with what its detection declares; `None` for a detection the
    /// rule did not declare. The context is kept as the rule wrote it, once checked to be
    /// a JSON object; anything else is wrapped as `{"text": ...}`.
    pub fn alert(&self, alert: bindings::Alert) -> Option<Alert> {
        let detection = self.0.get(&alert.rule_id)?.clone();
        let context = match json::check_object(&alert.context) {
            Ok(()) => alert.context,
            Err(e) => match serde_json::from_str::<serde::de::IgnoredAny>(&alert.context) {
                Ok(_) => text_context(&alert.context),
                Err(_) => text_context(&format!("the rule's context is not JSON: {e}")),
            },
        };
        Some(Alert {
            detection,
            title: alert.title,
            event_time: alert.event_time,
            dedup_key: alert.dedup_key,
            context,
            event_id: alert.event_id,
        })
    }
}

/// One alert, as the host writes it: what the rule raised, with what its detection
/// declares.
#[derive(Clone, Debug)]
pub struct Alert {
    detection: Arc<Declaration>,
    /// One line for an analyst.
    pub title: String,
    /// The record's event time.
    pub event_time: Millis,
    /// Alerts of one detection with one dedup key describe the same activity.
    pub dedup_key: String,
    /// A JSON object's text, checked.
    context: String,
    /// The record's id, when it has one.
    pub event_id: Option<String>,
}

impl Alert {
    /// The id of the detection that fired.
    pub fn rule_id(&self) -> &str {
        &self.detection.declared.id
    }

    /// What its detection declares.
    pub fn declared(&self) -> &Declared {
        &self.detection.declared
    }

    /// The context, a JSON object's text.
    pub fn context(&self) -> &str {
        &self.context
    }

    fn raised(&self) -> Raised<'_> {
        Raised {
            title: &self.title,
            event_time: self.event_time,
            dedup_key: &self.dedup_key,
            context: &self.context,
            event_id: self.event_id.as_deref(),
        }
    }

    /// Its JSON line, as a value.
    pub fn line(&self) -> AlertLine {
        AlertLine::new(self.declared(), &self.raised())
    }

    /// Appends it as a JSON line in `format`, newline included, to `out`.
    pub fn write(&self, out: &mut String, format: AlertFormat) {
        match format {
            AlertFormat::Json => self.detection.line.write(out, &self.raised()),
            AlertFormat::Ocsf => self.detection.finding.write(out, &self.raised()),
        }
        out.push('\n');
    }
}

/// As its JSON line.
impl Serialize for Alert {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.line().serialize(serializer)
    }
}

fn text_context(text: &str) -> String {
    serde_json::json!({ "text": text }).to_string()
}

pub fn mitre_line(m: &Mitre) -> MitreLine {
    MitreLine {
        tactic_id: m.tactic_id.clone(),
        tactic: m.tactic.clone(),
        technique_id: m.technique_id.clone(),
        technique: m.technique.clone(),
    }
}

fn severity(severity: Severity) -> detect_sdk::Severity {
    match severity {
        Severity::Info => detect_sdk::Severity::Info,
        Severity::Low => detect_sdk::Severity::Low,
        Severity::Medium => detect_sdk::Severity::Medium,
        Severity::High => detect_sdk::Severity::High,
        Severity::Critical => detect_sdk::Severity::Critical,
    }
}

/// `info`, `low`, `medium`, `high` or `critical`.
pub fn severity_name(s: Severity) -> &'static str {
    severity(s).name()
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
