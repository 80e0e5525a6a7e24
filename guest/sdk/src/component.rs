//! The `component` binding: the `detect:rule` world's exports over a [`Rule`], and
//! [`KeyValue`] over the host's `wasi:keyvalue` bucket. Nothing here decides anything.
//!
//! The host keeps the state; the rule keeps only its configuration, which the host
//! passes again after every instantiation.

use std::marker::PhantomData;

use crate::binding::Slot;
use crate::catalog::{Mitre, Severity};
use crate::config::{Configured, Period};
use crate::kv::KeyValue;
use crate::{Context, Rule, RuleConfig, RuleError};

/// The bindings of the `detect:rule` world, generated from `wit/`.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "rule",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "__export_rule_world",
        default_bindings_module: "detect_sdk::component::bindings",
    });
}

use bindings::exports::detect::rule::detector as wit;
use bindings::wasi::keyvalue::{batch, store};

/// What the instance keeps between calls: the configuration in force, and the bucket,
/// opened on first use and held for the instance's life.
struct Instance<R: Rule> {
    config: Configured<R>,
    bucket: Option<Bucket>,
}

static INSTANCE: Slot = Slot::new();

/// The bucket a rule keeps its state in.
const BUCKET: &str = "default";

/// The world's exports for rule `R`; [`export_rule!`](crate::export_rule) names it.
pub struct Component<R>(PhantomData<R>);

fn instance<R: Rule>() -> &'static mut Instance<R> {
    // SAFETY: one exported call at a time, and each takes the reference once.
    unsafe {
        INSTANCE.get(|| Instance {
            config: Configured::defaults(),
            bucket: None,
        })
    }
}

impl<R: Rule> wit::Guest for Component<R> {
    fn describe() -> wit::RuleInfo {
        let info = R::info();
        let config = &instance::<R>().config;
        wit::RuleInfo {
            name: info.name.into(),
            version: info.version.into(),
            description: info.description.into(),
            detections: (info.detections.iter().enumerate())
                .map(|(place, d)| wit::Detection {
                    id: d.id.into(),
                    name: d.name.into(),
                    severity: severity(d.severity),
                    mitre: mitre(d.mitre),
                    description: d.description.into(),
                    runbook: d.runbook.into(),
                    reference: d.reference.into(),
                    dedup_period_seconds: Period(config.dedup_period(place)).seconds(),
                    tags: d.tags.iter().map(|t| t.to_string()).collect(),
                })
                .collect(),
            config: config.config().to_json(),
            prefilter: info
                .prefilter
                .iter()
                .map(|group| group.iter().map(|s| s.to_string()).collect())
                .collect(),
        }
    }

    fn configure(json: String) -> Result<(), wit::RuleError> {
        let parsed =
            Configured::from_json(&json).map_err(|e| error(RuleError::InvalidConfig(e)))?;
        instance::<R>().config = parsed;
        Ok(())
    }

    fn process_event(
        event: String,
        context: wit::CallContext,
    ) -> Result<wit::Outcome, wit::RuleError> {
        let Instance { config, bucket } = instance::<R>();
        let bucket = open(bucket).map_err(error)?;
        process::<R>(&event, config, bucket, &context)
    }

    fn process_batch(
        events: Vec<String>,
        context: wit::CallContext,
    ) -> Vec<Result<wit::Outcome, wit::RuleError>> {
        let Instance { config, bucket } = instance::<R>();
        match open(bucket) {
            Ok(bucket) => events
                .iter()
                .map(|event| process::<R>(event, config, bucket, &context))
                .collect(),
            Err(e) => events.iter().map(|_| Err(error(e.clone()))).collect(),
        }
    }
}

/// The instance's bucket, opened on first use.
fn open(bucket: &mut Option<Bucket>) -> Result<&mut Bucket, RuleError> {
    if bucket.is_none() {
        let opened = store::open(BUCKET).map_err(|e| RuleError::State(kv_error(e)))?;
        *bucket = Some(Bucket(opened));
    }
    Ok(bucket.as_mut().expect("opened above"))
}

/// One record: its reads go to the host as they come, its writes in one batch at its
/// end, and only if it succeeded ([`Rule::process`]).
fn process<R: Rule>(
    event: &str,
    config: &Configured<R>,
    bucket: &mut Bucket,
    context: &wit::CallContext,
) -> Result<wit::Outcome, wit::RuleError> {
    let context = Context {
        not_after: context.not_after,
    };
    let outcome = R::process(event, config, bucket, &context).map_err(error)?;
    let alerts = outcome
        .alerts
        .into_iter()
        .map(|a| wit::Alert {
            rule_id: a.detection.id.into(),
            title: a.title,
            event_time: a.event_time,
            dedup_key: a.dedup_key,
            context: a.context.into_string(),
            event_id: a.event_id,
        })
        .collect();
    Ok(wit::Outcome {
        relevant: outcome.relevant,
        alerts,
    })
}

fn severity(s: Severity) -> wit::Severity {
    match s {
        Severity::Info => wit::Severity::Info,
        Severity::Low => wit::Severity::Low,
        Severity::Medium => wit::Severity::Medium,
        Severity::High => wit::Severity::High,
        Severity::Critical => wit::Severity::Critical,
    }
}

fn mitre(mappings: &[Mitre]) -> Vec<wit::Mitre> {
    mappings
        .iter()
        .map(|m| wit::Mitre {
            tactic_id: m.tactic_id.into(),
            tactic: m.tactic.into(),
            technique_id: m.technique_id.into(),
            technique: m.technique.into(),
        })
        .collect()
}

fn error(e: RuleError) -> wit::RuleError {
    match e {
        RuleError::InvalidJson(m) => wit::RuleError::InvalidJson(m),
        RuleError::NotAnObject(m) => wit::RuleError::NotAnObject(m),
        RuleError::InvalidField { field, message } => {
            wit::RuleError::InvalidField(wit::FieldError { field, message })
        }
        RuleError::InvalidTime(m) => wit::RuleError::InvalidTime(m),
        RuleError::InvalidConfig(m) => wit::RuleError::InvalidConfig(m),
        RuleError::State(m) => wit::RuleError::State(m),
    }
}

fn kv_error(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => format!("the host has no bucket `{BUCKET}`"),
        store::Error::AccessDenied => format!("access to bucket `{BUCKET}` denied"),
        store::Error::Other(message) => message,
    }
}

/// The host's bucket as the rule's [`KeyValue`].
struct Bucket(store::Bucket);

/// Reads of this many keys or fewer are single `get`s.
const FEW_KEYS: usize = 4;

impl KeyValue for Bucket {
    fn get_many(&mut self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, String> {
        // The batch's answer repeats every key found, each copied into the rule's memory
        // by a call of its own: for a few keys, a `get` each costs less.
        if keys.len() <= FEW_KEYS {
            return keys
                .iter()
                .map(|k| self.0.get(k).map_err(kv_error))
                .collect();
        }
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let values = batch::get_many(&self.0, &keys).map_err(kv_error)?;
        Ok(values
            .into_iter()
            .map(|v| v.map(|(_, value)| value))
            .collect())
    }

    fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        batch::set_many(&self.0, &entries).map_err(kv_error)
    }

    fn delete_many(&mut self, keys: Vec<String>) -> Result<(), String> {
        batch::delete_many(&self.0, &keys).map_err(kv_error)
    }

    fn list_keys(&mut self, cursor: Option<u64>) -> Result<(Vec<String>, Option<u64>), String> {
        let page = self.0.list_keys(cursor).map_err(kv_error)?;
        Ok((page.keys, page.cursor))
    }
}
