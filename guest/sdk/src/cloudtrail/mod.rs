//! Reading CloudTrail records: what many rules over CloudTrail need.
//!
//! A record is read once, without building it: [`Record::parse`] checks that the text is
//! one JSON object and indexes its fields where they lie in the text ([`crate::json`]); a field
//! is decoded only when the rule asks for it, by path, typed (a wrong type is an error that
//! names the path). Plus Panther's helpers that detections commonly use:
//! [`actor::actor_user`], [`aws_rule_context`] and [`source_network`].

pub mod actor;

use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};

use serde_json::Value;

use crate::bytes;
use crate::error::RuleError;
use crate::json::{Document, Kind, Object, Value as JsonValue};

/// A CloudTrail record, read once and decoded field by field.
#[derive(Debug)]
pub struct Record<'a> {
    doc: Document<'a>,
}

impl<'a> Record<'a> {
    /// Reads `text`, which must be one JSON object: the whole text is checked, once.
    pub fn parse(text: &'a str) -> Result<Record<'a>, RuleError> {
        match Document::parse(text) {
            Ok(doc) => Ok(Record { doc }),
            Err(_) if !text.trim_start().starts_with('{') => Err(not_an_object(text)),
            Err(e) => Err(RuleError::InvalidJson(e.to_string())),
        }
    }

    /// Whether this is a record of `event_source` named `event_name` (e.g.
    /// `ssm.amazonaws.com`, `StartSession`); an error if either field is not a string.
    pub fn is(&self, event_source: &str, event_name: &str) -> Result<bool, RuleError> {
        let is = |field, want| -> Result<bool, RuleError> {
            Ok((self.str(&[field])?).is_some_and(|text| bytes::same_text(&text, want)))
        };
        Ok(is("eventSource", event_source)? && is("eventName", event_name)?)
    }

    /// The top-level field `key` as JSON text, if present (`null` included).
    pub fn raw(&self, key: &str) -> Option<&'a str> {
        self.doc.root().get(key).map(|value| value.raw())
    }

    /// The top-level fields, in order: each key and its JSON text.
    pub fn members(&self) -> impl Iterator<Item = (Cow<'a, str>, &'a str)> + '_ {
        self.doc
            .root()
            .members()
            .map(|(key, value)| (key, value.raw()))
    }

    /// The string at `path`: `None` when absent, null or empty; an error naming the path
    /// when it, or an object on the way, has another type.
    // Inlined, so that a literal path's keys reach `Object::get` as constants.
    #[inline(always)]
    pub fn str(&self, path: &[&str]) -> Result<Option<Cow<'a, str>>, RuleError> {
        let (last, parents) = path.split_last().expect("a path has a field");
        self.fields(parents)?.str(last)
    }

    /// The fields of the object at `path` (the record's own for none), to read several of
    /// them without finding the object again; an object on the way that is absent or null
    /// has no fields, one of another type is an error naming it.
    // Inlined, so that a literal path's keys reach `Object::get` as constants.
    #[inline(always)]
    pub fn fields<'p>(&self, path: &'p [&'p str]) -> Result<Fields<'_, 'a, 'p>, RuleError> {
        let mut object = Some(self.doc.root());
        for (depth, key) in path.iter().enumerate() {
            let Some(value) = object.and_then(|o| o.get(key)) else {
                return Ok(Fields { object: None, path });
            };
            object = match (value.as_object(), value.kind()) {
                (Some(inner), _) => Some(inner),
                (None, Kind::Null) => None,
                (None, kind) => return Err(expected_object_at(&path[..=depth], kind)),
            };
        }
        Ok(Fields { object, path })
    }
}

/// The error for the value at `path`, of `kind`, where an object was expected.
#[cold]
#[inline(never)]
fn expected_object_at(path: &[&str], kind: Kind) -> RuleError {
    let what = format!("expected an object, found {}", kind.name());
    RuleError::field(&path.join("."), what)
}

/// The fields of one object of a [`Record`] ([`Record::fields`]).
pub struct Fields<'r, 'a, 'p> {
    object: Option<Object<'r, 'a>>,
    path: &'p [&'p str],
}

impl<'a> Fields<'_, 'a, '_> {
    /// The string field `key`: `None` when absent, null or empty; an error naming its path
    /// when it has another type.
    // Inlined, so that a literal key reaches `Object::get` as a constant.
    #[inline(always)]
    pub fn str(&self, key: &str) -> Result<Option<Cow<'a, str>>, RuleError> {
        self.str_of(key, self.object.and_then(|o| o.get(key)))
    }

    /// The string fields `keys`, each as [`Fields::str`] gives it, found in one walk over
    /// the object: for a rule that reads several (it can still meet their errors in the
    /// order it chooses).
    // Inlined, so that literal keys reach `Object::get_all` as constants.
    #[inline(always)]
    pub fn strs<const N: usize>(
        &self,
        keys: [&str; N],
    ) -> [Result<Option<Cow<'a, str>>, RuleError>; N] {
        let values = match self.object {
            Some(object) => object.get_all(keys),
            None => [None; N],
        };
        std::array::from_fn(|n| self.str_of(keys[n], values[n]))
    }

    /// [`Fields::str`] of `key`'s value: one copy, however many callers inline `str`.
    #[inline(never)]
    fn str_of(
        &self,
        key: &str,
        value: Option<JsonValue<'_, 'a>>,
    ) -> Result<Option<Cow<'a, str>>, RuleError> {
        let Some(value) = value else {
            return Ok(None);
        };
        match value.as_str() {
            Some(Ok(text)) if text.is_empty() => Ok(None),
            Some(Ok(text)) => Ok(Some(text)),
            Some(Err(e)) => Err(RuleError::field(&self.name(key), e.to_string())),
            None if value.kind() == Kind::Null => Ok(None),
            None => Err(RuleError::field(
                &self.name(key),
                format!("expected a string, found {}", value.kind().name()),
            )),
        }
    }

    /// The dotted path of field `key`.
    fn name(&self, key: &str) -> String {
        let mut path = self.path.to_vec();
        path.push(key);
        path.join(".")
    }
}

/// Whether `text` is a record of `event_source` named `event_name`: [`Record::is`] of it.
pub fn is_event(text: &str, event_source: &str, event_name: &str) -> Result<bool, RuleError> {
    Record::parse(text)?.is(event_source, event_name)
}

/// The error for text that does not start like an object: JSON of another kind, or not
/// JSON. Hosts that skip a record unread give it when the record is not even framed as an
/// object, as the rule would.
pub fn not_an_object(text: &str) -> RuleError {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => RuleError::NotAnObject(kind_of(&value).into()),
        Err(e) => RuleError::InvalidJson(e.to_string()),
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

/// The key of a CloudTrail log file's records, quoted: a record without it is not a log
/// file, and [`records`] need not parse it.
#[cfg(any(test, feature = "fluent-bit", feature = "fluvio"))]
pub(crate) fn log_file_key() -> &'static bytes::Needle {
    static KEY: std::sync::OnceLock<bytes::Needle> = std::sync::OnceLock::new();
    KEY.get_or_init(|| bytes::Needle::new(b"\"Records\""))
}

/// The records of a pipeline's record that holds [`log_file_key`]: the elements of a
/// CloudTrail log file (`{"Records": [...]}`), or the record itself.
#[cfg(any(test, feature = "fluent-bit", feature = "fluvio"))]
pub(crate) fn records(text: &str) -> Vec<&str> {
    use serde::Deserialize;
    use serde_json::value::RawValue;

    #[derive(Deserialize)]
    struct LogFile<'a> {
        #[serde(rename = "Records", borrow)]
        records: Vec<&'a RawValue>,
    }
    match serde_json::from_str::<LogFile>(text) {
        Ok(log) => log.records.into_iter().map(RawValue::get).collect(),
        Err(_) => vec![text],
    }
}

/// Panther's `aws_rule_context(event)`: the record's own values, or Panther's
/// placeholders, as a JSON object.
pub fn aws_rule_context(record: &Record) -> serde_json::Map<String, Value> {
    const FIELDS: [(&str, &str); 7] = [
        ("eventName", "<MISSING_EVENT_NAME>"),
        ("eventSource", "<MISSING_EVENT_SOURCE>"),
        ("awsRegion", "<MISSING_AWS_REGION>"),
        ("recipientAccountId", "<MISSING_ACCOUNT_ID>"),
        ("sourceIPAddress", "<MISSING_SOURCE_IP>"),
        ("userAgent", "<MISSING_USER_AGENT>"),
        ("userIdentity", "<MISSING_USER_IDENTITY>"),
    ];
    FIELDS
        .iter()
        .map(|(key, missing)| {
            let value = record
                .raw(key)
                .and_then(|raw| serde_json::from_str(raw).ok())
                .unwrap_or_else(|| Value::from(*missing));
            (key.to_string(), value)
        })
        .collect()
}

/// An identity as a person reads it: the resource part of an ARN
/// (`assumed-role/Engineer/alice`, `user/deploy-bot`), else the identity itself.
pub fn identity_name(identity: &str) -> &str {
    match identity.strip_prefix("arn:") {
        Some(rest) => rest.splitn(5, ':').nth(4).unwrap_or(identity),
        None => identity,
    }
}

/// What a rule's context says for a field its record lacks; the OCSF mapping reads it as
/// absent.
pub const UNKNOWN: &str = "unknown";

/// The network a session came from: an IPv4 /24 or IPv6 /48, so that a user's address
/// changing inside one network is not a new source; [`UNKNOWN`] without a source.
pub fn source_network(source: Option<&str>) -> String {
    match source.map(|s| (s, s.parse::<IpAddr>())) {
        None => UNKNOWN.to_owned(),
        // The parser takes only canonical text (no leading zeros): the /24 is the text
        // up to the last dot, without formatting the octets again.
        Some((text, Ok(IpAddr::V4(_)))) => {
            let network = &text[..text.rfind('.').expect("an IPv4 address has dots")];
            [network, ".0/24"].concat()
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
        let text = r#"{"a": {"b": "x", "c": 1, "e": "", "k\u0065y": "v\u0041"}, "d": null, "a2": {"b": {"c": "deep"}}}"#;
        let record = Record::parse(text).unwrap();
        let str = |path: &[&str]| record.str(path).map(|s| s.map(Cow::into_owned));
        assert_eq!(str(&["a", "b"]), Ok(Some("x".into())));
        assert_eq!(
            str(&["a", "key"]),
            Ok(Some("vA".into())),
            "escapes are decoded"
        );
        assert_eq!(str(&["a2", "b", "c"]), Ok(Some("deep".into())));
        assert_eq!(str(&["a", "e"]), Ok(None), "empty counts as absent");
        assert_eq!(str(&["d", "b"]), Ok(None));
        assert_eq!(str(&["nope"]), Ok(None));
        assert_eq!(
            str(&["a", "c"]),
            Err(RuleError::field("a.c", "expected a string, found a number"))
        );
        assert_eq!(
            str(&["a", "b", "z"]),
            Err(RuleError::field(
                "a.b",
                "expected an object, found a string"
            ))
        );
        assert!(matches!(Record::parse("[]"), Err(RuleError::NotAnObject(k)) if k == "an array"));
        assert!(matches!(
            Record::parse(r#"{"a": [1,}"#),
            Err(RuleError::InvalidJson(_))
        ));
        // A repeated key reads as its last value, as a parsed object keeps it.
        let repeated = Record::parse(r#"{"a": "1", "a": "2"}"#).unwrap();
        assert_eq!(repeated.str(&["a"]).unwrap().as_deref(), Some("2"));
    }

    #[test]
    fn several_fields_read_in_one_walk_read_as_one_by_one() {
        let text =
            r#"{"a": {"b": "x", "c": 1, "e": "", "k\u0065y": "v\u0041", "b": "y", "n": null}}"#;
        let record = Record::parse(text).unwrap();
        let a = record.fields(&["a"]).unwrap();
        let keys = ["b", "c", "e", "key", "nope", "n", "b"];
        assert_eq!(a.strs(keys), keys.map(|key| a.str(key)));
        assert_eq!(a.strs(["b"]), [Ok(Some("y".into()))], "the last of a key");
        let absent = record.fields(&["z"]).unwrap();
        assert_eq!(absent.strs(["b", "c"]), [Ok(None), Ok(None)]);
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
        let record = Record::parse(r#"{"eventName": "StartSession"}"#).unwrap();
        let context = aws_rule_context(&record);
        assert_eq!(context["eventName"], "StartSession");
        assert_eq!(context["userIdentity"], "<MISSING_USER_IDENTITY>");
    }

    #[test]
    fn source_networks() {
        assert_eq!(source_network(Some("203.0.113.77")), "203.0.113.0/24");
        assert_eq!(source_network(Some("0.0.0.0")), "0.0.0.0/24");
        // Not an address as the parser reads one (a leading zero), so its own network.
        assert_eq!(source_network(Some("010.0.0.1")), "010.0.0.1");
        assert_eq!(
            source_network(Some("2001:db8:abcd:12::1")),
            "2001:db8:abcd::/48"
        );
        assert_eq!(source_network(Some("AWS Internal")), "AWS Internal");
        assert_eq!(source_network(None), "unknown");
    }
}
