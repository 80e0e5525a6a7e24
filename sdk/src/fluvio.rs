//! The `fluvio` binding: a rule as a Fluvio SmartModule.
//!
//! * `init` takes the configuration from the `config` parameter (`-e config='{...}'`),
//!   the same JSON as `rule-harness --config`;
//! * `array_map` turns each record (a CloudTrail record, or a `{"Records": [...]}` log
//!   file) into its alerts: one output record per alert, keyed by the detection's id, its
//!   value the alert as a JSON line. A record the rule cannot process gives one record
//!   keyed `rule-error` with what went wrong, rather than stopping the stream;
//! * `look_back` replays records after a restart to rebuild the state. Fluvio looks back
//!   up to the end of the topic, while a consumer resumes from its own offset, so the
//!   first records it then reads may be ones the look-back already learnt from: those give
//!   the alerts they gave in the look-back (an uninterrupted run's), instead of being
//!   judged a second time against state that already holds them.
//!
//! The state lives in the SmartModule instance's memory: one per partition (and per
//! consumer), which is what activation and expiry are then measured over.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use fluvio_smartmodule::dataplane::smartmodule::SmartModuleExtraParams;
use fluvio_smartmodule::{RecordData, Result, SmartModuleRecord, eyre};
use serde_json::json;

use crate::binding::{ProcessError, Resident, Slot, not_after};
use crate::cloudtrail;
use crate::kv::MemoryKv;
use crate::prefilter::Prefilter;
use crate::{AlertLine, Context, Rule, RuleConfig};

/// The parameter that carries the rule's configuration.
pub const CONFIG_PARAM: &str = "config";

/// The key of the records that report a failed record.
pub const ERROR_KEY: &str = "rule-error";

/// How far past the host's clock an event time may be.
pub const MAX_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(3600);

/// How many of the last looked-back records are remembered, for a consumer that resumes
/// before the end of the look-back.
pub const REMEMBERED_LOOK_BACK: usize = 100_000;

static MODULE: Slot = Slot::new();

/// What one CloudTrail record gave: its alerts, or why it was refused.
type Judged = std::result::Result<Vec<AlertLine>, (&'static str, String)>;

/// What the module keeps between calls.
struct Module<R: Rule> {
    resident: Resident<R>,
    /// Records it rules out cannot concern the rule: they are skipped unread.
    prefilter: Prefilter,
    /// The last looked-back records, by fingerprint, with what they gave; kept until
    /// `array_map` reads a record that is not among them.
    looked_back: HashMap<u64, Judged>,
    /// Their fingerprints, oldest first.
    order: VecDeque<u64>,
}

impl<R: Rule> Module<R> {
    fn new(config: R::Config) -> Self {
        Module {
            resident: Resident::new(config, MemoryKv::new()),
            prefilter: Prefilter::new(R::info().prefilter)
                .unwrap_or_else(|_| Prefilter::everything()),
            looked_back: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn judge(&mut self, text: &str) -> Judged {
        let context = Context {
            not_after: not_after(MAX_CLOCK_SKEW),
        };
        match self.resident.process(text, &context, None) {
            Ok(outcome) => Ok(outcome.alerts.iter().map(AlertLine::from).collect()),
            Err(ProcessError::Rule(e)) => Err((e.kind(), e.to_string())),
            Err(ProcessError::Durable(..)) => unreachable!("nothing is kept on disk"),
        }
    }

    fn remember(&mut self, text: &str, judged: Judged) {
        let fingerprint = fingerprint(text);
        self.looked_back.insert(fingerprint, judged);
        self.order.push_back(fingerprint);
        if self.order.len() > REMEMBERED_LOOK_BACK {
            let oldest = self.order.pop_front().expect("longer than the bound");
            self.looked_back.remove(&oldest);
        }
    }

    /// What a record gave in the look-back, if the consumer is reading it again. The
    /// records read again come first, so the first other record ends the overlap.
    fn replayed(&mut self, text: &str) -> Option<Judged> {
        if self.order.is_empty() {
            return None;
        }
        let judged = self.looked_back.remove(&fingerprint(text));
        if judged.is_none() {
            self.looked_back = HashMap::new();
            self.order = VecDeque::new();
        }
        judged
    }
}

fn module<R: Rule>() -> &'static mut Module<R> {
    // SAFETY: each exported call takes it once.
    let module = unsafe { MODULE.get(|| Module::<R>::new(R::Config::default())) };
    // A trap may have cut the last call short; its writes are then discarded, and if it was
    // applying them, nothing can be reloaded: the state is kept as it is.
    module.resident.recover();
    module
}

/// A record's identity, for recognising a looked-back record read again.
fn fingerprint(text: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// `#[smartmodule(init)]`.
pub fn init<R: Rule>(params: SmartModuleExtraParams) -> Result<()> {
    let config = match params.get(CONFIG_PARAM) {
        Some(json) => R::Config::from_json(json).map_err(|e| {
            eyre!("the `{CONFIG_PARAM}` parameter is not a valid configuration: {e}")
        })?,
        None => R::Config::default(),
    };
    *module::<R>() = Module::new(config);
    Ok(())
}

/// `#[smartmodule(array_map)]`.
pub fn array_map<R: Rule>(
    record: &SmartModuleRecord,
) -> Result<Vec<(Option<RecordData>, RecordData)>> {
    let module = module::<R>();
    let mut out = Vec::new();
    let mut emit = |judged: Judged| match judged {
        Ok(alerts) => out.extend(alerts.iter().map(|alert| {
            let line = serde_json::to_vec(alert).expect("JSON serializes");
            (
                Some(RecordData::from(alert.rule_id.clone())),
                RecordData::from(line),
            )
        })),
        Err((kind, message)) => {
            let error = json!({"kind": kind, "message": message, "offset": record.offset()});
            out.push((
                Some(RecordData::from(ERROR_KEY)),
                RecordData::from(error.to_string()),
            ));
        }
    };
    if !module.prefilter.is_candidate(record.value().as_ref()) {
        return Ok(out);
    }
    match std::str::from_utf8(record.value().as_ref()) {
        Err(_) => emit(Err(("invalid-utf8", "the record is not UTF-8".into()))),
        Ok(text) => {
            let mut candidates = cloudtrail::records(text);
            candidates.retain(|text| module.prefilter.is_candidate(text.as_bytes()));
            for text in candidates {
                let judged = module.replayed(text);
                emit(judged.unwrap_or_else(|| module.judge(text)));
            }
        }
    }
    Ok(out)
}

/// `#[smartmodule(look_back)]`: the state learns; what each record gave is remembered
/// for a consumer that reads it again.
pub fn look_back<R: Rule>(record: &SmartModuleRecord) -> Result<()> {
    let module = module::<R>();
    if let Ok(text) = std::str::from_utf8(record.value().as_ref()) {
        let mut candidates = cloudtrail::records(text);
        candidates.retain(|text| module.prefilter.is_candidate(text.as_bytes()));
        for text in candidates {
            let judged = module.judge(text);
            module.remember(text, judged);
        }
    }
    Ok(())
}
