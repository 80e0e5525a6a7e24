//! Alerts as OCSF Detection Findings (class 2004 of the Open Cybersecurity Schema
//! Framework, version [`VERSION`]): what security data lakes and SIEMs ingest. One mapping,
//! used by every host this SDK binds and by `rule-harness`, so that each writes the same
//! finding for an alert.
//!
//! A finding carries what the detection declares (its name, severity, ATT&CK mappings,
//! description, reference: [`Declared`]), what the rule raised ([`Raised`]), and what the
//! alert's context says of the activity, read from its well-known keys, the ones a
//! CloudTrail rule's context uses (the SSM rule's, and Panther's `aws_rule_context`):
//!
//! | finding | context keys, the first present |
//! |---|---|
//! | the acting identity (`evidences[].actor.user`): `uid`, `name`, `type`, `account` | `identity`, `userIdentity.arn`, `userIdentity.principalId`; `userIdentity.userName`, else the ARN's name; `identity_type`, `userIdentity.type`; `account`, `recipientAccountId`, `userIdentity.accountId` |
//! | the source (`evidences[].src_endpoint.ip`) | `source_ip`, `sourceIPAddress` |
//! | the API call (`evidences[].api`) | `eventName`, `eventSource` |
//! | the targets (`resources[].uid`) | `target`, `targets` |
//! | `cloud` (provider AWS), and the `cloud` profile | `region`, `awsRegion`; the account above |
//!
//! A key whose value is empty or `unknown` (what a rule writes for a field its record
//! lacks) counts as absent, so that unrelated findings are not grouped under a placeholder.
//! The whole context is kept as `unmapped`. `time` and the first and last seen times are
//! the record's event time, so a replay gives the same findings; `finding_info.uid` is
//! stable (a hash of the detection, dedup key and event time), and the dedup key is
//! `metadata.correlation_uid`.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::RuleInfo;
use crate::alert::{Declared, MitreLine, Raised};
use crate::catalog::Severity;
use crate::cloudtrail::{UNKNOWN, identity_name};
use crate::json::{Document, Object, ObjectWriter, write_str};
use crate::kv::hash_parts;

/// The OCSF version findings follow.
pub const VERSION: &str = "1.8.0";

/// What findings name as their product: the rule.
#[derive(Clone, Debug)]
pub struct Product {
    /// The rule's name.
    pub name: String,
    /// The rule's version.
    pub version: String,
}

impl Product {
    /// The rule that describes itself as `info`.
    pub fn of(info: &RuleInfo) -> Product {
        Product {
            name: info.name.into(),
            version: info.version.into(),
        }
    }
}

/// Who findings name as the product's vendor.
const VENDOR: &str = "detect-sdk";

/// The parts of a detection's findings that it declares, written as JSON once.
#[derive(Clone, Debug)]
pub struct FindingTemplate {
    id: String,
    /// From `{"activity_id"` to `"time":`.
    head: String,
    /// `"analytic"` to the end of what `finding_info` declares, with a leading comma.
    info: String,
    /// What `"metadata"` declares: the OCSF version, the product, the event code.
    metadata: String,
}

impl FindingTemplate {
    /// The template of `declared`'s findings, raised by the rule `product`.
    pub fn new(declared: &Declared, product: &Product) -> Self {
        let (severity_id, severity) = severity(declared.severity);
        let head = format!(
            "{{\"activity_id\":1,\"activity_name\":\"Create\",\"category_uid\":2,\
             \"category_name\":\"Findings\",\"class_uid\":2004,\"class_name\":\"Detection \
             Finding\",\"type_uid\":200401,\"type_name\":\"Detection Finding: Create\",\
             \"severity_id\":{severity_id},\"severity\":\"{severity}\",\"status_id\":1,\
             \"status\":\"New\",\"is_alert\":true,\"time\":"
        );
        let mut analytic = ObjectWriter::with_capacity(128);
        analytic
            .str("uid", &declared.id)
            .str("name", &declared.name);
        analytic.str("type", "Rule").raw("type_id", "1");
        let mut info = format!(",\"analytic\":{},", analytic.finish());
        info.push_str("\"desc\":");
        write_str(&mut info, &declared.description);
        info.push_str(",\"types\":[");
        write_str(&mut info, &declared.name);
        info.push(']');
        if !declared.mitre.is_empty() {
            info.push_str(",\"attacks\":[");
            for (n, m) in declared.mitre.iter().enumerate() {
                if n > 0 {
                    info.push(',');
                }
                info.push_str(&attack(m));
            }
            info.push(']');
        }
        if declared.reference.starts_with("http") {
            info.push_str(",\"src_url\":");
            write_str(&mut info, &declared.reference);
        }
        let mut metadata = String::from("\"version\":\"");
        metadata.push_str(VERSION);
        metadata.push_str("\",\"product\":");
        let mut about = ObjectWriter::with_capacity(64);
        about
            .str("name", &product.name)
            .str("vendor_name", VENDOR)
            .str("version", &product.version);
        metadata.push_str(&about.finish());
        metadata.push_str(",\"event_code\":");
        write_str(&mut metadata, &declared.id);
        FindingTemplate {
            id: declared.id.clone(),
            head,
            info,
            metadata,
        }
    }

    /// Appends the finding of `raised` (a JSON object, without a newline) to `out`.
    /// `raised.context` must be JSON.
    pub fn write(&self, out: &mut String, raised: &Raised) {
        let time = raised.event_time.to_string();
        let uid = format!("{:016x}", hash_parts(&[&self.id, raised.dedup_key, &time]));
        let context = Document::parse(raised.context).ok();
        let facts = context.as_ref().map(|doc| Facts::of(doc.root()));
        out.push_str(&self.head);
        out.push_str(&time);
        out.push_str(",\"message\":");
        write_str(out, raised.title);
        out.push_str(",\"finding_info\":{\"uid\":\"");
        out.push_str(&uid);
        out.push_str("\",\"title\":");
        write_str(out, raised.title);
        out.push_str(&self.info);
        out.push_str(",\"first_seen_time\":");
        out.push_str(&time);
        out.push_str(",\"last_seen_time\":");
        out.push_str(&time);
        out.push_str("},\"metadata\":{");
        out.push_str(&self.metadata);
        out.push_str(",\"correlation_uid\":");
        write_str(out, raised.dedup_key);
        out.push_str(",\"uid\":\"");
        out.push_str(&uid);
        out.push('"');
        if let Some(event) = raised.event_id {
            out.push_str(",\"original_event_uid\":");
            write_str(out, event);
        }
        let cloud = facts.as_ref().is_some_and(Facts::in_cloud);
        if cloud {
            out.push_str(",\"profiles\":[\"cloud\"]");
        }
        out.push('}');
        if let Some(facts) = &facts {
            facts.write(out, cloud);
        }
        out.push_str(",\"unmapped\":");
        match context {
            Some(_) => out.push_str(raised.context),
            None => {
                let mut text = ObjectWriter::with_capacity(raised.context.len() + 16);
                text.str("context", raised.context);
                out.push_str(&text.finish());
            }
        }
        out.push('}');
    }
}

/// An ATT&CK mapping as OCSF's `attack`: a sub-technique (`T1021.008`, named
/// `Remote Services: Direct Cloud VM Connections`) goes in `sub_technique`, its parent in
/// `technique`, as OCSF and ATT&CK name them.
fn attack(mitre: &MitreLine) -> String {
    let pair = |uid: &str, name: &str| {
        let mut object = ObjectWriter::with_capacity(64);
        object.str("uid", uid).str("name", name);
        object.finish()
    };
    let tactic = pair(&mitre.tactic_id, &mitre.tactic);
    let (id, name) = (mitre.technique_id.as_str(), mitre.technique.as_str());
    match (id.split_once('.'), name.split_once(": ")) {
        (Some((parent_id, _)), Some((parent, sub))) => format!(
            "{{\"tactic\":{tactic},\"technique\":{},\"sub_technique\":{}}}",
            pair(parent_id, parent),
            pair(id, sub)
        ),
        _ => format!("{{\"tactic\":{tactic},\"technique\":{}}}", pair(id, name)),
    }
}

/// OCSF's `severity_id` and its caption.
fn severity(severity: Severity) -> (u8, &'static str) {
    match severity {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// What an alert's context says of the activity (see the module's table).
struct Facts<'a> {
    identity: Option<Cow<'a, str>>,
    identity_type: Option<Cow<'a, str>>,
    user_name: Option<Cow<'a, str>>,
    account: Option<Cow<'a, str>>,
    source_ip: Option<Cow<'a, str>>,
    region: Option<Cow<'a, str>>,
    event: Option<(Cow<'a, str>, Option<Cow<'a, str>>)>,
    targets: Vec<String>,
}

impl<'a> Facts<'a> {
    fn of(context: Object<'_, 'a>) -> Facts<'a> {
        let text = |object: Option<Object<'_, 'a>>, key: &str| {
            let value = object?.get(key)?.as_str()?.ok()?;
            (!value.is_empty() && value != UNKNOWN).then_some(value)
        };
        let top = Some(context);
        let who = context.get("userIdentity").and_then(|v| v.as_object());
        let first = |choices: [Option<Cow<'a, str>>; 3]| choices.into_iter().flatten().next();
        let listed = context.get("targets").map(|list| list.raw());
        let mut targets: Vec<String> = listed
            .and_then(|list| serde_json::from_str::<Vec<Option<String>>>(list).ok())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|target| !target.is_empty() && target != UNKNOWN)
            .collect();
        if targets.is_empty() {
            targets.extend(text(top, "target").map(Cow::into_owned));
        }
        Facts {
            identity: first([
                text(top, "identity"),
                text(who, "arn"),
                text(who, "principalId"),
            ]),
            identity_type: first([text(top, "identity_type"), text(who, "type"), None]),
            user_name: text(who, "userName"),
            account: first([
                text(top, "account"),
                text(top, "recipientAccountId"),
                text(who, "accountId"),
            ]),
            source_ip: first([text(top, "source_ip"), text(top, "sourceIPAddress"), None]),
            region: first([text(top, "region"), text(top, "awsRegion"), None]),
            event: text(top, "eventName").map(|name| (name, text(top, "eventSource"))),
            targets,
        }
    }

    /// Whether the activity is an AWS account's: findings then take the `cloud` profile.
    fn in_cloud(&self) -> bool {
        self.account.is_some() || self.region.is_some()
    }

    /// Appends `cloud` (when `cloud`), `resources` and `evidences`.
    fn write(&self, out: &mut String, cloud: bool) {
        let account = self.account.as_deref().map(account);
        if cloud {
            let mut object = ObjectWriter::with_capacity(96);
            object.str("provider", "AWS");
            if let Some(region) = &self.region {
                object.str("region", region);
            }
            if let Some(account) = &account {
                object.raw("account", account);
            }
            out.push_str(",\"cloud\":");
            out.push_str(&object.finish());
        }
        if !self.targets.is_empty() {
            out.push_str(",\"resources\":[");
            for (n, target) in self.targets.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                let mut resource = ObjectWriter::with_capacity(64);
                resource.str("uid", target);
                if cloud {
                    resource.str("provider", "AWS");
                }
                if let Some(region) = &self.region {
                    resource.str("region", region);
                }
                out.push_str(&resource.finish());
            }
            out.push(']');
        }
        let mut evidence = ObjectWriter::with_capacity(256);
        if let Some(identity) = &self.identity {
            let user = self.user(identity, account.as_deref());
            evidence.raw("actor", &format!("{{\"user\":{user}}}"));
        }
        let ip = (self.source_ip.as_deref()).and_then(|ip| ip.parse::<IpAddr>().ok());
        if let Some(ip) = ip {
            evidence.raw("src_endpoint", &format!("{{\"ip\":\"{ip}\"}}"));
        }
        if let Some((operation, service)) = &self.event {
            let mut api = ObjectWriter::with_capacity(64);
            api.str("operation", operation);
            if let Some(name) = service {
                let mut named = ObjectWriter::with_capacity(48);
                named.str("name", name);
                api.raw("service", &named.finish());
            }
            evidence.raw("api", &api.finish());
        }
        let evidence = evidence.finish();
        if evidence != "{}" {
            out.push_str(",\"evidences\":[");
            out.push_str(&evidence);
            out.push(']');
        }
    }

    /// The acting identity as an OCSF user, of `account` (its JSON) when known.
    fn user(&self, identity: &str, account: Option<&str>) -> String {
        // CloudTrail's identity types, as OCSF's user types; the rest are `Other`.
        let (type_id, caption) = match self.identity_type.as_deref() {
            Some("IAMUser") => (1, "User"),
            Some("Root") => (2, "Admin"),
            Some("AWSService") => (4, "Service"),
            Some("Unknown") | None => (0, "Unknown"),
            Some(other) => (99, other),
        };
        let mut user = ObjectWriter::with_capacity(160);
        let name = (self.user_name.as_deref()).unwrap_or_else(|| identity_name(identity));
        user.str("uid", identity)
            .str("name", name)
            .str("type", caption)
            .raw("type_id", &type_id.to_string());
        if let Some(account) = account {
            user.raw("account", account);
        }
        user.finish()
    }
}

/// An AWS account as OCSF's `account`, its JSON.
fn account(uid: &str) -> String {
    let mut account = ObjectWriter::with_capacity(64);
    account
        .str("uid", uid)
        .str("type", "AWS Account")
        .raw("type_id", "10");
    account.finish()
}

#[cfg(any(test, feature = "testkit"))]
pub mod schema;
#[cfg(test)]
mod tests;
