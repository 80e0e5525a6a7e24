//! AWS console sign-ins without MFA: a second rule on the [`detect_sdk`], and the one
//! `docs/writing-a-rule.md` walks through.
//!
//! A successful `ConsoleLogin` by an IAM user or the root user that did not use MFA
//! raises one alert per identity per `dedup_period` (default one day). Federated
//! sign-ins are not judged: their MFA happens at the identity provider, which CloudTrail
//! does not see.

use detect_sdk::alert::{context, suppressed};
use detect_sdk::catalog::{Detection, Mitre, Severity};
use detect_sdk::cloudtrail::Record;
use detect_sdk::config::{Period, check_positive};
use detect_sdk::kv::{decode_time, encode_time, hashed_key};
use detect_sdk::time::{Millis, parse_event_time};
use detect_sdk::{Alert, Context, KeyValue, Outcome, Rule, RuleConfig, RuleError, RuleInfo};
use std::borrow::Cow;

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
};

/// The rule.
pub struct ConsoleLogin;

/// The rule's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How long one identity's alerts are suppressed after one is raised.
    pub dedup_period: Period,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dedup_period: Period::days(1),
        }
    }
}

impl RuleConfig for Config {
    fn from_json(text: &str) -> Result<Self, String> {
        // serde would also read a JSON array as a struct, field by field.
        if !text.trim_start().starts_with('{') {
            return Err("the configuration must be a JSON object".into());
        }
        let config: Config = serde_json::from_str(text).map_err(|e| e.to_string())?;
        check_positive(&[("dedup_period", config.dedup_period)])?;
        Ok(config)
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a config always serializes")
    }

    fn dedup_period_seconds(&self, _detection_id: &str) -> u64 {
        self.dedup_period.seconds()
    }
}

impl Rule for ConsoleLogin {
    type Config = Config;

    fn info() -> RuleInfo {
        RuleInfo {
            name: "aws-console-login-without-mfa",
            version: env!("CARGO_PKG_VERSION"),
            description: "AWS console sign-ins by IAM users or root without MFA.",
            detections: &[&LOGIN_WITHOUT_MFA],
            // Every console sign-in names the event and its service: other records are
            // skipped unread.
            prefilter: &[&["\"ConsoleLogin\""], &["\"signin.amazonaws.com\""]],
        }
    }

    fn process(
        record: &str,
        config: &Config,
        kv: &mut impl KeyValue,
        context: &Context,
    ) -> Result<Outcome, RuleError> {
        let record = Record::parse(record)?;
        if !record.is("signin.amazonaws.com", "ConsoleLogin")? {
            return Ok(Outcome::default());
        }
        let Some(sign_in) = SignIn::unprotected(record, context)? else {
            return Ok(Outcome {
                relevant: true,
                alerts: Vec::new(),
            });
        };
        let key = dedup_key(&sign_in.arn);
        let stored = kv
            .get_many(std::slice::from_ref(&key))
            .map_err(RuleError::State)?;
        let last_alert = decode_time(&key, stored[0].as_deref())?;
        let mut alerts = Vec::new();
        if !suppressed(last_alert, sign_in.at, config.dedup_period.millis()) {
            kv.set_many(vec![(key, encode_time(sign_in.at))])
                .map_err(RuleError::State)?;
            alerts.push(sign_in.alert());
        }
        Ok(Outcome {
            relevant: true,
            alerts,
        })
    }
}

/// The rule's only state: per identity, the time of its last alert (one read and one
/// write per sign-in). One key per IAM user or root of the accounts watched, a bounded
/// set: no sweep is needed. A change to these keys costs at most one repeated alert per
/// identity, so the rule keeps no state format of its own.
fn dedup_key(arn: &str) -> String {
    hashed_key(&["d"], &[arn])
}

/// A successful console sign-in without MFA by an IAM user or root.
struct SignIn<'a> {
    arn: Cow<'a, str>,
    at: Millis,
    record: Record<'a>,
}

impl<'a> SignIn<'a> {
    /// The sign-in, if the record is one to alert on.
    fn unprotected(record: Record<'a>, context: &Context) -> Result<Option<Self>, RuleError> {
        let is = |path: &[&str], value: &str| -> Result<bool, RuleError> {
            Ok(record.str(path)?.as_deref() == Some(value))
        };
        let succeeded = is(&["responseElements", "ConsoleLogin"], "Success")?;
        let without_mfa = is(&["additionalEventData", "MFAUsed"], "No")?;
        let user =
            is(&["userIdentity", "type"], "IAMUser")? || is(&["userIdentity", "type"], "Root")?;
        let (true, true, true, Some(arn)) = (
            succeeded,
            without_mfa,
            user,
            record.str(&["userIdentity", "arn"])?,
        ) else {
            return Ok(None);
        };
        let at = parse_event_time(&record.str(&["eventTime"])?.unwrap_or_default())
            .map_err(RuleError::InvalidTime)?;
        if at > context.not_after {
            return Err(RuleError::InvalidTime("later than the host accepts".into()));
        }
        Ok(Some(SignIn { arn, at, record }))
    }

    fn alert(&self) -> Alert {
        let field = |name| self.record.str(&[name]).ok().flatten();
        Alert {
            detection: &LOGIN_WITHOUT_MFA,
            title: format!("Console login without MFA by {}", self.arn),
            event_time: self.at,
            dedup_key: self.arn.to_string(),
            context: context(&json!({
                "sourceIPAddress": field("sourceIPAddress"),
                "userAgent": field("userAgent"),
            })),
            event_id: field("eventID").map(Cow::into_owned),
        }
    }
}

detect_sdk::export_rule!(ConsoleLogin, fluent_bit: login_alerts, login_enrich);

#[cfg(test)]
mod tests {
    /// State files hold these keys.
    #[test]
    fn keys_never_change() {
        let key = super::dedup_key("arn:aws:iam::111122223333:user/dana");
        assert_eq!(key, "d/42bb45481ca08ec5");
    }

    /// The cases in `cases/`.
    #[test]
    fn the_cases_pass() {
        detect_sdk::testkit::cases::check_dir::<super::ConsoleLogin>(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/cases"
        ));
    }
}
