//! Who the actor of a record is, as Panther's `get_actor_user` helper names it: the short
//! name that appears in `AWS.SSM.MultipleSessions` titles ("... Started by SampleRole").

use std::borrow::Cow;

use crate::cloudtrail::Record;
use crate::error::RuleError;

/// Panther's `get_actor_user(event)`, branch for branch, with its `Unknown...` defaults.
pub fn actor_user(f: &Record) -> Result<String, RuleError> {
    let who = f.fields(&["userIdentity"])?;
    let identity_type = who.str("type")?;
    let identity_type = identity_type.as_deref();
    let unknown = || format!("Unknown{}", identity_type.unwrap_or_default());
    let or_unknown = |value: Option<Cow<str>>| value.map_or_else(unknown, Cow::into_owned);
    Ok(match identity_type {
        Some("Root") => match who.str("userName")? {
            Some(name) => name.into_owned(),
            None => who
                .str("accountId")?
                .map_or_else(|| "UnknownRootUser".to_owned(), Cow::into_owned),
        },
        Some("IAMUser" | "Directory" | "Unknown" | "SAMLUser" | "WebIdentityUser") => {
            or_unknown(who.str("userName")?)
        }
        Some("AssumedRole" | "Role" | "FederatedUser") => {
            let issuer = or_unknown(f.str(&[
                "userIdentity",
                "sessionContext",
                "sessionIssuer",
                "userName",
            ])?);
            if issuer.starts_with("AWSReservedSSO_") {
                // An Identity Center permission set: the role name says nothing about the
                // person, the principal id (`AROA...:alice@example.com`) does.
                let principal = or_unknown(who.str("principalId")?);
                principal.split(':').nth(1).unwrap_or(&principal).to_owned()
            } else {
                issuer
            }
        }
        Some("IdentityCenterUser") => or_unknown(f.str(&["additionalEventData", "UserName"])?),
        Some("AWSService" | "AWSAccount") => or_unknown(f.str(&["sourceIdentity"])?),
        _ if f.str(&["eventType"])?.as_deref() == Some("AwsServiceEvent") => who
            .str("invokedBy")?
            .map_or_else(|| "UnknownAwsServiceEvent".to_owned(), Cow::into_owned),
        _ => "UnknownUser".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::actor_user;
    use crate::cloudtrail::Record;
    use serde_json::{Value, json};

    /// The actor of a record whose `userIdentity` is `identity`, with more top-level
    /// `fields`.
    fn actor_with(identity: Value, fields: Value) -> String {
        let mut record = json!({"eventSource": "ssm.amazonaws.com", "userIdentity": identity});
        record
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        let text = record.to_string();
        actor_user(&Record::parse(&text).unwrap()).unwrap()
    }

    fn actor_of(identity: Value) -> String {
        actor_with(identity, json!({}))
    }

    #[test]
    fn roles_use_the_session_issuer() {
        for kind in ["AssumedRole", "Role", "FederatedUser"] {
            assert_eq!(
                actor_of(
                    json!({"type": kind, "sessionContext": {"sessionIssuer": {"userName": "Ops"}}})
                ),
                "Ops"
            );
            assert_eq!(actor_of(json!({"type": kind})), format!("Unknown{kind}"));
        }
    }

    #[test]
    fn identity_center_roles_use_the_principal_id() {
        let sso = json!({
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLE:alice@example.com",
            "sessionContext": {"sessionIssuer": {"userName": "AWSReservedSSO_Admin_0123456789abcdef"}}
        });
        assert_eq!(actor_of(sso), "alice@example.com");
        let no_colon = json!({
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLE",
            "sessionContext": {"sessionIssuer": {"userName": "AWSReservedSSO_Admin"}}
        });
        assert_eq!(actor_of(no_colon), "AROAEXAMPLE");
    }

    #[test]
    fn users_use_their_user_name() {
        for kind in [
            "IAMUser",
            "Directory",
            "Unknown",
            "SAMLUser",
            "WebIdentityUser",
        ] {
            assert_eq!(actor_of(json!({"type": kind, "userName": "bob"})), "bob");
            assert_eq!(actor_of(json!({"type": kind})), format!("Unknown{kind}"));
        }
    }

    #[test]
    fn root_uses_user_name_then_account() {
        assert_eq!(
            actor_of(json!({"type": "Root", "userName": "root-alias", "accountId": "1"})),
            "root-alias"
        );
        assert_eq!(
            actor_of(json!({"type": "Root", "accountId": "111122223333"})),
            "111122223333"
        );
        assert_eq!(actor_of(json!({"type": "Root"})), "UnknownRootUser");
    }

    #[test]
    fn identity_center_users_use_additional_event_data() {
        let carol = json!({"additionalEventData": {"UserName": "carol"}});
        assert_eq!(
            actor_with(json!({"type": "IdentityCenterUser"}), carol),
            "carol"
        );
        assert_eq!(
            actor_of(json!({"type": "IdentityCenterUser"})),
            "UnknownIdentityCenterUser"
        );
    }

    #[test]
    fn services_use_the_source_identity() {
        for kind in ["AWSService", "AWSAccount"] {
            assert_eq!(
                actor_with(json!({"type": kind}), json!({"sourceIdentity": "svc"})),
                "svc"
            );
            assert_eq!(actor_of(json!({"type": kind})), format!("Unknown{kind}"));
        }
    }

    #[test]
    fn service_events_use_invoked_by_and_the_rest_is_unknown() {
        let service_event = json!({"eventType": "AwsServiceEvent"});
        assert_eq!(
            actor_with(
                json!({"invokedBy": "ssm.amazonaws.com"}),
                service_event.clone()
            ),
            "ssm.amazonaws.com"
        );
        assert_eq!(
            actor_with(json!({}), service_event),
            "UnknownAwsServiceEvent"
        );
        assert_eq!(actor_of(json!({"type": "SomethingNew"})), "UnknownUser");
        assert_eq!(actor_of(json!({})), "UnknownUser");
    }
}
