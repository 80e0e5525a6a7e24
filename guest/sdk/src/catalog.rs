//! What a detection is, as data: its name, how severe it is, how it maps to MITRE
//! ATT&CK, and what an analyst should do with its alerts. A rule lists its detections as
//! constants of these types, which is what a reviewer reads first.

use serde::Serialize;

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record.
    Info,
    /// Worth a look.
    Low,
    /// Worth a look soon.
    Medium,
    /// Act today.
    High,
    /// Act now.
    Critical,
}

impl Severity {
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One MITRE ATT&CK mapping.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Mitre {
    /// E.g. `TA0008`.
    pub tactic_id: &'static str,
    /// E.g. `Lateral Movement`.
    pub tactic: &'static str,
    /// E.g. `T1021.008`.
    pub technique_id: &'static str,
    /// E.g. `Remote Services: Direct Cloud VM Connections`.
    pub technique: &'static str,
}

/// A detection a rule can raise.
#[derive(Debug, PartialEq, Eq)]
pub struct Detection {
    /// Stable identifier, e.g. `AWS.SSM.SessionStarted`.
    pub id: &'static str,
    /// A name for people.
    pub name: &'static str,
    /// How urgent its alerts are.
    pub severity: Severity,
    /// MITRE ATT&CK mappings.
    pub mitre: &'static [Mitre],
    /// What it detects and why it matters.
    pub description: &'static str,
    /// What an analyst should do with an alert.
    pub runbook: &'static str,
    /// Where to read more.
    pub reference: &'static str,
    /// Labels for search and routing.
    pub tags: &'static [&'static str],
    /// The field of the rule's configuration that holds this detection's dedup period
    /// (how long its alerts for one dedup key stay quiet after one is raised), as a dotted
    /// path: `"dedup_period"`, `"baseline.dedup_period"`. Several detections may share
    /// one.
    pub dedup_period: &'static str,
}

/// Where `detection` is among `detections`: an alert of a detection the rule does not list
/// is a bug of the rule, which its own tests meet first.
pub(crate) fn index_of(detections: &[&Detection], detection: &Detection) -> usize {
    detections
        .iter()
        .position(|d| std::ptr::eq(*d, detection) || d.id == detection.id)
        .unwrap_or_else(|| panic!("`{}` is not among the rule's detections", detection.id))
}

/// Looks a detection up by id in a rule's list.
pub fn by_id(detections: &[&'static Detection], id: &str) -> Option<&'static Detection> {
    detections.iter().copied().find(|d| d.id == id)
}
