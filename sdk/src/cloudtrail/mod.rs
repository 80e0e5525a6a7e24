//! Reading CloudTrail records: what many rules over CloudTrail need.
//!
//! Nearly every record in a CloudTrail stream is irrelevant to any one rule, so reading
//! happens in two steps: [`is_event`] decides relevance with one scan of the text, and only
//! a relevant record is parsed into a tree and read through [`Fields`], every field
//! type-checked by path. Plus Panther's helpers that detections commonly use:
//! [`actor::actor_user`], [`aws_rule_context`] and [`source_network`].

pub mod actor;

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::RuleError;

/// The two fields that say what a CloudTrail record is.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "eventSource", borrow, default)]
    event_source: Option<&'a RawValue>,
    #[serde(rename = "eventName", borrow, default)]
    event_name: Option<&'a RawValue>,
}

/// Whether `text` is a record of `event_source` named `event_name` (e.g.
/// `ssm.amazonaws.com`, `StartSession`), found by walking the JSON once without building
/// it: that validates the text and decides relevance at the cost of a scan. Errors for
/// text that is not a JSON object, or whose `eventSource`/`eventName` is not a string.
pub fn is_event(text: &str, event_source: &str, event_name: &str) -> Result<bool, RuleError> {
    // serde would also read a JSON array as a struct, field by field.
    if !text.trim_start().starts_with('{') {
        return Err(not_an_object(text));
    }
    let envelope: Envelope =
        serde_json::from_str(text).map_err(|e| RuleError::InvalidJson(e.to_string()))?;
    let source = raw_string("eventSource", envelope.event_source)?;
    let name = raw_string("eventName", envelope.event_name)?;
    Ok(source.as_deref() == Some(event_source) && name.as_deref() == Some(event_name))
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

/// What kind of JSON value `value` is, as error messages name it.
pub fn kind_of(value: &Value) -> &'static str {
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
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// The value at `path`, if present and not null.
    pub fn value(&self, path: &[&str]) -> Result<Option<&'a Value>, RuleError> {
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
    pub fn str(&self, path: &[&str]) -> Result<Option<&'a str>, RuleError> {
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

/// The records of a pipeline's record: the elements of a CloudTrail log file
/// (`{"Records": [...]}`), or the record itself.
pub fn records(text: &str) -> Vec<&str> {
    #[derive(Deserialize)]
    struct LogFile<'a> {
        #[serde(rename = "Records", borrow)]
        records: Vec<&'a RawValue>,
    }
    if !text.contains("\"Records\"") {
        return vec![text];
    }
    match serde_json::from_str::<LogFile>(text) {
        Ok(log) => log.records.into_iter().map(RawValue::get).collect(),
        Err(_) => vec![text],
    }
}

/// Parses a record that [`is_event`] accepted into its fields.
pub fn parse_object(text: &str) -> Result<Map<String, Value>, RuleError> {
    match serde_json::from_str(text).map_err(|e| RuleError::InvalidJson(e.to_string()))? {
        Value::Object(object) => Ok(object),
        other => Err(RuleError::NotAnObject(kind_of(&other).into())),
    }
}

/// Panther's `aws_rule_context(event)`: the record's own values, or Panther's
/// placeholders.
pub fn aws_rule_context(record: &Map<String, Value>) -> Value {
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
        let value = record
            .get(*key)
            .cloned()
            .unwrap_or_else(|| Value::from(*missing));
        (key.to_string(), value)
    });
    Value::Object(context.collect())
}

/// The network a session came from: an IPv4 /24 or IPv6 /48, so that a user's address
/// changing inside one network is not a new source.
pub fn source_network(source: Option<&str>) -> String {
    match source.map(|s| (s, s.parse::<IpAddr>())) {
        None => "unknown".to_owned(),
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

    const SSM: (&str, &str) = ("ssm.amazonaws.com", "StartSession");

    fn is_start_session(text: &str) -> Result<bool, RuleError> {
        is_event(text, SSM.0, SSM.1)
    }

    #[test]
    fn the_envelope_finds_records_of_one_event() {
        let start = r#"{"eventSource": "ssm.amazonaws.com", "eventName": "StartSession", "x": [1, {"y": "z"}]}"#;
        assert_eq!(is_start_session(start), Ok(true));
        let describe = r#"{"eventName": "DescribeInstances", "eventSource": "ec2.amazonaws.com"}"#;
        assert_eq!(is_start_session(describe), Ok(false));
        assert_eq!(is_start_session("{}"), Ok(false));
        assert_eq!(is_start_session(r#"{"eventName": null}"#), Ok(false));
        let escaped = r#"{"eventSource": "ssm.amazonaws.com", "eventName": "Start\u0053ession"}"#;
        assert_eq!(is_start_session(escaped), Ok(true));
    }

    #[test]
    fn the_envelope_rejects_what_is_not_a_record() {
        for text in ["not json", r#"{"eventName": "StartSession""#, ""] {
            assert!(
                matches!(is_start_session(text), Err(RuleError::InvalidJson(_))),
                "{text}"
            );
        }
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
    fn fields_are_typed_by_path() {
        let record = parse_object(r#"{"a": {"b": "x", "c": 1, "e": ""}, "d": null}"#).unwrap();
        let f = Fields(&record);
        assert_eq!(f.str(&["a", "b"]), Ok(Some("x")));
        assert_eq!(f.str(&["a", "e"]), Ok(None), "empty counts as absent");
        assert_eq!(f.str(&["d", "b"]), Ok(None));
        assert_eq!(
            f.str(&["a", "c"]),
            Err(RuleError::field("a.c", "expected a string, found a number"))
        );
        assert_eq!(
            f.str(&["a", "b", "z"]),
            Err(RuleError::field(
                "a.b",
                "expected an object, found a string"
            ))
        );
        assert_eq!(
            parse_object("[]"),
            Err(RuleError::NotAnObject("an array".into()))
        );
    }

    #[test]
    fn log_files_are_split_into_their_records() {
        assert_eq!(
            records(r#"{"Records": [{"a": 1}, {"b": 2}]}"#),
            [r#"{"a": 1}"#, r#"{"b": 2}"#]
        );
        assert_eq!(records(r#"{"a": 1}"#), [r#"{"a": 1}"#]);
        assert_eq!(
            records(r#"{"a": "\"Records\""}"#),
            [r#"{"a": "\"Records\""}"#]
        );
    }

    #[test]
    fn panther_context_uses_placeholders() {
        let record = parse_object(r#"{"eventName": "StartSession"}"#).unwrap();
        let context = aws_rule_context(&record);
        assert_eq!(context["eventName"], "StartSession");
        assert_eq!(context["userIdentity"], "<MISSING_USER_IDENTITY>");
    }

    #[test]
    fn source_networks() {
        assert_eq!(source_network(Some("203.0.113.77")), "203.0.113.0/24");
        assert_eq!(
            source_network(Some("2001:db8:abcd:12::1")),
            "2001:db8:abcd::/48"
        );
        assert_eq!(source_network(Some("AWS Internal")), "AWS Internal");
        assert_eq!(source_network(None), "unknown");
    }
}
