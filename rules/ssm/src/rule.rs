//! One record in, alerts out: the order in which the rule reads state, decides, and
//! writes state back.
//!
//! Every call makes at most three round trips to the host: one batched read of every key
//! the record can touch, (rarely) one page of the sweep, and one batched write. Nothing
//! is written until every check has passed, so a bad record changes no state.

use detect_sdk::alert::suppressed;
use detect_sdk::history::History;
use detect_sdk::kv::{decode_time, encode_time};
use detect_sdk::timeline::Bounds;
use detect_sdk::{Context, KeyValue, Millis, Outcome, Rule, RuleError, RuleInfo};

use crate::baseline::{self, Feature, Prior};
use crate::catalog;
use crate::config::Config;
use crate::keys;
use crate::multiple_sessions::{self, RecentTargets};
use crate::session::{SessionStart, is_start_session};

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

    fn process(
        record: &str,
        config: &Config,
        kv: &mut impl KeyValue,
        context: &Context,
    ) -> Result<Outcome, RuleError> {
        process_event(record, config, kv, context)
    }
}

/// Processes one CloudTrail record (JSON text).
pub fn process_event(
    text: &str,
    config: &Config,
    kv: &mut impl KeyValue,
    context: &Context,
) -> Result<Outcome, RuleError> {
    if !is_start_session(text)? {
        return Ok(Outcome::default());
    }
    let relevant = |alerts| {
        Ok(Outcome {
            relevant: true,
            alerts,
        })
    };
    let session = SessionStart::parse(text)?;
    if config.is_allowlisted(&session.identity) {
        return relevant(Vec::new());
    }
    let keys = Keys::new(&session);
    let values = kv.get_many(&keys.all()).map_err(RuleError::State)?;
    let mut loaded = Loaded::new(&keys, &values)?;
    let mut history = std::mem::take(&mut loaded.history);
    let at = session.time;
    history.admit(
        at,
        &Bounds {
            not_after: context.not_after,
            max_lateness: config.max_lateness(),
            fresh_after: config.baseline.training_period,
        },
    )?;

    let mut alerts = Vec::new();
    let mut writes = Vec::new();
    if session.succeeded {
        let prior = Prior {
            history_start: history.history_start,
            last_session: loaded.last_session,
            last_seen: loaded.seen,
        };
        let verdict = baseline::classify(at, &prior, &config.baseline);
        let detection = verdict.detection();
        let last_alert = loaded.dedup(detection.id);
        if config.is_enabled(detection.id)
            && !suppressed(last_alert, at, config.dedup_period(detection.id).millis())
        {
            let alert = verdict.alert(&session, &prior);
            writes.push((
                keys::dedup_key(detection.id, &alert.dedup_key),
                encode_time(at),
            ));
            alerts.push(alert);
        }
        writes.push((
            keys.last_session.clone(),
            encode_time(max(prior.last_session, at)),
        ));
        for (key, seen) in keys.seen.iter().zip(prior.last_seen) {
            writes.push((key.clone(), encode_time(max(seen, at))));
        }
    }

    let window = config.multiple_sessions.window.millis();
    let mut recent = std::mem::take(&mut loaded.targets);
    recent.record(&session.target, at, window);
    let detection = &catalog::MULTIPLE_SESSIONS;
    if let Some(targets) = multiple_sessions::evaluate(&session, &recent, &config.multiple_sessions)
    {
        let last_alert = loaded.dedup(detection.id);
        let period = config.multiple_sessions.dedup_period.millis();
        if config.is_enabled(detection.id) && !suppressed(last_alert, at, period) {
            let alert = multiple_sessions::alert(&session, targets);
            writes.push((
                keys::dedup_key(detection.id, &alert.dedup_key),
                encode_time(at),
            ));
            alerts.push(alert);
        }
    }
    writes.push((keys.targets, recent.encode()));

    history.observe(at, session.succeeded);
    // The sweep deletes before the batch below writes, so it never undoes this record.
    history.sweep(kv, config)?;
    writes.push((
        detect_sdk::history::HISTORY_KEY.to_owned(),
        history.encode(),
    ));
    kv.set_many(writes).map_err(RuleError::State)?;
    relevant(alerts)
}

fn max(stored: Option<Millis>, at: Millis) -> Millis {
    stored.map_or(at, |t| t.max(at))
}

/// Every key one record can read or write.
struct Keys {
    last_session: String,
    seen: [String; 3],
    targets: String,
    /// One per detection, in `catalog::ALL` order.
    dedup: [String; 4],
}

impl Keys {
    fn new(s: &SessionStart) -> Keys {
        let started = baseline::Verdict::Started;
        let unusual_identity = baseline::Verdict::UnusualIdentity;
        let unusual_session = baseline::Verdict::UnusualSession(Vec::new());
        let dedup = |v: &baseline::Verdict| keys::dedup_key(v.detection().id, &v.dedup_key(s));
        Keys {
            last_session: keys::last_session_key(&s.identity),
            seen: Feature::ALL.map(|f| keys::seen_key(f.name(), &s.identity, f.value(s))),
            targets: keys::targets_key(&s.identity),
            dedup: [
                dedup(&started),
                dedup(&unusual_identity),
                dedup(&unusual_session),
                keys::dedup_key(catalog::MULTIPLE_SESSIONS.id, &s.identity),
            ],
        }
    }

    /// In the order [`Loaded::new`] reads them back.
    fn all(&self) -> Vec<String> {
        let mut all = vec![
            detect_sdk::history::HISTORY_KEY.to_owned(),
            self.last_session.clone(),
            self.targets.clone(),
        ];
        all.extend(self.seen.iter().cloned());
        all.extend(self.dedup.iter().cloned());
        all
    }
}

/// The values of [`Keys::all`], decoded. A value that cannot be decoded is an error.
struct Loaded {
    history: History,
    last_session: Option<Millis>,
    targets: RecentTargets,
    seen: [Option<Millis>; 3],
    dedup: [Option<Millis>; 4],
}

impl Loaded {
    fn new(keys: &Keys, values: &[Option<Vec<u8>>]) -> Result<Loaded, RuleError> {
        let v = |i: usize| values.get(i).and_then(|v| v.as_deref());
        let time = |key: &str, i: usize| decode_time(key, v(i));
        let seen = |i: usize| time(&keys.seen[i], 3 + i);
        let dedup = |i: usize| time(&keys.dedup[i], 6 + i);
        Ok(Loaded {
            history: History::decode(v(0))?,
            last_session: time(&keys.last_session, 1)?,
            targets: RecentTargets::decode(&keys.targets, v(2))?,
            seen: [seen(0)?, seen(1)?, seen(2)?],
            dedup: [dedup(0)?, dedup(1)?, dedup(2)?, dedup(3)?],
        })
    }

    fn dedup(&self, detection_id: &str) -> Option<Millis> {
        let index = catalog::ALL.iter().position(|d| d.id == detection_id)?;
        self.dedup[index]
    }
}
