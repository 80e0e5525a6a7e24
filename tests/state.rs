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

/// `fixtures/state/format-2.redb` was written by the release before state format 3
/// (commit 3cfc294), running with `format-2.config.json` over the first half of
/// `generated_log(4000, 14)`. This version upgrades it on first use, keeping what it
/// learnt: the second half raises exactly the alerts of one uninterrupted run.
#[test]
fn a_state_of_the_previous_format_is_upgraded_and_keeps_its_baselines() {
    let log = generated_log(4000, 14);
    let lines: Vec<&[u8]> = log.split_inclusive(|&b| b == b'\n').collect();
    let (first, second) = lines.split_at(2000);
    let config = fixture("state/format-2.config.json");
    let config = config.to_str().unwrap();
    let uninterrupted = alerts(&["run", "--config", config, "--state", "memory", "-"], &log);
    let before = alerts(
        &["run", "--config", config, "--state", "memory", "-"],
        &first.concat(),
    );
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.redb");
    std::fs::copy(fixture("state/format-2.redb"), &state).unwrap();
    let state = state.to_str().unwrap();
    let run = ["run", "--config", config, "--state", state, "-"];
    let resumed = alerts(&run, &second.concat());
    assert!(
        resumed
            .iter()
            .any(|a| a["rule_id"] == "AWS.SSM.UnusualSession"),
        "the baselines learnt before the upgrade are used"
    );
    assert_eq!(before.len() + resumed.len(), uninterrupted.len());
    assert_eq!(resumed, uninterrupted[before.len()..]);
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
    // The same file again resumes after its end: nothing new.
    assert!(run_sample().is_empty());
}

/// The fixture log's records, split in two NDJSON files.
fn halves(dir: &std::path::Path) -> (String, String) {
    let log: Value =
        serde_json::from_slice(&std::fs::read(fixture("logs/ssm_sessions.json")).unwrap()).unwrap();
    let records: Vec<String> = log["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    let (first, second) = records.split_at(records.len() / 2);
    let write = |name: &str, part: &[String]| {
        let path = dir.join(name);
        std::fs::write(&path, part.join("\n")).unwrap();
        path.to_str().unwrap().to_owned()
    };
    (write("first.ndjson", first), write("second.ndjson", second))
}

#[test]
fn a_damaged_state_file_is_refused_never_read_as_other_history() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = halves(dir.path());
    let base = dir.path().join("base.redb");
    let base_str = base.to_str().unwrap();
    alerts(&["run", "--state", base_str, &first], b"");
    let intact = alerts(&["run", "--state", base_str, &second], b"");
    // Start again from the state after the first half, without the second.
    std::fs::remove_file(&base).unwrap();
    alerts(&["run", "--state", base_str, &first], b"");
    let bytes = std::fs::read(&base).unwrap();

    let mut rng = fastrand::Rng::with_seed(42);
    let (mut refused, mut same) = (0, 0);
    for seed in 0..120u64 {
        let mut damaged = bytes.clone();
        // Half the flips in the header and first pages, where redb keeps its commit slots.
        let at = if seed % 2 == 0 {
            rng.usize(..damaged.len().min(16 * 1024))
        } else {
            rng.usize(..damaged.len())
        };
        damaged[at] ^= 1 << rng.u8(..8);
        let state = dir.path().join(format!("flip-{seed}.redb"));
        std::fs::write(&state, &damaged).unwrap();
        let out = harness(&["run", "--state", state.to_str().unwrap(), &second], b"");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "flip at {at}: {stderr}");
        match out.status.code() {
            Some(0) => {
                assert_eq!(
                    lines(&out.stdout),
                    intact,
                    "flip at {at} changed the alerts"
                );
                same += 1;
            }
            Some(1) => {
                assert!(
                    stderr.contains("state file") && stderr.contains("damaged"),
                    "flip at {at}: {stderr}"
                );
                assert!(
                    out.stdout.is_empty(),
                    "flip at {at}: alerts before the refusal"
                );
                refused += 1;
            }
            other => panic!("flip at {at}: exit {other:?}: {stderr}"),
        }
    }
    eprintln!("bit flips: {refused} refused, {same} without effect");
    assert!(
        refused > 10 && same > 10,
        "refused {refused}, unaffected {same}"
    );
}

#[test]
fn only_a_missing_state_file_starts_anew() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.redb");
    std::fs::write(&state, b"").unwrap();
    let out = harness(&["run", "--state", state.to_str().unwrap(), "-"], b"{}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is empty (0 bytes)") && stderr.contains("delete it"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&state).unwrap(), b"", "left as it was");
}
