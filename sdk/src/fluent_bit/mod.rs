//! The `fluent-bit` binding: a rule as a Fluent Bit `filter_wasm` filter (and `wasm`
//! processor), a WASI preview 1 module that imports nothing else.
//!
//! Fluent Bit copies each record, as a JSON object, into the module's memory with the
//! module's own `malloc` (the build exports wasi-libc's `malloc` and `free`, so records of
//! any size arrive), calls the filter function with
//! `(tag, tag_len, sec, nsec, record, record_len)`, and copies the NUL-terminated string
//! it returns: a JSON object replaces the record, `""` drops it. One instance lives as long
//! as the Fluent Bit process; after a trap Fluent Bit clears it and calls the same instance
//! again, which this binding is built to survive.
//!
//! Two functions (named by `export_rule!`):
//!
//! * [`Mode::Alerts`]: `{"alerts": [...]}` for a record that raises alerts; other records
//!   are dropped: a stream of alerts.
//! * [`Mode::Enrich`]: every record passes, with an `alerts` array added to those that
//!   raise some.
//!
//! A record the rule cannot process gives `{"rule_error": {"kind", "message", ...}}`
//! (alerts) or the record with a `rule_error` object added (enrich); never a trap.
//!
//! What the operator grants with `Accessible_Paths`, looked for in each granted directory,
//! first found first used:
//!
//! * `rule-config.json`: the rule's configuration, as `rule-harness --config` takes it;
//! * `rule-state/`: created by the operator to opt in, where the state is kept (see
//!   [`journal`]) so that a restart resumes with what the rule has learnt. Without it, the
//!   state lives in memory only and a restart relearns it.

pub mod journal;
mod preopens;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::binding::{Durable, ProcessError, Recovered, Resident, Slot, not_after};
use crate::kv::MemoryKv;
use crate::prefilter::Prefilter;
use crate::{AlertLine, Context, Outcome, Rule, RuleConfig};
use journal::Journal;

/// The configuration file, in a granted directory.
pub const CONFIG_FILE: &str = "rule-config.json";

/// The state directory, in a granted directory.
pub const STATE_DIR: &str = "rule-state";

/// Records larger than this are not processed.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// How far past the host's clock an event time may be.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// Records up to this size are quoted whole in error records.
const QUOTED_RECORD_BYTES: usize = 16 * 1024;

/// What a filter function makes of records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Alerts only.
    Alerts,
    /// Every record, with its alerts.
    Enrich,
}

/// The filter: a rule resident in the module, or why it could not start.
struct Filter<R: Rule> {
    rule: Result<Running<R>, String>,
    /// The last result, NUL-terminated: Fluent Bit copies it before the next call.
    output: Vec<u8>,
}

struct Running<R: Rule> {
    resident: Resident<R>,
    prefilter: Prefilter,
    journal: Option<Journal>,
    state_dir: Option<PathBuf>,
}

static FILTER: Slot = Slot::new();

/// One call of a filter function: the record at `record` (`len` bytes) in, the address
/// of the result out.
pub fn filter<R: Rule>(mode: Mode, record: *const u8, len: u32) -> *const u8 {
    // SAFETY: called once per exported call.
    let filter = unsafe { FILTER.get(|| Filter::<R>::start(&preopens::granted_dirs())) };
    filter.output.clear();
    let result = match &mut filter.rule {
        Ok(running) => running.call(record, len as usize),
        Err(why) => Reply::error(Failure::new("setup", why.clone()), None),
    };
    result.write(mode, &mut filter.output);
    filter.output.push(0);
    filter.output.as_ptr()
}

impl<R: Rule> Filter<R> {
    fn start(granted: &[PathBuf]) -> Self {
        Filter {
            rule: Running::start(granted),
            output: Vec::new(),
        }
    }
}

impl<R: Rule> Running<R> {
    /// Reads the configuration and the state that the granted directories hold.
    fn start(granted: &[PathBuf]) -> Result<Self, String> {
        let config = match granted
            .iter()
            .map(|d| d.join(CONFIG_FILE))
            .find(|p| p.is_file())
        {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                R::Config::from_json(&text)
                    .map_err(|e| format!("{}: invalid configuration: {e}", path.display()))?
            }
            None => R::Config::default(),
        };
        let state_dir = granted
            .iter()
            .map(|d| d.join(STATE_DIR))
            .find(|p| p.is_dir());
        let (journal, kv) = match &state_dir {
            Some(dir) => {
                let (journal, entries) = Journal::open(dir)?;
                (Some(journal), MemoryKv::with_entries(entries))
            }
            None => (None, MemoryKv::new()),
        };
        let prefilter = Prefilter::new(R::info().prefilter)
            .map_err(|e| format!("the rule's prefilter is invalid: {e}"))?;
        Ok(Running {
            resident: Resident::new(config, kv),
            prefilter,
            journal,
            state_dir,
        })
    }

    fn call(&mut self, record: *const u8, len: usize) -> Reply<'_> {
        if self.resident.recover() == Recovered::Torn {
            self.reload();
        }
        if record.is_null() {
            let message = format!(
                "Fluent Bit could not copy the record ({len} bytes) into the filter's memory"
            );
            return Reply::error(Failure::new("record-too-large", message), None);
        }
        // SAFETY: Fluent Bit copied `len` bytes (and a NUL) to `record`, in this module's
        // memory, and frees them only after the call.
        let bytes = unsafe { std::slice::from_raw_parts(record, len) };
        // Most records cannot concern the rule: they pass (or drop) unread.
        if !self.prefilter.is_candidate(bytes) {
            return Reply::unread(bytes);
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Reply::error(
                Failure::new("invalid-utf8", "the record is not UTF-8".into()),
                None,
            );
        };
        if len > MAX_RECORD_BYTES {
            let message = format!("the record has {len} bytes; the limit is {MAX_RECORD_BYTES}");
            return Reply::error(Failure::new("record-too-large", message), Some(text));
        }
        let context = Context {
            not_after: not_after(MAX_CLOCK_SKEW),
        };
        let durable = self.journal.as_mut().map(|j| j as &mut dyn Durable);
        match self.resident.process(text, &context, durable) {
            Ok(outcome) => Reply::alerts(&outcome, text),
            Err(ProcessError::Rule(e)) => {
                Reply::error(Failure::new(e.kind(), e.to_string()), Some(text))
            }
            Err(ProcessError::Durable(outcome, e)) => {
                // Go on in memory, and say so, once: the journal is dropped.
                let dir = self.state_dir.as_deref().unwrap_or(Path::new(STATE_DIR));
                self.journal = None;
                let why = format!(
                    "cannot write the state to {}: {e}; it is kept in memory only from now on",
                    dir.display()
                );
                let mut reply = Reply::alerts(&outcome, text);
                reply.failure = Some(Failure::new("state", why));
                reply
            }
        }
    }

    /// After a trap tore a record's writes: the state as last kept on disk, if it is.
    fn reload(&mut self) {
        if let Some(dir) = &self.state_dir
            && let Ok((journal, entries)) = Journal::open(dir)
        {
            self.journal = Some(journal);
            self.resident.kv = MemoryKv::with_entries(entries);
        }
    }
}

/// Why a record produced no alerts the normal way.
struct Failure {
    kind: &'static str,
    message: String,
}

impl Failure {
    fn new(kind: &'static str, message: String) -> Self {
        Failure { kind, message }
    }
}

/// What one call answers.
struct Reply<'r> {
    alerts: Vec<AlertLine>,
    failure: Option<Failure>,
    record: Option<&'r str>,
    /// A record the prefilter ruled out, as Fluent Bit passed it.
    unread: Option<&'r [u8]>,
}

impl<'r> Reply<'r> {
    fn alerts(outcome: &Outcome, record: &'r str) -> Self {
        Reply {
            alerts: outcome.alerts.iter().map(AlertLine::from).collect(),
            failure: None,
            record: Some(record),
            unread: None,
        }
    }

    fn error(failure: Failure, record: Option<&'r str>) -> Self {
        Reply {
            alerts: Vec::new(),
            failure: Some(failure),
            record,
            unread: None,
        }
    }

    fn unread(record: &'r [u8]) -> Self {
        Reply {
            alerts: Vec::new(),
            failure: None,
            record: None,
            unread: Some(record),
        }
    }

    /// The JSON text Fluent Bit gets (empty: drop the record).
    fn write(&self, mode: Mode, out: &mut Vec<u8>) {
        if let Some(record) = self.unread {
            if mode == Mode::Enrich {
                out.extend_from_slice(record);
            }
            return;
        }
        let mut added = serde_json::Map::new();
        if !self.alerts.is_empty() {
            added.insert("alerts".into(), json!(self.alerts));
        }
        if let Some(failure) = &self.failure {
            let mut error = json!({"kind": failure.kind, "message": failure.message});
            if mode == Mode::Alerts
                && let Some(record) = self.record
            {
                error["record"] = quoted(record);
            }
            added.insert("rule_error".into(), error);
        }
        match (mode, self.record) {
            (Mode::Enrich, Some(record)) => enrich(record, &added, out),
            _ if added.is_empty() => {}
            _ => serde_json::to_writer(out, &added).expect("JSON serializes"),
        }
    }
}

/// A record as error records quote it: whole when small, else its size.
fn quoted(record: &str) -> Value {
    if record.len() <= QUOTED_RECORD_BYTES {
        Value::from(record)
    } else {
        json!({"size": record.len()})
    }
}

/// The record with `added`'s keys appended, without parsing it again: its text up to its
/// closing brace, then the keys.
fn enrich(record: &str, added: &serde_json::Map<String, Value>, out: &mut Vec<u8>) {
    let body = record.trim_end();
    let Some(open) = body.strip_suffix('}') else {
        // Not an object after all: Fluent Bit would drop it; keep only what was added.
        return serde_json::to_writer(out, added).expect("JSON serializes");
    };
    out.extend_from_slice(open.as_bytes());
    let empty = open.trim_end().ends_with('{');
    for (n, (key, value)) in added.iter().enumerate() {
        if n > 0 || !empty {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key).expect("JSON serializes");
        out.push(b':');
        serde_json::to_writer(&mut *out, value).expect("JSON serializes");
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(reply: &Reply, mode: Mode) -> String {
        let mut out = Vec::new();
        reply.write(mode, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn alerts_mode_drops_quiet_records_and_reports_failures() {
        let quiet = Reply::alerts(&Outcome::default(), "{\"a\": 1}");
        assert_eq!(written(&quiet, Mode::Alerts), "");
        let failed = Reply::error(
            Failure::new("invalid-time", "soon".into()),
            Some("{\"a\":1}"),
        );
        let out: Value = serde_json::from_str(&written(&failed, Mode::Alerts)).unwrap();
        assert_eq!(
            out,
            json!({"rule_error": {"kind": "invalid-time", "message": "soon", "record": "{\"a\":1}"}})
        );
    }

    #[test]
    fn enrich_mode_passes_records_and_adds_what_there_is() {
        let quiet = Reply::alerts(&Outcome::default(), "{\"a\": 1} \n");
        assert_eq!(written(&quiet, Mode::Enrich), "{\"a\": 1}");
        let failed = Reply::error(Failure::new("state", "x".into()), Some("{ }"));
        let out: Value = serde_json::from_str(&written(&failed, Mode::Enrich)).unwrap();
        assert_eq!(
            out,
            json!({"rule_error": {"kind": "state", "message": "x"}})
        );
        let lost = Reply::error(Failure::new("record-too-large", "y".into()), None);
        let out: Value = serde_json::from_str(&written(&lost, Mode::Enrich)).unwrap();
        assert_eq!(out["rule_error"]["kind"], "record-too-large");
    }

    #[test]
    fn records_the_prefilter_rules_out_pass_unread() {
        let unread = Reply::unread(b"{\"eventName\": \"GetObject\"}");
        assert_eq!(written(&unread, Mode::Alerts), "");
        assert_eq!(
            written(&unread, Mode::Enrich),
            "{\"eventName\": \"GetObject\"}"
        );
    }
}
