use serde_json::{Value, json};

use super::*;
use crate::alert::MitreLine;

fn declared(severity: Severity) -> Declared {
    Declared {
        id: "AWS.Test.Detection".into(),
        name: "A \"test\" detection".into(),
        severity,
        mitre: vec![MitreLine {
            tactic_id: "TA0008".into(),
            tactic: "Lateral Movement".into(),
            technique_id: "T1021.008".into(),
            technique: "Remote Services: Direct Cloud VM Connections".into(),
        }],
        description: "What it detects.".into(),
        runbook: "What to do.".into(),
        reference: "https://example.com/detection".into(),
    }
}

const PRODUCT: fn() -> Product = || Product {
    name: "test-rule".into(),
    version: "1.2.3".into(),
};

fn finding(severity: Severity, context: &str, event_id: Option<&str>) -> Value {
    let template = FindingTemplate::new(&declared(severity), &PRODUCT());
    let raised = Raised {
        title: "Someone did something",
        event_time: 1_739_996_029_250,
        dedup_key: "arn:aws:iam::111122223333:user/alice|i-1",
        context,
        event_id,
    };
    let mut out = String::new();
    template.write(&mut out, &raised);
    let finding: Value = serde_json::from_str(&out).unwrap();
    schema::check(&finding).unwrap_or_else(|e| panic!("{e}: {finding:#}"));
    finding
}

/// The SSM session rule's context.
const SESSION: &str = r#"{"account":"111122223333","actor":"Engineer","document":"SSM-SessionManagerRunShell","identity":"arn:aws:sts::111122223333:assumed-role/Engineer/alice","identity_type":"AssumedRole","previous_session_time":null,"region":"us-east-1","session_id":"s","source_ip":"203.0.113.7","source_network":"203.0.113.0/24","target":"i-0123","user_agent":"aws-cli"}"#;

/// Panther's `aws_rule_context`, as the multiple-sessions alert carries it.
const PANTHER: &str = r#"{"awsRegion":"eu-west-1","eventName":"StartSession","eventSource":"ssm.amazonaws.com","recipientAccountId":"444455556666","sourceIPAddress":"AWS Internal","target_count":2,"targets":["i-1","i-2"],"userAgent":"x","userIdentity":{"accountId":"444455556666","arn":"arn:aws:iam::444455556666:user/bob","type":"IAMUser","userName":"bob"}}"#;

#[test]
fn a_finding_carries_the_class_the_detection_and_the_event_time() {
    let f = finding(Severity::Medium, SESSION, Some("e-1"));
    assert_eq!(
        (
            &f["class_uid"],
            &f["category_uid"],
            &f["type_uid"],
            &f["activity_id"]
        ),
        (&json!(2004), &json!(2), &json!(200401), &json!(1))
    );
    assert_eq!(
        (&f["severity_id"], &f["severity"]),
        (&json!(3), &json!("Medium"))
    );
    assert_eq!((&f["status_id"], &f["is_alert"]), (&json!(1), &json!(true)));
    assert_eq!(f["time"], 1_739_996_029_250i64);
    let info = &f["finding_info"];
    assert_eq!(info["title"], "Someone did something");
    assert_eq!(info["desc"], "What it detects.");
    assert_eq!(
        info["analytic"],
        json!({"uid": "AWS.Test.Detection", "name": "A \"test\" detection", "type": "Rule", "type_id": 1})
    );
    assert_eq!(info["attacks"][0]["tactic"]["uid"], "TA0008");
    assert_eq!(
        info["attacks"][0]["technique"],
        json!({"uid": "T1021", "name": "Remote Services"})
    );
    assert_eq!(
        info["attacks"][0]["sub_technique"],
        json!({"uid": "T1021.008", "name": "Direct Cloud VM Connections"})
    );
    assert_eq!(
        (&info["first_seen_time"], &info["last_seen_time"]),
        (&f["time"], &f["time"])
    );
    assert_eq!(info["src_url"], "https://example.com/detection");
    let meta = &f["metadata"];
    assert_eq!(meta["version"], VERSION);
    assert_eq!(
        meta["product"],
        json!({"name": "test-rule", "vendor_name": "detect-sdk", "version": "1.2.3"})
    );
    assert_eq!(meta["event_code"], "AWS.Test.Detection");
    assert_eq!(
        meta["correlation_uid"],
        "arn:aws:iam::111122223333:user/alice|i-1"
    );
    assert_eq!(meta["original_event_uid"], "e-1");
    // Stable: the same alert gives the same uid; another time, another.
    assert_eq!(
        info["uid"],
        finding(Severity::Medium, SESSION, None)["finding_info"]["uid"]
    );
    assert_eq!(meta["uid"], info["uid"]);
    for (severity, id) in [
        (Severity::Info, 1),
        (Severity::Low, 2),
        (Severity::High, 4),
        (Severity::Critical, 5),
    ] {
        assert_eq!(finding(severity, "{}", None)["severity_id"], id);
    }
}

#[test]
fn the_context_names_who_acted_from_where_on_what() {
    let f = finding(Severity::Info, SESSION, None);
    assert_eq!(f["metadata"]["profiles"], json!(["cloud"]));
    let account = json!({"uid": "111122223333", "type": "AWS Account", "type_id": 10});
    assert_eq!(
        f["cloud"],
        json!({"provider": "AWS", "region": "us-east-1", "account": account})
    );
    assert_eq!(
        f["resources"],
        json!([{"uid": "i-0123", "provider": "AWS", "region": "us-east-1"}])
    );
    let evidence = &f["evidences"][0];
    assert_eq!(
        evidence["actor"]["user"],
        json!({"uid": "arn:aws:sts::111122223333:assumed-role/Engineer/alice", "name": "assumed-role/Engineer/alice", "type": "AssumedRole", "type_id": 99, "account": account})
    );
    assert_eq!(evidence["src_endpoint"], json!({"ip": "203.0.113.7"}));
    assert_eq!(
        f["unmapped"],
        serde_json::from_str::<Value>(SESSION).unwrap()
    );

    let f = finding(Severity::Info, PANTHER, None);
    let user = &f["evidences"][0]["actor"]["user"];
    assert_eq!(
        (&user["name"], &user["type_id"], &user["type"]),
        (&json!("bob"), &json!(1), &json!("User"))
    );
    assert_eq!(user["account"]["uid"], "444455556666");
    assert_eq!(f["cloud"]["region"], "eu-west-1");
    assert_eq!(f["resources"].as_array().unwrap().len(), 2);
    assert_eq!(
        f["evidences"][0]["api"],
        json!({"operation": "StartSession", "service": {"name": "ssm.amazonaws.com"}})
    );
    // Not an IP address: no endpoint.
    assert!(f["evidences"][0].get("src_endpoint").is_none());
}

#[test]
fn a_context_that_says_nothing_of_the_cloud_takes_no_profile() {
    let f = finding(Severity::Low, r#"{"note": "x"}"#, None);
    assert!(f.get("cloud").is_none() && f["metadata"].get("profiles").is_none());
    assert!(f.get("evidences").is_none() && f.get("resources").is_none());
    let f = finding(Severity::Low, "\"not an object\"", None);
    assert_eq!(f["unmapped"], json!({"context": "\"not an object\""}));
}

#[test]
fn placeholders_and_missing_parts_are_left_out_not_written_as_facts() {
    let context = json!({"account": "111122223333", "identity": "unknown", "identity_type": "Unknown",
                         "region": null, "targets": null, "target": "i-1"});
    let f = finding(Severity::Low, &context.to_string(), None);
    assert_eq!(f["cloud"]["account"]["uid"], "111122223333");
    assert!(f["cloud"].get("region").is_none(), "{f}");
    assert_eq!(f["resources"], json!([{"uid": "i-1", "provider": "AWS"}]));
    assert!(f.get("evidences").is_none(), "{f}");

    let context = json!({"account": "unknown", "target": "unknown", "targets": ["", "unknown"],
                         "userIdentity": {"arn": "arn:aws:iam::1:user/x", "type": "Unknown"}});
    let f = finding(Severity::Low, &context.to_string(), None);
    assert!(
        f.get("cloud").is_none() && f.get("resources").is_none(),
        "{f}"
    );
    let user = &f["evidences"][0]["actor"]["user"];
    assert_eq!(
        (&user["type_id"], &user["type"]),
        (&json!(0), &json!("Unknown"))
    );
}

#[test]
fn the_schema_check_finds_what_is_wrong() {
    let good = finding(Severity::Info, SESSION, None);
    let broken = |change: fn(&mut Value)| {
        let mut f = good.clone();
        change(&mut f);
        schema::check(&f).unwrap_err()
    };
    assert!(broken(|f| drop(f.as_object_mut().unwrap().remove("time"))).contains("time: required"));
    assert!(broken(|f| f["severity_id"] = json!(7)).contains("severity_id"));
    assert!(broken(|f| f["severity"] = json!("Low")).contains("severity_id"));
    assert!(broken(|f| f["time"] = json!("soon")).contains("time: not of type"));
    assert!(broken(|f| f["finding_info"]["surprise"] = json!(1)).contains("not an attribute"));
    assert!(broken(|f| f["metadata"]["profiles"] = json!([])).contains("cloud: of a profile"));
    assert!(broken(|f| f["evidences"][0]["src_endpoint"]["ip"] = json!("x")).contains("not an IP"));
    assert!(broken(|f| f["finding_info"]["analytic"] = json!({"type_id": 1})).contains("none of"));
    assert!(broken(|f| f["evidences"] = json!({})).contains("not an array"));
    assert!(broken(|f| f["cloud"]["region"] = json!(null)).contains("region"));
}
