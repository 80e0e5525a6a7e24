//! What the harness is measured against, as whole processes too: `grep -cF` for the rule's
//! string (what the cheapest look at every record costs), and a plain Python streaming
//! implementation of the SSM detections (`bench/ssm_reference.py`, carried in the binary),
//! whose alerts must be the harness's for the comparison to hold.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

/// The reference implementation, written next to the corpora when the bench runs.
const PYTHON_REFERENCE: &str = include_str!("../../../../../bench/ssm_reference.py");

/// `grep -cF '"StartSession"' FILE`, if this machine has grep.
pub fn grep(file: &Path) -> Option<Command> {
    let mut command = Command::new("grep");
    command.args(["-cF", "\"StartSession\""]).arg(file);
    found("grep", &["--version"]).then_some(command)
}

/// The Python reference over `file`, its alerts to standard output; `None` without a
/// `python3` of version 3.8 or later.
pub fn python(dir: &Path, file: &Path) -> anyhow::Result<Option<Command>> {
    let at_least_3_8 = "import sys; sys.exit(sys.version_info < (3, 8))";
    if !found("python3", &["-c", at_least_3_8]) {
        return Ok(None);
    }
    let script = dir.join("ssm_reference.py");
    std::fs::write(&script, PYTHON_REFERENCE)
        .with_context(|| format!("cannot write {}", script.display()))?;
    let mut command = Command::new("python3");
    command.arg(script).arg(file);
    Ok(Some(command))
}

/// Whether `program` runs and succeeds with `args`.
fn found(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Alerts by detection, and how many of one output's alerts the other lacks.
pub struct Comparison {
    pub by_rule: BTreeMap<String, u64>,
    pub only_harness: u64,
    pub only_reference: u64,
}

impl Comparison {
    pub fn same(&self) -> bool {
        self.only_harness == 0 && self.only_reference == 0
    }
}

/// Compares two files of alert lines by what identifies an alert: its detection, dedup
/// key, event time and title.
pub fn compare(harness: &Path, reference: &Path) -> anyhow::Result<Comparison> {
    let ours = identities(harness)?;
    let theirs = identities(reference)?;
    let mut by_rule = BTreeMap::new();
    let lacking = |a: &Alerts, b: &Alerts| -> u64 {
        a.iter()
            .map(|(key, n)| n.saturating_sub(b.get(key).copied().unwrap_or(0)))
            .sum()
    };
    for ((rule, ..), n) in &ours {
        *by_rule.entry(rule.clone()).or_default() += n;
    }
    Ok(Comparison {
        by_rule,
        only_harness: lacking(&ours, &theirs),
        only_reference: lacking(&theirs, &ours),
    })
}

type Alerts = BTreeMap<(String, String, String, String), u64>;

fn identities(path: &Path) -> anyhow::Result<Alerts> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut alerts = Alerts::new();
    for line in BufReader::new(file).lines() {
        let line: serde_json::Value = serde_json::from_str(&line?)
            .with_context(|| format!("{} holds a line that is not JSON", path.display()))?;
        let field = |name: &str| line[name].as_str().unwrap_or_default().to_owned();
        let key = (
            field("rule_id"),
            field("dedup_key"),
            field("event_time"),
            field("title"),
        );
        *alerts.entry(key).or_default() += 1;
    }
    Ok(alerts)
}
