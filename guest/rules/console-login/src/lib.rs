//! AWS console sign-ins without MFA: a second rule on the [`detect_sdk`], and the one
//! `docs/writing-a-rule.md` walks through.
//!
//! A successful `ConsoleLogin` by an IAM user or root without MFA raises one alert per
//! identity per `dedup_period` (default a day; the SDK's dedup gate keeps the one key per
//! identity). Federated sign-ins are not judged: their MFA is the identity provider's.

use detect_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The detection, as data.
pub const LOGIN_WITHOUT_MFA: Detection = Detection {
    id: "AWS.Console.LoginWithoutMFA",
    name: "AWS Console Login Without MFA",
    severity: Severity::Medium,
    mitre: &[Mitre {
        tactic_id: "TA0001",
        tactic: "Initial Access",
        technique_id: "T1078.004",
        technique: "Valid Accounts: Cloud Accounts",
    }],
    description: "An IAM user or the root user signed in to the console without MFA.",
    runbook: "Confirm the sign-in with the user; if it was not them, rotate the password and \
        review what the session did. Enforce MFA for console access.",
    reference: "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_mfa.html",
    tags: &["AWS", "Identity & Access Management", "Initial Access"],
    dedup_period: "dedup_period",
};

/// The rule's configuration.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How long one identity's alerts are suppressed after one is raised (`0s`: never).
    pub dedup_period: Period,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dedup_period: Period::days(1),
        }
    }
}

impl RuleConfig for Config {}

/// The rule.
pub struct ConsoleLogin;

impl Rule for ConsoleLogin {
    type Config = Config;

    fn info() -> RuleInfo {
        RuleInfo {
            name: "aws-console-login-without-mfa",
            version: env!("CARGO_PKG_VERSION"),
            description: "AWS console sign-ins by IAM users or root without MFA.",
            detections: &[&LOGIN_WITHOUT_MFA],
            // Every console sign-in names the event and its service: others are skipped.
            prefilter: &[&["\"ConsoleLogin\""], &["\"signin.amazonaws.com\""]],
        }
    }

    fn detect(text: &str, _: &Config, _: &mut impl KeyValue, _: &Context) -> Result<Outcome> {
        let record = Record::parse(text)?;
        if !record.is("signin.amazonaws.com", "ConsoleLogin")? {
            return Ok(Outcome::default());
        }
        Ok(Outcome::relevant(
            unprotected_sign_in(&record)?.into_iter().collect(),
        ))
    }
}

/// The alert for a successful console sign-in without MFA by an IAM user or root, if the
/// record is one. Every field is read, so that a mistyped one is an error either way.
fn unprotected_sign_in(record: &Record) -> Result<Option<Alert>> {
    let is = |path: &[&str], value| Ok::<_, RuleError>(record.str(path)?.as_deref() == Some(value));
    let succeeded = is(&["responseElements", "ConsoleLogin"], "Success")?;
    let without_mfa = is(&["additionalEventData", "MFAUsed"], "No")?;
    let user = is(&["userIdentity", "type"], "IAMUser")? || is(&["userIdentity", "type"], "Root")?;
    let arn = record.str(&["userIdentity", "arn"])?;
    let (true, true, true, Some(arn)) = (succeeded, without_mfa, user, arn) else {
        return Ok(None);
    };
    let at = parse_event_time(&record.str(&["eventTime"])?.unwrap_or_default())
        .map_err(RuleError::InvalidTime)?;
    let field = |name| record.str(&[name]).ok().flatten();
    let facts =
        json!({"sourceIPAddress": field("sourceIPAddress"), "userAgent": field("userAgent")});
    Ok(Some(Alert {
        detection: &LOGIN_WITHOUT_MFA,
        title: format!("Console login without MFA by {arn}"),
        event_time: at,
        dedup_key: arn.into_owned(),
        context: context(&facts),
        event_id: field("eventID").map(Into::into),
        dedup_in: None,
    }))
}

detect_sdk::export_rule!(ConsoleLogin);

#[cfg(test)]
mod tests {
    use super::*;

    /// State files hold this key: the SDK's dedup entry for one identity.
    #[test]
    fn keys_never_change() {
        let arn = "arn:aws:iam::111122223333:user/dana";
        let detections = ConsoleLogin::info().detections;
        let key = detect_sdk::dedup::state_key(detections, &LOGIN_WITHOUT_MFA, arn);
        assert_eq!(key, "d/42bb45481ca08ec5");
    }

    /// The cases in `cases/`.
    #[test]
    fn the_cases_pass() {
        let cases = concat!(env!("CARGO_MANIFEST_DIR"), "/cases");
        detect_sdk::testkit::cases::check_dir::<ConsoleLogin>(cases);
    }
}
