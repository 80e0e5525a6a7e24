//! Every input format the harness reads gives the same alerts; broken input is
//! dead-lettered and the run goes on.

use serde_json::Value;

use crate::support::*;

fn run_file(path: &std::path::Path) -> Vec<Value> {
    alerts(&["run", "--state", "memory", path.to_str().unwrap()], b"")
}

#[test]
fn every_format_raises_the_same_alerts() {
    let log_path = fixture("logs/ssm_sessions.json");
    let log_text = std::fs::read(&log_path).unwrap();
    let log: Value = serde_json::from_slice(&log_text).unwrap();
    let records = log["Records"].as_array().unwrap();
    let expected = run_file(&log_path);
    assert_eq!(expected.len(), 16);

    let ndjson = records
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let array = serde_json::to_vec_pretty(records).unwrap();
    let compact_log = serde_json::to_vec(&log).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("records.ndjson", ndjson.clone().into_bytes()),
        ("array.json", array.clone()),
        ("cloudtrail.json", compact_log.clone()),
        ("records.ndjson.gz", gzip(ndjson.as_bytes())),
        ("array.json.gz", gzip(&array)),
        ("cloudtrail.json.gz", gzip(&compact_log)),
        ("cloudtrail-no-suffix", gzip(&log_text)),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(run_file(&path), expected, "{name}");
    }

    // Standard input, as two CloudTrail files concatenated (gzip members back to back).
    let (first, second) = records.split_at(20);
    let mut stdin = gzip(&serde_json::to_vec(&serde_json::json!({"Records": first})).unwrap());
    stdin.extend(gzip(
        &serde_json::to_vec(&serde_json::json!({"Records": second})).unwrap(),
    ));
    assert_eq!(alerts(&["run", "--state", "memory"], &stdin), expected);
}

/// Several files are read and decompressed ahead, in threads of their own, and the rule
/// still sees them in the order given, each file's records in order: a stream split over
/// many files raises what it raises whole, to the dead letter.
#[test]
fn files_read_ahead_reach_the_rule_in_order() {
    let log = generated_log(3000, 21);
    let text = String::from_utf8(log.clone()).unwrap();
    let records: Vec<&str> = text.lines().collect();
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["run".to_owned(), "--state".into(), "memory".into()];
    for (n, part) in records.chunks(170).enumerate() {
        let mut bytes = part.join("\n").into_bytes();
        bytes.extend(b"\nnot json\n");
        let path = dir.path().join(format!("part-{n:02}.ndjson.gz"));
        std::fs::write(&path, gzip(&bytes)).unwrap();
        args.push(path.to_str().unwrap().to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let whole = alerts(&["run", "--state", "memory"], &log);
    assert!(whole.len() > 100);
    let out = harness(&args, b"");
    assert!(out.status.success());
    assert_eq!(lines(&out.stdout), whole);
    // The dead letters come in file order too.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let sources: Vec<String> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|d| d["source"].as_str().map(str::to_owned))
        .collect();
    let mut sorted = sources.clone();
    sorted.sort();
    assert_eq!(sources.len(), records.chunks(170).count());
    assert_eq!(sources, sorted);
}

#[test]
fn bad_records_are_dead_lettered_and_the_run_goes_on() {
    let sample = std::fs::read_to_string(fixture("records/panther_sample.json")).unwrap();
    let sample: Value = serde_json::from_str(&sample).unwrap();
    let mut late = sample.clone();
    late["eventTime"] = "2025-02-19T20:30:00Z".into();
    late["requestParameters"]["target"] = "i-2".into();
    let mut bad_time = sample.clone();
    bad_time["eventTime"] = "yesterday".into();
    let input = [
        sample.to_string(),
        "not json at all".to_string(),
        "[1, 2, 3]".to_string(), // an array line is an array of records: three of them
        bad_time.to_string(),
        "{\"Records\": \"oops\"}".to_string(),
        late.to_string(),
    ]
    .join("\n");
    let mut input = input.into_bytes();
    input.extend(b"\n\xff\xfe not utf-8\n");

    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.ndjson");
    let out = harness(
        &[
            "run",
            "--state",
            "memory",
            "--dead-letter",
            dead.to_str().unwrap(),
        ],
        &input,
    );
    assert!(out.status.success(), "bad records never fail the run");
    let alerts = lines(&out.stdout);
    assert_eq!(alerts.len(), 2, "both good records alert");
    assert_eq!(alerts[1]["context"]["target"], "i-2");

    let dead = lines(&std::fs::read(&dead).unwrap());
    let kinds: Vec<&str> = dead.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "invalid-json",
            "not-an-object",
            "not-an-object",
            "not-an-object",
            "invalid-time",
            "input",
            "invalid-utf8"
        ]
    );
    assert_eq!(dead[0]["line"], 2);
    assert_eq!(dead[0]["source"], "-");
    assert_eq!(
        dead[0]["record"], "not json at all",
        "the record is kept for replay"
    );
    assert!(dead[4]["error"].as_str().unwrap().contains("yesterday"));
    // Bytes that are not text are kept too, in base64, so the record can be fixed.
    assert_eq!(dead[6]["record"], serde_json::Value::Null);
    assert_eq!(dead[6]["record_base64"], "//4gbm90IHV0Zi04");

    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("9 records (2 relevant, 0 skipped unread by the prefilter)"),
        "{summary}"
    );
    assert!(
        summary.contains("alerts: 2 (AWS.SSM.SessionStarted 2)"),
        "{summary}"
    );
    assert!(
        summary.contains(
            "errors: 7 (input 1, invalid-json 1, invalid-time 1, invalid-utf8 1, not-an-object 3), traps: 0"
        ),
        "{summary}"
    );
}

/// Records the rule's prefilter rules out are not read: a broken field in one does not
/// make a dead letter, unless it is not even framed as a JSON object or `--validate-all`
/// asks for every record to be checked.
#[test]
fn records_the_prefilter_rules_out_are_skipped_unread() {
    let input = [
        r#"{"eventSource": 7, "eventName": "RunInstances"}"#,
        r#"{"eventSource": "ec2.amazonaws.com", "eventName": "RunInstances""#,
        r#"{"eventSource": "ssm.amazonaws.com", "eventName": "StartSession", "eventTime": 1}"#,
        r#"{"eventSource": "ssm.amazonaws.com", "eventName": "StartSession", "eventTime": 1}"#,
    ]
    .join("\n");
    let kinds = |extra: &[&str]| {
        let mut args = vec!["run", "--state", "memory"];
        args.extend(extra);
        let out = harness(&args, input.as_bytes());
        assert!(out.status.success());
        let dead = lines(&out.stderr[..out.stderr.len() - summary_bytes(&out.stderr)]);
        let kinds: Vec<String> = dead
            .iter()
            .map(|d| d["kind"].as_str().unwrap().to_owned())
            .collect();
        (kinds, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (skipping, summary) = kinds(&[]);
    assert_eq!(skipping, ["invalid-json", "invalid-field", "invalid-field"]);
    assert!(
        summary.contains("4 records (0 relevant, 1 skipped unread by the prefilter)"),
        "{summary}"
    );
    let (validating, summary) = kinds(&["--validate-all"]);
    assert_eq!(
        validating,
        [
            "invalid-field",
            "invalid-json",
            "invalid-field",
            "invalid-field"
        ]
    );
    assert!(
        summary.contains("4 records (0 relevant, 0 skipped unread by the prefilter)"),
        "{summary}"
    );
}

/// On a generated stream whose StartSession records are spelled in other ways JSON
/// allows (escapes in the prefilter's strings, whitespace between tokens), skipping what
/// the prefilter rules out gives exactly the alerts and relevant records of reading them
/// all. (The one-pass scan the WebAssembly bindings use is checked against this one in
/// `sdk/src/prefilter.rs`.)
#[test]
fn the_prefilter_never_skips_a_record_the_rule_finds_relevant() {
    let log = String::from_utf8(generated_log(3000, 5)).unwrap();
    let mut spelled = String::new();
    let mut starts = 0;
    for line in log.lines() {
        if !line.contains("\"StartSession\"") {
            spelled.push_str(line);
        } else {
            starts += 1;
            let line = match starts % 4 {
                0 => line.replace("\"StartSession\"", "\"Start\\u0053ession\""),
                1 => line.replace("ssm.amazonaws.com", "ssm\\u002eamazonaws.com"),
                2 => line.replace("\":", "\" :\t").replace(",\"", ", \""),
                _ => line.to_owned(),
            };
            spelled.push_str(&line);
        }
        spelled.push('\n');
    }
    assert!(starts > 500, "{starts} StartSession records");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--state", "memory"];
        args.extend(extra);
        let out = harness(&args, spelled.as_bytes());
        assert!(out.status.success());
        let summary = String::from_utf8_lossy(&out.stderr).into_owned();
        let relevant = summary
            .split_once(" relevant")
            .and_then(|(before, _)| before.rsplit_once('(').map(|(_, n)| n.to_owned()))
            .unwrap_or_else(|| panic!("{summary}"));
        (lines(&out.stdout), relevant)
    };
    let (skipping, relevant) = run(&[]);
    let (reading_all, all_relevant) = run(&["--validate-all"]);
    assert_eq!(relevant, starts.to_string());
    assert_eq!(all_relevant, relevant);
    assert!(skipping.len() > 100, "{} alerts", skipping.len());
    assert!(skipping == reading_all, "the same alerts");
}

/// The length of the summary at the end of `stderr`.
fn summary_bytes(stderr: &[u8]) -> usize {
    let text = String::from_utf8_lossy(stderr);
    text.len() - text.find("rule-harness: ").expect("a summary")
}

/// The fixture log's records, and which of them a test damages.
fn records_and_the_one_to_damage() -> (Vec<Value>, usize) {
    let log: Value =
        serde_json::from_slice(&std::fs::read(fixture("logs/ssm_sessions.json")).unwrap()).unwrap();
    let records = log["Records"].as_array().unwrap().clone();
    (records, 7)
}

#[test]
fn a_bad_byte_or_a_byte_order_mark_costs_at_most_its_record_in_every_format() {
    let (records, bad) = records_and_the_one_to_damage();
    let as_json = |r: &Value, i: usize| {
        let text = r.to_string().into_bytes();
        if i != bad {
            return text;
        }
        // The user agent of one record ends in a byte that is not UTF-8, then a NUL.
        let at = text
            .windows(17)
            .position(|w| w == b"sample-user-agent")
            .unwrap()
            + 17;
        [&text[..at], b"\xff\x00", &text[at..]].concat()
    };
    let texts: Vec<Vec<u8>> = records
        .iter()
        .enumerate()
        .map(|(i, r)| as_json(r, i))
        .collect();
    let ndjson = texts.join(&b'\n');
    let one_line = [&b"{\"Records\": ["[..], &texts.join(&b','), b"]}"].concat();
    let pretty = [
        &b"{\n  \"Records\": [\n    "[..],
        &texts.join(&b",\n    "[..]),
        b"\n  ]\n}\n",
    ]
    .concat();
    let intact: Vec<Value> = {
        let mut ok = records.clone();
        ok.remove(bad);
        alerts(
            &["run", "--state", "memory", "-"],
            &serde_json::to_vec(&serde_json::json!({"Records": ok})).unwrap(),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [("ndjson", ndjson), ("log", one_line), ("pretty", pretty)] {
        for (variant, bytes) in [
            ("", bytes.clone()),
            (".gz", gzip(&bytes)),
            (" with a BOM", [&b"\xEF\xBB\xBF"[..], &bytes].concat()),
        ] {
            let path = dir.path().join("input");
            std::fs::write(&path, &bytes).unwrap();
            let dead = dir.path().join("dead.ndjson");
            let _ = std::fs::remove_file(&dead);
            let args = [
                "run",
                "--state",
                "memory",
                "--dead-letter",
                dead.to_str().unwrap(),
                path.to_str().unwrap(),
            ];
            assert_eq!(alerts(&args, b""), intact, "{name}{variant}");
            let dead = lines(&std::fs::read(&dead).unwrap());
            assert_eq!(dead.len(), 1, "{name}{variant}: {dead:?}");
            assert_eq!(dead[0]["kind"], "invalid-utf8");
            assert_eq!(dead[0]["index"], bad as u64 + 1);
            // The bytes are kept, so the record can be fixed and fed again.
            use base64::Engine as _;
            let kept = base64::engine::general_purpose::STANDARD
                .decode(dead[0]["record_base64"].as_str().unwrap())
                .unwrap();
            assert_eq!(kept, texts[bad], "{name}{variant}");
        }
    }
}

#[test]
fn an_oversized_record_is_dead_lettered_with_an_excerpt_and_a_digest() {
    let big = format!(
        "{{\"eventSource\": \"ec2.amazonaws.com\", \"pad\": \"{}\"}}",
        "x".repeat(30_000)
    );
    let input = format!("{big}\n{{\"eventSource\": \"s3.amazonaws.com\"}}\n");
    let out = harness(
        &[
            "run",
            "--state",
            "memory",
            "--max-record-bytes",
            "20000",
            "-",
        ],
        input.as_bytes(),
    );
    assert!(out.status.success());
    let dead = lines(&out.stderr);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["kind"], "record-too-large");
    assert_eq!(dead[0]["size"], big.len());
    assert_eq!(dead[0]["record"], Value::Null);
    assert_eq!(dead[0]["excerpt"].as_str().unwrap(), &big[..4096]);
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(big.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(dead[0]["sha256"], hex);
}
