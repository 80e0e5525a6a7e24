//! What the rule reads from a CloudTrail record: whether it is an SSM `StartSession`, and
//! for those that are, a [`SessionStart`], every field type-checked by path. The record is
//! read once, and what can be borrowed from its text is.

use std::borrow::Cow;

use detect_sdk::cloudtrail::{self, Record, UNKNOWN, actor, aws_rule_context, source_network};
use detect_sdk::time::parse_event_time;
use detect_sdk::{Millis, RuleError};
use serde_json::Value;

/// The service and event the rule examines.
pub const EVENT_SOURCE: &str = "ssm.amazonaws.com";
/// See [`EVENT_SOURCE`].
pub const EVENT_NAME: &str = "StartSession";

/// Whether `text` is an SSM `StartSession` record. Errors for text that is not a JSON
/// object, or whose `eventSource`/`eventName` is not a string.
pub fn is_start_session(text: &str) -> Result<bool, RuleError> {
    cloudtrail::is_event(text, EVENT_SOURCE, EVENT_NAME)
}

/// The document Session Manager uses when a `StartSession` names none.
pub const DEFAULT_DOCUMENT: &str = "SSM-SessionManagerRunShell";

/// What the rule knows of one SSM `StartSession` record, borrowed from its text.
#[derive(Debug)]
pub struct SessionStart<'a> {
    pub time: Millis,
    /// Neither `errorCode` nor `errorMessage` is set.
    pub succeeded: bool,
    pub error_code: Option<Cow<'a, str>>,
    /// `userIdentity.arn`, else `userIdentity.principalId`, else `unknown`.
    pub identity: Cow<'a, str>,
    pub identity_type: Option<Cow<'a, str>>,
    /// The short name of the actor, as Panther's `get_actor_user` derives it.
    pub actor: String,
    /// `recipientAccountId`, else `userIdentity.accountId`, else `unknown`.
    pub account: Cow<'a, str>,
    /// `requestParameters.target`, else `unknown`.
    pub target: Cow<'a, str>,
    pub source_ip: Option<Cow<'a, str>>,
    /// The source IP's /24 (IPv4) or /48 (IPv6), or the source itself when it is not an
    /// IP (`AWS Internal`), else `unknown`.
    pub source_network: String,
    /// `requestParameters.documentName`, else `SSM-SessionManagerRunShell`.
    pub document: Cow<'a, str>,
    pub session_id: Option<Cow<'a, str>>,
    pub user_agent: Option<Cow<'a, str>>,
    pub region: Option<Cow<'a, str>>,
    pub event_id: Option<Cow<'a, str>>,
    /// The record: only an alert that mirrors Panther needs more of it (see
    /// [`SessionStart::panther_context`]).
    pub record: Record<'a>,
}

impl<'a> SessionStart<'a> {
    /// Reads a record of text `text`; for tests, and callers that have not read it yet.
    pub fn parse(text: &'a str) -> Result<SessionStart<'a>, RuleError> {
        SessionStart::read(Record::parse(text)?)
    }

    /// Reads a `StartSession` record.
    pub fn read(record: Record<'a>) -> Result<SessionStart<'a>, RuleError> {
        let top = record.fields(&[])?;
        let who = record.fields(&["userIdentity"])?;
        let request = record.fields(&["requestParameters"])?;
        let [
            time,
            error_code,
            error_message,
            source_ip,
            account,
            user_agent,
            region,
            event_id,
        ] = top.strs([
            "eventTime",
            "errorCode",
            "errorMessage",
            "sourceIPAddress",
            "recipientAccountId",
            "userAgent",
            "awsRegion",
            "eventID",
        ]);
        let time_text = time?.ok_or_else(|| RuleError::InvalidTime("missing".into()))?;
        let time = parse_event_time(&time_text).map_err(RuleError::InvalidTime)?;
        let error_code = error_code?;
        let error_message = error_message?;
        let source_ip = source_ip?;
        let unknown = || Cow::Borrowed(UNKNOWN);
        let identity = match who.str("arn")? {
            Some(arn) => arn,
            None => who.str("principalId")?.unwrap_or_else(unknown),
        };
        let account = match account? {
            Some(account) => account,
            None => who.str("accountId")?.unwrap_or_else(unknown),
        };
        Ok(SessionStart {
            time,
            succeeded: error_code.is_none() && error_message.is_none(),
            error_code,
            identity,
            identity_type: who.str("type")?,
            actor: actor::actor_user(&record)?,
            account,
            target: request.str("target")?.unwrap_or_else(unknown),
            source_network: source_network(source_ip.as_deref()),
            source_ip,
            document: (request.str("documentName")?).unwrap_or(Cow::Borrowed(DEFAULT_DOCUMENT)),
            session_id: record.str(&["responseElements", "sessionId"])?,
            user_agent: user_agent?,
            region: region?,
            event_id: event_id?,
            record,
        })
    }

    /// Panther's `aws_rule_context(event)`.
    pub fn panther_context(&self) -> Value {
        Value::Object(aws_rule_context(&self.record))
    }

    /// The identity as a person reads it: the resource part of an ARN
    /// (`assumed-role/Engineer/alice`, `user/deploy-bot`), else the identity itself.
    pub fn identity_name(&self) -> &str {
        cloudtrail::identity_name(&self.identity)
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
        let bare = bare.to_string();
        let s = SessionStart::parse(&bare).unwrap();
        assert_eq!(
            (&*s.identity, &*s.account, &*s.target),
            (UNKNOWN, UNKNOWN, UNKNOWN)
        );
        assert_eq!(
            (s.source_network.as_str(), &*s.document),
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
        assert_eq!((&*s.identity, &*s.account), ("AIDAEXAMPLE", "444455556666"));

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
                identity: identity.to_owned().into(),
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
    fn of_several_faulty_fields_the_first_read_is_named() {
        let not_a_string = |field| RuleError::field(field, "expected a string, found a number");
        for (overrides, first) in [
            (
                json!({"sourceIPAddress": 1, "eventTime": null}),
                RuleError::InvalidTime("missing".into()),
            ),
            (
                json!({"recipientAccountId": 1, "userIdentity": {"arn": 1}}),
                not_a_string("userIdentity.arn"),
            ),
            (
                json!({"userAgent": 1, "responseElements": {"sessionId": 1}}),
                not_a_string("responseElements.sessionId"),
            ),
            (
                json!({"eventID": 1, "awsRegion": 1}),
                not_a_string("awsRegion"),
            ),
        ] {
            let err = SessionStart::parse(&record(overrides.clone())).err();
            assert_eq!(err, Some(first), "{overrides}");
        }
    }

    #[test]
    fn event_time_must_be_a_timestamp() {
        assert!(
            matches!(SessionStart::parse(&record(json!({"eventTime": "soon"}))), Err(RuleError::InvalidTime(m)) if m.contains("soon"))
        );
        assert_eq!(
            SessionStart::parse(&record(json!({"eventTime": null}))).err(),
            Some(RuleError::InvalidTime("missing".into()))
        );
    }
}
