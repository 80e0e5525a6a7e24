//! Nothing lost, nothing planted: a run killed at any point, an output that fails, a
//! signal, a slow stream. Each time the alerts that reach the output, over a crash and a
//! rerun, are those of one uninterrupted run, at most with the uncommitted tail twice.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Alerts as comparable text, counted.
fn counted(alerts: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for alert in alerts {
        *counts.entry(alert.to_string()).or_default() += 1;
    }
    counts
}

/// `got` holds every alert of `expected` (as often), and nothing else.
fn assert_same_alerts_but_repeats(got: &[Value], expected: &[Value], what: &str) {
    let (got, expected) = (counted(got), counted(expected));
    for (alert, n) in &expected {
        let seen = got.get(alert).copied().unwrap_or(0);
        assert!(seen >= *n, "{what}: lost {alert}");
    }
    for alert in got.keys() {
        assert!(expected.contains_key(alert), "{what}: planted {alert}");
    }
}

/// A generated log in a temporary directory (removed when `dir` is dropped: keep it), a
/// state file's path beside it, and the alerts one uninterrupted run over the log raises.
struct Setup {
    dir: tempfile::TempDir,
    log: String,
    state: String,
    expected: Vec<Value>,
}

/// Sends SIGTERM to `child` and waits for it: how it ended, and what it wrote to stderr.
fn terminate(child: &mut std::process::Child) -> (std::process::ExitStatus, String) {
    // SAFETY: kill has no memory effects; the pid is our child's, not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().unwrap();
    pipe.read_to_string(&mut stderr).unwrap();
    (status, stderr)
}

fn setup(records: usize, seed: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (log, state) = (path("log.ndjson"), path("state.redb"));
    std::fs::write(&log, generated_log(records, seed)).unwrap();
    let expected = alerts(&["run", "--state", "memory", &log], b"");
    Setup {
        dir,
        log,
        state,
        expected,
    }
}

#[test]
fn a_run_killed_at_any_point_then_rerun_raises_every_alert_of_one_run() {
    let Setup {
        dir, log, expected, ..
    } = setup(3000, 7);
    let log = log.as_str();
    assert!(expected.len() > 100, "{}", expected.len());

    // Kill after some alerts were read, or after some time: early, midway, late.
    let points = [
        (Some(1), None),
        (Some(40), None),
        (Some(expected.len() / 2), None),
    ]
    .into_iter()
    .chain([20, 150, 400].map(|ms| (None, Some(Duration::from_millis(ms)))));
    let mut cut_short = 0;
    for (n, point) in points.enumerate() {
        let state = dir.path().join(format!("state-{n}.redb"));
        let state = state.to_str().unwrap();
        let args = ["run", "--state", state, "--commit-every", "7", log];
        let mut child = command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = Vec::new();
        let started = Instant::now();
        let mut line = String::new();
        loop {
            let enough = match point {
                (Some(alerts), _) => first.len() >= alerts,
                (_, Some(after)) => started.elapsed() >= after,
                _ => unreachable!(),
            };
            line.clear();
            if enough || out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            first.push(serde_json::from_str::<Value>(&line).unwrap());
        }
        child.kill().unwrap(); // SIGKILL: no chance to commit or flush
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        first.extend(lines(rest.as_bytes()));
        child.wait().unwrap();

        cut_short += usize::from(first.len() < expected.len());
        let second = alerts(&args, b"");
        let all: Vec<Value> = first.iter().chain(&second).cloned().collect();
        assert_same_alerts_but_repeats(&all, &expected, &format!("kill point {point:?}"));
        let repeats = all.len() - expected.len();
        assert!(
            repeats <= 7 + 8,
            "{point:?}: {repeats} alerts repeated, more than a commit's worth"
        );
    }
    assert!(
        cut_short >= 4,
        "only {cut_short} runs were killed before their end"
    );
}

/// A failure in reading a file (a bug: here a progress callback that panics in the
/// reading thread) ends the run with an error, after committing what was read before it;
/// the rerun resumes there and raises the rest, so the two give the alerts of one run.
#[test]
fn a_reader_that_fails_ends_the_run_and_the_rerun_resumes() {
    use detect_host::pipeline::{Options, Pipeline, Sink, Stop};
    let Setup {
        log,
        state,
        expected,
        dir,
    } = setup(3000, 9);
    let out = dir.path().join("alerts.ndjson");
    let size = std::fs::metadata(&log).unwrap().len();
    let run = |fail_at: Option<u64>| {
        let rule = detect_host::Sandbox::new(Default::default())
            .unwrap()
            .load(default_rule())
            .unwrap();
        let store = detect_host::state::RedbStore::open(std::path::Path::new(&state)).unwrap();
        let runner = rule.start(Box::new(store), None).unwrap();
        let stop = Stop::new();
        let read = std::sync::atomic::AtomicU64::new(0);
        let pipeline = Pipeline::new(&[log.clone().into()], Options::default())
            .unwrap()
            .alerts(Sink::append(&out, &stop).unwrap())
            .progress(std::sync::Arc::new(move |bytes| {
                let total = read.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed) + bytes;
                assert!(
                    fail_at.is_none_or(|at| total < at),
                    "failing, as the test asks"
                );
            }));
        pipeline.run(Box::new(runner), &stop)
    };
    let failed = run(Some(size * 6 / 10)).expect_err("the run fails");
    assert!(
        failed.to_string().contains("failed unexpectedly"),
        "{failed}"
    );
    let first = lines(&std::fs::read(&out).unwrap()).len();
    assert!(
        first > 0 && first < expected.len(),
        "{first} of {}",
        expected.len()
    );
    let report = run(None).unwrap();
    assert!(report.skipped > 0, "the rerun resumes");
    let all = lines(&std::fs::read(&out).unwrap());
    assert!(
        all.len() == expected.len(),
        "{} alerts, {} in one run",
        all.len(),
        expected.len()
    );
    assert_same_alerts_but_repeats(&all, &expected, "a failed reader");
}

#[test]
fn alerts_that_cannot_be_written_are_raised_by_the_rerun() {
    let Setup {
        log,
        state,
        expected,
        dir: _dir,
    } = setup(500, 8);
    let (log, state) = (log.as_str(), state.as_str());

    // A run with its alerts going to a full disk: its exit code and what it said.
    let to_full_disk = |state: &str| {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = command(&["run", "--state", state, log])
            .stdout(full)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = to_full_disk(state);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("No space left on device") && stderr.contains("rerun"),
        "{stderr}"
    );
    assert_eq!(alerts(&["run", "--state", state, log], b""), expected);

    // State in memory: its commits do not wait for alerts to reach the disk, but a write
    // that fails still fails the run.
    let (code, stderr) = to_full_disk("memory");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
}

#[test]
fn a_signal_commits_what_was_read_and_a_slow_stream_is_not_kept_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.redb");
    let state = state.to_str().unwrap();
    let log = std::fs::read(fixture("logs/ssm_sessions.json")).unwrap();
    let log: Value = serde_json::from_slice(&log).unwrap();
    let records: Vec<String> = log["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    let expected = alerts(
        &[
            "run",
            "--state",
            "memory",
            fixture("logs/ssm_sessions.json").to_str().unwrap(),
        ],
        b"",
    );
    let (first, second) = records.split_at(30);

    let mut child = command(&["run", "--state", state, "--commit-interval", "100ms", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all((first.join("\n") + "\n").as_bytes())
        .unwrap();
    stdin.flush().unwrap();
    // The stream stays open: the alerts must come out anyway, on the commit interval.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(
        line.starts_with('{'),
        "the first alert comes while the stream is open: {line:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr) = terminate(&mut child);
    drop(stdin);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let mut got = lines(line.as_bytes());
    got.extend(lines(rest.as_bytes()));
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");

    // Everything read before the signal is in the state: the rest continues it exactly.
    got.extend(alerts(
        &["run", "--state", state, "-"],
        second.join("\n").as_bytes(),
    ));
    assert_eq!(got, expected);
}

#[test]
fn a_fifo_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("records.fifo");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let log = std::fs::read(fixture("logs/ssm_sessions.json")).unwrap();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, log).unwrap())
    };
    let got = alerts(&["run", "--state", "memory", fifo.to_str().unwrap()], b"");
    writer.join().unwrap();
    assert_eq!(got.len(), 16);
}

/// A reader of `pipe` that takes exactly `lines` lines, a byte at a time (so that it reads
/// nothing more), then goes away.
#[allow(clippy::unbuffered_bytes)]
fn read_lines_then_leave(pipe: std::process::ChildStdout, lines: usize) -> Vec<Value> {
    let mut taken = Vec::new();
    let mut line = Vec::new();
    for byte in pipe.bytes() {
        let byte = byte.unwrap();
        line.push(byte);
        if byte == b'\n' {
            taken.push(serde_json::from_slice(&line).unwrap());
            line.clear();
            if taken.len() == lines {
                break;
            }
        }
    }
    taken
}

/// A closed standard output (which the runtime turns into /dev/null) or /dev/null would
/// discard the alerts: with a state file that records them as raised, the run is refused
/// unless asked for; with state in memory, it is said.
#[test]
fn alerts_are_not_discarded_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.redb");
    let log = fixture("logs/ssm_sessions.json");
    let run = |args: &[&str]| {
        let mut all = vec!["run"];
        all.extend(args);
        all.push(log.to_str().unwrap());
        let out = command(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--state", state.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--discard-alerts"), "{stderr}");
    assert!(!state.exists(), "nothing was committed");
    let (code, stderr) = run(&["--state", "memory"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("alerts would be discarded"), "{stderr}");
    let (code, stderr) = run(&["--state", state.to_str().unwrap(), "--discard-alerts"]);
    assert_eq!(code, Some(0), "{stderr}");
    let piped = harness(&["run", "--state", "memory", log.to_str().unwrap()], b"");
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("discarded"));
}

#[test]
fn alerts_left_unread_in_a_pipe_are_not_delivered() {
    let Setup {
        log,
        state,
        expected,
        dir: _dir,
    } = setup(2000, 9);
    let (log, state) = (log.as_str(), state.as_str());
    for lines in [1, 30] {
        let _ = std::fs::remove_file(state);
        let args = ["run", "--state", state, "--commit-every", "5", log];
        let mut child = command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut got = read_lines_then_leave(child.stdout.take().unwrap(), lines);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("went away before reading") || stderr.contains("Broken pipe"),
            "{stderr}"
        );
        got.extend(alerts(&args, b""));
        assert_same_alerts_but_repeats(&got, &expected, &format!("reader left after {lines}"));
    }
}

#[test]
fn a_signal_stops_a_run_whose_reader_stalls() {
    let Setup {
        log,
        state,
        expected,
        dir: _dir,
    } = setup(3000, 10);
    let (log, state) = (log.as_str(), state.as_str());
    let args = ["run", "--state", state, "--commit-every", "5", log];
    // Nobody reads standard output: the pipe fills and stays full.
    let mut child = command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stalled = child.stdout.take().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let (status, stderr) = terminate(&mut child);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the signal was not seen"
    );
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("had not taken everything"), "{stderr}");
    let mut unread = Vec::new();
    let mut stalled = stalled;
    stalled.read_to_end(&mut unread).unwrap();
    let mut got = lines(&unread);
    got.extend(alerts(&args, b""));
    assert_same_alerts_but_repeats(&got, &expected, "stalled reader");
}

#[test]
fn files_are_recognised_by_content_not_only_by_path() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.redb");
    let state = state.to_str().unwrap();
    let run = |path: &std::path::Path| {
        let out = command(&["run", "--state", state])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            lines(&out.stdout),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Names that are not UTF-8 keep marks of their own.
    let a = dir.path().join(std::ffi::OsStr::from_bytes(b"a\xff"));
    let b = dir.path().join(std::ffi::OsStr::from_bytes(b"a\xfe"));
    std::fs::write(&a, generated_log(300, 11)).unwrap();
    std::fs::write(&b, generated_log(300, 12)).unwrap();
    assert!(!run(&a).0.is_empty());
    assert!(!run(&b).0.is_empty());
    let (again, said) = run(&a);
    assert!(
        again.is_empty() && said.contains("resuming after the 300"),
        "{said}"
    );

    // A rotated log is recognised under its new name.
    let rotated = dir.path().join("log.1");
    std::fs::rename(&a, &rotated).unwrap();
    let (again, said) = run(&rotated);
    assert!(
        again.is_empty() && said.contains("resuming after the 300"),
        "{said}"
    );

    // Another file at the same path, starting the same: read from its start.
    let mut other = generated_log(300, 11);
    other.extend(generated_log(20, 13));
    let first_line = other.iter().position(|b| *b == b'\n').unwrap();
    let mut replaced = other[..=first_line].to_vec();
    replaced.extend(generated_log(400, 14));
    std::fs::write(&rotated, &replaced).unwrap();
    let (_, said) = run(&rotated);
    assert!(said.contains("reading it from the start"), "{said}");
}

#[test]
fn a_complete_compressed_file_hands_over_its_truncated_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::read(fixture("logs/ssm_sessions.json")).unwrap();
    let cut = gzip(&log[..log.len() / 2]);
    let path = dir.path().join("cut.json.gz");
    std::fs::write(&path, cut).unwrap();
    let dead = dir.path().join("dead.ndjson");
    let args = [
        "run",
        "--state",
        "memory",
        "--dead-letter",
        dead.to_str().unwrap(),
        path.to_str().unwrap(),
    ];
    let out = harness(&args, b"");
    assert!(out.status.success());
    let dead = lines(&std::fs::read(&dead).unwrap());
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["kind"], "invalid-json", "{dead:?}");
}

#[test]
fn an_output_file_cut_by_a_crash_goes_on_on_a_new_line() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.ndjson");
    std::fs::write(&dead, b"{\"source\": \"-\", \"ki").unwrap();
    let out = harness(
        &[
            "run",
            "--state",
            "memory",
            "--dead-letter",
            dead.to_str().unwrap(),
            "-",
        ],
        b"not json\n",
    );
    assert!(out.status.success());
    let text = std::fs::read_to_string(&dead).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(serde_json::from_str::<Value>(lines[1]).is_ok(), "{text}");
}
