//! An alert as a rule raises it, and the JSON line every host writes for it.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::catalog::{Detection, Mitre};
use crate::json::ObjectWriter;
use crate::time::{Millis, format_event_time};

/// One alert.
#[derive(Debug, Clone)]
pub struct Alert {
    /// Which detection fired; carries the name, severity, MITRE mapping and runbook.
    pub detection: &'static Detection,
    /// One line for an analyst.
    pub title: String,
    /// The record's event time.
    pub event_time: Millis,
    /// Alerts of one detection with one dedup key describe the same activity.
    pub dedup_key: String,
    /// A JSON object with the facts an analyst needs first, as JSON text.
    pub context: Facts,
    /// The record's id, when it has one.
    pub event_id: Option<String>,
    /// Where the dedup gate keeps its mark: `None`, under a key of its own; or inside the
    /// [`Entity`](crate::entity::Entity) value of this key, which the rule writes in the
    /// same record, so that all it knows of the entity is one read and one write.
    pub dedup_in: Option<String>,
}

/// An alert's context as JSON text, written once, by the rule: with [`context`], or
/// field by field with an [`ObjectWriter`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts(String);

impl Facts {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JSON text.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl From<ObjectWriter> for Facts {
    fn from(object: ObjectWriter) -> Facts {
        Facts(object.finish())
    }
}

/// An alert's context: `facts` (a JSON object, as serde writes it).
pub fn context(facts: &impl Serialize) -> Facts {
    Facts(serde_json::to_string(facts).expect("an alert's context serializes"))
}

/// An alert as a JSON line: what `rule-harness` prints and the pipeline bindings emit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlertLine {
    /// The detection's id, e.g. `AWS.SSM.UnusualSession`.
    pub rule_id: String,
    /// The detection's name.
    pub name: String,
    /// One line for an analyst.
    pub title: String,
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub event_time: String,
    /// Alerts of one rule id with one dedup key describe the same activity.
    pub dedup_key: String,
    /// MITRE ATT&CK mappings.
    pub mitre: Vec<MitreLine>,
    /// What an analyst should do.
    pub runbook: String,
    /// Where to read more.
    pub reference: String,
    /// A JSON object, as the rule wrote it.
    pub context: Box<RawValue>,
    /// The record's id, when it has one.
    pub event_id: Option<String>,
}

/// One MITRE ATT&CK mapping of an [`AlertLine`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MitreLine {
    /// E.g. `TA0008`.
    pub tactic_id: String,
    /// E.g. `Lateral Movement`.
    pub tactic: String,
    /// E.g. `T1021.008`.
    pub technique_id: String,
    /// E.g. `Remote Services: Direct Cloud VM Connections`.
    pub technique: String,
}

impl From<&Mitre> for MitreLine {
    fn from(m: &Mitre) -> Self {
        MitreLine {
            tactic_id: m.tactic_id.into(),
            tactic: m.tactic.into(),
            technique_id: m.technique_id.into(),
            technique: m.technique.into(),
        }
    }
}

impl From<&Alert> for AlertLine {
    fn from(a: &Alert) -> Self {
        let d = a.detection;
        AlertLine {
            rule_id: d.id.into(),
            name: d.name.into(),
            title: a.title.clone(),
            severity: d.severity.name().into(),
            event_time: format_event_time(a.event_time),
            dedup_key: a.dedup_key.clone(),
            mitre: d.mitre.iter().map(MitreLine::from).collect(),
            runbook: d.runbook.into(),
            reference: d.reference.into(),
            context: RawValue::from_string(a.context.as_str().to_owned())
                .expect("an alert's context is JSON"),
            event_id: a.event_id.clone(),
        }
    }
}
