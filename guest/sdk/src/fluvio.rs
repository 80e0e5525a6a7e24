//! The `fluvio` binding: a rule as a Fluvio SmartModule, with exports of its own on
//! `fluvio-smartmodule`'s types (the crate's macros leak every output buffer).
//!
//! * `init` takes the configuration from the `config` parameter (`-e config='{...}'`),
//!   the same JSON as `rule-harness --config`;
//! * `array_map` turns each record (a CloudTrail record, or a `{"Records": [...]}` log
//!   file) into its alerts: one output record per alert, keyed by the detection's id, its
//!   value the alert as a JSON line. The module imports nothing but the engine's
//!   `copy_records`, so no clock: the record's timestamp, as its producer stamped it,
//!   bounds the event times it accepts (up to an hour later). A record the rule cannot process gives one record
//!   keyed `rule-error` with what went wrong, rather than stopping the stream. The engine
//!   reads the output once the call has returned; the next call frees it;
//! * `look_back` replays records after a restart to rebuild the state (the engine hands
//!   them over stamped 0, so their event times are not bounded). Fluvio looks back
//!   up to the end of the topic, while a consumer resumes from its own offset, so the
//!   first records it then reads may be ones the look-back already learnt from: those give
//!   the alerts they gave in the look-back (an uninterrupted run's), instead of being
//!   judged a second time against state that already holds them. The module remembers
//!   what the last [`REMEMBERED_LOOK_BACK`] looked-back records gave, and which records it
//!   looked back at; an older one read again is not judged twice, and is reported as a
//!   `rule-error` (its alerts, if any, are not repeated).
//!
//! The state lives in the SmartModule instance's memory: one per partition (and per
//! consumer), which is what activation and expiry are then measured over. A trap ends the
//! stream; Fluvio then builds a new instance, which looks back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::io::Cursor;

use fluvio_smartmodule::dataplane::core::{Decoder, Encoder};
use fluvio_smartmodule::dataplane::record::{Record, RecordData, RecordKey};
use fluvio_smartmodule::dataplane::smartmodule::{
    SmartModuleExtraParams, SmartModuleInitErrorStatus, SmartModuleInitInput,
    SmartModuleInitOutput, SmartModuleInitRuntimeError, SmartModuleInput,
    SmartModuleLookbackErrorStatus, SmartModuleOutput, SmartModuleRecord,
    SmartModuleTransformErrorStatus,
};
use fluvio_smartmodule::eyre;
use serde_json::json;

use crate::binding::{Resident, Slot, pipeline_context};
use crate::cloudtrail;
use crate::kv::MemoryKv;
use crate::prefilter::Prefilter;
use crate::{AlertLine, Context, Rule, RuleConfig};

/// The parameter that carries the rule's configuration.
pub const CONFIG_PARAM: &str = "config";

/// The key of the records that report a failed record.
pub const ERROR_KEY: &str = "rule-error";

/// How many of the last looked-back records' results are remembered, for a consumer
/// that resumes before the end of the look-back.
pub const REMEMBERED_LOOK_BACK: usize = 100_000;

/// How many looked-back records are recognised, results or not.
pub const RECOGNISED_LOOK_BACK: usize = 4_000_000;

static MODULE: Slot = Slot::new();

/// The last output handed to the engine, freed by the next call.
static OUTPUT: Slot = Slot::new();

/// What one CloudTrail record gave: its alerts, or why it was refused.
type Judged = Result<Vec<AlertLine>, (&'static str, String)>;

/// What the module keeps between calls.
struct Module<R: Rule> {
    resident: Resident<R>,
    /// Records it rules out cannot concern the rule: they are skipped unread.
    prefilter: Prefilter,
    looked_back: LookedBack,
}

/// What the look-back gave, for the records a resuming consumer reads again: kept until
/// `array_map` reads a record the look-back did not see.
#[derive(Default)]
struct LookedBack {
    /// The last results, by fingerprint, oldest first (duplicates each get theirs).
    results: HashMap<u64, VecDeque<(u64, Judged)>>,
    /// Their fingerprints and sequence numbers, oldest first.
    order: VecDeque<(u64, u64)>,
    /// Every looked-back record's fingerprint.
    seen: HashSet<u64>,
    next: u64,
}

impl LookedBack {
    fn remember(&mut self, fingerprint: u64, judged: Judged) {
        if self.seen.len() < RECOGNISED_LOOK_BACK {
            self.seen.insert(fingerprint);
        }
        let sequence = self.next;
        self.next += 1;
        self.results
            .entry(fingerprint)
            .or_default()
            .push_back((sequence, judged));
        self.order.push_back((fingerprint, sequence));
        if self.order.len() > REMEMBERED_LOOK_BACK {
            let (oldest, sequence) = self.order.pop_front().expect("longer than the bound");
            if let Some(queue) = self.results.get_mut(&oldest) {
                if queue.front().is_some_and(|(s, _)| *s == sequence) {
                    queue.pop_front();
                }
                if queue.is_empty() {
                    self.results.remove(&oldest);
                }
            }
        }
    }

    /// What a record read again gave in the look-back: `None` once the consumer reads
    /// past it, which ends the overlap.
    fn replayed(&mut self, fingerprint: u64) -> Option<Judged> {
        if self.seen.is_empty() {
            return None;
        }
        if let Some(queue) = self.results.get_mut(&fingerprint)
            && let Some((_, judged)) = queue.pop_front()
        {
            return Some(judged);
        }
        if self.seen.contains(&fingerprint) {
            return Some(Err((
                "look-back",
                "a record the look-back already learnt from, too far back for its alerts to \
                 be remembered: it is not judged again"
                    .into(),
            )));
        }
        *self = LookedBack::default();
        None
    }
}

impl<R: Rule> Module<R> {
    /// The module for `config`; an invalid prefilter is a rule bug that `init` reports.
    fn new(config: R::Config) -> Result<Self, String> {
        Ok(Module {
            resident: Resident::new(config, MemoryKv::new()),
            prefilter: Prefilter::new(R::info().prefilter)
                .map_err(|e| format!("the rule's prefilter is invalid: {e}"))?,
            looked_back: LookedBack::default(),
        })
    }

    fn judge(&mut self, text: &str, context: &Context) -> Judged {
        match self.resident.process(text, context) {
            Ok(outcome) => Ok(outcome.alerts.iter().map(AlertLine::from).collect()),
            Err(e) => Err((e.kind(), e.to_string())),
        }
    }

    /// The CloudTrail records of a Fluvio record that the rule may find relevant.
    fn candidates<'a>(&self, record: &'a SmartModuleRecord) -> Result<Vec<&'a str>, Judged> {
        let bytes = record.value().as_ref();
        if !self.prefilter.is_candidate(bytes) {
            return Ok(Vec::new());
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| Err(("invalid-utf8", "the record is not UTF-8".to_owned())))?;
        let mut records = cloudtrail::records(text);
        records.retain(|r| self.prefilter.is_candidate(str::as_bytes(r)));
        Ok(records)
    }

    /// One Fluvio record's output records: its alerts, and its failures.
    fn map(&mut self, record: &SmartModuleRecord, out: &mut Vec<Record>) {
        let context = pipeline_context(Some(record.timestamp()));
        let judged = match self.candidates(record) {
            Err(failed) => vec![failed],
            Ok(texts) => texts
                .into_iter()
                .map(|text| {
                    let replayed = self.looked_back.replayed(fingerprint(text));
                    replayed.unwrap_or_else(|| self.judge(text, &context))
                })
                .collect(),
        };
        for result in judged {
            match result {
                Ok(alerts) => out.extend(alerts.iter().map(|alert| {
                    let line = serde_json::to_vec(alert).expect("JSON serializes");
                    keyed(Some(alert.rule_id.clone().into()), line.into())
                })),
                Err((kind, message)) => {
                    let error =
                        json!({"kind": kind, "message": message, "offset": record.offset()});
                    out.push(keyed(Some(ERROR_KEY.into()), error.to_string().into()));
                }
            }
        }
    }

    /// Learns from a record of the look-back: the engine stamps them all 0, so nothing
    /// bounds their event times.
    fn look_back(&mut self, record: &SmartModuleRecord) {
        if let Ok(texts) = self.candidates(record) {
            for text in texts {
                let judged = self.judge(text, &pipeline_context(None));
                self.looked_back.remember(fingerprint(text), judged);
            }
        }
    }
}

fn keyed(key: Option<RecordData>, value: RecordData) -> Record {
    Record::new_key_value(RecordKey::from_option(key), value)
}

fn module<R: Rule>() -> &'static mut Module<R> {
    // SAFETY: each exported call takes it once.
    unsafe {
        MODULE.get(|| {
            Module::<R>::new(R::Config::default()).expect("`init` refuses an invalid prefilter")
        })
    }
}

unsafe extern "C" {
    /// The engine's import: where the call's output is, read once the call returns.
    fn copy_records(ptr: i32, len: i32);
}

/// Hands `output`, encoded, to the engine, and keeps it until the next call.
fn hand_out(output: &impl Encoder, version: i16) -> Result<(), ()> {
    let mut bytes = Vec::new();
    output.encode(&mut bytes, version).map_err(|_| ())?;
    // SAFETY: one exported call at a time; the previous output is no longer read.
    let kept = unsafe { OUTPUT.get(Vec::<u8>::new) };
    *kept = bytes;
    // SAFETY: the engine reads `len` bytes at `ptr` after the call, before the next one.
    unsafe { copy_records(kept.as_ptr() as i32, kept.len() as i32) };
    Ok(())
}

/// The records of an input buffer the engine wrote (and the callee owns).
///
/// # Safety
/// `ptr` is `len` bytes the engine allocated with the module's `alloc`.
unsafe fn records(ptr: *mut u8, len: usize, version: i16) -> Option<Vec<SmartModuleRecord>> {
    // SAFETY: as the caller guarantees.
    let bytes = unsafe { Vec::from_raw_parts(ptr, len, len) };
    let mut input = SmartModuleInput::default();
    input
        .decode(&mut Cursor::new(bytes), version)
        .ok()
        .and(input.try_into_smartmodule_records(version).ok())
}

/// The `init` export: the configuration from the `config` parameter.
///
/// # Safety
/// As the engine calls it: `ptr` is `len` bytes from the module's `alloc`.
pub unsafe fn init<R: Rule>(ptr: *mut u8, len: usize, version: i16) -> i32 {
    // SAFETY: as the caller guarantees.
    let bytes = unsafe { Vec::from_raw_parts(ptr, len, len) };
    let mut input = SmartModuleInitInput::default();
    if input.decode(&mut Cursor::new(bytes), version).is_err() {
        return SmartModuleInitErrorStatus::DecodingInput as i32;
    }
    match configuration::<R>(&input.params).and_then(Module::new) {
        Ok(new) => {
            *module::<R>() = new;
            0
        }
        Err(e) => {
            let output = SmartModuleInitOutput {
                error: SmartModuleInitRuntimeError::new(eyre!(e)),
            };
            match hand_out(&output, version) {
                Ok(()) => SmartModuleInitErrorStatus::InitError as i32,
                Err(()) => SmartModuleInitErrorStatus::EncodingOutput as i32,
            }
        }
    }
}

fn configuration<R: Rule>(params: &SmartModuleExtraParams) -> Result<R::Config, String> {
    match params.get(CONFIG_PARAM) {
        Some(json) => R::Config::from_json(json).map_err(|e| {
            format!("the `{CONFIG_PARAM}` parameter is not a valid configuration: {e}")
        }),
        None => Ok(R::Config::default()),
    }
}

/// The `array_map` export.
///
/// # Safety
/// As the engine calls it: `ptr` is `len` bytes from the module's `alloc`.
pub unsafe fn array_map<R: Rule>(ptr: *mut u8, len: usize, version: i16) -> i32 {
    // SAFETY: as the caller guarantees.
    let Some(records) = (unsafe { records(ptr, len, version) }) else {
        return SmartModuleTransformErrorStatus::DecodingBaseInput as i32;
    };
    let module = module::<R>();
    let mut output = SmartModuleOutput {
        successes: Vec::new(),
        error: None,
    };
    for record in &records {
        module.map(record, &mut output.successes);
    }
    match hand_out(&output, version) {
        Ok(()) => output.successes.len() as i32,
        Err(()) => SmartModuleTransformErrorStatus::EncodingOutput as i32,
    }
}

/// The `look_back` export: the state learns; what each record gave is remembered.
///
/// # Safety
/// As the engine calls it: `ptr` is `len` bytes from the module's `alloc`.
pub unsafe fn look_back<R: Rule>(ptr: *mut u8, len: usize, version: i16) -> i32 {
    // SAFETY: as the caller guarantees.
    let Some(records) = (unsafe { records(ptr, len, version) }) else {
        return SmartModuleLookbackErrorStatus::DecodingBaseInput as i32;
    };
    let module = module::<R>();
    for record in &records {
        module.look_back(record);
    }
    0
}

/// A record's identity, for recognising a looked-back record read again.
fn fingerprint(text: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}
