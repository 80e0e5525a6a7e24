//! The `fluent-bit` binding: a rule as a Fluent Bit `filter_wasm` filter (and `wasm`
//! processor), a WASI preview 1 module that imports only the file calls its granted
//! directories need ([`fs`]): no clock, randomness, environment or process.
//!
//! Fluent Bit copies each record, as a JSON object, into the module's memory with the
//! module's own `malloc` (the build exports wasi-libc's `malloc` and `free`, so records of
//! any size arrive), calls the filter function with
//! `(tag, tag_len, sec, nsec, record, record_len)`, and copies the NUL-terminated string
//! it returns: a JSON object replaces the record, `""` drops it. One instance lives as long
//! as the Fluent Bit process.
//!
//! Event times are bounded by the time Fluent Bit stamped the record with (when its input
//! read it, unless a parser set it from the record), plus an hour: the module has no
//! clock of its own. A record stamped 0 is bounded by the latest stamp seen before it,
//! and refused (`invalid-time`) when there was none.
//!
//! Two functions (named by `export_rule!`):
//!
//! * [`Mode::Alerts`]: `{"alerts": [...]}` for a record that raises alerts; other records
//!   are dropped: a stream of alerts.
//! * [`Mode::Enrich`]: every record passes, with an `alerts` array added to those that
//!   raise some.
//!
//! A record may also be a whole CloudTrail log file (`{"Records": [...]}`, as `tail`
//! reads files written one per line): its records are judged in order, and the file's
//! alerts come out together. A record the rule cannot process gives
//! `{"rule_error": {"kind", "message", ...}}` (alerts) or the record with a `rule_error`
//! object added (enrich).
//!
//! **Traps.** After a trap Fluent Bit calls the same instance again. Each call notes, in
//! memory outside the heap, what it is doing, so the next call knows what a trap cut
//! short: a call's writes reach the state only after its answer is made, so a trap loses
//! the record whole; a trap while they were being kept takes the journal frame back; a
//! trap inside the allocator abandons the heap for a fresh one ([`heap`]) and the filter
//! starts again from what the granted directories hold (without `rule-state/`, the state
//! learnt so far is then lost, and the next answer says so), closing the files that the
//! forgotten filter held ([`fs`]). The shadow stack a trap leaves lowered is reset on
//! entry to each export by `rule-harness export`.
//!
//! What the operator grants with `Accessible_Paths`, looked for in each granted directory,
//! first found first used:
//!
//! * `rule-config.json`: the rule's configuration, as `rule-harness --config` takes it;
//! * `rule-state/`: created by the operator to opt in, where the state is kept (see
//!   [`journal`]) so that a restart resumes with what the rule has learnt. Without it, the
//!   state lives in memory only and a restart relearns it. One filter per directory.

pub mod fs;
#[cfg(target_arch = "wasm32")]
pub mod heap;
pub mod journal;

use std::cell::OnceCell;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::alert::{AlertFormat, FORMAT_KEY, Templates};
use crate::binding::{Resident, Slot, Stamps};
use crate::cloudtrail::Record;
use crate::kv::MemoryKv;
use crate::prefilter::Prefilter;
use crate::{Configured, Millis, Outcome, Rule};
use fs::{Access, Dir};
use journal::Journal;

/// The configuration file, in a granted directory.
pub const CONFIG_FILE: &str = "rule-config.json";

/// The state directory, in a granted directory.
pub const STATE_DIR: &str = "rule-state";

/// Records larger than this are not processed.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

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
    /// Records answered since the filter could not start.
    unstarted: u64,
}

struct Running<R: Rule> {
    resident: Resident<R>,
    prefilter: Prefilter,
    /// How its alerts are written (`alert_format` in `rule-config.json`).
    format: AlertFormat,
    /// What the rule's alerts are written from, made once, when the first alert comes:
    /// starting (again, after a trap) stays as short as it can be.
    templates: OnceCell<Templates>,
    journal: Option<Journal>,
    /// Said with the next answer.
    warning: Option<Failure>,
}

static FILTER: Slot = Slot::new();

/// The global allocator of a filter module: survives a trap inside it.
#[cfg(all(feature = "fluent-bit", target_arch = "wasm32"))]
#[global_allocator]
static HEAP: heap::Arena = heap::Arena::new();

/// The filter has no environment: Fluent Bit gives it none. std asks for `RUST_BACKTRACE`
/// when it reports a panic (a trap, in the guest profile), and wasi-libc's `getenv` would
/// import the environment (`environ_get`) to answer; this one answers that nothing is set.
#[cfg(all(feature = "fluent-bit", target_os = "wasi"))]
#[unsafe(no_mangle)]
extern "C" fn getenv(_name: *const std::ffi::c_char) -> *mut std::ffi::c_char {
    std::ptr::null_mut()
}

/// What a call is doing: kept outside the heap, for the next call to see after a trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Idle,
    Starting,
    Judging,
    Keeping,
    Compacting,
}

static PHASE: AtomicU8 = AtomicU8::new(Phase::Idle as u8);
/// Where the journal ended before the frame being kept, and its generation.
static JOURNAL_END: AtomicU64 = AtomicU64::new(0);
static JOURNAL_GENERATION: AtomicU64 = AtomicU64::new(0);
/// A journal frame is to be taken back before the state is read again.
static TAKE_BACK: AtomicBool = AtomicBool::new(false);
/// Starting trapped: the filter does not try again.
static START_TRAPPED: AtomicBool = AtomicBool::new(false);
/// The state learnt so far was lost to a trap; the next answer says so.
static STATE_LOST: AtomicBool = AtomicBool::new(false);
/// The running filter keeps its state on disk.
static KEPT_ON_DISK: AtomicBool = AtomicBool::new(false);
/// The stamps seen, for records stamped 0; outside the heap, so a restart keeps them.
static STAMPS: Stamps = Stamps::new();

fn set_phase(phase: Phase) {
    PHASE.store(phase as u8, Ordering::Relaxed);
}

fn interrupted_phase() -> Phase {
    match PHASE.swap(Phase::Idle as u8, Ordering::Relaxed) {
        1 => Phase::Starting,
        2 => Phase::Judging,
        3 => Phase::Keeping,
        4 => Phase::Compacting,
        _ => Phase::Idle,
    }
}

/// One call of a filter function: the record at `record` (`len` bytes), stamped `time`
/// (seconds, nanoseconds) by Fluent Bit, in; the address of the result out.
///
/// # Safety
/// `record` is null or points to `len` readable bytes of this module's memory, which
/// stay there during the call; calls never overlap. Fluent Bit's `filter_wasm` does both.
pub unsafe fn filter<R: Rule>(
    mode: Mode,
    time: (u32, u32),
    record: *const u8,
    len: u32,
) -> *const u8 {
    recover::<R>(interrupted_phase());
    // SAFETY: as the caller guarantees.
    let bytes =
        (!record.is_null()).then(|| unsafe { std::slice::from_raw_parts(record, len as usize) });
    if START_TRAPPED.load(Ordering::Relaxed) {
        return unstarted(mode, bytes, record);
    }
    set_phase(Phase::Starting);
    // SAFETY: called once per exported call.
    let filter = unsafe { FILTER.get(|| Filter::<R>::start(Dir::granted())) };
    set_phase(Phase::Idle);
    filter.output.clear();
    let reply = match &mut filter.rule {
        Ok(running) => running.call(bytes, len as usize, stamp(time)),
        Err(why) => {
            filter.unstarted += 1;
            // Each enriched record carries it; an alerts stream gets it on the first
            // record, then ever more rarely: the error, not a flood.
            let say = mode == Mode::Enrich || filter.unstarted.is_power_of_two();
            let failure = say.then(|| Failure::new("setup", why.clone()));
            Reply::unjudged(bytes, failure)
        }
    };
    reply.write(mode, &mut filter.output);
    filter.output.push(0);
    // Nothing that may trap comes after the writes are kept: the answer must not be lost
    // once they are.
    drop(reply);
    if let Ok(running) = &mut filter.rule {
        running.keep();
    }
    set_phase(Phase::Idle);
    filter.output.as_ptr()
}

/// Fluent Bit's time for a record, in milliseconds.
fn stamp((sec, nsec): (u32, u32)) -> Millis {
    Millis::from(sec) * 1000 + Millis::from(nsec / 1_000_000)
}

/// The answer of a filter that trapped while starting: records pass (enrich) or drop,
/// unjudged; the reason is given on the first.
fn unstarted(mode: Mode, bytes: Option<&[u8]>, record: *const u8) -> *const u8 {
    static SAID: AtomicBool = AtomicBool::new(false);
    if mode == Mode::Enrich && bytes.is_some() && SAID.load(Ordering::Relaxed) {
        // The record as Fluent Bit copied it, NUL-terminated: it passes as it came.
        return record;
    }
    SAID.store(true, Ordering::Relaxed);
    c"{\"rule_error\":{\"kind\":\"setup\",\"message\":\"the filter trapped while starting (reading rule-state/ or its configuration); records pass unjudged until Fluent Bit restarts\"}}".as_ptr().cast()
}

/// Puts right what a trap cut short; see the module documentation.
fn recover<R: Rule>(interrupted: Phase) {
    #[cfg(all(feature = "fluent-bit", target_arch = "wasm32"))]
    let heap_damaged = HEAP.interrupted();
    #[cfg(not(all(feature = "fluent-bit", target_arch = "wasm32")))]
    let heap_damaged = false;
    if interrupted == Phase::Idle && !heap_damaged {
        return;
    }
    let start_again = heap_damaged || matches!(interrupted, Phase::Keeping | Phase::Compacting);
    if interrupted == Phase::Starting {
        START_TRAPPED.store(true, Ordering::Relaxed);
    }
    if interrupted == Phase::Keeping {
        TAKE_BACK.store(true, Ordering::Relaxed);
    }
    if start_again {
        if !KEPT_ON_DISK.load(Ordering::Relaxed) {
            STATE_LOST.store(true, Ordering::Relaxed);
        }
        // SAFETY: no reference into the slot is alive between calls.
        unsafe { FILTER.forget() };
        // The forgotten filter's files are never dropped: closed here, or traps would use
        // up the descriptors (the state directory is kept for the next start).
        // SAFETY: the forgotten filter held every file open; none is used again.
        unsafe { fs::close_forgotten() };
        #[cfg(all(feature = "fluent-bit", target_arch = "wasm32"))]
        if heap_damaged {
            // SAFETY: all that the old heap held is forgotten, with the slot.
            unsafe { HEAP.abandon() };
        }
    } else if interrupted == Phase::Judging {
        // SAFETY: no reference into the slot is alive between calls.
        let filter = unsafe { FILTER.get(|| Filter::<R>::start(Dir::granted())) };
        if let Ok(running) = &mut filter.rule {
            running.resident.abandon_pending();
        }
    }
}

impl<R: Rule> Filter<R> {
    fn start(granted: Vec<Dir>) -> Self {
        let rule = Running::start(&granted);
        KEPT_ON_DISK.store(
            matches!(&rule, Ok(running) if running.journal.is_some()),
            Ordering::Relaxed,
        );
        Filter {
            rule,
            output: Vec::new(),
            unstarted: 0,
        }
    }
}

impl<R: Rule> Running<R> {
    /// Reads the configuration and the state that the granted directories hold.
    fn start(granted: &[Dir]) -> Result<Self, String> {
        let (config, format) = match granted.iter().find(|d| d.is_file(CONFIG_FILE)) {
            Some(dir) => read_config::<R>(dir)?,
            None => (Configured::defaults(), AlertFormat::default()),
        };
        let prefilter = Prefilter::new(R::info().prefilter)
            .map_err(|e| format!("the rule's prefilter is invalid: {e}"))?;
        let (journal, kv) = match granted.iter().find_map(|d| d.subdir(STATE_DIR)) {
            Some(dir) => {
                take_back(&dir)?;
                let (journal, entries) = Journal::open(dir)?;
                (Some(journal), MemoryKv::from(entries))
            }
            None => (None, MemoryKv::new()),
        };
        Ok(Running {
            resident: Resident::new(config, kv),
            prefilter,
            format,
            templates: OnceCell::new(),
            journal,
            warning: None,
        })
    }

    /// Judges a record (or each record of a log file) stamped `stamp`; their writes wait
    /// for [`keep`].
    fn call<'r>(&mut self, bytes: Option<&'r [u8]>, len: usize, stamp: Millis) -> Reply<'r> {
        // Taken first: every stamp counts for the unstamped records to come.
        let context = STAMPS.context(stamp);
        let Some(bytes) = bytes else {
            let message = match len {
                0 => "Fluent Bit passed no record".to_owned(),
                _ => format!(
                    "Fluent Bit could not copy the record ({len} bytes) into the filter's memory"
                ),
            };
            return Reply::error(Failure::new("record-too-large", message), None);
        };
        // Most records cannot concern the rule: they pass (or drop) unread.
        if !self.prefilter.is_candidate(bytes) {
            return Reply::unjudged(Some(bytes), None);
        }
        if len > MAX_RECORD_BYTES {
            let message = format!("the record has {len} bytes; the limit is {MAX_RECORD_BYTES}");
            return Reply::unjudged(Some(bytes), Some(Failure::new("record-too-large", message)));
        }
        let Ok((text, records)) = self.prefilter.candidates(bytes) else {
            return Reply::error(
                Failure::new("invalid-utf8", "the record is not UTF-8".into()),
                None,
            );
        };
        let context = match context {
            Ok(context) => context,
            Err(e) => return Reply::error(Failure::new(e.kind(), e.to_string()), Some(text)),
        };
        if let Some(failure) = self.compact() {
            return Reply::error(failure, Some(text));
        }
        set_phase(Phase::Judging);
        let mut reply = Reply::new(text);
        for record in records {
            match self.resident.judge(record, &context) {
                Ok(outcome) if outcome.alerts.is_empty() => {}
                Ok(outcome) => {
                    let format = self.format;
                    let templates = (self.templates).get_or_init(|| Templates::of::<R>(format));
                    reply.add(&outcome, templates);
                }
                Err(e) => reply.fail(Failure::new(e.kind(), e.to_string())),
            }
        }
        if STATE_LOST.swap(false, Ordering::Relaxed) {
            reply.fail(Failure::new("state", state_lost()));
        }
        if let Some(warning) = self.warning.take() {
            reply.fail(warning);
        }
        reply
    }

    /// Keeps the judged records' writes: in the journal, then in memory. Called once the
    /// answer is made, so a trap before it loses the record whole.
    fn keep(&mut self) {
        set_phase(Phase::Keeping);
        let journal = &mut self.journal;
        if let Some(journal) = journal.as_ref() {
            let (end, generation) = journal.end();
            JOURNAL_END.store(end, Ordering::Relaxed);
            JOURNAL_GENERATION.store(generation, Ordering::Relaxed);
        }
        let kept = self
            .resident
            .commit(|changes| journal.as_mut().map_or(Ok(()), |j| j.append(changes)));
        if let Err(e) = kept
            && let Some(journal) = self.journal.take()
        {
            // Go on in memory; the next answer says so.
            KEPT_ON_DISK.store(false, Ordering::Relaxed);
            let why = format!(
                "cannot write the state to {}: {e}; it is kept in memory only from now on",
                journal.dir_name()
            );
            self.warning = Some(Failure::new("state", why));
        }
    }

    /// Compacts the journal when it has outgrown the snapshot; a failure is reported and
    /// the state is kept in memory only from then on.
    fn compact(&mut self) -> Option<Failure> {
        let journal = self.journal.as_mut()?;
        if !journal.needs_compaction() {
            return None;
        }
        set_phase(Phase::Compacting);
        let compacted = journal.compact(&self.resident.kv.entries);
        set_phase(Phase::Idle);
        let e = compacted.err()?;
        self.journal = None;
        KEPT_ON_DISK.store(false, Ordering::Relaxed);
        Some(Failure::new(
            "state",
            format!("cannot compact the state: {e}; it is kept in memory only from now on"),
        ))
    }
}

/// The configuration in `dir`, and how alerts are written.
fn read_config<R: Rule>(dir: &Dir) -> Result<(Configured<R>, AlertFormat), String> {
    let path = format!("{}/{CONFIG_FILE}", dir.name().trim_end_matches('/'));
    let mut text = String::new();
    dir.open(CONFIG_FILE, Access::Read)
        .and_then(|mut file| file.read_to_string(&mut text))
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    let invalid = |e| format!("{path}: invalid configuration: {e}");
    let (rule, format) = alert_format(&text).map_err(invalid)?;
    Ok((Configured::from_json(&rule).map_err(invalid)?, format))
}

/// The filter's own key of its configuration file, `alert_format` (`"json"`, the
/// default, or `"ocsf"`), taken out; the rest is the rule's.
fn alert_format(text: &str) -> Result<(String, AlertFormat), String> {
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(text) else {
        // The rule says what is wrong with it.
        return Ok((text.to_owned(), AlertFormat::default()));
    };
    let format = match object.remove(FORMAT_KEY) {
        None => return Ok((text.to_owned(), AlertFormat::default())),
        Some(Value::String(name)) => name.parse()?,
        Some(other) => return Err(format!("{FORMAT_KEY}: expected a string, found {other}")),
    };
    Ok((Value::Object(object).to_string(), format))
}

/// Takes back the journal frame of a call that a trap cut short while it was kept.
fn take_back(dir: &Dir) -> Result<(), String> {
    if !TAKE_BACK.swap(false, Ordering::Relaxed) {
        return Ok(());
    }
    let (end, generation) = (
        JOURNAL_END.load(Ordering::Relaxed),
        JOURNAL_GENERATION.load(Ordering::Relaxed),
    );
    Journal::truncate(dir, end, generation)
        .map_err(|e| format!("{}: cannot take back an interrupted write: {e}", dir.name()))
}

fn state_lost() -> String {
    "a trap cut a call short where the state could not be trusted: the state learnt so \
     far is lost, and the rule learns again from here (a rule-state/ directory keeps it \
     across traps and restarts)"
        .to_owned()
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
    /// The alerts' lines, joined by commas: the elements of the answer's `alerts`.
    alerts: String,
    failures: Vec<Failure>,
    /// The record as text, when it was read.
    record: Option<&'r str>,
    /// A record passed on unjudged, as Fluent Bit gave it.
    unjudged: Option<&'r [u8]>,
}

impl<'r> Reply<'r> {
    fn new(record: &'r str) -> Self {
        Reply {
            alerts: String::new(),
            failures: Vec::new(),
            record: Some(record),
            unjudged: None,
        }
    }

    fn error(failure: Failure, record: Option<&'r str>) -> Self {
        Reply {
            alerts: String::new(),
            failures: vec![failure],
            record,
            unjudged: None,
        }
    }

    /// A record the rule did not judge: one the prefilter ruled out, or any record when
    /// the rule could not start.
    fn unjudged(record: Option<&'r [u8]>, failure: Option<Failure>) -> Self {
        // The text is needed only to add the failure to it: most records pass unread.
        let text = failure
            .is_some()
            .then(|| record.and_then(|r| std::str::from_utf8(r).ok()))
            .flatten();
        Reply {
            alerts: String::new(),
            failures: failure.into_iter().collect(),
            record: text,
            unjudged: record,
        }
    }

    /// Adds `outcome`'s alerts, their lines written once, from `templates`.
    fn add(&mut self, outcome: &Outcome, templates: &Templates) {
        for alert in &outcome.alerts {
            if !self.alerts.is_empty() {
                self.alerts.push(',');
            }
            templates.write(&mut self.alerts, alert);
        }
    }

    fn fail(&mut self, failure: Failure) {
        self.failures.push(failure);
    }

    /// The first failure, as the answer's `rule_error` reports it.
    fn error_value(&self, mode: Mode) -> Option<Value> {
        let first = self.failures.first()?;
        let mut error = json!({"kind": first.kind, "message": first.message});
        if self.failures.len() > 1 {
            error["more_failures"] = json!(self.failures.len() - 1);
        }
        if mode == Mode::Alerts
            && let Some(record) = self.record
        {
            error["record"] = quoted(record);
        }
        Some(error)
    }

    /// The JSON text Fluent Bit gets (empty: drop the record).
    fn write(&self, mode: Mode, out: &mut Vec<u8>) {
        if let (Some(record), true) = (self.unjudged, self.failures.is_empty()) {
            if mode == Mode::Enrich {
                out.extend_from_slice(record);
            }
            return;
        }
        let mut added = Added {
            alerts: &self.alerts,
            error: self.error_value(mode),
        };
        match (mode, self.record) {
            (Mode::Enrich, Some(record)) if added.is_empty() => {
                out.extend_from_slice(record.trim_end().as_bytes())
            }
            (Mode::Enrich, Some(record)) => {
                let start = out.len();
                if enrich(record, &added, out).is_err() {
                    // Not an object Fluent Bit could read back with keys added: the
                    // error record stands in for it, quoting it.
                    out.truncate(start);
                    if let Some(error) = &mut added.error {
                        error["record"] = quoted(record);
                    }
                    added.write_object(out);
                }
            }
            (Mode::Enrich, None) if self.unjudged.is_some() => {
                out.extend_from_slice(self.unjudged.expect("checked"))
            }
            _ if added.is_empty() => {}
            _ => added.write_object(out),
        }
    }
}

/// What an answer adds to a record: its alerts (their lines joined by commas) and its
/// error.
struct Added<'a> {
    alerts: &'a str,
    error: Option<Value>,
}

impl Added<'_> {
    fn is_empty(&self) -> bool {
        self.alerts.is_empty() && self.error.is_none()
    }

    /// Each key added and its value.
    fn fields(&self) -> impl Iterator<Item = (&'static str, AddedValue<'_>)> + '_ {
        let alerts =
            (!self.alerts.is_empty()).then_some(("alerts", AddedValue::Alerts(self.alerts)));
        let error = (self.error.as_ref()).map(|e| ("rule_error", AddedValue::Json(e.to_string())));
        alerts.into_iter().chain(error)
    }

    /// The added keys alone, as one object.
    fn write_object(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (n, (key, value)) in self.fields().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            value.write_member(key, out);
        }
        out.push(b'}');
    }
}

/// The value of a key [`Added`] adds.
enum AddedValue<'a> {
    /// The alerts' lines, joined by commas.
    Alerts(&'a str),
    /// JSON text.
    Json(String),
}

impl AddedValue<'_> {
    /// `"key":` (a key that needs no escaping) and the value's JSON text, written in
    /// place: an alert's line is the longest text a filter writes, and is copied once.
    fn write_member(&self, key: &'static str, out: &mut Vec<u8>) {
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        match self {
            AddedValue::Alerts(lines) => {
                out.push(b'[');
                out.extend_from_slice(lines.as_bytes());
                out.push(b']');
            }
            AddedValue::Json(text) => out.extend_from_slice(text.as_bytes()),
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

/// The record with `added`'s keys appended after its own. A key of the record that has
/// the name of an added one is renamed `original_<name>` (`original_original_<name>`, and
/// so on, past the record's own keys and the names already given), so that no added key
/// appears twice (readers of duplicate keys disagree on which one wins). `Err` when the
/// record is not a JSON object (e.g. Fluent Bit's `nan` for a NaN float): nothing can be
/// added to it.
fn enrich(record: &str, added: &Added, out: &mut Vec<u8>) -> Result<(), crate::RuleError> {
    let record = Record::parse(record)?;
    let fields: Vec<(&str, AddedValue)> = added.fields().collect();
    let adds = |name: &str| fields.iter().any(|(key, _)| *key == name);
    let mut renamed: Vec<String> = Vec::new();
    out.push(b'{');
    for (key, value) in record.members() {
        let mut key = key.into_owned();
        if adds(&key) {
            while adds(&key) || record.raw(&key).is_some() || renamed.contains(&key) {
                key.insert_str(0, "original_");
            }
            renamed.push(key.clone());
        }
        serde_json::to_writer(&mut *out, &key).expect("a key serializes");
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        out.push(b',');
    }
    for (key, value) in &fields {
        value.write_member(key, out);
        out.push(b',');
    }
    *out.last_mut().expect("an added key") = b'}';
    Ok(())
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
        let quiet = Reply::new("{\"a\": 1}");
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
        let quiet = Reply::new("{\"a\": 1} \n");
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
    fn records_the_rule_does_not_judge_pass_unread_with_any_failure_added() {
        let record = b"{\"eventName\": \"GetObject\"}";
        let unread = Reply::unjudged(Some(record), None);
        assert_eq!(written(&unread, Mode::Alerts), "");
        assert_eq!(
            written(&unread, Mode::Enrich),
            "{\"eventName\": \"GetObject\"}"
        );
        // A filter that could not start keeps the records of an enriching pipeline.
        let unstarted = Reply::unjudged(Some(record), Some(Failure::new("setup", "x".into())));
        let out: Value = serde_json::from_str(&written(&unstarted, Mode::Enrich)).unwrap();
        assert_eq!(out["eventName"], "GetObject");
        assert_eq!(out["rule_error"]["kind"], "setup");
        let out: Value = serde_json::from_str(&written(&unstarted, Mode::Alerts)).unwrap();
        assert_eq!(
            out["rule_error"]["record"],
            "{\"eventName\": \"GetObject\"}"
        );
    }

    #[test]
    fn enriched_records_keep_their_own_keys_of_the_same_name_renamed() {
        let record = r#"{"alerts": [1], "original_alerts": 2, "b": {"c": nan}}"#;
        let mut reply = Reply::new(record);
        reply.fail(Failure::new("state", "x".into()));
        // Not JSON (Fluent Bit writes `nan` for a NaN float): the error quotes it.
        let out: Value = serde_json::from_str(&written(&reply, Mode::Enrich)).unwrap();
        assert_eq!(out["rule_error"]["record"], record);
        let record =
            r#"{"rule_error": null, "original_rule_error": 2, "alerts": [], "z": "\u00e9"}"#;
        let mut reply = Reply::new(record);
        reply.fail(Failure::new("state", "x".into()));
        assert_eq!(
            written(&reply, Mode::Enrich),
            r#"{"original_original_rule_error":null,"original_rule_error":2,"alerts":[],"z":"\u00e9","rule_error":{"kind":"state","message":"x"}}"#
        );
        // A repeated key of an added key's name gets a name of its own each time.
        let record = r#"{"rule_error": 1, "original_rule_error": 2, "rule_error": 3}"#;
        let mut reply = Reply::new(record);
        reply.fail(Failure::new("state", "x".into()));
        assert_eq!(
            written(&reply, Mode::Enrich),
            r#"{"original_original_rule_error":1,"original_rule_error":2,"original_original_original_rule_error":3,"rule_error":{"kind":"state","message":"x"}}"#
        );
    }

    #[test]
    fn the_alert_format_is_taken_out_of_the_rules_configuration() {
        let (rule, format) = alert_format(r#"{"alert_format": "ocsf", "a": 1}"#).unwrap();
        assert_eq!((rule.as_str(), format), (r#"{"a":1}"#, AlertFormat::Ocsf));
        let (rule, format) = alert_format(r#"{"a": 1}"#).unwrap();
        assert_eq!((rule.as_str(), format), (r#"{"a": 1}"#, AlertFormat::Json));
        assert!(
            alert_format(r#"{"alert_format": "xml"}"#)
                .unwrap_err()
                .contains("xml")
        );
        assert!(alert_format(r#"{"alert_format": 1}"#).is_err());
        assert_eq!(alert_format("[]").unwrap().0, "[]");
    }

    #[test]
    fn several_failures_are_counted() {
        let mut reply = Reply::new("{}");
        reply.fail(Failure::new("invalid-time", "a".into()));
        reply.fail(Failure::new("invalid-field", "b".into()));
        let out: Value = serde_json::from_str(&written(&reply, Mode::Alerts)).unwrap();
        assert_eq!(out["rule_error"]["kind"], "invalid-time");
        assert_eq!(out["rule_error"]["more_failures"], 1);
    }
}
