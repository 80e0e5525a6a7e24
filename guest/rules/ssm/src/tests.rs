//! The rule end to end over an in-memory store: streams of records in, alerts out.
//! Each test reads as a scenario; the unit tests beside each module pin the boundaries.

use serde_json::json;

use crate::catalog::{MULTIPLE_SESSIONS, SESSION_STARTED, UNUSUAL_IDENTITY, UNUSUAL_SESSION};
use crate::testkit::{SAMPLE, record};
use detect_sdk::time::{DAY, HOUR, MINUTE, format_rfc3339};
use detect_sdk::{Alert, Configured, Context, MemoryKv, Millis, Outcome, Rule as _, RuleError};

use crate::SsmSessions;

/// An alert's context, parsed.
fn facts(alert: &Alert) -> serde_json::Value {
    serde_json::from_str(alert.context.as_str()).unwrap()
}

const ALICE: &str = "arn:aws:sts::111122223333:assumed-role/SampleRole/bobson.dugnutt";
const MALLORY: &str = "arn:aws:iam::111122223333:user/mallory";
const CAROL: &str = "arn:aws:iam::111122223333:user/carol";
/// 2025-02-19T20:13:49Z, the sample's time.
const T0: Millis = 1_739_996_029_000;

/// A session start by `identity` on `target` at `at`, otherwise the sample.
fn start(identity: &str, target: &str, at: Millis) -> String {
    record(json!({
        "eventTime": format_rfc3339(at),
        "userIdentity": {"arn": identity},
        "requestParameters": {"target": target},
    }))
}

struct Rule {
    config: Configured<SsmSessions>,
    kv: MemoryKv,
    /// The host's clock bound; far away unless a test is about it.
    not_after: Millis,
}

impl Rule {
    fn new() -> Self {
        Rule {
            config: Configured::defaults(),
            kv: MemoryKv::new(),
            not_after: Millis::MAX,
        }
    }

    fn with_config(json: &str) -> Self {
        Rule {
            config: Configured::from_json(json).unwrap(),
            kv: MemoryKv::new(),
            not_after: Millis::MAX,
        }
    }

    fn process(&mut self, text: &str) -> Result<Outcome, RuleError> {
        let context = Context {
            not_after: self.not_after,
        };
        SsmSessions::process(text, &self.config, &mut self.kv, &context)
    }

    fn feed(&mut self, text: &str) -> Vec<Alert> {
        let outcome = self.process(text).unwrap();
        assert!(outcome.relevant, "{text}");
        outcome.alerts
    }

    /// The detection ids a record raises.
    fn ids(&mut self, text: &str) -> Vec<&'static str> {
        self.feed(text).iter().map(|a| a.detection.id).collect()
    }

    /// Gives `identity` a session 30 days before `T0` and makes the detector active. A
    /// third identity's session the day before `T0` keeps the stream going, so that `T0`
    /// does not start history afresh.
    fn trained(identity: &str) -> Self {
        let mut rule = Rule::new();
        rule.feed(&start(identity, "i-known", T0 - 30 * DAY));
        rule.feed(&start(CAROL, "i-carol", T0 - DAY));
        rule
    }
}

#[test]
fn the_panther_sample_is_an_informational_session_start() {
    let mut rule = Rule::new();
    let alerts = rule.feed(SAMPLE);
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a.detection, &SESSION_STARTED);
    assert_eq!(
        a.title,
        "assumed-role/SampleRole/bobson.dugnutt started an AWS SSM session on i-047fce8bf4806e5ee in 111122223333"
    );
    assert_eq!(a.event_time, T0);
    assert_eq!(a.dedup_key, format!("{ALICE}|i-047fce8bf4806e5ee"));
    assert_eq!(
        a.event_id.as_deref(),
        Some("c61c9a5d-4d9c-45ee-8c46-9845ea001e97")
    );
    assert_eq!(
        facts(a),
        json!({
            "identity": ALICE,
            "identity_type": "AssumedRole",
            "actor": "SampleRole",
            "account": "111122223333",
            "target": "i-047fce8bf4806e5ee",
            "source_ip": "1.2.3.4",
            "source_network": "1.2.3.0/24",
            "document": "SSM-SessionManagerRunShell",
            "session_id": "bobson.dugnutt-4njnyxxl8yn676nsla8j6l4bra",
            "user_agent": "sample-user-agent",
            "region": "us-west-2",
            "previous_session_time": null,
        })
    );
}

#[test]
fn unusual_alerts_wait_for_the_activation_period() {
    let mut rule = Rule::new();
    rule.feed(&start(ALICE, "i-1", T0));
    let just_before = T0 + 14 * DAY - 1;
    assert_eq!(
        rule.ids(&start(MALLORY, "i-1", just_before)),
        [SESSION_STARTED.id]
    );
    let mut rule = Rule::new();
    rule.feed(&start(ALICE, "i-1", T0));
    assert_eq!(
        rule.ids(&start(MALLORY, "i-1", T0 + 14 * DAY)),
        [UNUSUAL_IDENTITY.id]
    );
}

#[test]
fn an_identity_without_recent_history_is_unusual() {
    let mut rule = Rule::trained(ALICE);
    let alerts = rule.feed(&start(MALLORY, "i-known", T0));
    assert_eq!(alerts[0].detection, &UNUSUAL_IDENTITY);
    assert_eq!(alerts[0].dedup_key, MALLORY);
    assert_eq!(
        alerts[0].title,
        "Unusual identity user/mallory started an AWS SSM session on i-known in 111122223333"
    );

    // Exactly 30 days after its last session an identity still has history; a moment later not.
    let mut rule = Rule::trained(ALICE);
    assert_eq!(rule.ids(&start(ALICE, "i-known", T0)), [SESSION_STARTED.id]);
    let mut rule = Rule::trained(ALICE);
    assert_eq!(
        rule.ids(&start(ALICE, "i-known", T0 + 1)),
        [UNUSUAL_IDENTITY.id]
    );
}

#[test]
fn a_known_identity_on_a_new_target_network_or_document_is_unusual() {
    let mut rule = Rule::trained(ALICE);
    let unusual = record(json!({
        "eventTime": format_rfc3339(T0),
        "userIdentity": {"arn": ALICE},
        "requestParameters": {"target": "i-new", "documentName": "AWS-StartPortForwardingSession"},
        "sourceIPAddress": "2001:db8::1",
    }));
    let alerts = rule.feed(&unusual);
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a.detection, &UNUSUAL_SESSION);
    assert_eq!(
        facts(a)["unusual_features"],
        json!(["target", "source_network", "document"])
    );
    assert_eq!(
        facts(a)["previous_session_time"],
        format_rfc3339(T0 - 30 * DAY)
    );
    assert_eq!(
        a.dedup_key,
        format!("{ALICE}|i-new|2001:db8::/48|AWS-StartPortForwardingSession")
    );
    assert!(
        a.title.ends_with("(new target, source_network, document)"),
        "{}",
        a.title
    );

    // The same session again is now known.
    assert_eq!(rule.ids(&unusual), [SESSION_STARTED.id]);

    // Only the network changed: an address in the same /24 is not new, one outside is.
    let from = |ip: &str| {
        record(
            json!({"eventTime": format_rfc3339(T0), "userIdentity": {"arn": ALICE}, "requestParameters": {"target": "i-known"}, "sourceIPAddress": ip}),
        )
    };
    assert_eq!(rule.ids(&from("1.2.3.200")), [SESSION_STARTED.id]);
    let alerts = rule.feed(&from("1.2.4.1"));
    assert_eq!(
        facts(&alerts[0])["unusual_features"],
        json!(["source_network"])
    );
}

#[test]
fn dedup_silences_the_same_alert_for_three_days() {
    let mut rule = Rule::new();
    assert_eq!(rule.ids(&start(ALICE, "i-1", T0)), [SESSION_STARTED.id]);
    assert!(rule.ids(&start(ALICE, "i-1", T0 + 3 * DAY - 1)).is_empty());
    // A different target is a different dedup key.
    assert_eq!(
        rule.ids(&start(ALICE, "i-2", T0 + DAY)),
        [SESSION_STARTED.id]
    );
    assert_eq!(
        rule.ids(&start(ALICE, "i-1", T0 + 3 * DAY)),
        [SESSION_STARTED.id]
    );
    // The period restarts at the alert that was raised, not at the silenced ones.
    assert!(rule.ids(&start(ALICE, "i-1", T0 + 6 * DAY - 1)).is_empty());
    assert_eq!(
        rule.ids(&start(ALICE, "i-1", T0 + 6 * DAY)),
        [SESSION_STARTED.id]
    );
}

#[test]
fn records_out_of_order_use_maxima_and_minima() {
    let mut rule = Rule::trained(MALLORY);
    rule.feed(&start(ALICE, "i-1", T0));
    // A record older than ALICE's latest session does not move it back: ALICE is still
    // known 29 days after her latest session.
    rule.feed(&start(ALICE, "i-1", T0 - 25 * DAY));
    assert_eq!(
        rule.ids(&start(ALICE, "i-1", T0 + 29 * DAY)),
        [SESSION_STARTED.id]
    );
}

#[test]
fn multiple_sessions_reproduces_the_panther_sample_result() {
    let mut rule = Rule::new();
    let at = |m: i64| format_rfc3339(T0 + m * MINUTE);
    rule.feed(SAMPLE);
    rule.feed(&record(
        json!({"eventTime": at(10), "requestParameters": {"target": "i-0aaaaaaaaaaaaaaa1"}}),
    ));
    let alerts = rule.feed(&record(
        json!({"eventTime": at(20), "requestParameters": {"target": "i-0bbbbbbbbbbbbbbb2"}}),
    ));
    let multiple = alerts
        .iter()
        .find(|a| a.detection == &MULTIPLE_SESSIONS)
        .expect("fires on the third target");
    assert_eq!(
        multiple.title,
        "Multiple SSM Sessions Started by SampleRole in 111122223333"
    );
    assert_eq!(multiple.dedup_key, ALICE);
    assert_eq!(facts(multiple)["target_count"], 3);
    assert_eq!(
        facts(multiple)["targets"],
        json!([
            "i-047fce8bf4806e5ee",
            "i-0aaaaaaaaaaaaaaa1",
            "i-0bbbbbbbbbbbbbbb2"
        ])
    );
    assert_eq!(facts(multiple)["eventName"], "StartSession");
    assert_eq!(facts(multiple)["awsRegion"], "us-west-2");
    assert_eq!(facts(multiple)["userIdentity"]["arn"], ALICE);
    // Deduplicated for an hour, on the identity.
    let fourth = record(json!({"eventTime": at(30), "requestParameters": {"target": "i-4"}}));
    assert!(!rule.ids(&fourth).contains(&MULTIPLE_SESSIONS.id));
}

#[test]
fn multiple_sessions_counts_distinct_targets_within_the_window() {
    let mut rule = Rule::new();
    rule.feed(&start(ALICE, "i-1", T0));
    rule.feed(&start(ALICE, "i-1", T0 + MINUTE)); // the same target again
    assert!(
        !rule
            .ids(&start(ALICE, "i-2", T0 + 2 * MINUTE))
            .contains(&MULTIPLE_SESSIONS.id)
    );
    // i-1's latest start is T0 + 1m: a third target an hour after that is out of reach.
    assert!(
        !rule
            .ids(&start(ALICE, "i-3", T0 + HOUR + MINUTE))
            .contains(&MULTIPLE_SESSIONS.id)
    );
    let mut rule = Rule::new();
    rule.feed(&start(ALICE, "i-1", T0));
    rule.feed(&start(ALICE, "i-2", T0 + MINUTE));
    assert!(
        rule.ids(&start(ALICE, "i-3", T0 + HOUR - 1))
            .contains(&MULTIPLE_SESSIONS.id)
    );
}

#[test]
fn multiple_sessions_looks_both_ways_and_counts_failed_starts() {
    let mut rule = Rule::new();
    let denied = |target: &str, at: Millis| {
        record(
            json!({"eventTime": format_rfc3339(at), "requestParameters": {"target": target}, "errorCode": "AccessDenied", "responseElements": null}),
        )
    };
    // Failed starts raise none of the Cortex family...
    assert!(rule.ids(&denied("i-3", T0 + 30 * MINUTE)).is_empty());
    assert!(rule.ids(&denied("i-2", T0 + 20 * MINUTE)).is_empty());
    // ...but count here, even when they come first and are later in time.
    assert_eq!(
        rule.ids(&start(ALICE, "i-1", T0)),
        [SESSION_STARTED.id, MULTIPLE_SESSIONS.id]
    );
}

#[test]
fn multiple_sessions_dedups_for_an_hour_and_follows_the_threshold() {
    let mut rule = Rule::with_config(r#"{"multiple_sessions": {"threshold": 2}}"#);
    rule.feed(&start(ALICE, "i-1", T0));
    assert!(
        rule.ids(&start(ALICE, "i-2", T0 + MINUTE))
            .contains(&MULTIPLE_SESSIONS.id)
    );
    assert!(
        !rule
            .ids(&start(ALICE, "i-3", T0 + MINUTE + HOUR - 1))
            .contains(&MULTIPLE_SESSIONS.id)
    );
    assert!(
        rule.ids(&start(ALICE, "i-4", T0 + MINUTE + HOUR))
            .contains(&MULTIPLE_SESSIONS.id)
    );
}

#[test]
fn allowlisted_identities_are_skipped_entirely() {
    let mut rule = Rule::with_config(
        r#"{"allowlist": ["arn:aws:sts::111122223333:assumed-role/SampleRole/*"]}"#,
    );
    assert!(rule.feed(SAMPLE).is_empty());
    assert!(rule.kv.entries.is_empty());
    assert_eq!(rule.ids(&start(MALLORY, "i-1", T0)), [SESSION_STARTED.id]);
}

#[test]
fn disabled_detections_stay_quiet_but_keep_learning() {
    let mut rule = Rule::with_config(r#"{"disabled": ["AWS.SSM.SessionStarted"]}"#);
    assert!(
        rule.feed(&start(ALICE, "i-known", T0 - 30 * DAY))
            .is_empty()
    );
    assert!(rule.feed(&start(ALICE, "i-known", T0)).is_empty());
    assert_eq!(rule.ids(&start(ALICE, "i-new", T0)), [UNUSUAL_SESSION.id]);
}

#[test]
fn irrelevant_records_touch_nothing() {
    let mut rule = Rule::new();
    for other in [
        record(json!({"eventName": "TerminateSession"})),
        record(json!({"eventSource": "ec2.amazonaws.com"})),
        json!({"eventName": "StartSession"}).to_string(),
        "{}".to_string(),
    ] {
        let outcome = rule.process(&other).unwrap();
        assert!(!outcome.relevant && outcome.alerts.is_empty());
    }
    assert!(rule.kv.entries.is_empty());
}

#[test]
fn bad_records_fail_with_a_reason_and_change_no_state() {
    let mut rule = Rule::trained(ALICE);
    let before = rule.kv.entries.clone();
    type Check = fn(&RuleError) -> bool;
    let cases: [(String, Check); 6] = [
        ("{\"eventName\":".into(), |e| {
            matches!(e, RuleError::InvalidJson(_))
        }),
        (
            "[{}]".into(),
            |e| matches!(e, RuleError::NotAnObject(k) if k == "an array"),
        ),
        (
            json!({"eventSource": ["ssm"]}).to_string(),
            |e| matches!(e, RuleError::InvalidField { field, .. } if field == "eventSource"),
        ),
        (
            record(json!({"userIdentity": {"arn": 7}})),
            |e| matches!(e, RuleError::InvalidField { field, .. } if field == "userIdentity.arn"),
        ),
        (
            record(json!({"eventTime": "19/02/2025"})),
            |e| matches!(e, RuleError::InvalidTime(m) if m.contains("19/02/2025")),
        ),
        (record(json!({"eventTime": null})), |e| {
            matches!(e, RuleError::InvalidTime(_))
        }),
    ];
    for (text, expected) in cases {
        let err = rule.process(&text).unwrap_err();
        assert!(expected(&err), "{text}: {err}");
    }
    assert_eq!(rule.kv.entries, before);
}

#[test]
fn state_stays_bounded_over_a_long_stream() {
    let mut rule = Rule::new();
    // A small page makes the sweep lag by days, the worst case for how much state piles up.
    rule.kv.page_size = 7;
    let mut sizes = Vec::new();
    // 200 days; every day ten new identities each start sessions on three targets.
    for day in 0..200 {
        for n in 0..10 {
            let identity = format!("arn:aws:iam::111122223333:user/u{day}-{n}");
            for t in 0..3 {
                rule.feed(&start(
                    &identity,
                    &format!("i-{t}"),
                    T0 + day * DAY + (n * 3 + t) * MINUTE,
                ));
            }
        }
        sizes.push(rule.kv.entries.len());
    }
    // The store stops growing once the first identities expire...
    let (at_100, at_200) = (sizes[99], sizes[199]);
    assert!(
        at_200 <= at_100 + at_100 / 10,
        "{at_100} keys at day 100, {at_200} at day 200"
    );
    let keys = rule.kv.keys();
    assert!(
        keys.iter().all(|k| !k.contains("user/u0-")),
        "day-0 identities are gone"
    );
    // ...and never loses what is still inside the training period.
    for day in 170..200 {
        let last = crate::keys::identity_key(&format!("arn:aws:iam::111122223333:user/u{day}-9"));
        assert!(
            rule.kv.entries.get(&last).is_some(),
            "{last} was swept too early"
        );
    }
}

#[test]
fn identity_falls_back_to_principal_id() {
    let mut rule = Rule::new();
    let text = record(json!({"userIdentity": {"arn": null}}));
    let alerts = rule.feed(&text);
    assert_eq!(
        facts(&alerts[0])["identity"],
        "SAMPLE_PRINCIPAL_ID:bobson.dugnutt"
    );
}

#[test]
fn tampered_state_is_an_error_never_a_panic_nor_a_fresh_start() {
    for (key, value) in [
        (
            "meta".to_owned(),
            r#"{"history_start": -9223372036854775808, "watermark": 9223372036854775807, "next_sweep": 9223372036854775807}"#,
        ),
        (crate::keys::identity_key(ALICE), "-9223372036854775808"),
        (
            crate::keys::identity_key(ALICE),
            r#"{"i-9": -9223372036854775808}"#,
        ),
        (crate::keys::identity_key(ALICE), "yesterday"),
        ("meta".to_owned(), "[1, 2]"),
        (crate::keys::identity_key(ALICE), "\0\0\x01"),
    ] {
        let mut rule = Rule::new();
        rule.kv
            .entries
            .set(key.clone(), Some(value.as_bytes().to_vec()));
        let before = rule.kv.entries.clone();
        for at in [T0, T0 + 40 * DAY] {
            match rule.process(&start(ALICE, "i-1", at)) {
                Ok(_) => {}
                Err(RuleError::State(m)) => assert!(m.contains(&format!("`{key}`")), "{m}"),
                Err(RuleError::InvalidTime(m)) => assert!(m.contains("too late"), "{m}"),
                Err(other) => panic!("{key}={value}: {other}"),
            }
        }
        if !value.contains("9223372036854775808") {
            assert_eq!(
                rule.kv.entries, before,
                "damage is never overwritten: {key}"
            );
        }
    }
}

#[test]
fn a_record_from_the_future_is_rejected_and_changes_nothing() {
    let mut rule = Rule::trained(ALICE);
    rule.not_after = T0 + HOUR;
    let before = rule.kv.entries.clone();
    let forged = start(MALLORY, "i-1", 4_070_908_800_000); // 2099-01-01
    let err = rule.process(&forged).unwrap_err();
    assert!(
        matches!(&err, RuleError::InvalidTime(m) if m.contains("2099-01-01T00:00:00Z is after the latest time the host accepts")),
        "{err}"
    );
    assert_eq!(rule.kv.entries, before);
    // The host's own skew is accepted.
    assert_eq!(
        rule.ids(&start(CAROL, "i-carol", T0 + HOUR)),
        [SESSION_STARTED.id]
    );
}

#[test]
fn a_forged_old_record_first_on_an_empty_state_is_forgotten() {
    let mut rule = Rule::new();
    rule.feed(&start(MALLORY, "i-1", 0)); // 1970
    // Real traffic starts: history starts afresh, so activation counts from here.
    assert_eq!(rule.ids(&start(ALICE, "i-1", T0)), [SESSION_STARTED.id]);
    let just_before = T0 + 14 * DAY - 1;
    assert_eq!(
        rule.ids(&start(MALLORY, "i-2", just_before)),
        [SESSION_STARTED.id]
    );
    assert_eq!(
        rule.ids(&start(ALICE, "i-3", T0 + 14 * DAY)),
        [UNUSUAL_SESSION.id]
    );
}

#[test]
fn records_too_late_to_judge_are_rejected_and_ordinary_lateness_is_not() {
    let mut rule = Rule::trained(ALICE);
    rule.feed(&start(ALICE, "i-known", T0));
    let before = rule.kv.entries.clone();
    // A forged record from long ago can neither switch the detectors on early (it would
    // move the start of history back) nor suppress later alerts.
    let err = rule
        .process(&start(MALLORY, "i-9", T0 - 31 * DAY))
        .unwrap_err();
    assert!(
        matches!(&err, RuleError::InvalidTime(m) if m.contains("more than 30d before the latest event time")),
        "{err}"
    );
    assert_eq!(rule.kv.entries, before);
    // Hours late is ordinary for CloudTrail: judged as usual.
    assert_eq!(
        rule.ids(&start(MALLORY, "i-known", T0 - 3 * HOUR)),
        [UNUSUAL_IDENTITY.id]
    );
    let lenient = Rule {
        config: Configured::from_json(r#"{"max_lateness": "60d"}"#).unwrap(),
        ..Rule::trained(ALICE)
    };
    let mut lenient = lenient;
    lenient.feed(&start(ALICE, "i-known", T0));
    assert!(
        lenient
            .process(&start(MALLORY, "i-9", T0 - 31 * DAY))
            .is_ok()
    );
}

#[test]
fn a_late_record_does_not_move_the_start_of_history_back() {
    let mut rule = Rule::new();
    rule.feed(&start(ALICE, "i-1", T0));
    rule.feed(&start(ALICE, "i-1", T0 - 10 * DAY));
    // Activation still counts from T0, the first record that arrived.
    assert_eq!(
        rule.ids(&start(MALLORY, "i-1", T0 + 5 * DAY)),
        [SESSION_STARTED.id]
    );
    assert_eq!(
        rule.ids(&start(MALLORY, "i-2", T0 + 14 * DAY)),
        [UNUSUAL_SESSION.id]
    );
}

mod fuzz {
    //! Whatever a record holds, the rule answers with alerts or a typed error, never a
    //! panic, and an error changes no state.

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::testkit::sample;

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            "[0-9T:Z. +-]{0,25}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(".{0,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A field the rule reads, as a path into the record.
    fn field() -> impl Strategy<Value = Vec<&'static str>> {
        prop_oneof![
            Just(vec!["eventTime"]),
            Just(vec!["eventSource"]),
            Just(vec!["eventName"]),
            Just(vec!["errorCode"]),
            Just(vec!["userIdentity"]),
            Just(vec!["userIdentity", "arn"]),
            Just(vec!["userIdentity", "type"]),
            Just(vec![
                "userIdentity",
                "sessionContext",
                "sessionIssuer",
                "userName"
            ]),
            Just(vec!["requestParameters"]),
            Just(vec!["requestParameters", "target"]),
            Just(vec!["sourceIPAddress"]),
            Just(vec!["recipientAccountId"]),
            Just(vec!["responseElements", "sessionId"]),
        ]
    }

    fn set(record: &mut Value, path: &[&str], value: Value) {
        let (last, parents) = path.split_last().unwrap();
        let mut at = record;
        for key in parents {
            if !at[*key].is_object() {
                at[*key] = json!({});
            }
            at = &mut at[*key];
        }
        at[*last] = value;
    }

    proptest! {
        #[test]
        fn any_text_is_answered_without_a_panic(text in ".{0,200}") {
            let mut rule = Rule::new();
            let _ = rule.process(&text);
        }

        #[test]
        fn any_value_in_any_field_is_alerts_or_an_error_that_changes_nothing(
            changes in proptest::collection::vec((field(), any_json()), 1..4),
        ) {
            let mut rule = Rule::trained(ALICE);
            let before = rule.kv.entries.clone();
            let mut record = sample();
            for (path, value) in changes {
                set(&mut record, &path, value);
            }
            if rule.process(&record.to_string()).is_err() {
                prop_assert_eq!(&rule.kv.entries, &before);
            }
        }
    }
}

/// The cases in `cases/`, natively; `rule-harness test` runs them against the component.
#[test]
fn the_cases_pass() {
    detect_sdk::testkit::cases::check_dir::<crate::SsmSessions>(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/cases"
    ));
}
