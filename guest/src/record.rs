//! Reading CloudTrail records.
//!
//! Nearly every record in a CloudTrail stream is irrelevant to this rule, so reading
//! happens in two steps. [`is_start_session`] walks the JSON once without building it,
//! borrowing only `eventSource` and `eventName`: that validates the text and decides
//! relevance at the cost of a scan. Only an SSM `StartSession` record is then parsed
//! into a tree and read into a [`SessionStart`], every field type-checked by path.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::actor;
use crate::error::RuleError;
use crate::timestamp::{Millis, parse_event_time};

/// Placeholder for a value the record does not carry.
pub const UNKNOWN: &str = "unknown";
/// The document Session Manager uses when a `StartSession` names none.
pub const DEFAULT_DOCUMENT: &str = "SSM-SessionManagerRunShell";

/// The two fields that decide whether the rule looks at a record.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "eventSource", borrow, default)]
    event_source: Option<&'a RawValue>,
    #[serde(rename = "eventName", borrow, default)]
    event_name: Option<&'a RawValue>,
}

/// Whether `text` is an SSM `StartSession` record. Errors for text that is not a JSON
/// object, or whose `eventSource`/`eventName` is not a string.
pub fn is_start_session(text: &str) -> Result<bool, RuleError> {
    // serde would also read a JSON array as a struct, field by field.
    if !text.trim_start().starts_with('{') {
        return Err(not_an_object(text));
    }
    let envelope: Envelope =
        serde_json::from_str(text).map_err(|e| RuleError::InvalidJson(e.to_string()))?;
    let source = raw_string("eventSource", envelope.event_source)?;
    let name = raw_string("eventName", envelope.event_name)?;
    Ok(source.as_deref() == Some("ssm.amazonaws.com") && name.as_deref() == Some("StartSession"))
}

/// The error for text that does not start like an object: JSON of another kind, or not JSON.
fn not_an_object(text: &str) -> RuleError {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => RuleError::NotAnObject(kind_of(&value).into()),
        Err(e) => RuleError::InvalidJson(e.to_string()),
    }
}

/// A borrowed JSON value as a string: `None` for null or absent, an error for any other type.
fn raw_string<'a>(
    field: &str,
    raw: Option<&'a RawValue>,
) -> Result<Option<Cow<'a, str>>, RuleError> {
    let Some(raw) = raw else { return Ok(None) };
    let json = raw.get();
    match json.as_bytes()[0] {
        b'n' => Ok(None),
        // A string without escapes is its own text between the quotes.
        b'"' if !json.contains('\\') => Ok(Some(Cow::Borrowed(&json[1..json.len() - 1]))),
        b'"' => serde_json::from_str(json)
            .map(Some)
            .map_err(|e| RuleError::field(field, e.to_string())),
        _ => Err(RuleError::field(
            field,
            format!("expected a string, found {}", kind_of_raw(json)),
        )),
    }
}

fn kind_of_raw(json: &str) -> &'static str {
    match json.as_bytes()[0] {
        b'{' => "an object",
        b'[' => "an array",
        b't' | b'f' => "a boolean",
        _ => "a number",
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Typed access to a parsed record, by dotted path. Absent and `null` read as `None`;
/// a wrong type is an error that names the path.
pub(crate) struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    pub(crate) fn value(&self, path: &[&str]) -> Result<Option<&'a Value>, RuleError> {
        let mut object = self.0;
        for (depth, key) in path.iter().enumerate() {
            let value = match object.get(*key) {
                None | Some(Value::Null) => return Ok(None),
                Some(v) => v,
            };
            if depth + 1 == path.len() {
                return Ok(Some(value));
            }
            object = value.as_object().ok_or_else(|| {
                RuleError::field(
                    &path[..=depth].join("."),
                    format!("expected an object, found {}", kind_of(value)),
                )
            })?;
        }
        Ok(None)
    }

    /// A string field; the empty string counts as absent.
    pub(crate) fn str(&self, path: &[&str]) -> Result<Option<&'a str>, RuleError> {
        match self.value(path)? {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(RuleError::field(
                &path.join("."),
                format!("expected a string, found {}", kind_of(other)),
            )),
        }
    }
}

/// What the rule knows of one SSM `StartSession` record.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionStart {
    pub time: Millis,
    /// Neither `errorCode` nor `errorMessage` is set.
    pub succeeded: bool,
    pub error_code: Option<String>,
    /// `userIdentity.arn`, else `userIdentity.principalId`, else `unknown`.
    pub identity: String,
    pub identity_type: Option<String>,
    /// The short name of the actor, as Panther's `get_actor_user` derives it.
    pub actor: String,
    /// `recipientAccountId`, else `userIdentity.accountId`, else `unknown`.
    pub account: String,
    /// `requestParameters.target`, else `unknown`.
    pub target: String,
    pub source_ip: Option<String>,
    /// The source IP's /24 (IPv4) or /48 (IPv6), or the source itself when it is not an
    /// IP (`AWS Internal`), else `unknown`.
    pub source_network: String,
    /// `requestParameters.documentName`, else `SSM-SessionManagerRunShell`.
    pub document: String,
    pub session_id: Option<String>,
    pub user_agent: Option<String>,
    pub region: Option<String>,
    pub event_id: Option<String>,
    /// The whole record, moved here rather than copied: only an alert that mirrors
    /// Panther needs more of it (see [`SessionStart::panther_context`]).
    pub record: Map<String, Value>,
}

impl SessionStart {
    /// Reads a record that [`is_start_session`] accepted.
    pub fn parse(text: &str) -> Result<SessionStart, RuleError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| RuleError::InvalidJson(e.to_string()))?;
        let Value::Object(object) = value else {
            return Err(RuleError::NotAnObject(kind_of(&value).into()));
        };
        let f = Fields(&object);

        let time_text = f
            .str(&["eventTime"])?
            .ok_or_else(|| RuleError::InvalidTime("missing".into()))?;
        let time = parse_event_time(time_text).map_err(RuleError::InvalidTime)?;
        let error_code = f.str(&["errorCode"])?;
        let error_message = f.str(&["errorMessage"])?;
        let owned = |s: Option<&str>| s.map(str::to_owned);
        let source_ip = f.str(&["sourceIPAddress"])?;
        let identity = f
            .str(&["userIdentity", "arn"])?
            .or(f.str(&["userIdentity", "principalId"])?)
            .unwrap_or(UNKNOWN);
        let account = f
            .str(&["recipientAccountId"])?
            .or(f.str(&["userIdentity", "accountId"])?)
            .unwrap_or(UNKNOWN);

        let mut session = SessionStart {
            time,
            succeeded: error_code.is_none() && error_message.is_none(),
            error_code: owned(error_code),
            identity: identity.to_owned(),
            identity_type: owned(f.str(&["userIdentity", "type"])?),
            actor: actor::actor_user(&f)?,
            account: account.to_owned(),
            target: f
                .str(&["requestParameters", "target"])?
                .unwrap_or(UNKNOWN)
                .to_owned(),
            source_ip: owned(source_ip),
            source_network: source_network(source_ip),
            document: f
                .str(&["requestParameters", "documentName"])?
                .unwrap_or(DEFAULT_DOCUMENT)
                .to_owned(),
            session_id: owned(f.str(&["responseElements", "sessionId"])?),
            user_agent: owned(f.str(&["userAgent"])?),
            region: owned(f.str(&["awsRegion"])?),
            event_id: owned(f.str(&["eventID"])?),
            record: Map::new(),
        };
        session.record = object;
        Ok(session)
    }

    /// Panther's `aws_rule_context(event)`: the record's own values, or Panther's
    /// placeholders.
    pub fn panther_context(&self) -> Value {
        let fields = [
            ("eventName", "<MISSING_EVENT_NAME>"),
            ("eventSource", "<MISSING_EVENT_SOURCE>"),
            ("awsRegion", "<MISSING_AWS_REGION>"),
            ("recipientAccountId", "<MISSING_ACCOUNT_ID>"),
            ("sourceIPAddress", "<MISSING_SOURCE_IP>"),
            ("userAgent", "<MISSING_USER_AGENT>"),
            ("userIdentity", "<MISSING_USER_IDENTITY>"),
        ];
        let context = fields.iter().map(|(key, missing)| {
            let value = self
                .record
                .get(*key)
                .cloned()
                .unwrap_or_else(|| Value::from(*missing));
            (key.to_string(), value)
        });
        Value::Object(context.collect())
    }

    /// The identity as a person reads it: the resource part of an ARN
    /// (`assumed-role/Engineer/alice`, `user/deploy-bot`), else the identity itself.
    pub fn identity_name(&self) -> &str {
        match self.identity.strip_prefix("arn:") {
            Some(rest) => rest.splitn(5, ':').nth(4).unwrap_or(&self.identity),
            None => &self.identity,
        }
    }
}

/// The network a session came from: an IPv4 /24 or IPv6 /48, so that a user's address
/// changing inside one network is not a new source.
pub fn source_network(source: Option<&str>) -> String {
    match source.map(|s| (s, s.parse::<IpAddr>())) {
        None => UNKNOWN.to_owned(),
        Some((_, Ok(IpAddr::V4(ip)))) => {
            format!("{}/24", Ipv4Addr::from(ip.to_bits() & 0xffff_ff00))
        }
        Some((_, Ok(IpAddr::V6(ip)))) => {
            format!("{}/48", Ipv6Addr::from(ip.to_bits() & (!0u128 << 80)))
        }
        Some((text, Err(_))) => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{SAMPLE, record};
    use serde_json::json;

    #[test]
    fn the_envelope_finds_start_session_records() {
        assert_eq!(is_start_session(SAMPLE), Ok(true));
        let describe =
            record(json!({"eventName": "DescribeInstances", "eventSource": "ec2.amazonaws.com"}));
        assert_eq!(is_start_session(&describe), Ok(false));
        let other_service = record(json!({"eventSource": "ec2.amazonaws.com"}));
        assert_eq!(is_start_session(&other_service), Ok(false));
        assert_eq!(is_start_session("{}"), Ok(false));
        assert_eq!(is_start_session(r#"{"eventName": null}"#), Ok(false));
        let escaped = r#"{"eventSource": "ssm.amazonaws.com", "eventName": "Start\u0053ession"}"#;
        assert_eq!(is_start_session(escaped), Ok(true));
    }

    #[test]
    fn the_envelope_rejects_what_is_not_a_record() {
        assert!(matches!(
            is_start_session("not json"),
            Err(RuleError::InvalidJson(_))
        ));
        assert!(matches!(
            is_start_session(r#"{"eventName": "StartSession""#),
            Err(RuleError::InvalidJson(_))
        ));
        assert!(matches!(
            is_start_session(""),
            Err(RuleError::InvalidJson(_))
        ));
        for (text, kind) in [
            ("[1, 2]", "an array"),
            ("\"x\"", "a string"),
            ("42", "a number"),
            ("true", "a boolean"),
            ("null", "null"),
        ] {
            assert_eq!(
                is_start_session(text),
                Err(RuleError::NotAnObject(kind.into())),
                "{text}"
            );
        }
        let wrong = r#"{"eventSource": 7, "eventName": "StartSession"}"#;
        assert_eq!(
            is_start_session(wrong),
            Err(RuleError::field(
                "eventSource",
                "expected a string, found a number"
            ))
        );
    }

    #[test]
    fn reads_the_panther_sample() {
        let s = SessionStart::parse(SAMPLE).unwrap();
        assert_eq!(s.time, 1_739_996_029_000);
        assert!(s.succeeded);
        assert_eq!(
            s.identity,
            "arn:aws:sts::111122223333:assumed-role/SampleRole/bobson.dugnutt"
        );
        assert_eq!(s.identity_type.as_deref(), Some("AssumedRole"));
        assert_eq!(s.actor, "SampleRole");
        assert_eq!(s.account, "111122223333");
        assert_eq!(s.target, "i-047fce8bf4806e5ee");
        assert_eq!(s.source_ip.as_deref(), Some("1.2.3.4"));
        assert_eq!(s.source_network, "1.2.3.0/24");
        assert_eq!(s.document, DEFAULT_DOCUMENT);
        assert_eq!(
            s.session_id.as_deref(),
            Some("bobson.dugnutt-4njnyxxl8yn676nsla8j6l4bra")
        );
        assert_eq!(s.region.as_deref(), Some("us-west-2"));
        assert_eq!(
            s.event_id.as_deref(),
            Some("c61c9a5d-4d9c-45ee-8c46-9845ea001e97")
        );
        assert_eq!(s.panther_context()["userIdentity"]["type"], "AssumedRole");
        assert_eq!(s.panther_context()["eventName"], "StartSession");
    }

    #[test]
    fn falls_back_when_fields_are_missing() {
        let bare = json!({"eventSource": "ssm.amazonaws.com", "eventName": "StartSession", "eventTime": "2025-01-01T00:00:00Z"});
        let s = SessionStart::parse(&bare.to_string()).unwrap();
        assert_eq!(
            (s.identity.as_str(), s.account.as_str(), s.target.as_str()),
            (UNKNOWN, UNKNOWN, UNKNOWN)
        );
        assert_eq!(
            (s.source_network.as_str(), s.document.as_str()),
            (UNKNOWN, DEFAULT_DOCUMENT)
        );
        assert_eq!(
            s.panther_context()["userIdentity"],
            "<MISSING_USER_IDENTITY>"
        );

        let principal = record(
            json!({"userIdentity": {"arn": null, "principalId": "AIDAEXAMPLE", "accountId": "444455556666"}, "recipientAccountId": null}),
        );
        let s = SessionStart::parse(&principal).unwrap();
        assert_eq!(
            (s.identity.as_str(), s.account.as_str()),
            ("AIDAEXAMPLE", "444455556666")
        );

        let document = record(
            json!({"requestParameters": {"target": "i-1", "documentName": "AWS-StartPortForwardingSession"}}),
        );
        assert_eq!(
            SessionStart::parse(&document).unwrap().document,
            "AWS-StartPortForwardingSession"
        );
    }

    #[test]
    fn failure_is_an_error_code_or_message() {
        let denied =
            record(json!({"errorCode": "AccessDenied", "errorMessage": "User is not authorized"}));
        let s = SessionStart::parse(&denied).unwrap();
        assert!(!s.succeeded);
        assert_eq!(s.error_code.as_deref(), Some("AccessDenied"));
        assert!(
            !SessionStart::parse(&record(json!({"errorMessage": "throttled"})))
                .unwrap()
                .succeeded
        );
        assert!(
            SessionStart::parse(&record(json!({"errorCode": "", "errorMessage": null})))
                .unwrap()
                .succeeded
        );
    }

    #[test]
    fn identity_names_drop_the_arn_prefix() {
        let name = |identity: &str| {
            SessionStart {
                identity: identity.into(),
                ..SessionStart::parse(SAMPLE).unwrap()
            }
            .identity_name()
            .to_owned()
        };
        assert_eq!(
            name("arn:aws:sts::111122223333:assumed-role/Engineer/alice"),
            "assumed-role/Engineer/alice"
        );
        assert_eq!(
            name("arn:aws:iam::111122223333:user/deploy-bot"),
            "user/deploy-bot"
        );
        assert_eq!(name("arn:aws:iam::111122223333:root"), "root");
        assert_eq!(name("AIDAEXAMPLE"), "AIDAEXAMPLE");
        assert_eq!(name("arn:broken"), "arn:broken");
    }

    #[test]
    fn source_networks() {
        assert_eq!(source_network(Some("203.0.113.77")), "203.0.113.0/24");
        assert_eq!(
            source_network(Some("2001:db8:abcd:12::1")),
            "2001:db8:abcd::/48"
        );
        assert_eq!(source_network(Some("AWS Internal")), "AWS Internal");
        assert_eq!(
            source_network(Some("ssm.amazonaws.com")),
            "ssm.amazonaws.com"
        );
        assert_eq!(source_network(None), UNKNOWN);
    }

    #[test]
    fn wrong_field_types_name_the_field() {
        for (overrides, field, found) in [
            (json!({"eventTime": 5}), "eventTime", "a number"),
            (json!({"userIdentity": "root"}), "userIdentity", "a string"),
            (
                json!({"userIdentity": {"arn": ["x"]}}),
                "userIdentity.arn",
                "an array",
            ),
            (
                json!({"requestParameters": {"target": {"id": 1}}}),
                "requestParameters.target",
                "an object",
            ),
            (
                json!({"requestParameters": []}),
                "requestParameters",
                "an array",
            ),
            (
                json!({"sourceIPAddress": false}),
                "sourceIPAddress",
                "a boolean",
            ),
            (json!({"errorCode": 403}), "errorCode", "a number"),
            (
                json!({"responseElements": {"sessionId": 1}}),
                "responseElements.sessionId",
                "a number",
            ),
        ] {
            let err = SessionStart::parse(&record(overrides.clone())).unwrap_err();
            assert_eq!(
                err,
                RuleError::field(
                    field,
                    format!(
                        "expected {}, found {found}",
                        if field.ends_with("Parameters") || field == "userIdentity" {
                            "an object"
                        } else {
                            "a string"
                        }
                    )
                ),
                "{overrides}"
            );
        }
    }

    #[test]
    fn event_time_must_be_a_timestamp() {
        assert!(
            matches!(SessionStart::parse(&record(json!({"eventTime": "soon"}))), Err(RuleError::InvalidTime(m)) if m.contains("soon"))
        );
        assert_eq!(
            SessionStart::parse(&record(json!({"eventTime": null}))),
            Err(RuleError::InvalidTime("missing".into()))
        );
    }
}
