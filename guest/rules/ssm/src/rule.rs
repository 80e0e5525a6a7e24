//! One record in, alerts out: the order in which the rule reads state, decides, and
//! writes state back.
//!
//! A session start reads two keys in one batch: the stream's history and all the rule
//! knows of the identity, dedup marks included ([`keys`]); while a state of the previous
//! format is upgraded, a second batch reads what that format kept ([`legacy`]); once per
//! sweep interval, a page of the sweep. The rule hands the identity's value back with its
//! alerts; the SDK's dedup gate adds their marks to it, and the host gets all of the
//! record's writes in one batch. Nothing is written until every check has passed, so a bad
//! record changes no state.

use detect_sdk::cloudtrail::Record;
use detect_sdk::entity::Entity;
use detect_sdk::history::{HISTORY_KEY, History};
use detect_sdk::timeline::Bounds;
use detect_sdk::{Alert, Context, KeyValue, Outcome, Rule, RuleError, RuleInfo};

use crate::baseline::{self, Feature, Prior};
use crate::catalog;
use crate::config::Config;
use crate::identity::{FeatureValue, Known};
use crate::keys;
use crate::legacy;
use crate::multiple_sessions;
use crate::session::{EVENT_NAME, EVENT_SOURCE, SessionStart};

/// The rule's name; hosts keep its state under this name.
pub const NAME: &str = "aws-ssm-sessions";

/// Every `StartSession` record names the event and its service.
pub const PREFILTER: &[&[&str]] = &[&["\"StartSession\""], &["\"ssm.amazonaws.com\""]];

/// The rule.
pub struct SsmSessions;

impl Rule for SsmSessions {
    type Config = Config;

    fn info() -> RuleInfo {
        RuleInfo {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            description: "AWS Systems Manager session detections over CloudTrail: every session \
                start, unusual identities, unusual sessions, and multiple sessions within an hour.",
            detections: &catalog::ALL,
            prefilter: PREFILTER,
        }
    }

    fn detect(
        record: &str,
        config: &Config,
        kv: &mut impl KeyValue,
        context: &Context,
    ) -> Result<Outcome, RuleError> {
        detect_sessions(record, config, kv, context)
    }
}

/// What one CloudTrail record (JSON text) raises, before the SDK's dedup.
fn detect_sessions(
    text: &str,
    config: &Config,
    kv: &mut impl KeyValue,
    context: &Context,
) -> Result<Outcome, RuleError> {
    let record = Record::parse(text)?;
    if !record.is(EVENT_SOURCE, EVENT_NAME)? {
        return Ok(Outcome::default());
    }
    let session = SessionStart::read(record)?;
    if config.is_allowlisted(&session.identity) {
        return Ok(Outcome::relevant(Vec::new()));
    }
    let key = keys::identity_key(&session.identity);
    let mut state = State::read(kv, key, config)?;
    state.history.admit(
        session.time,
        &Bounds {
            not_after: context.not_after,
            max_lateness: config.max_lateness(),
            fresh_after: config.baseline.training_period,
        },
    )?;
    let folded = match state.history.reads_legacy() {
        true => legacy::fold(&session, kv, config, &mut state)?,
        false => Vec::new(),
    };
    let alerts = judge(&session, &mut state, config);
    state.history.observe(session.time, session.succeeded);
    // The sweep deletes before this record writes, so it never undoes this record.
    state.history.sweep(kv, config)?;
    if !folded.is_empty() {
        kv.delete_many(folded).map_err(RuleError::State)?;
    }
    let (key, entity) = state.write(kv, config)?;
    Ok(Outcome::relevant(alerts).writing(key, entity))
}

/// The alerts of one session start, and what the identity's state learns from it.
fn judge(session: &SessionStart, state: &mut State, config: &Config) -> Vec<Alert> {
    let mut alerts = Vec::new();
    let known = &mut state.known;
    if session.succeeded {
        let at = session.time;
        let values = Feature::ALL.map(|f| FeatureValue::new(f, f.value(session)));
        let prior = Prior {
            history_start: state.history.history_start,
            last_session: known.last_session,
            last_seen: values.map(|value| known.last_seen(value)),
        };
        let verdict = baseline::classify(at, &prior, &config.baseline);
        alerts.push(verdict.alert(session, &prior));
        known.last_session = Some(prior.last_session.map_or(at, |t| t.max(at)));
        for value in values {
            known.see(value, at);
        }
    }
    let window = config.multiple_sessions.window.millis();
    known.targets.record(&session.target, session.time, window);
    if let Some(targets) =
        multiple_sessions::evaluate(session, &known.targets, &config.multiple_sessions)
    {
        alerts.push(multiple_sessions::alert(session, targets));
    }
    alerts.retain(|a| config.is_enabled(a.detection.id));
    for alert in &mut alerts {
        alert.dedup_in = Some(state.key.clone());
    }
    alerts
}

/// What one session start reads and writes: the stream's history, and the identity's
/// value (its dedup marks, and what the rule knows of it) under `key`.
pub(crate) struct State {
    pub history: History,
    pub key: String,
    pub entity: Entity,
    pub known: Known,
}

impl State {
    /// Reads both in one batch. A value that cannot be decoded is an error.
    pub(crate) fn read(
        kv: &mut impl KeyValue,
        key: String,
        config: &Config,
    ) -> Result<State, RuleError> {
        let values = kv
            .get_many(&[HISTORY_KEY, &key])
            .map_err(RuleError::State)?;
        let history = History::decode(values[0].as_deref(), config)?;
        let entity = Entity::decode(&key, values[1].as_deref())?;
        let known = Known::decode(&key, &entity.facts)?;
        Ok(State {
            history,
            key,
            entity,
            known,
        })
    }

    /// Writes the history, and gives back the identity's value, without what no later
    /// record can use, for the SDK to add the record's dedup marks to and write.
    fn write(
        mut self,
        kv: &mut impl KeyValue,
        config: &Config,
    ) -> Result<(String, Entity), RuleError> {
        if let Some(now) = self.history.watermark {
            self.known.prune(now, config);
            self.entity.marks.forget_before(now);
        }
        self.entity.facts = self.known.encode();
        let history = vec![(HISTORY_KEY.to_owned(), self.history.encode())];
        kv.set_many(history).map_err(RuleError::State)?;
        Ok((self.key, self.entity))
    }
}
