//! What a rule knows of the stream as a whole, and how its state stays bounded.
//!
//! [`History`] is stored under one key ([`HISTORY_KEY`]): where the rule's history
//! starts, its watermark (the latest event time judged: the rule's only "now"), and the
//! sweep. Records enter through [`History::admit`], which applies the event-time bounds of
//! [`crate::timeline`]. Once per sweep interval of event time (a day, unless the
//! rule's [`Retention`] says otherwise) a sweep walks the store, one page per record, and
//! deletes every entry no record at or after the watermark can use, as the rule's
//! [`Retention`] says. A sweep reads every entry, so its interval trades state held for
//! work done: an entry outlives its use by up to one interval.

use crate::error::RuleError;
use crate::kv::KeyValue;
use crate::time::{DAY, Millis};
use crate::timeline::{self, Bounds, Placement};

/// The key [`History`] is stored under.
pub const HISTORY_KEY: &str = "meta";

/// The format of the state the SDK's rules write: [`History`], [`hashed_key`]s and the
/// values under them. Stored first in the history, so that a state of another format is
/// refused before anything of it is read. 1 was the JSON state of the rules built for
/// `detect:rule` before 0.3.0; 2 kept each fact under a key of its own, and is upgraded
/// ([`History::legacy_until`]).
///
/// [`hashed_key`]: crate::kv::hashed_key
pub const STATE_FORMAT: u8 = 3;

/// The format before [`STATE_FORMAT`], which a rule reads and upgrades.
pub const LEGACY_FORMAT: u8 = 2;

/// Why a stored history cannot be read by this version.
fn other_format(bytes: &[u8]) -> String {
    let written = match bytes.first() {
        Some(b'{') => "format 1, by a rule built for detect:rule before 0.3.0,".to_owned(),
        Some(&n) if n > STATE_FORMAT => format!("format {n}, by a newer rule,"),
        _ => "an earlier development format".to_owned(),
    };
    format!(
        "`{HISTORY_KEY}` says the state was written in {written} and this rule reads only \
         formats {LEGACY_FORMAT} and {STATE_FORMAT}: \
         keep running the rule that wrote it, or move the state aside to start learning \
         again (baselines take the training period to rebuild)"
    )
}

/// How often (in event time) a sweep of the whole store starts, unless the rule says.
pub const SWEEP_INTERVAL: Millis = DAY;

/// Facts about the whole stream.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct History {
    /// The first record that started the rule's history since it (re)started, in arrival
    /// order. A late record does not move it back, so a forged old record cannot shorten
    /// a rule's activation period.
    pub history_start: Option<Millis>,
    /// The latest event time judged: "now" for deciding what state has expired.
    pub watermark: Option<Millis>,
    /// When the next sweep starts.
    pub next_sweep: Option<Millis>,
    /// Where a sweep under way goes on.
    pub sweep_cursor: Option<u64>,
    /// Until when entries of the [`LEGACY_FORMAT`] may still be of use: set when a state
    /// of that format is first read (its watermark plus the longest retention), cleared
    /// once the watermark passes it. Until then a rule reads, beside its own keys, the
    /// keys that format kept the same facts under, and folds them in.
    pub legacy_until: Option<Millis>,
}

impl History {
    /// The history as stored (none yet: the default). A history of another state format
    /// is an error that says what to do: the rest of the state is of that format too. One
    /// of the [`LEGACY_FORMAT`] is upgraded: what it kept stays of use for `retention`'s
    /// longest period.
    pub fn decode(bytes: Option<&[u8]>, retention: &impl Retention) -> Result<History, RuleError> {
        let Some(bytes) = bytes else {
            return Ok(History::default());
        };
        let Some((&[format, present], fields)) = bytes.split_first_chunk::<2>() else {
            return Err(RuleError::damaged(HISTORY_KEY, "too short"));
        };
        // The earlier binary history had no format byte and 33 bytes.
        let fields_of = match format {
            _ if bytes.len() == 33 => return Err(RuleError::State(other_format(bytes))),
            STATE_FORMAT => 5,
            LEGACY_FORMAT => 4,
            _ => return Err(RuleError::State(other_format(bytes))),
        };
        if fields.len() != fields_of * 8 || present >> fields_of != 0 {
            return Err(RuleError::damaged(HISTORY_KEY, "not a history"));
        }
        let field = |n: usize| {
            let bytes: [u8; 8] = fields
                .get(n * 8..n * 8 + 8)?
                .try_into()
                .expect("eight bytes");
            (present & (1 << n) != 0).then_some(bytes)
        };
        let watermark = field(1).map(Millis::from_le_bytes);
        let legacy_until = match format {
            STATE_FORMAT => field(4).map(Millis::from_le_bytes),
            _ => watermark.map(|w| w.saturating_add(retention.longest())),
        };
        Ok(History {
            history_start: field(0).map(Millis::from_le_bytes),
            watermark,
            next_sweep: field(2).map(Millis::from_le_bytes),
            sweep_cursor: field(3).map(u64::from_le_bytes),
            legacy_until,
        })
    }

    /// The history to store: the state format, which fields are set, then the five, 8
    /// bytes each.
    pub fn encode(&self) -> Vec<u8> {
        let fields = [
            self.history_start.map(Millis::to_le_bytes),
            self.watermark.map(Millis::to_le_bytes),
            self.next_sweep.map(Millis::to_le_bytes),
            self.sweep_cursor.map(u64::to_le_bytes),
            self.legacy_until.map(Millis::to_le_bytes),
        ];
        let mut out = Vec::with_capacity(2 + 8 * fields.len());
        out.extend_from_slice(&[STATE_FORMAT, 0]);
        for (n, field) in fields.iter().enumerate() {
            out[1] |= u8::from(field.is_some()) << n;
            out.extend_from_slice(&field.unwrap_or_default());
        }
        out
    }

    /// Whether entries of the [`LEGACY_FORMAT`] may still be of use.
    pub fn reads_legacy(&self) -> bool {
        self.legacy_until.is_some()
    }

    /// Places a record at `at` against the watermark: an error for a time the rule cannot
    /// judge, and a fresh start of history after a long gap.
    pub fn admit(&mut self, at: Millis, bounds: &Bounds) -> Result<(), RuleError> {
        let placed = timeline::place(at, self.watermark, bounds);
        if placed.map_err(RuleError::InvalidTime)? == Placement::Afresh {
            self.history_start = None;
        }
        Ok(())
    }

    /// Records that a record at `at` was judged; `starts_history` when it is of the kind
    /// that starts the rule's history.
    pub fn observe(&mut self, at: Millis, starts_history: bool) {
        if starts_history {
            self.history_start.get_or_insert(at);
        }
        let watermark = self.watermark.map_or(at, |w| w.max(at));
        self.watermark = Some(watermark);
        if self.legacy_until.is_some_and(|until| watermark > until) {
            self.legacy_until = None;
        }
    }

    /// Advances the sweep, when one is due, by a page, then schedules the next.
    pub fn sweep(
        &mut self,
        kv: &mut impl KeyValue,
        retention: &impl Retention,
    ) -> Result<(), RuleError> {
        let Some(now) = self.watermark else {
            return Ok(());
        };
        let due = self.sweep_cursor.is_some() || self.next_sweep.is_some_and(|next| now >= next);
        if due {
            self.sweep_page(kv, retention, now)?;
        }
        self.next_sweep
            .get_or_insert(now.saturating_add(retention.sweep_interval()));
        Ok(())
    }

    /// Deletes each entry of one page that no record at or after `now` can use. Late
    /// records (behind `now` by more than an entry's retention) may thus find less
    /// history than an in-order run would have given them.
    fn sweep_page(
        &mut self,
        kv: &mut impl KeyValue,
        retention: &impl Retention,
        now: Millis,
    ) -> Result<(), RuleError> {
        let (keys, cursor) = kv.list_keys(self.sweep_cursor).map_err(RuleError::State)?;
        let keys: Vec<String> = keys.into_iter().filter(|k| k != HISTORY_KEY).collect();
        let names: Vec<&str> = keys.iter().map(String::as_str).collect();
        let values = kv.get_many(&names).map_err(RuleError::State)?;
        let mut expired = Vec::new();
        for (key, value) in keys.into_iter().zip(values) {
            let Some(value) = value else { continue };
            if retention
                .usable_until(&key, &value)?
                .is_some_and(|until| now > until)
            {
                expired.push(key);
            }
        }
        if !expired.is_empty() {
            kv.delete_many(expired).map_err(RuleError::State)?;
        }
        self.sweep_cursor = cursor;
        if cursor.is_none() {
            self.next_sweep = Some(now.saturating_add(retention.sweep_interval()));
        }
        Ok(())
    }
}

/// How long a rule's entries matter.
pub trait Retention {
    /// The last event time at which the entry `key` = `value` can still be used, or
    /// `None` to keep it. A value that cannot be read is an error.
    fn usable_until(&self, key: &str, value: &[u8]) -> Result<Option<Millis>, RuleError>;

    /// How often a sweep starts, in event time.
    fn sweep_interval(&self) -> Millis {
        SWEEP_INTERVAL
    }

    /// The longest any entry is of use after the time it records.
    fn longest(&self) -> Millis;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_is_stored_compactly_and_read_back() {
        let history = History {
            history_start: Some(-5),
            watermark: None,
            next_sweep: Some(Millis::MAX),
            sweep_cursor: Some(7),
            legacy_until: Some(3),
        };
        let bytes = history.encode();
        assert_eq!(bytes.len(), 42);
        assert_eq!(History::decode(Some(&bytes), &OneDay), Ok(history));
        assert_eq!(History::decode(None, &OneDay), Ok(History::default()));
        for cut in [&bytes[..1], &bytes[..20]] {
            assert!(
                matches!(History::decode(Some(cut), &OneDay), Err(RuleError::State(m)) if m.contains("damaged"))
            );
        }
    }

    #[test]
    fn a_history_of_the_legacy_format_is_upgraded() {
        // Format 2, as its rules wrote it: four fields.
        let mut legacy = vec![LEGACY_FORMAT, 0b0011];
        for field in [10 * DAY, 40 * DAY, 0, 0] {
            legacy.extend_from_slice(&field.to_le_bytes());
        }
        let history = History::decode(Some(&legacy), &OneDay).unwrap();
        assert_eq!(
            history,
            History {
                history_start: Some(10 * DAY),
                watermark: Some(40 * DAY),
                legacy_until: Some(41 * DAY),
                ..History::default()
            }
        );
        let mut later = history.clone();
        later.observe(41 * DAY, true);
        assert!(later.reads_legacy(), "up to the longest retention");
        later.observe(41 * DAY + 1, true);
        assert!(!later.reads_legacy());
        assert_eq!(History::decode(Some(&later.encode()), &OneDay), Ok(later));
    }

    #[test]
    fn a_state_of_another_format_is_refused_with_what_to_do() {
        let json = br#"{"history_start": 1, "watermark": 2}"#;
        let mut newer = History::default().encode();
        newer[0] = STATE_FORMAT + 1;
        // Of the earlier binary format, one whose first byte looks like format 2's.
        let mut earlier = vec![LEGACY_FORMAT];
        earlier.extend_from_slice(&[0; 32]);
        for (bytes, written) in [
            (
                &json[..],
                "format 1, by a rule built for detect:rule before 0.3.0",
            ),
            (&newer, "format 4, by a newer rule"),
            (&earlier, "an earlier development format"),
        ] {
            let Err(RuleError::State(message)) = History::decode(Some(bytes), &OneDay) else {
                panic!("{bytes:?} was read");
            };
            assert!(message.contains(written), "{message}");
            assert!(message.contains("move the state aside"), "{message}");
        }
    }
    use crate::MemoryKv;
    use crate::config::Period;
    use crate::kv::decode_time;

    /// Entries are times, kept for a day after them; keys starting `keep/` forever.
    struct OneDay;

    impl Retention for OneDay {
        fn usable_until(&self, key: &str, value: &[u8]) -> Result<Option<Millis>, RuleError> {
            if key.starts_with("keep/") {
                return Ok(None);
            }
            Ok(decode_time(key, Some(value))?.map(|t| t + DAY))
        }

        fn longest(&self) -> Millis {
            DAY
        }
    }

    #[test]
    fn a_sweep_deletes_exactly_what_no_later_record_can_use() {
        let now = 100 * DAY;
        let mut kv = MemoryKv::with_entries(
            [
                ("a", now - DAY),
                ("b", now - DAY - 1),
                ("c", now),
                ("keep/x", 0),
            ]
            .map(|(k, t)| (k.to_owned(), t.to_string().into_bytes())),
        );
        kv.page_size = 1;
        let mut history = History {
            watermark: Some(now),
            next_sweep: Some(now),
            ..History::default()
        };
        history.sweep(&mut kv, &OneDay).unwrap();
        while history.sweep_cursor.is_some() {
            history.sweep(&mut kv, &OneDay).unwrap();
        }
        assert_eq!(kv.keys(), ["a", "c", "keep/x"]);
        assert_eq!(history.next_sweep, Some(now + SWEEP_INTERVAL));
    }

    #[test]
    fn a_sweep_is_due_once_the_watermark_passes_and_damage_stops_it() {
        let mut kv = MemoryKv::with_entries([("x".to_owned(), b"soon".to_vec())]);
        let mut history = History {
            watermark: Some(10),
            next_sweep: Some(11),
            ..History::default()
        };
        history.sweep(&mut kv, &OneDay).unwrap();
        assert_eq!(kv.keys(), ["x"], "not due yet");
        history.watermark = Some(11);
        let err = history.sweep(&mut kv, &OneDay).unwrap_err();
        assert!(err.to_string().contains("`x`"), "{err}");
    }

    #[test]
    fn admission_applies_the_bounds_and_a_long_gap_starts_afresh() {
        let bounds = Bounds {
            not_after: 100 * DAY,
            max_lateness: Period::days(30),
            fresh_after: Period::days(30),
        };
        let mut history = History::default();
        history.admit(10 * DAY, &bounds).unwrap();
        history.observe(10 * DAY, true);
        history.observe(5 * DAY, true);
        assert_eq!(history.history_start, Some(10 * DAY), "arrival order");
        assert!(history.admit(101 * DAY, &bounds).is_err());
        history.admit(41 * DAY, &bounds).unwrap();
        assert_eq!(history.history_start, None);
        assert_eq!(
            history.watermark,
            Some(10 * DAY),
            "admission alone moves nothing"
        );
        assert_eq!(
            History::decode(Some(&history.encode()), &OneDay).unwrap(),
            history
        );
    }
}
