//! An alert as a rule raises it, and the JSON line every host writes for it.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::Rule;
use crate::catalog::{Detection, Mitre, Severity, index_of};
use crate::json::{ObjectWriter, write_str};
use crate::ocsf::{FindingTemplate, Product};
use crate::time::{Millis, format_event_time, push_event_time};

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
        AlertLine::new(&Declared::from(a.detection), &a.raised())
    }
}

impl Alert {
    /// What varies from this alert of its detection to the next.
    pub fn raised(&self) -> Raised<'_> {
        Raised {
            title: &self.title,
            event_time: self.event_time,
            dedup_key: &self.dedup_key,
            context: self.context.as_str(),
            event_id: self.event_id.as_deref(),
        }
    }
}

/// What a detection declares of every alert it raises, as a host learns it (from a rule's
/// `describe`, or from the rule compiled in): what the host adds to each alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    /// Stable identifier, e.g. `AWS.SSM.SessionStarted`.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// How urgent its alerts are.
    pub severity: Severity,
    /// MITRE ATT&CK mappings.
    pub mitre: Vec<MitreLine>,
    /// What it detects and why it matters.
    pub description: String,
    /// What an analyst should do with an alert.
    pub runbook: String,
    /// Where to read more.
    pub reference: String,
}

impl From<&Detection> for Declared {
    fn from(d: &Detection) -> Self {
        Declared {
            id: d.id.into(),
            name: d.name.into(),
            severity: d.severity,
            mitre: d.mitre.iter().map(MitreLine::from).collect(),
            description: d.description.into(),
            runbook: d.runbook.into(),
            reference: d.reference.into(),
        }
    }
}

/// What varies from one alert of a detection to the next, as the rule raised it.
#[derive(Clone, Copy, Debug)]
pub struct Raised<'a> {
    /// One line for an analyst.
    pub title: &'a str,
    /// The record's event time.
    pub event_time: Millis,
    /// Alerts of one detection with one dedup key describe the same activity.
    pub dedup_key: &'a str,
    /// A JSON value's text: the facts an analyst needs first.
    pub context: &'a str,
    /// The record's id, when it has one.
    pub event_id: Option<&'a str>,
}

impl AlertLine {
    /// The line of an alert `raised` of the detection `declared`.
    pub fn new(declared: &Declared, raised: &Raised) -> AlertLine {
        AlertLine {
            rule_id: declared.id.clone(),
            name: declared.name.clone(),
            title: raised.title.to_owned(),
            severity: declared.severity.name().to_owned(),
            event_time: format_event_time(raised.event_time),
            dedup_key: raised.dedup_key.to_owned(),
            mitre: declared.mitre.clone(),
            runbook: declared.runbook.clone(),
            reference: declared.reference.clone(),
            context: RawValue::from_string(raised.context.to_owned())
                .expect("an alert's context is JSON"),
            event_id: raised.event_id.map(str::to_owned),
        }
    }
}

/// The parts of a detection's alert lines that it declares, written as JSON once, so that
/// each alert costs only its own parts: what hosts write on their hot path.
#[derive(Clone, Debug)]
pub struct LineTemplate {
    /// `{"rule_id":…,"name":…,"title":`
    head: String,
    /// `,"severity":…,"event_time":`
    severity: String,
    /// `,"mitre":[…],"runbook":…,"reference":…,"context":`
    tail: String,
}

impl LineTemplate {
    /// The template of `declared`'s alert lines.
    pub fn new(declared: &Declared) -> Self {
        let field = |out: &mut String, key: &str, value: &str| {
            write_str(out, key);
            out.push(':');
            write_str(out, value);
        };
        let mut head = String::from("{");
        field(&mut head, "rule_id", &declared.id);
        head.push(',');
        field(&mut head, "name", &declared.name);
        head.push_str(",\"title\":");
        let mut severity = String::from(",");
        field(&mut severity, "severity", declared.severity.name());
        severity.push_str(",\"event_time\":");
        let mitre = serde_json::to_string(&declared.mitre).expect("mappings serialize");
        let mut tail = format!(",\"mitre\":{mitre},");
        field(&mut tail, "runbook", &declared.runbook);
        tail.push(',');
        field(&mut tail, "reference", &declared.reference);
        tail.push_str(",\"context\":");
        LineTemplate {
            head,
            severity,
            tail,
        }
    }

    /// Appends the line of `raised` (a JSON object, without a newline) to `out`: byte for
    /// byte what serializing its [`AlertLine`] writes. `raised.context` must be JSON.
    pub fn write(&self, out: &mut String, raised: &Raised) {
        out.push_str(&self.head);
        write_str(out, raised.title);
        out.push_str(&self.severity);
        out.push('"');
        push_event_time(out, raised.event_time);
        out.push('"');
        out.push_str(",\"dedup_key\":");
        write_str(out, raised.dedup_key);
        out.push_str(&self.tail);
        out.push_str(raised.context);
        out.push_str(",\"event_id\":");
        match raised.event_id {
            Some(id) => write_str(out, id),
            None => out.push_str("null"),
        }
        out.push('}');
    }
}

/// The name under which a pipeline binding takes the alert format: a key of the Fluent
/// Bit filter's configuration file, a parameter of the Fluvio SmartModule.
pub const FORMAT_KEY: &str = "alert_format";

/// How alerts are written: each a JSON object, on a line of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AlertFormat {
    /// The project's own alert line ([`AlertLine`]).
    #[default]
    Json,
    /// An OCSF Detection Finding ([`ocsf`](crate::ocsf)).
    Ocsf,
}

impl std::str::FromStr for AlertFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "json" => Ok(AlertFormat::Json),
            "ocsf" => Ok(AlertFormat::Ocsf),
            other => Err(format!("`{other}` is no alert format: `json` or `ocsf`")),
        }
    }
}

/// What a detection's alerts are written from, in one format.
#[derive(Clone, Debug)]
pub enum Template {
    /// The alert line's.
    Line(LineTemplate),
    /// The OCSF finding's.
    Finding(FindingTemplate),
}

impl Template {
    /// The template of `declared`'s alerts, raised by `product`, in `format`.
    pub fn new(declared: &Declared, product: &Product, format: AlertFormat) -> Self {
        match format {
            AlertFormat::Json => Template::Line(LineTemplate::new(declared)),
            AlertFormat::Ocsf => Template::Finding(FindingTemplate::new(declared, product)),
        }
    }

    /// Appends the alert `raised` (a JSON object, without a newline) to `out`.
    pub fn write(&self, out: &mut String, raised: &Raised) {
        match self {
            Template::Line(line) => line.write(out, raised),
            Template::Finding(finding) => finding.write(out, raised),
        }
    }
}

/// The templates of a rule's detections, in one format: for the bindings that write a
/// rule's alerts themselves.
pub struct Templates {
    detections: &'static [&'static Detection],
    /// One per detection, in the same order.
    templates: Vec<Template>,
}

impl Templates {
    /// The templates of rule `R`'s detections.
    pub fn of<R: Rule>(format: AlertFormat) -> Self {
        let info = R::info();
        let product = Product::of(&info);
        let template = |d: &&Detection| Template::new(&Declared::from(*d), &product, format);
        Templates {
            detections: info.detections,
            templates: info.detections.iter().map(template).collect(),
        }
    }

    /// Appends `alert` (a JSON object) to `out`. An alert of a detection the rule does not
    /// list is a bug of the rule, which its own tests meet first.
    pub fn write(&self, out: &mut String, alert: &Alert) {
        let template = &self.templates[index_of(self.detections, alert.detection)];
        template.write(out, &alert.raised());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Mitre;

    const DETECTION: Detection = Detection {
        id: "A.B",
        name: "A \"quoted\" name",
        severity: Severity::Medium,
        mitre: &[Mitre {
            tactic_id: "TA0001",
            tactic: "Initial Access",
            technique_id: "T1078",
            technique: "Valid Accounts",
        }],
        description: "",
        runbook: "Look\nat it.",
        reference: "https://example.com/",
        tags: &[],
        dedup_period: "p",
    };

    #[test]
    fn a_template_writes_what_serializing_the_line_writes() {
        let declared = Declared::from(&DETECTION);
        let template = LineTemplate::new(&declared);
        for (context, event_id) in [(r#"{"k":["v",1]}"#, Some("e\\1")), ("null", None)] {
            let raised = Raised {
                title: "a\ttitle",
                event_time: 1_739_996_029_250,
                dedup_key: "x|y",
                context,
                event_id,
            };
            let mut out = String::new();
            template.write(&mut out, &raised);
            let line = AlertLine::new(&declared, &raised);
            assert_eq!(out, serde_json::to_string(&line).unwrap());
        }
    }
}
