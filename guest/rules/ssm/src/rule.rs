//! One record in, alerts out: the order in which the rule reads state, decides, and
//! writes state back.
//!
//! Every record reads every key it can touch in one batched read, and (rarely) one page of
//! the sweep; the SDK then reads and writes the alerts' dedup entries, and the host gets
//! all of the record's writes in one batch. Nothing is written until every check has
//! passed, so a bad record changes no state.

use detect_sdk::cloudtrail::Record;
use detect_sdk::history::{HISTORY_KEY, History};
use detect_sdk::kv::{decode_time, encode_time};
use detect_sdk::timeline::Bounds;
use detect_sdk::{Alert, Context, KeyValue, Millis, Outcome, Rule, RuleError, RuleInfo};

use crate::baseline::{self, Feature, Prior};
use crate::catalog;
use crate::config::Config;
use crate::keys;
use crate::multiple_sessions::{self, RecentTargets};
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
    let mut judged = Judged::default();
    if !config.is_allowlisted(&session.identity) {
        let keys = Keys::new(&session);
        let values = kv.get_many(&keys.0).map_err(RuleError::State)?;
        let mut loaded = Loaded::new(&keys, &values)?;
        loaded.history.admit(
            session.time,
            &Bounds {
                not_after: context.not_after,
                max_lateness: config.max_lateness(),
                fresh_after: config.baseline.training_period,
            },
        )?;
        if session.succeeded {
            judged.baseline(&session, &keys, &loaded, config);
        }
        judged.multiple_sessions(&session, &keys, &mut loaded, config);
        loaded.history.observe(session.time, session.succeeded);
        // The sweep deletes before the batch below writes, so it never undoes this record.
        loaded.history.sweep(kv, config)?;
        judged.write(keys.history(), loaded.history.encode());
        kv.set_many(judged.writes).map_err(RuleError::State)?;
    }
    Ok(Outcome::relevant(judged.alerts))
}

/// What one record raises and writes.
#[derive(Default)]
struct Judged {
    alerts: Vec<Alert>,
    writes: Vec<(String, Vec<u8>)>,
}

impl Judged {
    fn write(&mut self, key: &str, value: Vec<u8>) {
        self.writes.push((key.to_owned(), value));
    }

    /// Raises `alert` unless its detection is disabled.
    fn raise(&mut self, alert: Alert, config: &Config) {
        if config.is_enabled(alert.detection.id) {
            self.alerts.push(alert);
        }
    }

    /// The Cortex family, for a successful start: its verdict, and what it learns.
    fn baseline(&mut self, session: &SessionStart, keys: &Keys, loaded: &Loaded, config: &Config) {
        let at = session.time;
        let prior = Prior {
            history_start: loaded.history.history_start,
            last_session: loaded.last_session,
            last_seen: loaded.seen,
        };
        let verdict = baseline::classify(at, &prior, &config.baseline);
        self.raise(verdict.alert(session, &prior), config);
        self.write(
            keys.last_session(),
            encode_time(max(prior.last_session, at)),
        );
        for (feature, seen) in prior.last_seen.iter().enumerate() {
            self.write(keys.seen(feature), encode_time(max(*seen, at)));
        }
    }

    /// `AWS.SSM.MultipleSessions`, for every start.
    fn multiple_sessions(
        &mut self,
        session: &SessionStart,
        keys: &Keys,
        loaded: &mut Loaded,
        config: &Config,
    ) {
        let window = config.multiple_sessions.window.millis();
        loaded.targets.record(&session.target, session.time, window);
        if let Some(targets) =
            multiple_sessions::evaluate(session, &loaded.targets, &config.multiple_sessions)
        {
            self.raise(multiple_sessions::alert(session, targets), config);
        }
        self.write(keys.targets(), loaded.targets.encode());
    }
}

fn max(stored: Option<Millis>, at: Millis) -> Millis {
    stored.map_or(at, |t| t.max(at))
}

/// Every key one record can read or write, in the order they are read: the history, the
/// identity's last session and recent targets, and the features it used.
struct Keys([String; 6]);

const SEEN: usize = 3;

impl Keys {
    fn new(s: &SessionStart) -> Keys {
        let seen = |f: Feature| keys::seen_key(f, &s.identity, f.value(s));
        Keys([
            HISTORY_KEY.to_owned(),
            keys::last_session_key(&s.identity),
            keys::targets_key(&s.identity),
            seen(Feature::ALL[0]),
            seen(Feature::ALL[1]),
            seen(Feature::ALL[2]),
        ])
    }

    fn history(&self) -> &str {
        &self.0[0]
    }

    fn last_session(&self) -> &str {
        &self.0[1]
    }

    fn targets(&self) -> &str {
        &self.0[2]
    }

    fn seen(&self, feature: usize) -> &str {
        &self.0[SEEN + feature]
    }
}

/// The values of [`Keys`], decoded. A value that cannot be decoded is an error.
struct Loaded {
    history: History,
    last_session: Option<Millis>,
    targets: RecentTargets,
    seen: [Option<Millis>; 3],
}

impl Loaded {
    fn new(keys: &Keys, values: &[Option<Vec<u8>>]) -> Result<Loaded, RuleError> {
        let time = |i: usize| decode_time(&keys.0[i], values[i].as_deref());
        Ok(Loaded {
            history: History::decode(values[0].as_deref())?,
            last_session: time(1)?,
            targets: RecentTargets::decode(keys.targets(), values[2].as_deref())?,
            seen: [time(SEEN)?, time(SEEN + 1)?, time(SEEN + 2)?],
        })
    }
}
