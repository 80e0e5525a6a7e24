//! The command line: the fixture suite, `inspect`, the compile cache, and errors that say
//! what is wrong.

use std::process::Command;

use serde_json::Value;

use crate::support::*;

#[test]
fn the_fixture_suite_passes_a_line_a_case() {
    let out = harness(&["test"], b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let (cases, totals) = stdout.trim_end().rsplit_once('\n').unwrap();
    let passed: usize = totals.split(' ').next().unwrap().parse().unwrap();
    assert!(
        totals.starts_with(&format!("{passed} passed, 0 failed")),
        "{totals}"
    );
    assert_eq!(cases.lines().count(), passed, "{stdout}");
    assert!(
        cases
            .lines()
            .all(|l| l.starts_with("case ") && l.ends_with(" ... ok")),
        "{stdout}"
    );
    assert!(stdout.contains(":: the sample log alone is an informational session start ... ok"));
}

#[test]
fn a_failing_case_shows_a_diff_and_fails_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let case = serde_json::json!({
        "base": fixture("records/panther_sample.json"),
        "cases": [{"name": "wrong severity", "steps": [{"record": {}, "expect": [{"severity": "critical"}]}]}]
    });
    let path = dir.path().join("wrong.case.json");
    std::fs::write(&path, case.to_string()).unwrap();
    let out = harness(&["test", path.to_str().unwrap()], b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("FAIL") && stdout.contains("wrong severity"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-     \"severity\": \"critical\"")
            && stdout.contains("+     \"severity\": \"info\""),
        "{stdout}"
    );
    assert!(stdout.ends_with("0 passed, 1 failed\n"), "{stdout}");
    assert!(stdout.contains(":: wrong severity ... FAILED"), "{stdout}");
}

/// `--filter` runs the cases whose name has the text; `--junit` writes what CI systems
/// read: a JUnit parser finds every case, and a failure with its message and diff.
#[test]
fn cases_are_filtered_by_name_and_written_as_junit() {
    let dir = tempfile::tempdir().unwrap();
    let case = serde_json::json!({
        "base": fixture("records/panther_sample.json"),
        "cases": [
            {"name": "wrong <severity> & all", "steps": [{"record": {}, "expect": [{"severity": "critical"}]}]},
            // A diff holding what would end a CDATA section, markup, and a character XML
            // does not allow.
            {"name": "odd severity", "steps": [{"record": {}, "expect": [{"severity": "]]></failure><testcase name='forged'/>\u{ffff}"}]}]},
            {"name": "right severity", "steps": [{"record": {}, "expect": [{"severity": "info"}]}]},
            {"name": "left out", "steps": [{"record": {}}]}
        ]
    });
    let path = dir.path().join("mixed.case.json");
    std::fs::write(&path, case.to_string()).unwrap();
    let junit = dir.path().join("junit.xml");
    // The same file twice runs once.
    let path = path.to_str().unwrap();
    let args = ["test", path, path, "--filter", "severity"];
    let out = harness(
        &[&args[..], &["--junit", junit.to_str().unwrap()]].concat(),
        b"",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.ends_with("1 passed, 2 failed; 1 filtered out\n"),
        "{stdout}"
    );
    let suites = junit_parser::from_reader(std::io::BufReader::new(
        std::fs::File::open(&junit).unwrap(),
    ))
    .unwrap();
    assert_eq!((suites.tests, suites.failures), (3, 2));
    let suite = &suites.suites[0];
    let names: Vec<&str> = suite
        .cases
        .iter()
        .map(|c| c.original_name.as_str())
        .collect();
    assert_eq!(
        names,
        ["wrong <severity> & all", "odd severity", "right severity"]
    );
    let junit_parser::TestStatus::Failure(failure) = &suite.cases[0].status else {
        panic!("{:?}", suite.cases[0].status)
    };
    assert!(
        failure.message.contains("alerts differ"),
        "{}",
        failure.message
    );
    assert!(
        failure.text.contains("+     \"severity\": \"info\""),
        "{}",
        failure.text
    );
    let junit_parser::TestStatus::Failure(odd) = &suite.cases[1].status else {
        panic!("{:?}", suite.cases[1].status)
    };
    assert!(odd.message.contains("alerts differ"), "{}", odd.message);
    // Markup escaped, not in a CDATA section that `]]>` would end; U+FFFF written out.
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("]]&gt;&lt;/failure&gt;&lt;testcase name='forged'/&gt;\\u{ffff}"),
        "{xml}"
    );
    assert!(suite.cases[2].status.is_success());
}

/// A run that tests nothing fails, saying why: a filter no name contains, or case
/// files all written for another rule.
#[test]
fn a_test_run_that_runs_no_case_fails_saying_why() {
    let cases = "guest/rules/ssm/cases";
    let out = harness(&["test", cases, "--filter", "no such case"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("contains \"no such case\": check --filter"),
        "{stderr}"
    );

    let out = harness(&["test", "guest/rules/console-login/cases"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "are for aws-console-login-without-mfa: load that rule's component with --rule"
        ),
        "{stderr}"
    );
}

#[test]
fn inspect_shows_only_key_value_imports_and_the_detections() {
    let out = harness(&["inspect", "--json"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    let imports: Vec<&str> = info["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        imports,
        [
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:keyvalue/batch@0.2.0-draft"
        ]
    );
    assert_eq!(info["exports"][0]["name"], "detect:rule/detector@0.3.0");
    let ids: Vec<&str> = info["rule"]["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "AWS.SSM.SessionStarted",
            "AWS.SSM.UnusualIdentity",
            "AWS.SSM.UnusualSession",
            "AWS.SSM.MultipleSessions"
        ]
    );
    assert_eq!(
        info["rule"]["config"]["baseline"]["activation_period"],
        "14d"
    );
    let text = harness(&["inspect"], b"");
    assert!(String::from_utf8_lossy(&text.stdout).contains("AWS.SSM.UnusualSession [medium]"));
}

#[test]
fn the_compiled_rule_is_cached_and_reused() {
    let cache = tempfile::tempdir().unwrap();
    let inspect = || {
        let out = Command::new(env!("CARGO_BIN_EXE_rule-harness"))
            .args(["--cache-dir", cache.path().to_str().unwrap(), "inspect"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let entries: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        std::fs::metadata(&entries[0]).unwrap().modified().unwrap()
    };
    let first = inspect();
    assert_eq!(
        inspect(),
        first,
        "the second start reads the cache instead of rewriting it"
    );
}

#[test]
fn errors_say_what_is_wrong_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(path("core.wasm"), wat::parse_str("(module)").unwrap()).unwrap();
    std::fs::write(
        path("net.wasm"),
        wat::parse_str(r#"(component (import "wasi:sockets/tcp@0.2.0" (instance)))"#).unwrap(),
    )
    .unwrap();
    std::fs::write(
        path("old.wasm"),
        wat::parse_str(
            r#"(component (instance $i) (export "detect:rule/detector@0.1.0" (instance $i)))"#,
        )
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        path("state.redb"),
        "this is not a redb file, whatever it is, it is long",
    )
    .unwrap();
    std::fs::write(
        path("config.json"),
        r#"{"baseline": {"activation_period": "soon"}}"#,
    )
    .unwrap();
    for (args, needle) in [
        (vec!["run".into(), path("missing.json")], "cannot open"),
        (
            vec!["--rule".into(), path("missing.wasm"), "inspect".into()],
            "cannot read the rule",
        ),
        (
            vec!["--rule".into(), path("core.wasm"), "inspect".into()],
            "core WebAssembly module without a component type",
        ),
        (
            vec!["--rule".into(), path("net.wasm"), "inspect".into()],
            "wasi:sockets/tcp@0.2.0",
        ),
        (
            vec!["--rule".into(), path("old.wasm"), "inspect".into()],
            "built for detect:rule@0.1.0; this harness runs detect:rule@0.3.0 rules",
        ),
        (
            vec![
                "run".into(),
                "--state".into(),
                path("state.redb"),
                "-".into(),
            ],
            "is damaged",
        ),
        (
            vec![
                "run".into(),
                "--config".into(),
                path("config.json"),
                "--state".into(),
                "memory".into(),
                "-".into(),
            ],
            "soon",
        ),
        (vec!["test".into(), path("nowhere")], "does not exist"),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = harness(&args, b"");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn the_exported_component_is_the_rule_and_loads_again() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ssm_rule.wasm");
    assert!(
        harness(&["export", file.to_str().unwrap()], b"")
            .status
            .success()
    );
    assert_eq!(std::fs::read(&file).unwrap(), default_rule());
    let out = harness(
        &["--rule", file.to_str().unwrap(), "inspect", "--json"],
        b"",
    );
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["rule"]["name"], "aws-ssm-sessions");
}

/// What `docs/writing-a-rule.md` has a rule author do: build the rule crate with the
/// `component` feature and hand the module cargo wrote to `--rule`.
#[test]
fn a_rule_crate_built_by_cargo_runs_its_cases() {
    let module = |rule| detect_testing::path(rule, "component", true);
    for rule in detect_testing::rules() {
        let (module, cases) = (module(rule), format!("guest/rules/{rule}/cases"));
        let out = harness(&["--rule", module.to_str().unwrap(), "test", &cases], b"");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(
            stdout
                .lines()
                .last()
                .unwrap()
                .ends_with(" passed, 0 failed")
        );
    }
    let log = fixture("logs/ssm_sessions.json");
    let log = log.to_str().unwrap();
    let module = module("ssm");
    assert_eq!(
        alerts(
            &[
                "--rule",
                module.to_str().unwrap(),
                "run",
                "--state",
                "memory",
                log
            ],
            b""
        ),
        alerts(&["run", "--state", "memory", log], b"")
    );
}

/// `export --from` checks a module a rule author built and makes it ready for its host:
/// the filter's exports reset the shadow stack, as the built-in filter's do.
#[test]
fn export_prepares_the_modules_of_a_rule_crate() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let module = |rule, family| {
        detect_testing::path(rule, family, true)
            .to_str()
            .unwrap()
            .to_owned()
    };
    // Every rule's, as the test build made them.
    for rule in detect_testing::rules() {
        for artifact in ["fluent-bit", "fluvio"] {
            let args = [
                "export",
                "--for",
                artifact,
                "--from",
                &module(rule, artifact),
                &out(artifact),
            ];
            assert!(harness(&args, b"").status.success(), "{rule} {artifact}");
            assert!(
                std::fs::read(out(artifact)).unwrap() == detect_testing::artifact(rule, artifact),
                "{rule} {artifact}"
            );
        }
    }
    let args = [
        "export",
        "--for",
        "component",
        "--from",
        &module("ssm", "component"),
        &out("c"),
    ];
    assert!(harness(&args, b"").status.success());
    // A module of the wrong family is refused: it imports what that family's host does
    // not provide (named), or lacks what the host calls.
    let refused = |family, from: &str| {
        let out = harness(&["export", "--for", family, "--from", from, &out("x")], b"");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = refused("fluvio", &module("ssm", "fluent-bit"));
    assert!(
        stderr.contains("imports `wasi_snapshot_preview1."),
        "{stderr}"
    );
    let stderr = refused("fluent-bit", &module("ssm", "fluvio"));
    assert!(stderr.contains("imports `env.copy_records`"), "{stderr}");
    let rule = ["--rule", "x.wasm", "export", &out("y")];
    let stderr = String::from_utf8_lossy(&harness(&rule, b"").stderr).into_owned();
    assert!(stderr.contains("--from"), "{stderr}");
}

/// The rule compiled into the harness gives, byte for byte, what the sandboxed component
/// gives: the bench compares like with like.
#[test]
fn the_unsandboxed_rule_writes_what_the_sandboxed_one_writes() {
    let log = generated_log(2000, 3);
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--state", "memory"];
        args.extend(extra);
        let out = harness(&args, &log);
        assert!(out.status.success());
        out.stdout
    };
    let sandboxed = run(&[]);
    assert!(sandboxed.len() > 10_000);
    assert!(run(&["--unsandboxed"]) == sandboxed);
}

#[test]
fn numeric_flags_are_range_checked() {
    for (flag, value) in [
        ("--deadline-ms", "0"),
        ("--max-memory-mib", "0"),
        ("--max-memory-mib", "18446744073709551615"),
        ("--max-memory-mib", "4097"),
        ("--fuel", "0"),
        ("--max-record-bytes", "10"),
        ("--max-record-bytes", "1073741824"),
        ("--max-clock-skew", "soon"),
    ] {
        let out = harness(&[flag, value, "run", "--state", "memory", "-"], b"{}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
    for (flag, value) in [
        ("--commit-every", "0"),
        ("--commit-interval", "0s"),
        ("--commit-interval", "2h"),
    ] {
        let out = harness(&["run", flag, value, "--state", "memory", "-"], b"{}");
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
    }
}

#[test]
fn outputs_may_not_be_inputs_nor_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("log.json");
    let log = std::fs::read(fixture("logs/ssm_sessions.json")).unwrap();
    std::fs::write(&input, &log).unwrap();
    let (input, state) = (input.to_str().unwrap(), dir.path().join("state.redb"));
    let state = state.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["run", "--dead-letter", input, "--state", "memory", input],
            "log.json is also an input",
        ),
        (
            vec!["run", "--state", input, input],
            "is also an input: committing would destroy",
        ),
        (
            vec!["run", "--state", state, "--dead-letter", state, input],
            "state.redb is the state file",
        ),
        (
            vec!["run", "--state", "memory", input, input],
            "is named twice",
        ),
        (vec!["run", "--state", "memory", "/tmp"], "is a directory"),
    ] {
        if args.contains(&"--dead-letter") && args.contains(&state) {
            // The state file must exist for this one.
            alerts(&["run", "--state", state, "-"], b"");
        }
        let out = harness(&args, b"");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(std::fs::read(input).unwrap(), log, "the input is untouched");
    }
    // Standard output redirected onto the input.
    let out = command(&["run", "--state", "memory", input])
        .stdout(
            std::fs::OpenOptions::new()
                .append(true)
                .open(input)
                .unwrap(),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("standard output is also an input"));
    assert_eq!(std::fs::read(input).unwrap(), log);
}
