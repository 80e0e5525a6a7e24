//! The `fluvio` binding: a rule as a Fluvio SmartModule.
//!
//! * `init` takes the configuration from the `config` parameter (`-e config='{...}'`),
//!   the same JSON as `rule-harness --config`;
//! * `array_map` turns each record (a CloudTrail record, or a `{"Records": [...]}` log
//!   file) into its alerts: one output record per alert, keyed by the detection's id, its
//!   value the alert as a JSON line. A record the rule cannot process gives one record
//!   keyed `rule-error` with what went wrong, rather than stopping the stream;
//! * `look_back` replays records after a restart to rebuild the state, raising nothing.
//!
//! The state lives in the SmartModule instance's memory: one per partition (and per
//! consumer), which is what activation and expiry are then measured over.

use fluvio_smartmodule::dataplane::smartmodule::SmartModuleExtraParams;
use fluvio_smartmodule::{RecordData, Result, SmartModuleRecord, eyre};
use serde_json::json;

use crate::binding::{ProcessError, Resident, Slot, not_after};
use crate::cloudtrail;
use crate::kv::MemoryKv;
use crate::{AlertLine, Context, Rule, RuleConfig};

/// The parameter that carries the rule's configuration.
pub const CONFIG_PARAM: &str = "config";

/// The key of the records that report a failed record.
pub const ERROR_KEY: &str = "rule-error";

/// How far past the host's clock an event time may be.
pub const MAX_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(3600);

static MODULE: Slot = Slot::new();

fn resident<R: Rule>() -> &'static mut Resident<R> {
    // SAFETY: each exported call takes it once.
    let resident =
        unsafe { MODULE.get(|| Resident::<R>::new(R::Config::default(), MemoryKv::new())) };
    // A trap may have cut the last call short; its writes are then discarded, and if it was
    // applying them, nothing can be reloaded: the state is kept as it is.
    resident.recover();
    resident
}

/// `#[smartmodule(init)]`.
pub fn init<R: Rule>(params: SmartModuleExtraParams) -> Result<()> {
    let config = match params.get(CONFIG_PARAM) {
        Some(json) => R::Config::from_json(json).map_err(|e| {
            eyre!("the `{CONFIG_PARAM}` parameter is not a valid configuration: {e}")
        })?,
        None => R::Config::default(),
    };
    *resident::<R>() = Resident::new(config, MemoryKv::new());
    Ok(())
}

/// `#[smartmodule(array_map)]`.
pub fn array_map<R: Rule>(
    record: &SmartModuleRecord,
) -> Result<Vec<(Option<RecordData>, RecordData)>> {
    let mut out = Vec::new();
    each::<R>(record, |result| match result {
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
    });
    Ok(out)
}

/// `#[smartmodule(look_back)]`: the state learns, nothing is raised.
pub fn look_back<R: Rule>(record: &SmartModuleRecord) -> Result<()> {
    each::<R>(record, drop);
    Ok(())
}

/// Runs the rule over each CloudTrail record in `record`.
fn each<R: Rule>(
    record: &SmartModuleRecord,
    mut out: impl FnMut(std::result::Result<Vec<AlertLine>, (&'static str, String)>),
) {
    let resident = resident::<R>();
    let Ok(text) = std::str::from_utf8(record.value().as_ref()) else {
        return out(Err(("invalid-utf8", "the record is not UTF-8".into())));
    };
    let context = Context {
        not_after: not_after(MAX_CLOCK_SKEW),
    };
    for text in cloudtrail::records(text) {
        match resident.process(text, &context, None) {
            Ok(outcome) => out(Ok(outcome.alerts.iter().map(AlertLine::from).collect())),
            Err(ProcessError::Rule(e)) => out(Err((e.kind(), e.to_string()))),
            Err(ProcessError::Durable(..)) => unreachable!("nothing is kept on disk"),
        }
    }
}
