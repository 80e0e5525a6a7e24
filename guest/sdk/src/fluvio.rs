//! The `fluvio` binding: a rule as a Fluvio SmartModule, with exports of its own on
//! `fluvio-smartmodule`'s types (the crate's macros leak every output buffer).
//!
//! * `init` takes the configuration from the `config` parameter (`-e config='{...}'`),
//!   the same JSON as `rule-harness --config`;
//! * `array_map` turns each record (a CloudTrail record, or a `{"Records": [...]}` log
//!   file) into its alerts: one output record per alert, keyed by the detection's id, its
//!   value the alert as a JSON line. The module imports nothing but the engine's
//!   `copy_records`, so no clock: the record's timestamp, as its producer stamped it,
//!   bounds the event times it accepts (up to an hour later); a record stamped 0 or
//!   `NO_TIMESTAMP` (-1) is bounded by the latest stamp seen before it, and refused
//!   (`invalid-time`) when there was none. A record the rule cannot process gives one
//!   record keyed `rule-error` with what went wrong, rather than stopping the stream. The
//!   engine reads the output once the call has returned; the next call frees it;
//! * `look_back` hands over records after a restart, to rebuild the state. The engine
//!   drops their stamps (its input has base timestamp 0, and each record keeps only its
//!   delta from its own batch's stamp), so nothing could bound their event times then: one
//!   dated 2099 would move the rule's clock there, and every real record after it would be
//!   too late. So they wait for the first record read live, whose stamp bounds them: they
//!   were written before it. Fluvio looks back up to the end of the topic, while a
//!   consumer resumes from its own offset, so the first records it then reads may be
//!   among those waiting: such a record is judged live, with its own stamp, once those
//!   before it have been, as in an uninterrupted run. A consumer that resumes before the
//!   look-back's first record bounds all of it by the stamp of an older record (most of
//!   it is then refused, unseen), and reads it live after.
//!
//! The state lives in the SmartModule instance's memory: one per partition (and per
//! consumer), which is what activation and expiry are then measured over. A trap ends the
//! stream; Fluvio then builds a new instance, which looks back.

use std::collections::VecDeque;
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

use crate::alert::{AlertFormat, FORMAT_KEY, Templates};
use crate::binding::{Resident, Slot, Stamps};
use crate::kv::MemoryKv;
use crate::prefilter::Prefilter;
use crate::{Configured, Context, Rule};

/// The parameter that carries the rule's configuration.
pub const CONFIG_PARAM: &str = "config";

/// The key of the records that report a failed record.
pub const ERROR_KEY: &str = "rule-error";

static MODULE: Slot = Slot::new();

/// The last output handed to the engine, freed by the next call.
static OUTPUT: Slot = Slot::new();

/// What one CloudTrail record gave: its alerts (each its detection's id and its line), or
/// why it was refused.
type Judged = Result<Vec<(&'static str, String)>, (&'static str, String)>;

/// What the module keeps between calls.
struct Module<R: Rule> {
    resident: Resident<R>,
    /// Records it rules out cannot concern the rule: they are skipped unread.
    prefilter: Prefilter,
    /// The lines of the rule's alerts, written once.
    templates: Templates,
    stamps: Stamps,
    waiting: Waiting,
}

/// The looked-back records not judged yet, oldest first, with their fingerprints.
#[derive(Default)]
struct Waiting(VecDeque<(u64, String)>);

impl Waiting {
    /// Takes the records written before the live record `fingerprint`: those before it,
    /// if it is among them (it is then dropped: it is judged live), else all of them (the
    /// consumer reads past the look-back). A record written twice is matched by its first
    /// copy, the one a consumer reads first.
    fn before(&mut self, fingerprint: u64) -> VecDeque<(u64, String)> {
        let Some(at) = self.0.iter().position(|(f, _)| *f == fingerprint) else {
            return std::mem::take(&mut self.0);
        };
        let rest = self.0.split_off(at + 1);
        let mut due = std::mem::replace(&mut self.0, rest);
        due.pop_back();
        due
    }
}

impl<R: Rule> Module<R> {
    /// The module for `config`; an invalid prefilter is a rule bug that `init` reports.
    fn new((config, format): (Configured<R>, AlertFormat)) -> Result<Self, String> {
        Ok(Module {
            resident: Resident::new(config, MemoryKv::new()),
            prefilter: Prefilter::new(R::info().prefilter)
                .map_err(|e| format!("the rule's prefilter is invalid: {e}"))?,
            templates: Templates::of::<R>(format),
            stamps: Stamps::new(),
            waiting: Waiting::default(),
        })
    }

    fn judge(&mut self, text: &str, context: &Context) -> Judged {
        match self.resident.process(text, context) {
            Ok(outcome) => Ok((outcome.alerts.iter())
                .map(|alert| {
                    let mut line = String::new();
                    self.templates.write(&mut line, alert);
                    (alert.detection.id, line)
                })
                .collect()),
            Err(e) => Err((e.kind(), e.to_string())),
        }
    }

    /// Judges a record read live, bounded by `context`, after the looked-back records
    /// written before it. Theirs are the alerts given before the restart: dropped.
    fn judge_live(&mut self, text: &str, context: &Context) -> Judged {
        if !self.waiting.0.is_empty() {
            for (_, before) in self.waiting.before(fingerprint(text)) {
                let _ = self.judge(&before, context);
            }
        }
        self.judge(text, context)
    }

    /// The CloudTrail records of a Fluvio record that the rule may find relevant.
    fn candidates<'a>(&self, record: &'a SmartModuleRecord) -> Result<Vec<&'a str>, Judged> {
        let bytes = record.value().as_ref();
        if !self.prefilter.is_candidate(bytes) {
            return Ok(Vec::new());
        }
        let (_, records) = (self.prefilter.candidates(bytes))
            .map_err(|_| Err(("invalid-utf8", "the record is not UTF-8".to_owned())))?;
        Ok(records)
    }

    /// One Fluvio record's output records: its alerts, and its failures.
    fn map(&mut self, record: &SmartModuleRecord, out: &mut Vec<Record>) {
        let context = self.stamps.context(record.timestamp());
        let judged = match (self.candidates(record), context) {
            (Err(failed), _) => vec![failed],
            (Ok(texts), Ok(context)) => texts
                .into_iter()
                .map(|text| self.judge_live(text, &context))
                .collect(),
            // Refused: the looked-back records wait on, for a record that is bounded.
            (Ok(texts), Err(e)) => texts
                .iter()
                .map(|_| Err((e.kind(), e.to_string())))
                .collect(),
        };
        for result in judged {
            match result {
                Ok(alerts) => out.extend(
                    (alerts.into_iter()).map(|(id, line)| keyed(Some(id.into()), line.into())),
                ),
                Err((kind, message)) => {
                    let error =
                        json!({"kind": kind, "message": message, "offset": record.offset()});
                    out.push(keyed(Some(ERROR_KEY.into()), error.to_string().into()));
                }
            }
        }
    }

    /// Keeps a record of the look-back until a record read live bounds it.
    fn look_back(&mut self, record: &SmartModuleRecord) {
        if let Ok(texts) = self.candidates(record) {
            let texts = texts.into_iter().map(|t| (fingerprint(t), t.to_owned()));
            self.waiting.0.extend(texts);
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
            Module::<R>::new((Configured::defaults(), AlertFormat::default()))
                .expect("`init` refuses an invalid prefilter")
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

fn configuration<R: Rule>(
    params: &SmartModuleExtraParams,
) -> Result<(Configured<R>, AlertFormat), String> {
    let config = match params.get(CONFIG_PARAM) {
        Some(json) => Configured::from_json(json).map_err(|e| {
            format!("the `{CONFIG_PARAM}` parameter is not a valid configuration: {e}")
        })?,
        None => Configured::defaults(),
    };
    let format = match params.get(FORMAT_KEY) {
        Some(name) => name
            .parse()
            .map_err(|e| format!("the `{FORMAT_KEY}` parameter: {e}"))?,
        None => AlertFormat::default(),
    };
    Ok((config, format))
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

/// The `look_back` export: the records wait for the first one read live.
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
