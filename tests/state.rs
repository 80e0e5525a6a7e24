//! State in the redb file survives the harness: a run split in two, with a restart in
//! between, raises exactly the alerts of one uninterrupted run.

use serde_json::Value;

use crate::support::*;

#[test]
fn a_restarted_harness_continues_where_it_stopped() {
    let log: Value =
        serde_json::from_slice(&std::fs::read(fixture("logs/ssm_sessions.json")).unwrap()).unwrap();
    let records: Vec<String> = log["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    let ndjson = |part: &[String]| part.join("\n").into_bytes();

    let uninterrupted = alerts(&["run", "--state", "memory", "-"], &ndjson(&records));
    assert_eq!(uninterrupted.len(), 16, "the log raises all its alerts");

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.redb");
    let state = state.to_str().unwrap();
    let (first, second) = records.split_at(records.len() / 2);
    let mut resumed = alerts(
        &["run", "--state", state, "--commit-every", "7", "-"],
        &ndjson(first),
    );
    resumed.extend(alerts(&["run", "--state", state, "-"], &ndjson(second)));
    assert_eq!(resumed, uninterrupted);
}

#[test]
fn the_default_state_file_is_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let run_sample = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rule-harness"))
            .args(["--no-cache", "run"])
            .arg(fixture("records/panther_sample.json"))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lines(&out.stdout)
    };
    assert_eq!(run_sample().len(), 1);
    assert!(dir.path().join("rule-state.redb").exists());
    // The same record again is deduplicated against the saved state.
    assert!(run_sample().is_empty());
}
