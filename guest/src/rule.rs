//! One record in, alerts out: the order in which the rule reads state, decides, and
//! writes state back.
//!
//! Every call makes at most three round trips to the host: one batched read of every key
//! the record can touch, (rarely) one page of the sweep, and one batched write. Nothing
//! is written until every check has passed, so a bad record changes no state.

use crate::alert::{Alert, suppressed};
use crate::baseline::{self, Feature, History};
use crate::catalog;
use crate::config::Config;
use crate::error::RuleError;
use crate::multiple_sessions::{self, RecentTargets};
use crate::record::{SessionStart, is_start_session};
use crate::state::{self, KeyValue, Meta};
use crate::timeline::{self, Bounds, Placement};
use crate::timestamp::Millis;

/// The rule's name; hosts keep its state under this name.
pub const NAME: &str = "aws-ssm-sessions";

/// What the host tells the rule with each record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// The latest event time the host accepts: its clock plus the skew it allows.
    pub not_after: Millis,
}

/// What one record produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// The record is an SSM `StartSession` (allowlisted ones included).
    pub relevant: bool,
    pub alerts: Vec<Alert>,
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
    let mut meta = std::mem::take(&mut loaded.meta);
    let at = session.time;
    let bounds = Bounds {
        not_after: context.not_after,
        max_lateness: config.max_lateness(),
        fresh_after: config.baseline.training_period,
    };
    if timeline::place(at, meta.watermark, &bounds).map_err(RuleError::InvalidTime)?
        == Placement::Afresh
    {
        meta.history_start = None;
    }

    let mut alerts = Vec::new();
    let mut writes = Vec::new();
    if session.succeeded {
        let history = History {
            history_start: meta.history_start,
            last_session: loaded.last_session,
            last_seen: loaded.seen,
        };
        let verdict = baseline::classify(at, &history, &config.baseline);
        let detection = verdict.detection();
        let last_alert = loaded.dedup(detection.id);
        if config.is_enabled(detection.id)
            && !suppressed(last_alert, at, config.dedup_period(detection.id).millis())
        {
            let alert = verdict.alert(&session, &history);
            writes.push((
                state::dedup_key(detection.id, &alert.dedup_key),
                state::encode_time(at),
            ));
            alerts.push(alert);
        }
        meta.history_start.get_or_insert(at);
        writes.push((
            keys.last_session.clone(),
            state::encode_time(max(history.last_session, at)),
        ));
        for (key, seen) in keys.seen.iter().zip(history.last_seen) {
            writes.push((key.clone(), state::encode_time(max(seen, at))));
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
                state::dedup_key(detection.id, &alert.dedup_key),
                state::encode_time(at),
            ));
            alerts.push(alert);
        }
    }
    writes.push((keys.targets, recent.encode()));

    meta.watermark = Some(max(meta.watermark, at));
    // The sweep deletes before the batch below writes, so it never undoes this record.
    if state::sweep_due(&meta) {
        state::sweep_page(kv, &mut meta, config)?;
    }
    meta.next_sweep
        .get_or_insert(at.saturating_add(state::SWEEP_INTERVAL));
    writes.push((state::META.to_owned(), meta.encode()));
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
        let dedup = |v: &baseline::Verdict| state::dedup_key(v.detection().id, &v.dedup_key(s));
        Keys {
            last_session: state::last_session_key(&s.identity),
            seen: Feature::ALL.map(|f| state::seen_key(f.name(), &s.identity, f.value(s))),
            targets: state::targets_key(&s.identity),
            dedup: [
                dedup(&started),
                dedup(&unusual_identity),
                dedup(&unusual_session),
                state::dedup_key(catalog::MULTIPLE_SESSIONS.id, &s.identity),
            ],
        }
    }

    /// In the order [`Loaded::new`] reads them back.
    fn all(&self) -> Vec<String> {
        let mut all = vec![
            state::META.to_owned(),
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
    meta: Meta,
    last_session: Option<Millis>,
    targets: RecentTargets,
    seen: [Option<Millis>; 3],
    dedup: [Option<Millis>; 4],
}

impl Loaded {
    fn new(keys: &Keys, values: &[Option<Vec<u8>>]) -> Result<Loaded, RuleError> {
        let v = |i: usize| values.get(i).and_then(|v| v.as_deref());
        let time = |key: &str, i: usize| state::decode_time(key, v(i));
        let seen = |i: usize| time(&keys.seen[i], 3 + i);
        let dedup = |i: usize| time(&keys.dedup[i], 6 + i);
        Ok(Loaded {
            meta: Meta::decode(v(0))?,
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
