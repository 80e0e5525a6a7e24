//! The rules' three artifacts, in replays of the hosts that load them: the component in
//! this harness, the Fluent Bit filter in `filter_wasm`'s calls, the Fluvio SmartModule in
//! the engine's. One logic: the same alerts from all three, and the SDK's contract kept
//! by each; for the built-in rule and for the worked example of a second one.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cloudtrail_corpus::{Corpus, CorpusSpec};
use detect_host::state::MemoryStore;
use detect_host::{Limits, RecordFailure, RuleRunner, Sandbox};
use detect_sdk::testkit::contract::{self, AlertKey, Binding, Step};
use detect_testing::fluent_bit::{Filtered, FluentBitFilter};
use detect_testing::fluvio::{self, FluvioSmartModule, Record};
use serde_json::{Value, json};

use crate::support::*;

/// What the replays stamp records with, as their hosts do when they take them in: a time
/// after every record they send (2026-12-04T00:00:00Z), seconds and nanoseconds as Fluent
/// Bit passes it.
const STAMP: (u32, u32) = (1_796_342_400, 0);

/// The same, in milliseconds, as Fluvio stamps records.
const STAMP_MILLIS: i64 = STAMP.0 as i64 * 1000;

/// The fixture log's records, as JSON text.
fn fixture_records() -> Vec<String> {
    let log: Value =
        serde_json::from_slice(&std::fs::read(fixture("logs/ssm_sessions.json")).unwrap()).unwrap();
    log["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect()
}

/// A generated stream, SSM-heavy, with bad and irrelevant records in it.
fn corpus_records(n: usize) -> Vec<String> {
    let mut corpus = Corpus::new(CorpusSpec {
        seed: 5,
        ssm_share: 0.4,
        identities: 30,
        step_millis: 90_000,
        ..CorpusSpec::default()
    });
    (0..n).map(|_| corpus.next_record().to_string()).collect()
}

/// A rule's artifacts, as the test build made them.
struct Artifacts {
    component: &'static [u8],
    fluent_bit: &'static [u8],
    /// The filter's alerts-stream function.
    alerts: &'static str,
    fluvio: &'static [u8],
}

/// The artifacts of the rule in `guest/rules/<rule>/`.
fn artifacts_of(rule: &str) -> &'static Artifacts {
    static ALL: OnceLock<Mutex<HashMap<String, &'static Artifacts>>> = OnceLock::new();
    let mut all = ALL.get_or_init(Default::default).lock().unwrap();
    all.entry(rule.to_owned())
        .or_insert_with(|| Artifacts::new(|family| artifact(rule, family)))
}

impl Artifacts {
    /// A rule's artifacts, from `artifact(family)`; the filter's functions found by name.
    fn new(artifact: impl Fn(&str) -> &'static [u8]) -> &'static Artifacts {
        let fluent_bit = artifact("fluent-bit");
        let exports = detect_artifact::exports(fluent_bit).unwrap();
        let alerts = exports
            .into_iter()
            .find(|e| e.ends_with("_alerts"))
            .expect("an alerts function");
        Box::leak(Box::new(Artifacts {
            component: artifact("component"),
            fluent_bit,
            alerts: alerts.leak(),
            fluvio: artifact("fluvio"),
        }))
    }
}

/// The built-in rule's.
fn ssm() -> &'static Artifacts {
    artifacts_of("ssm")
}

fn key_of(line: &Value) -> AlertKey {
    AlertKey {
        rule_id: line["rule_id"].as_str().unwrap().into(),
        dedup_key: line["dedup_key"].as_str().unwrap().into(),
        event_time: line["event_time"].as_str().unwrap().into(),
        severity: line["severity"].as_str().unwrap().into(),
    }
}

/// The component, run by this harness.
struct Component(RuleRunner);

impl Component {
    fn new() -> Self {
        Component::of(ssm())
    }

    fn of(rule: &Artifacts) -> Self {
        let limits = Limits {
            fuel: Some(u64::MAX / 4),
            ..Limits::default()
        };
        let sandbox = Sandbox::new(limits)
            .unwrap()
            .with_cache_dir(Some(shared_cache().to_owned()));
        let rule = sandbox.load(rule.component).unwrap();
        Component(rule.start(Box::new(MemoryStore::new()), None).unwrap())
    }

    fn step(result: Result<detect_host::Outcome, RecordFailure>) -> Step {
        match result {
            Ok(outcome) => Step::Alerts(
                outcome
                    .alerts
                    .iter()
                    .map(|a| key_of(&serde_json::to_value(a).unwrap()))
                    .collect(),
            ),
            Err(RecordFailure::Trapped(_)) => Step::Trapped,
            Err(failure) => Step::Rejected(failure.kind().into()),
        }
    }
}

impl Binding for Component {
    fn process(&mut self, record: &str) -> Step {
        Component::step(crate::support::record(self.0.process(record)))
    }

    fn process_cut_short(&mut self, record: &str, cut: u64) -> Step {
        Component::step(crate::support::record(
            self.0.process_with_fuel(record, cut),
        ))
    }

    fn process_batch(&mut self, records: &[String]) -> Vec<AlertKey> {
        let results = self.0.process_batch(records).unwrap();
        results
            .into_iter()
            .flat_map(|result| match Component::step(result) {
                Step::Alerts(alerts) => alerts,
                Step::Rejected(_) | Step::Trapped => Vec::new(),
            })
            .collect()
    }

    fn as_dyn(&mut self) -> &mut dyn Binding {
        self
    }
}

/// The Fluent Bit filter's `ssm_alerts`, with the directory it is granted (held so that
/// it lives as long as the filter): as Fluent Bit grants its working directory by
/// default, always one.
struct FluentBit {
    filter: FluentBitFilter,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    dir: tempfile::TempDir,
    /// What Fluent Bit stamps the records with.
    stamp: (u32, u32),
}

impl FluentBit {
    fn new() -> Self {
        FluentBit::of(ssm())
    }

    fn of(rule: &Artifacts) -> Self {
        FluentBit::granted(rule, tempfile::tempdir().unwrap())
    }

    /// Keeping its state on disk, in `rule-state/` of a granted directory.
    fn persistent(rule: &Artifacts) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rule-state")).unwrap();
        FluentBit::granted(rule, dir)
    }

    fn granted(rule: &Artifacts, dir: tempfile::TempDir) -> Self {
        let granted = [dir.path().to_path_buf()];
        let filter = FluentBitFilter::load(rule.fluent_bit, rule.alerts, &granted).unwrap();
        FluentBit {
            filter,
            dir,
            stamp: STAMP,
        }
    }

    fn step(filtered: Filtered) -> Step {
        match filtered {
            Filtered::Dropped => Step::Alerts(Vec::new()),
            Filtered::Trapped(_) => Step::Trapped,
            Filtered::Replaced(out) => match (out.get("alerts"), out.get("rule_error")) {
                (Some(alerts), None) => {
                    Step::Alerts(alerts.as_array().unwrap().iter().map(key_of).collect())
                }
                (_, Some(error)) => Step::Rejected(error["kind"].as_str().unwrap().into()),
                _ => panic!("neither alerts nor an error: {out}"),
            },
        }
    }
}

impl Binding for FluentBit {
    fn process(&mut self, record: &str) -> Step {
        FluentBit::step(
            self.filter
                .filter_json("cloudtrail", self.stamp, record.as_bytes()),
        )
    }

    fn process_cut_short(&mut self, record: &str, cut: u64) -> Step {
        let record: Value = serde_json::from_str(record).unwrap();
        FluentBit::step(
            self.filter
                .filter_cut_short("cloudtrail", self.stamp, &record, cut),
        )
    }

    fn as_dyn(&mut self) -> &mut dyn Binding {
        self
    }
}

/// The Fluvio SmartModule, one record per batch. As the SPU does, a trap ends the
/// instance: a new one looks back over the records that went before, and the consumer
/// goes on after the one that trapped.
struct Fluvio {
    rule: &'static Artifacts,
    module: FluvioSmartModule,
    offset: i64,
    /// The records the topic holds, but the one that trapped.
    topic: Vec<Record>,
    /// The base timestamp of the batches the consumer reads.
    stamp: i64,
}

impl Fluvio {
    fn of(rule: &'static Artifacts) -> Self {
        Fluvio {
            rule,
            module: Fluvio::instance_of(rule),
            offset: 0,
            topic: Vec::new(),
            stamp: STAMP_MILLIS,
        }
    }

    fn instance() -> FluvioSmartModule {
        Fluvio::instance_of(ssm())
    }

    fn instance_of(rule: &Artifacts) -> FluvioSmartModule {
        FluvioSmartModule::load(rule.fluvio, &BTreeMap::new(), fluvio::SPU_VERSION).unwrap()
    }

    /// What the consumer's stream does with the record the call returned for.
    fn after(&mut self, record: &str, output: wasmtime::Result<fluvio::Output>) -> Step {
        if output.is_err() {
            self.module = Fluvio::instance_of(self.rule);
            self.module.look_back(&self.topic).unwrap();
        } else {
            self.topic.extend(Fluvio::batch(record));
        }
        Fluvio::step(output)
    }

    fn step(output: wasmtime::Result<fluvio::Output>) -> Step {
        let Ok(output) = output else {
            return Step::Trapped;
        };
        let mut alerts = Vec::new();
        for (key, value) in output.records {
            let value: Value = serde_json::from_slice(&value).unwrap();
            if key.as_deref() == Some(b"rule-error") {
                return Step::Rejected(value["kind"].as_str().unwrap().into());
            }
            assert_eq!(key.as_deref(), value["rule_id"].as_str().map(str::as_bytes));
            alerts.push(key_of(&value));
        }
        Step::Alerts(alerts)
    }

    fn batch(record: &str) -> [Record; 1] {
        [Fluvio::record(record)]
    }

    fn record(text: &str) -> Record {
        Record {
            value: text.as_bytes().to_vec(),
            ..Record::default()
        }
    }

    fn records(texts: &[String]) -> Vec<Record> {
        texts.iter().map(|t| Fluvio::record(t)).collect()
    }
}

impl Binding for Fluvio {
    fn process(&mut self, record: &str) -> Step {
        self.offset += 1;
        let output = self
            .module
            .array_map(self.offset, self.stamp, &Fluvio::batch(record));
        self.after(record, output)
    }

    fn process_cut_short(&mut self, record: &str, cut: u64) -> Step {
        self.offset += 1;
        let batch = Fluvio::batch(record);
        let output = self
            .module
            .array_map_with_fuel(self.offset, self.stamp, &batch, cut);
        self.after(record, output)
    }

    fn process_batch(&mut self, records: &[String]) -> Vec<AlertKey> {
        let batch = Fluvio::records(records);
        self.offset += records.len() as i64;
        let output = self
            .module
            .array_map(self.offset, self.stamp, &batch)
            .unwrap();
        self.topic.extend(batch);
        output
            .records
            .into_iter()
            .filter(|(key, _)| key.as_deref() != Some(b"rule-error"))
            .map(|(_, value)| key_of(&serde_json::from_slice(&value).unwrap()))
            .collect()
    }

    fn as_dyn(&mut self) -> &mut dyn Binding {
        self
    }
}

/// A pipeline binding whose host stamps each record as the test says.
trait Stamped: Binding {
    /// Stamps the records to come `millis`; 0 or less: unstamped, as its host sends them.
    fn stamp(&mut self, millis: i64);
}

impl Stamped for FluentBit {
    fn stamp(&mut self, millis: i64) {
        let millis = millis.max(0);
        self.stamp = ((millis / 1000) as u32, (millis % 1000) as u32 * 1_000_000);
    }
}

impl Stamped for Fluvio {
    fn stamp(&mut self, millis: i64) {
        self.stamp = millis;
    }
}

/// The current time, in milliseconds.
fn now_millis() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.unwrap().as_millis() as i64
}

/// Makes a fresh instance of one binding.
type NewBinding = Box<dyn FnMut() -> Box<dyn Binding>>;

/// Every binding of `rule`, by name.
fn bindings(rule: &'static Artifacts) -> [(&'static str, NewBinding); 4] {
    [
        ("component", Box::new(move || Box::new(Component::of(rule)))),
        (
            "fluent-bit",
            Box::new(move || Box::new(FluentBit::of(rule))),
        ),
        (
            "fluent-bit with rule-state/",
            Box::new(move || Box::new(FluentBit::persistent(rule))),
        ),
        ("fluvio", Box::new(move || Box::new(Fluvio::of(rule)))),
    ]
}

/// The alerts each binding of `rule` raises over `records`, which must all be the
/// component's; returned.
fn the_same_alerts_from_every_binding(
    rule: &'static Artifacts,
    records: &[String],
) -> Vec<AlertKey> {
    let mut raised = Vec::new();
    for (name, mut new) in bindings(rule) {
        raised.push((name, contract::alerts(new().as_mut(), records)));
    }
    for (name, alerts) in &raised[1..] {
        assert_eq!(alerts, &raised[0].1, "{name} differs from the component");
    }
    raised.swap_remove(0).1
}

/// What the contract is checked on, for one rule.
struct Streams {
    /// Records whose alerts depend on each other; the one at index 2 raises an alert.
    stream: Vec<String>,
    /// Records the prefilter lets through and the rule rejects.
    rejected: Vec<String>,
    /// Records the rule finds irrelevant, some of them let through by the prefilter.
    irrelevant: Vec<String>,
    /// A longer stream, for batches.
    batched: Vec<String>,
}

/// Every binding of `rule` keeps the SDK's contract on `streams`.
fn every_binding_keeps_the_contract_for(rule: &'static Artifacts, streams: &Streams) {
    let Streams {
        stream,
        rejected,
        irrelevant,
        batched,
    } = streams;
    for (name, mut new) in bindings(rule) {
        eprintln!("contract: {name}");
        contract::a_rejected_record_changes_no_state(&mut new, stream, rejected);
        contract::an_irrelevant_record_touches_nothing(&mut new, stream, irrelevant);
        contract::batch_equals_single(&mut new, batched, &[7, 64]);
        // Record 2 raises an alert and updates state that a later record's verdict
        // depends on; it is cut short all over its call. A filter with no rule-state/
        // may lose its state to such a trap, and says so
        // (`a_fluent_bit_filter_survives_any_trap`).
        if name != "fluent-bit" {
            contract::a_trap_loses_only_its_record(&mut new, stream, 2, 150);
        }
    }
}

#[test]
fn the_three_artifacts_raise_the_same_alerts() {
    for (stream, records) in [
        ("fixture log", fixture_records()),
        ("corpus", corpus_records(1500)),
    ] {
        let raised = the_same_alerts_from_every_binding(ssm(), &records);
        assert!(raised.len() > 10, "{stream}: {}", raised.len());
    }
    // The fixture log raises the alerts the harness prints for it.
    let printed: Vec<AlertKey> = alerts(
        &[
            "run",
            "--state",
            "memory",
            fixture("logs/ssm_sessions.json").to_str().unwrap(),
        ],
        b"",
    )
    .iter()
    .map(key_of)
    .collect();
    assert_eq!(
        contract::alerts(&mut Component::new(), &fixture_records()),
        printed
    );
}

#[test]
fn every_binding_keeps_the_contract() {
    let stream = fixture_records();
    let rejected = [
        r#"not json: "StartSession" "ssm.amazonaws.com""#,
        r#"["StartSession", "ssm.amazonaws.com"]"#,
        r#"{"eventSource": "ssm.amazonaws.com", "eventName": "StartSession", "eventTime": "soon"}"#,
        r#"{"eventSource": "ssm.amazonaws.com", "eventName": "StartSession", "eventTime": "2099-01-01T00:00:00Z"}"#,
        r#"{"eventSource": 7, "eventName": "StartSession", "x": "ssm.amazonaws.com"}"#,
    ]
    .map(str::to_owned)
    .into();
    let mut irrelevant: Vec<String> = corpus_records(200)
        .into_iter()
        .filter(|r| !r.contains("\"StartSession\""))
        .collect();
    // Let through by the prefilter: another event of the service, naming StartSession.
    irrelevant.push(
        r#"{"eventSource": "ssm.amazonaws.com", "eventName": "ResumeSession", "eventTime": "2025-02-20T10:00:00Z", "x": "StartSession"}"#.into(),
    );
    let batched = stream.iter().cloned().chain(corpus_records(400)).collect();
    let streams = Streams {
        stream,
        rejected,
        irrelevant,
        batched,
    };
    every_binding_keeps_the_contract_for(ssm(), &streams);
}

/// The records of a rule's own cases (`guest/rules/<rule>/cases/`), each step's record
/// merged into its file's base: those it accepts, and those it must reject.
fn case_records(dir: PathBuf) -> (Vec<String>, Vec<String>) {
    let (mut accepted, mut rejected) = (Vec::new(), Vec::new());
    for file in detect_sdk::testkit::cases::discover(&[dir]).unwrap() {
        let cases: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let base = cases["base"].as_str().map(|base| {
            std::fs::read_to_string(file.parent().unwrap().join(base)).expect("the case base")
        });
        let steps = cases["cases"].as_array().unwrap().iter();
        for step in steps.flat_map(|case| case["steps"].as_array().unwrap()) {
            let record = match (&step["raw"], &base) {
                (Value::String(raw), _) => raw.clone(),
                (_, Some(base)) => detect_sdk::testkit::derive(base, step["record"].clone()),
                (_, None) => step["record"].to_string(),
            };
            match step["error"] {
                Value::Null => accepted.push(record),
                _ => rejected.push(record),
            }
        }
    }
    (accepted, rejected)
}

/// Every rule of the workspace, found by the test build as the harness's build script
/// finds its rule (each directory under `guest/rules/`), runs in every host: its three
/// artifacts raise the same alerts over the records of its own cases and a generated
/// stream, and each keeps the contract. A new rule is tested here with no line changed.
#[test]
fn every_rule_runs_in_every_host() {
    let rules = detect_testing::rules();
    assert!(
        rules.contains(&"ssm") && rules.contains(&"console-login"),
        "{rules:?}"
    );
    for rule in rules {
        let cases = root().join("guest/rules").join(rule).join("cases");
        runs_in_every_host(rule, artifacts_of(rule), case_records(cases));
    }
}

/// `rule`'s artifacts raise the same alerts in every host over the records of its cases
/// and a generated stream, and each keeps the contract.
fn runs_in_every_host(
    rule: &str,
    artifacts: &'static Artifacts,
    cases: (Vec<String>, Vec<String>),
) {
    let (stream, rejected) = cases;
    // Those a fresh state rejects (some cases reject a record only after others: too
    // late behind them, say), among those the rule's prefilter lets through (pipeline
    // hosts skip the others unread, by design).
    let prefilter = Component::of(artifacts).0.prefilter().clone();
    let rejected: Vec<String> = rejected
        .into_iter()
        .filter(|r| prefilter.is_candidate(r.as_bytes()))
        .filter(|r| matches!(Component::of(artifacts).process(r), Step::Rejected(_)))
        .collect();
    assert!(
        !stream.is_empty() && !rejected.is_empty(),
        "{rule}: its cases"
    );
    let with_corpus: Vec<String> = stream.iter().cloned().chain(corpus_records(300)).collect();
    let raised = the_same_alerts_from_every_binding(artifacts, &with_corpus);
    assert!(!raised.is_empty(), "{rule}: no alert from its cases");
    // Generated records this rule does not find relevant.
    let mut judge = Component::of(artifacts);
    let irrelevant = corpus_records(200)
        .into_iter()
        .filter(|r| record(judge.0.process(r)).is_ok_and(|o| !o.relevant))
        .take(100)
        .collect();
    let streams = Streams {
        stream,
        rejected,
        irrelevant,
        batched: with_corpus,
    };
    every_binding_keeps_the_contract_for(artifacts, &streams);
}

/// A copy of a rule directory under a new name, in a workspace of its own, is found, built
/// into its three artifacts and put through every host, with no other file changed: what
/// adding a rule takes is the directory.
#[test]
fn a_rule_directory_copied_under_a_new_name_runs_in_every_host() {
    let ws = tempfile::tempdir().unwrap();
    let (from, to) = (root(), ws.path());
    for dir in ["guest/sdk", "wit", "fixtures", ".cargo"] {
        copy_dir(&from.join(dir), &to.join(dir));
    }
    std::fs::copy(from.join("Cargo.lock"), to.join("Cargo.lock")).unwrap();
    let workspace = std::fs::read_to_string(from.join("Cargo.toml")).unwrap();
    let workspace = workspace
        .replace(r#""host/*""#, "")
        .replace(r#"default-members = ["host/rule-harness"]"#, "");
    std::fs::write(to.join("Cargo.toml"), workspace).unwrap();
    let copy = to.join("guest/rules/copied");
    copy_dir(&from.join("guest/rules/console-login"), &copy);
    let manifest = std::fs::read_to_string(copy.join("Cargo.toml")).unwrap();
    let manifest = manifest.replace(r#"name = "console-login-rule""#, r#"name = "copied-rule""#);
    std::fs::write(copy.join("Cargo.toml"), manifest).unwrap();

    let found = detect_artifact::build::discover(to).unwrap();
    assert_eq!(
        found
            .iter()
            .map(|r| r.dir_name.as_str())
            .collect::<Vec<_>>(),
        ["copied"]
    );
    let out = to.join("out");
    std::fs::create_dir(&out).unwrap();
    // The workspace's own guest target directory: dependencies built once serve both.
    let target = root().join("target/rule-guest");
    detect_artifact::build::build_all(to, &target, &out, &found).unwrap();
    let artifacts = Artifacts::new(|family| {
        std::fs::read(out.join(format!("copied.{family}.wasm")))
            .unwrap()
            .leak()
    });
    runs_in_every_host("copied", artifacts, case_records(copy.join("cases")));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

/// Without `rule-state/`, a trap anywhere in a call costs the record; where the state in
/// memory could not be trusted after it (a trap in the allocator, or while a record was
/// applied), the state is lost too, and the next answer says so. The filter never stops
/// answering.
#[test]
fn a_fluent_bit_filter_survives_any_trap() {
    let stream = fixture_records();
    let victim = 2;
    let mut without = stream.clone();
    without.remove(victim);
    let expected = contract::alerts(&mut FluentBit::new(), &without);
    let mut new = || Box::new(FluentBit::new()) as Box<dyn Binding>;
    let length = contract::call_length(&mut new, &stream[..=victim]);
    let (mut kept, mut lost) = (0, 0);
    for cut in (1..=150).map(|n| n * length / 151) {
        let mut filter = FluentBit::new();
        let before = contract::alerts(&mut filter, &stream[..victim]);
        assert_eq!(
            filter.process_cut_short(&stream[victim], cut),
            Step::Trapped
        );
        let steps: Vec<Step> = stream[victim + 1..]
            .iter()
            .map(|r| filter.process(r))
            .collect();
        assert!(
            !steps.contains(&Step::Trapped),
            "a trap at {cut} left the filter trapping"
        );
        if steps.contains(&Step::Rejected("state".into())) {
            lost += 1;
        } else {
            let after = steps.into_iter().flat_map(|s| match s {
                Step::Alerts(alerts) => alerts,
                other => panic!("{other:?}"),
            });
            let got: Vec<AlertKey> = before.iter().cloned().chain(after).collect();
            assert_eq!(got, expected, "a trap at {cut} of {length}");
            kept += 1;
        }
    }
    eprintln!("traps that kept the state: {kept}; that lost it (and said so): {lost}");
    assert!(kept > lost, "{kept} {lost}");
}

/// A trap leaves the shadow stack lowered; the export wrappers put it back, so a
/// thousand traps later the filter still works as a fresh one does.
#[test]
fn a_fluent_bit_filter_outlives_a_thousand_traps() {
    let stream = fixture_records();
    let mut new = || Box::new(FluentBit::new()) as Box<dyn Binding>;
    let length = contract::call_length(&mut new, &stream[..1]);
    let mut filter = FluentBit::new();
    for _ in 0..1000 {
        assert_eq!(
            filter.process_cut_short(&stream[0], length / 3),
            Step::Trapped
        );
    }
    let mut fresh = FluentBit::new();
    let (first, expected_first) = (filter.process(&stream[0]), fresh.process(&stream[0]));
    // A trap that landed in the allocator abandoned the heap and the state (none yet
    // here), which the next answer reports; the record is judged all the same.
    assert!(
        first == expected_first || first == Step::Rejected("state".into()),
        "{first:?}"
    );
    let expected = contract::alerts(&mut fresh, &stream[1..]);
    assert_eq!(contract::alerts(&mut filter, &stream[1..]), expected);
}

/// The descriptors this process holds open on what is under `dir`: a filter's, since the
/// replay's WASI opens a host descriptor for each one the filter opens.
#[cfg(target_os = "linux")]
fn descriptors_under(dir: &Path) -> usize {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .count()
}

/// A trap that makes a filter with rule-state/ start again (in the allocator, or while it
/// keeps a record's writes) forgets what the filter held without dropping it: the files it
/// held are closed when it starts again, and the state directory is opened once. Hundreds
/// of such traps leave no more descriptors open than before them (leaked, they would run
/// out, and the state would silently drop to memory only), and the state is kept.
#[cfg(target_os = "linux")]
#[test]
fn a_fluent_bit_filter_that_starts_again_after_traps_leaks_no_descriptors() {
    let stream = fixture_records();
    let victim = 2;
    let mut without = stream.clone();
    without.remove(victim);
    let expected = contract::alerts(&mut FluentBit::persistent(ssm()), &without);
    let mut new = || Box::new(FluentBit::persistent(ssm())) as Box<dyn Binding>;
    let length = contract::call_length(&mut new, &stream[..=victim]);
    let mut filter = FluentBit::persistent(ssm());
    let mut got = contract::alerts(&mut filter, &stream[..victim]);
    let before = descriptors_under(filter.dir.path());
    // Over the later half of the call, where the rule works: a cut earlier may land in
    // the filter's start (reading rule-state/ again), and a trap there is another case,
    // where records pass unjudged until Fluent Bit restarts.
    for cut in (1..=300).map(|n| length / 2 + n * length * 4 / 10 / 300) {
        let step = filter.process_cut_short(&stream[victim], cut);
        assert_eq!(step, Step::Trapped, "cut at {cut} of {length}");
    }
    let after = descriptors_under(filter.dir.path());
    assert!(
        after <= before,
        "{before} descriptors open before the traps, {after} after"
    );
    got.extend(contract::alerts(&mut filter, &stream[victim + 1..]));
    assert_eq!(got, expected);
}

/// A configuration that does not parse: every record still passes an enriching filter,
/// each with the error; an alerts filter says it on the first record, then more rarely.
#[test]
fn a_fluent_bit_filter_that_cannot_start_keeps_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rule-config.json"), "{\"nope\": 1}").unwrap();
    let granted = [dir.path().to_path_buf()];
    let other = json!({"eventSource": "ec2.amazonaws.com", "eventName": "RunInstances"});
    let mut enrich = FluentBitFilter::load(ssm().fluent_bit, "ssm_enrich", &granted).unwrap();
    for _ in 0..3 {
        let Filtered::Replaced(out) = enrich.filter("cloudtrail", STAMP, &other) else {
            panic!("the record was dropped");
        };
        assert_eq!(out["eventName"], "RunInstances");
        assert_eq!(out["rule_error"]["kind"], "setup");
    }
    let mut alerts = FluentBitFilter::load(ssm().fluent_bit, "ssm_alerts", &granted).unwrap();
    let said: Vec<usize> = (1..=20)
        .filter(|_| alerts.filter("cloudtrail", STAMP, &other) != Filtered::Dropped)
        .collect();
    assert_eq!(said, [1, 2, 4, 8, 16]);
}

/// A CloudTrail log file as one record, as `tail` reads a file written on one line: its
/// records are judged in order, and its alerts come out together.
#[test]
fn a_fluent_bit_filter_judges_each_record_of_a_log_file() {
    let log: Value =
        serde_json::from_slice(&std::fs::read(fixture("logs/ssm_sessions.json")).unwrap()).unwrap();
    let mut filter = FluentBitFilter::load(ssm().fluent_bit, "ssm_alerts", &[]).unwrap();
    let Filtered::Replaced(out) = filter.filter("cloudtrail", STAMP, &log) else {
        panic!("no alerts");
    };
    let got: Vec<AlertKey> = out["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(key_of)
        .collect();
    assert_eq!(
        got,
        contract::alerts(&mut Component::new(), &fixture_records())
    );
}

#[test]
fn fluent_bit_takes_records_of_any_size_and_never_traps_on_bad_ones() {
    let mut filter = FluentBitFilter::load(ssm().fluent_bit, "ssm_alerts", &[]).unwrap();
    let mut big: Value = serde_json::from_str(&fixture_records()[0]).unwrap();
    big["requestParameters"]["padding"] = json!("x".repeat(100_000));
    match filter.filter("cloudtrail", STAMP, &big) {
        Filtered::Replaced(out) => {
            assert_eq!(out["alerts"][0]["rule_id"], "AWS.SSM.SessionStarted")
        }
        other => panic!("{other:?}"),
    }
    // Fluent Bit could not copy the record in: pointer 0.
    let Filtered::Replaced(out) = filter.filter_uncopied("cloudtrail", STAMP, 70_000) else {
        panic!("no error record");
    };
    assert_eq!(out["rule_error"]["kind"], "record-too-large");
    // Text that is not ASCII is read as any other (written as UTF-8, not escaped).
    let mut accented: Value = serde_json::from_str(&fixture_records()[0]).unwrap();
    accented["requestParameters"]["reason"] = json!("maintenance planifi\u{e9}e \u{1f527}");
    let accented = serde_json::to_vec(&accented).unwrap();
    assert!(!accented.is_ascii());
    let mut fresh = FluentBitFilter::load(ssm().fluent_bit, "ssm_alerts", &[]).unwrap();
    let Filtered::Replaced(out) = fresh.filter_json("cloudtrail", STAMP, &accented) else {
        panic!("no alerts");
    };
    assert_eq!(out["alerts"][0]["rule_id"], "AWS.SSM.SessionStarted");
    // The same in a log file whose key comes after text that is not ASCII.
    let mut fresh = FluentBitFilter::load(ssm().fluent_bit, "ssm_alerts", &[]).unwrap();
    let before = "{\"note\": \"r\u{e9}sum\u{e9}\", \"Records\": [";
    let log_file = [before.as_bytes(), &accented, b"]}"].concat();
    let Filtered::Replaced(out) = fresh.filter_json("cloudtrail", STAMP, &log_file) else {
        panic!("no alerts");
    };
    assert_eq!(out["alerts"][0]["rule_id"], "AWS.SSM.SessionStarted");
    // Bad records the prefilter lets through are reported; the others are dropped unread.
    let start = &br#"{"eventSource": "ssm.amazonaws.com", "eventName": "StartSession""#[..];
    let array = br#"["StartSession", "ssm.amazonaws.com"]"#;
    let not_text = b"\"StartSession\" \"ssm.amazonaws.com\" \xff\xfe";
    let cut_sequence = [start, b", \"a\": \"\xc3\"}"].concat();
    let in_log_file = [b"{\"Records\": [", start, b", \"a\": \"\xe9\"}]}"].concat();
    for (bad, kind) in [
        (&array[..], "not-an-object"),
        (start, "invalid-json"),
        (not_text, "invalid-utf8"),
        (&cut_sequence, "invalid-utf8"),
        (&in_log_file, "invalid-utf8"),
    ] {
        let Filtered::Replaced(out) = filter.filter_json("cloudtrail", STAMP, bad) else {
            panic!("no error record for {bad:?}");
        };
        assert_eq!(out["rule_error"]["kind"], kind, "{out}");
    }
    for unread in [&b"[1, 2]"[..], b"{\"eventSource\": ", b"\xff\xfe"] {
        assert_eq!(
            filter.filter_json("cloudtrail", STAMP, unread),
            Filtered::Dropped
        );
    }
    // Enrichment passes every record, with its alerts.
    let mut enrich = FluentBitFilter::load(ssm().fluent_bit, "ssm_enrich", &[]).unwrap();
    let other = json!({"eventSource": "ec2.amazonaws.com", "eventName": "RunInstances"});
    assert_eq!(
        enrich.filter("cloudtrail", STAMP, &other),
        Filtered::Replaced(other.clone())
    );
    let start: Value = serde_json::from_str(&fixture_records()[0]).unwrap();
    let Filtered::Replaced(out) = enrich.filter("cloudtrail", STAMP, &start) else {
        panic!("dropped");
    };
    assert_eq!(out["eventID"], start["eventID"]);
    assert_eq!(out["alerts"][0]["rule_id"], "AWS.SSM.SessionStarted");
}

fn fluent_bit_alerts(filter: &mut FluentBitFilter, records: &[String]) -> Vec<AlertKey> {
    let mut binding = FluentBitRef(filter);
    contract::alerts(&mut binding, records)
}

struct FluentBitRef<'a>(&'a mut FluentBitFilter);

impl Binding for FluentBitRef<'_> {
    fn process(&mut self, record: &str) -> Step {
        FluentBit::step(self.0.filter_json("cloudtrail", STAMP, record.as_bytes()))
    }

    fn process_cut_short(&mut self, _: &str, _: u64) -> Step {
        unreachable!("not cut here")
    }

    fn as_dyn(&mut self) -> &mut dyn Binding {
        self
    }
}

#[test]
fn fluent_bit_keeps_its_state_across_restarts_in_a_granted_directory() {
    let records = corpus_records(1200);
    let expected = contract::alerts(&mut Component::new(), &records);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rule-state")).unwrap();
    let granted = [dir.path().to_path_buf()];
    let (first, second) = records.split_at(700);
    let mut got = fluent_bit_alerts(
        &mut FluentBitFilter::load(ssm().fluent_bit, "ssm_alerts", &granted).unwrap(),
        first,
    );
    // Fluent Bit restarts: a new instance, the same directory.
    got.extend(fluent_bit_alerts(
        &mut FluentBitFilter::load(ssm().fluent_bit, "ssm_alerts", &granted).unwrap(),
        second,
    ));
    assert_eq!(got, expected);
    let files: Vec<String> = std::fs::read_dir(dir.path().join("rule-state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.contains(&"journal".to_owned()), "{files:?}");
    // Without the directory, a restart starts again with no history.
    let mut forgetful = fluent_bit_alerts(
        &mut FluentBitFilter::load(ssm().fluent_bit, "ssm_alerts", &[]).unwrap(),
        first,
    );
    forgetful.extend(fluent_bit_alerts(
        &mut FluentBitFilter::load(ssm().fluent_bit, "ssm_alerts", &[]).unwrap(),
        second,
    ));
    assert_ne!(forgetful, expected);
}

#[test]
fn fluent_bit_reads_its_configuration_from_a_granted_directory() {
    let dir = tempfile::tempdir().unwrap();
    let granted = [dir.path().to_path_buf()];
    std::fs::write(
        dir.path().join("rule-config.json"),
        r#"{"disabled": ["AWS.SSM.SessionStarted"]}"#,
    )
    .unwrap();
    let mut filter = FluentBitFilter::load(ssm().fluent_bit, "ssm_alerts", &granted).unwrap();
    let alerts = fluent_bit_alerts(&mut filter, &fixture_records());
    assert!(!alerts.is_empty() && alerts.iter().all(|a| a.rule_id != "AWS.SSM.SessionStarted"));
    // A configuration it cannot use is said with every record, never ignored.
    std::fs::write(
        dir.path().join("rule-config.json"),
        r#"{"disabled": ["nope"]}"#,
    )
    .unwrap();
    let mut filter = FluentBitFilter::load(ssm().fluent_bit, "ssm_alerts", &granted).unwrap();
    let Filtered::Replaced(out) =
        filter.filter_json("cloudtrail", STAMP, fixture_records()[0].as_bytes())
    else {
        panic!("silent");
    };
    assert!(
        out["rule_error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown detection `nope`"),
        "{out}"
    );
}

/// Alerts of the SmartModule over `records` in batches of `size`.
fn fluvio_alerts(module: &mut FluvioSmartModule, records: &[String], size: usize) -> Vec<AlertKey> {
    fluvio_lines(module, records, size)
        .iter()
        .map(key_of)
        .collect()
}

/// The lines the SmartModule writes over `records` in batches of `size`, each a JSON
/// value; a `rule-error` record fails the test.
fn fluvio_lines(module: &mut FluvioSmartModule, records: &[String], size: usize) -> Vec<Value> {
    let mut lines = Vec::new();
    for (n, batch) in records.chunks(size).enumerate() {
        let batch: Vec<Record> = batch
            .iter()
            .enumerate()
            .map(|(i, r)| Record {
                value: r.as_bytes().to_vec(),
                offset_delta: i as i64,
                ..Record::default()
            })
            .collect();
        let output = module
            .array_map((n * size) as i64, STAMP_MILLIS, &batch)
            .unwrap();
        assert_eq!(output.error, None);
        for (key, value) in output.records {
            let value: Value = serde_json::from_slice(&value).unwrap();
            assert_ne!(key.as_deref(), Some(&b"rule-error"[..]), "{value}");
            lines.push(value);
        }
    }
    lines
}

#[test]
fn fluvio_gives_the_same_alerts_in_any_batches_and_after_a_restart() {
    let records = corpus_records(1000);
    let expected = contract::alerts(&mut Component::new(), &records);
    for version in [fluvio::SPU_VERSION, fluvio::ENGINE_VERSION] {
        for size in [1, 7, records.len()] {
            let mut module =
                FluvioSmartModule::load(ssm().fluvio, &BTreeMap::new(), version).unwrap();
            assert_eq!(
                fluvio_alerts(&mut module, &records, size),
                expected,
                "batches of {size}, v{version}"
            );
        }
    }
    // A restart: a new instance looks back over the topic, then goes on.
    let (first, second) = records.split_at(600);
    let mut before =
        FluvioSmartModule::load(ssm().fluvio, &BTreeMap::new(), fluvio::SPU_VERSION).unwrap();
    let mut got = fluvio_alerts(&mut before, first, 7);
    let mut after =
        FluvioSmartModule::load(ssm().fluvio, &BTreeMap::new(), fluvio::SPU_VERSION).unwrap();
    let looked_back = Fluvio::records(first);
    after.look_back(&looked_back).unwrap();
    got.extend(fluvio_alerts(&mut after, second, 7));
    assert_eq!(got, expected);

    // A consumer that resumes before the end of the look-back: the records it reads again
    // give what they gave the first time, and nothing is judged twice.
    let mut before =
        FluvioSmartModule::load(ssm().fluvio, &BTreeMap::new(), fluvio::SPU_VERSION).unwrap();
    let mut got = fluvio_alerts(&mut before, &records[..400], 7);
    let mut after =
        FluvioSmartModule::load(ssm().fluvio, &BTreeMap::new(), fluvio::SPU_VERSION).unwrap();
    after.look_back(&looked_back).unwrap();
    got.extend(fluvio_alerts(&mut after, &records[400..], 7));
    assert_eq!(got, expected);

    // The same with records the producer wrote twice among those read again.
    let mut topic = records.clone();
    for at in [450, 420, 401] {
        topic.insert(at, topic[at].clone());
    }
    let expected = fluvio_alerts(&mut Fluvio::instance(), &topic, 7);
    let mut got = fluvio_alerts(&mut Fluvio::instance(), &topic[..400], 7);
    let mut after = Fluvio::instance();
    after.look_back(&Fluvio::records(&topic[..603])).unwrap();
    got.extend(fluvio_alerts(&mut after, &topic[400..], 7));
    assert_eq!(got, expected);
}

/// The engine never frees what a SmartModule hands it: the module frees each output at
/// the next call, so its memory does not grow with the alerts it raises.
#[test]
fn a_fluvio_smartmodule_does_not_grow_with_its_output() {
    let records = corpus_records(12_000);
    // Every session alerts: no dedup to speak of.
    let config =
        r#"{"baseline": {"dedup_period": "1s"}, "multiple_sessions": {"dedup_period": "1s"}}"#;
    let params = BTreeMap::from([("config".to_owned(), config.to_owned())]);
    let mut module = FluvioSmartModule::load(ssm().fluvio, &params, fluvio::SPU_VERSION).unwrap();
    let (mut sizes, mut raised) = (Vec::new(), Vec::new());
    for part in records.chunks(3000) {
        raised.push(fluvio_alerts(&mut module, part, 50).len());
        sizes.push(module.memory_bytes());
    }
    let alerts: usize = raised[2..].iter().sum();
    let growth = sizes[3] - sizes[1];
    assert!(alerts > 1000, "{raised:?}");
    assert!(
        growth < alerts * 256,
        "{growth} bytes for {alerts} alerts: {sizes:?}"
    );
}

/// Records of today, stamped with the current time as their host takes them in, and most
/// of them unstamped (Fluent Bit's 0, Fluvio's `NO_TIMESTAMP`, -1): every pipeline binding
/// raises the component's alerts. An unstamped record is bounded by the latest stamp seen
/// before it, not by a date fixed when the SDK was written.
#[test]
fn current_records_pass_stamped_with_the_current_time_or_unstamped() {
    let now = now_millis();
    let mut corpus = Corpus::new(CorpusSpec {
        seed: 7,
        ssm_share: 0.4,
        identities: 30,
        start_millis: now - 3 * detect_sdk::time::DAY,
        step_millis: 90_000,
    });
    let records: Vec<String> = (0..600).map(|_| corpus.next_record().to_string()).collect();
    let expected = contract::alerts(&mut Component::new(), &records);
    assert!(expected.len() > 10, "{}", expected.len());
    let bindings: [(&str, Box<dyn Stamped>, i64); 3] = [
        ("fluent-bit", Box::new(FluentBit::new()), 0),
        (
            "fluent-bit with rule-state/",
            Box::new(FluentBit::persistent(ssm())),
            0,
        ),
        ("fluvio", Box::new(Fluvio::of(ssm())), -1),
    ];
    for (name, mut binding, unstamped) in bindings {
        let mut got = Vec::new();
        for (n, record) in records.iter().enumerate() {
            binding.stamp(if n % 3 == 0 { now_millis() } else { unstamped });
            got.extend(contract::alerts(
                binding.as_dyn(),
                std::slice::from_ref(record),
            ));
        }
        assert_eq!(got, expected, "{name}");
    }
}

/// A record its host gave no timestamp, with none before it: nothing bounds its event
/// time, and it is refused, saying why, rather than judged against a fixed date.
#[test]
fn a_record_with_no_stamp_and_none_before_it_is_refused() {
    let record = &fixture_records()[0];
    let mut filter = FluentBitFilter::load(ssm().fluent_bit, "ssm_alerts", &[]).unwrap();
    let Filtered::Replaced(out) = filter.filter_json("cloudtrail", (0, 0), record.as_bytes())
    else {
        panic!("dropped");
    };
    let error = &out["rule_error"];
    assert_eq!(error["kind"], "invalid-time", "{out}");
    assert!(
        error["message"].as_str().unwrap().contains("no timestamp"),
        "{out}"
    );
    let output = Fluvio::instance()
        .array_map(0, -1, &Fluvio::batch(record))
        .unwrap();
    let [(key, value)] = &output.records[..] else {
        panic!("{output:?}");
    };
    assert_eq!(key.as_deref(), Some(&b"rule-error"[..]));
    let error: Value = serde_json::from_slice(value).unwrap();
    assert_eq!(error["kind"], "invalid-time", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("no timestamp"),
        "{error}"
    );
}

/// A record dated 2099 is refused live, and again when a new instance looks back over it
/// after a trap: the looked-back records wait for the first record read live, whose
/// stamp bounds them. Unbounded, it would move the rule's clock to 2099, and every record
/// after it would be too late to be judged.
#[test]
fn a_fluvio_look_back_bounds_event_times_as_reading_live_does() {
    let stream = fixture_records();
    let victim = 2;
    let mut future: Value = serde_json::from_str(&stream[0]).unwrap();
    future["eventTime"] = json!("2099-01-01T00:00:00Z");
    future["eventID"] = json!("from-the-future");
    let future = future.to_string();
    let mut without = stream.clone();
    without.remove(victim);
    let expected = contract::alerts(&mut Component::new(), &without);
    let mut fluvio = Fluvio::of(ssm());
    let mut got = contract::alerts(&mut fluvio, &stream[..victim]);
    assert_eq!(
        fluvio.process(&future),
        Step::Rejected("invalid-time".into())
    );
    // The trap ends the instance; the next one looks back over the topic, 2099 included.
    assert_eq!(fluvio.process_cut_short(&stream[victim], 1), Step::Trapped);
    got.extend(contract::alerts(&mut fluvio, &stream[victim + 1..]));
    assert_eq!(got, expected);
}

/// `fixtures/state/format-2.rule-state/` was written by the Fluent Bit filter of the release
/// before state format 3 (commit 3cfc294), granted a directory with
/// `format-2.config.json` as its `rule-config.json`, over the first half of
/// `generated_log(4000, 14)`. This filter starts from it and upgrades it as the harness
/// upgrades a state file: the second half raises exactly the alerts of one uninterrupted
/// run, and a restart after it keeps them.
#[test]
fn a_fluent_bit_state_of_the_previous_format_is_upgraded_and_keeps_its_baselines() {
    let text = String::from_utf8(generated_log(4000, 14)).unwrap();
    let records: Vec<String> = text.lines().map(str::to_owned).collect();
    let (first, second) = records.split_at(2000);
    let granted = |state: bool| {
        let dir = tempfile::tempdir().unwrap();
        let config = fixture("state/format-2.config.json");
        std::fs::copy(config, dir.path().join("rule-config.json")).unwrap();
        if state {
            let kept = dir.path().join("rule-state");
            std::fs::create_dir(&kept).unwrap();
            for file in std::fs::read_dir(fixture("state/format-2.rule-state")).unwrap() {
                let file = file.unwrap();
                std::fs::copy(file.path(), kept.join(file.file_name())).unwrap();
            }
        }
        dir
    };
    let mut uninterrupted = FluentBit::granted(ssm(), granted(false));
    contract::alerts(&mut uninterrupted, first);
    let expected = contract::alerts(&mut uninterrupted, second);
    let ids = |alerts: &[AlertKey]| -> BTreeMap<String, usize> {
        alerts.iter().fold(BTreeMap::new(), |mut ids, a| {
            *ids.entry(a.rule_id.clone()).or_default() += 1;
            ids
        })
    };
    assert!(
        ids(&expected)["AWS.SSM.UnusualSession"] > 0,
        "{:?}",
        ids(&expected)
    );

    let dir = granted(true);
    let path = dir.path().to_path_buf();
    let mut upgraded = FluentBit::granted(ssm(), dir);
    let (half, rest) = second.split_at(1000);
    let mut resumed = contract::alerts(&mut upgraded, half);
    // A restart reads the upgraded state back from rule-state/.
    let restarted = tempfile::tempdir().unwrap();
    for name in ["rule-config.json", "rule-state"] {
        std::fs::rename(path.join(name), restarted.path().join(name)).unwrap();
    }
    drop(upgraded);
    let mut restarted = FluentBit::granted(ssm(), restarted);
    resumed.extend(contract::alerts(&mut restarted, rest));
    assert_eq!(resumed, expected);
}

/// `--format ocsf`, `alert_format` in the Fluent Bit filter's `rule-config.json` and the
/// Fluvio SmartModule's `alert_format` parameter: one OCSF Detection Finding per alert,
/// each as the schema defines it, the same from every host, over the fixture log and a
/// generated corpus.
#[test]
fn every_host_writes_the_same_ocsf_findings_one_per_alert() {
    let generated = String::from_utf8(generated_log(3000, 9)).unwrap();
    let fixture: Vec<String> = fixture_records();
    let corpora = [fixture, generated.lines().map(str::to_owned).collect()];
    for records in &corpora {
        let stdin = records.join("\n").into_bytes();
        let harness = alerts(
            &["run", "--state", "memory", "--format", "ocsf", "-"],
            &stdin,
        );
        let lines = alerts(&["run", "--state", "memory", "-"], &stdin);
        assert_eq!(harness.len(), lines.len(), "one finding per alert");
        assert!(harness.len() > 10, "{}", harness.len());
        for (finding, line) in harness.iter().zip(&lines) {
            detect_sdk::ocsf::schema::check(finding).unwrap_or_else(|e| panic!("{e}: {finding}"));
            assert_eq!(finding["finding_info"]["analytic"]["uid"], line["rule_id"]);
            assert_eq!(finding["message"], line["title"]);
            assert_eq!(finding["unmapped"], line["context"]);
        }

        let dir = tempfile::tempdir().unwrap();
        let config = json!({"alert_format": "ocsf"}).to_string();
        std::fs::write(dir.path().join("rule-config.json"), config).unwrap();
        let mut filter = FluentBit::granted(ssm(), dir);
        let mut fluent_bit = Vec::new();
        for record in records {
            match filter
                .filter
                .filter_json("cloudtrail", STAMP, record.as_bytes())
            {
                Filtered::Replaced(out) => {
                    fluent_bit.extend(out["alerts"].as_array().into_iter().flatten().cloned())
                }
                Filtered::Dropped => {}
                Filtered::Trapped(trap) => panic!("{trap}"),
            }
        }
        assert_eq!(fluent_bit, harness, "the Fluent Bit filter's findings");

        let params = BTreeMap::from([("alert_format".to_owned(), "ocsf".to_owned())]);
        let mut module =
            FluvioSmartModule::load(ssm().fluvio, &params, fluvio::SPU_VERSION).unwrap();
        let fluvio = fluvio_lines(&mut module, records, 50);
        assert_eq!(fluvio, harness, "the Fluvio SmartModule's findings");
    }
}

/// An alert format the pipelines do not know stops the filter from starting, and the
/// SmartModule's `init`, saying why.
#[test]
fn an_unknown_alert_format_is_refused_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rule-config.json"),
        r#"{"alert_format": "xml"}"#,
    )
    .unwrap();
    let mut filter = FluentBit::granted(ssm(), dir);
    let step = filter.process(&fixture_records()[0]);
    assert_eq!(step, Step::Rejected("setup".into()));
    let params = BTreeMap::from([("alert_format".to_owned(), "xml".to_owned())]);
    let err = FluvioSmartModule::load(ssm().fluvio, &params, fluvio::SPU_VERSION)
        .err()
        .expect("init refuses it");
    assert!(format!("{err:#}").contains("xml"), "{err:#}");
}
