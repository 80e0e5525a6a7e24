//! Test cases as data: streams of records with the alerts they must raise, each case in
//! a fresh, empty state. A rule keeps its cases beside it (`cases/`), and they run
//! natively in the rule's own tests ([`check_dir`]) and through each host that runs the
//! rule (`rule-harness test` runs them against the component).
//!
//! A case file (`*.case.json`) holds cases that share a base record:
//!
//! ```json
//! {
//!   "rule": "aws-ssm-sessions",
//!   "base": "../../../../fixtures/records/panther_sample.json",
//!   "cases": [{
//!     "name": "a new identity after activation is unusual",
//!     "config": {"baseline": {"activation_period": "1d"}},
//!     "steps": [
//!       {"record": {"eventTime": "2025-01-01T00:00:00Z"}, "expect": [{"rule_id": "AWS.SSM.SessionStarted"}]},
//!       {"raw": "not json", "error": "invalid-json"}
//!     ]
//!   }]
//! }
//! ```
//!
//! `rule` names the rule the cases are for (other rules skip the file). A step's `record`
//! is merged into the base (objects key by key, `null` removes a key); `raw` is sent as
//! is. `expect` lists the alerts in order, each with only the fields that matter (objects
//! match as subsets); a step without `expect` must raise nothing. `error` names the
//! failure kind the step must produce instead.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use similar::TextDiff;

use crate::binding::Resident;
use crate::kv::MemoryKv;
use crate::prefilter::Prefilter;
use crate::time::HOUR;
use crate::{AlertLine, Configured, Context, Rule, RuleConfig};

/// A record the rule refused: the failure's kind (`invalid-json`, ...) and message.
pub type Rejection = (String, String);

/// One run of a rule, from empty state, as some host runs it.
pub trait Run {
    /// Processes one record: its alerts, or why the rule refused it. `Err` when the run
    /// cannot go on (the host stopped).
    fn process(&mut self, record: &str) -> Result<Result<Vec<AlertLine>, Rejection>, String>;
}

/// Starts a run with a configuration (JSON), or says why it cannot.
pub type Start<'a> = &'a dyn Fn(Option<String>) -> Result<Box<dyn Run + 'a>, String>;

/// The rule's prefilter, or why it is invalid.
fn prefilter<R: Rule>() -> Result<Prefilter, String> {
    Prefilter::new(R::info().prefilter).map_err(|e| format!("the rule's prefilter: {e}"))
}

/// What a rule must be for any case to run: a valid prefilter, a configuration that
/// takes `{}` and refuses unknown fields, and a dedup period for each detection.
fn check_rule<R: Rule>() -> Result<(), String> {
    prefilter::<R>()?;
    Configured::<R>::from_json("{}").map_err(|e| format!("the configuration `{{}}`: {e}"))?;
    if R::Config::from_json(r#"{"no such field": 1}"#).is_ok() {
        return Err("the configuration takes unknown fields: give it \
                    #[serde(deny_unknown_fields)]"
            .into());
    }
    Ok(())
}

/// Runs every case under `dir` against rule `R`, natively; panics with each failure. Also
/// checks the rule itself (its prefilter; a configuration that takes `{}` and refuses
/// unknown fields; a dedup period for each detection), and that its prefilter passes every
/// record the rule finds relevant.
///
/// Prints a line per case, as `rule-harness test` does (`cargo test -- --nocapture` shows
/// them, and a failing run shows them anyway); `DETECT_CASES=text` runs only the cases
/// whose name contains `text`, and passes where no case name contains it.
pub fn check_dir<R: Rule>(dir: impl AsRef<Path>) {
    if let Err(e) = check_rule::<R>() {
        panic!("{e}");
    }
    let files = discover(&[dir.as_ref().to_owned()]).unwrap_or_else(|e| panic!("{e}"));
    let filter = std::env::var("DETECT_CASES").ok();
    let mut summary = Summary::default();
    // Through `print!`, which the test harness captures, unlike `io::stdout()`.
    let mut out = Vec::new();
    for file in files {
        let ran = run_file(&native::<R>, R::info().name, &file, filter.as_deref());
        summary.add(ran, &mut out).expect("writing to memory");
    }
    summary.finish(&mut out).expect("writing to memory");
    print!("{}", String::from_utf8_lossy(&out));
    let failed = summary.failed();
    assert!(
        failed == 0,
        "{failed} case(s) failed: see the failures above"
    );
    // A filter may match none of this rule's cases: `cargo test --workspace` runs every
    // rule's cases with it.
    assert!(
        summary.passed() > 0 || filter.is_some(),
        "no cases for {} under {}",
        R::info().name,
        dir.as_ref().display()
    );
}

/// A native run of rule `R`, each record's writes applied only when it succeeds, as
/// every binding applies them.
pub fn native<'a, R: Rule>(config: Option<String>) -> Result<Box<dyn Run + 'a>, String> {
    let config = match config {
        Some(json) => Configured::from_json(&json)?,
        None => Configured::new(R::Config::default())?,
    };
    Ok(Box::new(Resident::<R>::new(config, MemoryKv::new())))
}

/// What a native run tells the rule: event times up to an hour past this machine's clock.
fn native_context() -> Context {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let now = i64::try_from(now.as_millis()).unwrap_or(i64::MAX);
    Context {
        not_after: now.saturating_add(HOUR),
    }
}

/// Runs natively, and checks that the rule's prefilter rules out no record that matters:
/// one the rule finds relevant, raises alerts for or keeps state about.
impl<R: Rule> Run for Resident<R> {
    fn process(&mut self, record: &str) -> Result<Result<Vec<AlertLine>, Rejection>, String> {
        let ruled_out = !prefilter::<R>()?.is_candidate(record.as_bytes());
        let before = ruled_out.then(|| self.kv.entries.clone());
        Ok(match Resident::process(self, record, &native_context()) {
            Ok(outcome)
                if ruled_out
                    && (outcome.relevant
                        || !outcome.alerts.is_empty()
                        || before.as_ref() != Some(&self.kv.entries)) =>
            {
                return Err(format!(
                    "the rule's prefilter rules out a record that matters to the rule \
                     (relevant, alerting or changing state): {record}"
                ));
            }
            Ok(outcome) => Ok(outcome.alerts.iter().map(AlertLine::from).collect()),
            Err(e) => Err((e.kind().to_owned(), e.to_string())),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    /// What the file covers, for the reader.
    #[serde(default, rename = "description")]
    _description: serde::de::IgnoredAny,
    /// The name of the rule the cases are for; other rules skip the file.
    rule: Option<String>,
    /// A record file, relative to the case file, that steps' `record`s are merged into.
    base: Option<PathBuf>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    config: Option<Value>,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// What the step shows, for the reader.
    #[serde(default, rename = "note")]
    _note: serde::de::IgnoredAny,
    record: Option<Value>,
    raw: Option<String>,
    #[serde(default)]
    expect: Vec<Value>,
    error: Option<String>,
}

/// The result of one case.
#[derive(Debug)]
pub struct CaseReport {
    /// The case file.
    pub file: PathBuf,
    /// The case's name.
    pub name: String,
    /// Empty when the case passed; otherwise each failure, readable by a person.
    pub failures: Vec<String>,
    /// How long it ran.
    pub time: std::time::Duration,
}

impl CaseReport {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Its line: the case's file and name, and `ok` or `FAILED`.
    pub fn line(&self) -> String {
        let verdict = if self.passed() { "ok" } else { "FAILED" };
        format!(
            "case {} :: {} ... {verdict}",
            self.file.display(),
            self.name
        )
    }

    /// What went wrong, step by step, with a diff of the alerts that differ.
    pub fn details(&self) -> String {
        let mut out = format!("---- {} :: {} ----\n", self.file.display(), self.name);
        for failure in &self.failures {
            out.push_str(failure);
            if !failure.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }
}

/// The cases of a run, as they come: a line each as it is run, then the failures in
/// full and the totals.
#[derive(Debug, Default)]
pub struct Summary {
    /// Every case run, in order.
    pub reports: Vec<CaseReport>,
    /// Cases the name filter left out.
    pub filtered: usize,
    /// Case files for other rules.
    pub skipped_files: usize,
    /// The rules those files are for.
    pub other_rules: std::collections::BTreeSet<String>,
}

impl Summary {
    /// Adds a file's cases, writing a line for each to `out`.
    pub fn add(&mut self, ran: FileReport, out: &mut impl std::io::Write) -> std::io::Result<()> {
        match ran {
            FileReport::Skipped(rule) => {
                self.skipped_files += 1;
                self.other_rules.insert(rule);
            }
            FileReport::Ran { reports, filtered } => {
                self.filtered += filtered;
                for report in reports {
                    writeln!(out, "{}", report.line())?;
                    self.reports.push(report);
                }
            }
        }
        Ok(())
    }

    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.reports.iter().filter(|r| r.passed()).count()
    }

    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.reports.len() - self.passed()
    }

    /// The failed cases' details, one after the other.
    pub fn failures(&self) -> String {
        let failed = self.reports.iter().filter(|r| !r.passed());
        failed
            .map(CaseReport::details)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Writes the failures in full, then `N passed, M failed` (and what was left out).
    pub fn finish(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        if self.failed() > 0 {
            writeln!(out, "\nfailures:\n\n{}", self.failures())?;
        }
        let mut totals = format!("{} passed, {} failed", self.passed(), self.failed());
        if self.filtered > 0 {
            totals += &format!("; {} filtered out", self.filtered);
        }
        if self.skipped_files > 0 {
            totals += &format!(
                "; {} case file(s) for other rules skipped",
                self.skipped_files
            );
        }
        writeln!(out, "{totals}")
    }
}

/// The case files under `paths` (files are taken as given), sorted, each once however
/// many of `paths` reach it.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut found).map_err(|e| format!("reading {}: {e}", path.display()))?;
        } else if path.is_file() {
            found.push(path.clone());
        } else {
            return Err(format!("{} does not exist", path.display()));
        }
    }
    let mut seen = std::collections::HashSet::new();
    found.retain(|path| seen.insert(std::fs::canonicalize(path).unwrap_or_else(|_| path.clone())));
    found.sort();
    Ok(found)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, found)?;
        } else if path.to_string_lossy().ends_with(".case.json") {
            found.push(path);
        }
    }
    Ok(())
}

/// What running one case file gave.
#[derive(Debug)]
pub enum FileReport {
    /// The file's cases are for another rule, named here.
    Skipped(String),
    /// One report per case run. A file that cannot be read is one failed case.
    Ran {
        /// The cases run.
        reports: Vec<CaseReport>,
        /// The cases the name filter left out.
        filtered: usize,
    },
}

/// Runs the cases of one file whose name contains `filter` (all without one) against the
/// rule named `rule_name`, each in a run that `start` begins.
pub fn run_file(start: Start, rule_name: &str, path: &Path, filter: Option<&str>) -> FileReport {
    let loaded = load(path).and_then(|file| match file.rule {
        Some(rule) if rule != rule_name => Ok(Err(rule)),
        _ => {
            check_names(path, &file)?;
            Ok(Ok((base(path, &file)?, file)))
        }
    });
    match loaded {
        Ok(Err(other_rule)) => FileReport::Skipped(other_rule),
        Ok(Ok((base, file))) => {
            let wanted = |case: &&Case| filter.is_none_or(|f| case.name.contains(f));
            let reports: Vec<CaseReport> = (file.cases.iter().filter(wanted))
                .map(|case| run_case(start, path, base.as_ref(), case))
                .collect();
            let filtered = file.cases.len() - reports.len();
            FileReport::Ran { reports, filtered }
        }
        Err(e) => FileReport::Ran {
            reports: vec![CaseReport {
                file: path.to_owned(),
                name: "(file)".into(),
                failures: vec![e],
                time: std::time::Duration::ZERO,
            }],
            filtered: 0,
        },
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// The case file at `path`.
fn load(path: &Path) -> Result<CaseFile, String> {
    serde_json::from_str(&read(path)?)
        .map_err(|e| format!("{} is not a valid case file: {e}", path.display()))
}

/// Whether the cases of `file` have names, each its own, that print on a line: a report
/// and a JUnit file tell cases by name.
fn check_names(path: &Path, file: &CaseFile) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for case in &file.cases {
        let name = &case.name;
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            return Err(format!(
                "{}: the case name {name:?} is empty or holds control characters",
                path.display()
            ));
        }
        if !names.insert(name) {
            return Err(format!("{}: two cases are named {name:?}", path.display()));
        }
    }
    Ok(())
}

/// The base record of `file`, read at `path`.
fn base(path: &Path, file: &CaseFile) -> Result<Option<Value>, String> {
    let Some(base) = &file.base else {
        return Ok(None);
    };
    let base = path.parent().unwrap_or(Path::new(".")).join(base);
    let value = serde_json::from_str(&read(&base)?)
        .map_err(|e| format!("{} is not JSON: {e}", base.display()))?;
    Ok(Some(value))
}

fn run_case(start: Start, path: &Path, base: Option<&Value>, case: &Case) -> CaseReport {
    let started = std::time::Instant::now();
    let mut report = steps(
        start,
        base,
        case,
        CaseReport {
            file: path.to_owned(),
            name: case.name.clone(),
            failures: Vec::new(),
            time: std::time::Duration::ZERO,
        },
    );
    report.time = started.elapsed();
    report
}

/// Runs `case`'s steps, adding their failures to `report`.
fn steps(start: Start, base: Option<&Value>, case: &Case, mut report: CaseReport) -> CaseReport {
    let config = case.config.as_ref().map(Value::to_string);
    let mut run = match start(config) {
        Ok(run) => run,
        Err(e) => {
            report.failures.push(format!("the rule did not start: {e}"));
            return report;
        }
    };
    for (number, step) in case.steps.iter().enumerate().map(|(i, s)| (i + 1, s)) {
        let text = match (&step.raw, &step.record) {
            (Some(raw), None) => raw.clone(),
            (None, Some(overrides)) => {
                let mut record = base.cloned().unwrap_or(Value::Object(Default::default()));
                super::merge(&mut record, overrides.clone());
                record.to_string()
            }
            _ => {
                report.failures.push(format!(
                    "step {number}: give exactly one of `record` and `raw`"
                ));
                continue;
            }
        };
        if step.error.is_some() && !step.expect.is_empty() {
            report
                .failures
                .push(format!("step {number}: give `expect` or `error`, not both"));
            continue;
        }
        let actual = match run.process(&text) {
            Err(fatal) => {
                report
                    .failures
                    .push(format!("step {number}: the run stopped: {fatal}"));
                return report;
            }
            Ok(outcome) => outcome.map(|alerts| alerts.iter().map(to_value).collect()),
        };
        if let Some(failure) = check_step(step, actual) {
            report.failures.push(format!("step {number}: {failure}"));
        }
    }
    report
}

fn to_value(line: &AlertLine) -> Value {
    serde_json::to_value(line).expect("alert lines serialize")
}

/// Compares a step's outcome with its expectation; `None` when they agree.
fn check_step(step: &Step, actual: Result<Vec<Value>, Rejection>) -> Option<String> {
    match (&step.error, actual) {
        (Some(kind), Err((actual_kind, _))) if *kind == actual_kind => None,
        (Some(kind), Err((actual_kind, message))) => Some(format!(
            "expected error `{kind}`, got `{actual_kind}`: {message}"
        )),
        (Some(kind), Ok(alerts)) => Some(format!(
            "expected error `{kind}`, got {} alert(s)",
            alerts.len()
        )),
        (None, Err((kind, message))) => Some(format!("unexpected error `{kind}`: {message}")),
        (None, Ok(alerts)) => {
            let agree = alerts.len() == step.expect.len()
                && step.expect.iter().zip(&alerts).all(|(e, a)| contains(a, e));
            (!agree).then(|| diff(&step.expect, &alerts))
        }
    }
}

/// Whether `actual` has every field of `expected`, recursively for objects.
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| contains(av, ev))),
        (a, e) => a == e,
    }
}

/// Restricts `actual` to the fields `expected` names, so the diff shows only what matters.
fn project(actual: &Value, expected: &Value) -> Value {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => Value::Object(
            e.iter()
                .filter_map(|(k, ev)| a.get(k).map(|av| (k.clone(), project(av, ev))))
                .collect(),
        ),
        (a, _) => a.clone(),
    }
}

fn diff(expected: &[Value], actual: &[Value]) -> String {
    let shown: Vec<Value> = actual
        .iter()
        .enumerate()
        .map(|(i, a)| expected.get(i).map_or_else(|| a.clone(), |e| project(a, e)))
        .collect();
    let pretty = |v: &[Value]| serde_json::to_string_pretty(v).expect("JSON serializes") + "\n";
    let (expected, actual) = (pretty(expected), pretty(&shown));
    let mut out = String::from("alerts differ (- expected, + actual)\n");
    for change in TextDiff::from_lines(&expected, &actual).iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => ' ',
        };
        let _ = write!(out, "    {sign} {change}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Context, KeyValue, Outcome, RuleError, RuleInfo};
    use serde_json::json;

    /// A rule whose prefilter (`"Start"`) misses records it acts on.
    struct Sloppy;

    use crate::test_rules::NoConfig;

    impl Rule for Sloppy {
        type Config = NoConfig;
        fn info() -> RuleInfo {
            crate::test_rules::info("sloppy", &[&["\"Start\""]])
        }
        fn detect(
            record: &str,
            _: &NoConfig,
            kv: &mut impl KeyValue,
            _: &Context,
        ) -> Result<Outcome, RuleError> {
            if record.contains("Stop") {
                kv.set_many(vec![("stopped".into(), vec![1])]).unwrap();
            }
            Ok(Outcome {
                relevant: record.contains("Start") || record.contains("Begin"),
                ..Outcome::default()
            })
        }
    }

    #[test]
    fn the_native_run_catches_a_prefilter_that_misses_what_matters() {
        let mut run = native::<Sloppy>(None).unwrap();
        assert!(run.process(r#"{"e": "Start"}"#).unwrap().is_ok());
        assert!(run.process(r#"{"e": "quiet"}"#).unwrap().is_ok());
        for missed in [r#"{"e": "Begin"}"#, r#"{"e": "Stop"}"#] {
            let error = run.process(missed).unwrap_err();
            assert!(error.contains("prefilter rules out"), "{error}");
        }
    }

    #[test]
    fn expectations_match_as_subsets() {
        let actual = json!({"rule_id": "X", "context": {"a": 1, "b": [1, 2]}, "title": "t"});
        assert!(contains(&actual, &json!({"rule_id": "X"})));
        assert!(contains(&actual, &json!({"context": {"b": [1, 2]}})));
        assert!(!contains(&actual, &json!({"context": {"b": [1]}})));
        assert!(!contains(&actual, &json!({"missing": null})));
    }

    #[test]
    fn a_mismatch_shows_a_readable_diff() {
        let step = Step {
            _note: Default::default(),
            record: None,
            raw: None,
            expect: vec![json!({"rule_id": "A"})],
            error: None,
        };
        let diff = check_step(&step, Ok(vec![json!({"rule_id": "B", "title": "t"})])).unwrap();
        assert!(
            diff.contains("-     \"rule_id\": \"A\"") && diff.contains("+     \"rule_id\": \"B\""),
            "{diff}"
        );
        assert!(
            !diff.contains("title"),
            "only the expected fields are shown: {diff}"
        );
        let none = Step {
            expect: vec![],
            ..step
        };
        assert!(check_step(&none, Ok(vec![])).is_none());
        let error = Step {
            error: Some("invalid-json".into()),
            ..none
        };
        assert!(check_step(&error, Err(("invalid-json".into(), String::new()))).is_none());
        assert!(
            check_step(&error, Err(("invalid-time".into(), String::new())))
                .unwrap()
                .contains("invalid-time")
        );
    }

    /// Runs a case file of `text` for the rule `sloppy`.
    fn run_text(text: &str) -> FileReport {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.case.json");
        std::fs::write(&path, text).unwrap();
        run_file(&native::<Sloppy>, "sloppy", &path, None)
    }

    fn file_failure(report: FileReport) -> String {
        match report {
            FileReport::Ran { mut reports, .. } if reports.len() == 1 => {
                assert_eq!(reports[0].name, "(file)");
                reports.remove(0).failures.remove(0)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn case_names_must_tell_cases_apart_on_a_line() {
        let case = |name: &str| json!({"name": name, "steps": []});
        for (names, says) in [
            (vec!["a", "a"], "two cases are named"),
            (vec![" "], "empty"),
            (vec!["a\u{1b}[2Jb"], "control characters"),
        ] {
            let file = json!({"cases": names.iter().map(|n| case(n)).collect::<Vec<_>>()});
            let failure = file_failure(run_text(&file.to_string()));
            assert!(failure.contains(says), "{failure}");
        }
    }

    #[test]
    fn another_rules_file_is_skipped_unread() {
        let other =
            r#"{"rule": "other", "base": "missing.json", "cases": [{"name": "", "steps": []}]}"#;
        assert!(matches!(run_text(other), FileReport::Skipped(rule) if rule == "other"));
        let ours = r#"{"rule": "sloppy", "base": "missing.json", "cases": []}"#;
        assert!(file_failure(run_text(ours)).contains("missing.json"));
    }
}
