//! All a rule keeps about one entity (an identity, a host) in one value, so that a record
//! reads and writes it once however much the rule knows of it: the rule's own facts, and
//! the marks the dedup gate keeps for the entity's alerts ([`Alert::dedup_in`]).
//!
//! Layout: the number of marks (`u16`); each mark: its detection's place in the rule's
//! catalog (`u16`), the hash of its dedup key (`u64`), and the end of the dedup period of
//! the alert it remembers (`i64`: its event time plus the period then configured),
//! little-endian; then the rule's bytes, which the SDK does not read.
//!
//! [`Alert::dedup_in`]: crate::Alert::dedup_in

use crate::codec::{Reader, Writer};
use crate::error::RuleError;
use crate::time::Millis;

/// Marks an entity's value holds at most: beyond, the oldest is forgotten (its alert may
/// then be raised again), so that one entity's value stays far below the host's value
/// limit.
pub const MAX_MARKS: usize = 16_384;

/// An entity's value, decoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entity {
    /// What the dedup gate remembers of the entity's alerts.
    pub marks: Marks,
    /// The rule's own encoding of what it knows.
    pub facts: Vec<u8>,
}

impl Entity {
    /// The value of `key`; nothing stored is an entity the rule knows nothing of.
    pub fn decode(key: &str, bytes: Option<&[u8]>) -> Result<Entity, RuleError> {
        let Some(bytes) = bytes else {
            return Ok(Entity::default());
        };
        let mut reader = Reader::new(key, bytes);
        let n = reader.u16()? as usize;
        let mut marks = Vec::with_capacity(n.min(bytes.len() / MARK_BYTES));
        for _ in 0..n {
            marks.push(Mark {
                detection: reader.u16()?,
                key: reader.u64()?,
                until: reader.time()?,
            });
        }
        Ok(Entity {
            marks: Marks(marks),
            facts: reader.rest().to_vec(),
        })
    }

    /// The value to store.
    pub fn encode(&self) -> Vec<u8> {
        let marks = &self.marks.0;
        let mut w = Writer(Vec::with_capacity(
            2 + marks.len() * MARK_BYTES + self.facts.len(),
        ));
        w.u16(u16::try_from(marks.len()).expect("at most MAX_MARKS marks"));
        for mark in marks {
            w.u16(mark.detection);
            w.u64(mark.key);
            w.time(mark.until);
        }
        w.0.extend_from_slice(&self.facts);
        w.0
    }
}

const MARK_BYTES: usize = 18;

/// Until when each of an entity's (detection, dedup key) pairs silences its alerts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Marks(Vec<Mark>);

/// One detection and dedup key, and until when it silences alerts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mark {
    /// The detection's place in the rule's catalog.
    pub detection: u16,
    /// The dedup key's hash ([`hash_parts`](crate::kv::hash_parts) of the key).
    pub key: u64,
    /// An alert before this event time is silenced: the last alert's event time plus its
    /// dedup period.
    pub until: Millis,
}

impl Marks {
    /// Until when `detection` is silenced for the dedup key hashed `key`.
    pub fn until(&self, detection: u16, key: u64) -> Option<Millis> {
        self.find(detection, key).map(|m| self.0[m].until)
    }

    fn find(&self, detection: u16, key: u64) -> Option<usize> {
        self.0
            .iter()
            .position(|m| m.detection == detection && m.key == key)
    }

    /// Remembers `mark`, or (`latest`) the later of it and what is remembered.
    pub fn set(&mut self, mark: Mark, latest: bool) {
        match self.find(mark.detection, mark.key) {
            Some(at) if latest => self.0[at].until = self.0[at].until.max(mark.until),
            Some(at) => self.0[at].until = mark.until,
            None => {
                if self.0.len() == MAX_MARKS {
                    let oldest = (0..self.0.len()).min_by_key(|&m| self.0[m].until);
                    self.0.swap_remove(oldest.expect("marks"));
                }
                self.0.push(mark);
            }
        }
    }

    /// Forgets the marks that silence nothing at or after `now`.
    pub fn forget_before(&mut self, now: Millis) {
        self.0.retain(|m| now <= m.until);
    }

    /// The last event time at which a mark silences anything.
    pub fn usable_until(&self) -> Option<Millis> {
        self.0.iter().map(|m| m.until).max()
    }

    /// Every mark.
    pub fn iter(&self) -> impl Iterator<Item = &Mark> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entity_reads_back_and_damage_is_an_error() {
        let mut entity = Entity {
            facts: b"facts".to_vec(),
            ..Entity::default()
        };
        let mark = |until| Mark {
            detection: 2,
            key: 9,
            until,
        };
        entity.marks.set(mark(5), false);
        entity.marks.set(mark(3), true);
        assert_eq!(entity.marks.until(2, 9), Some(5), "the later one");
        entity.marks.set(mark(3), false);
        assert_eq!(entity.marks.until(2, 9), Some(3));
        assert_eq!(entity.marks.usable_until(), Some(3));
        let bytes = entity.encode();
        assert_eq!(bytes.len(), 2 + MARK_BYTES + 5);
        assert_eq!(Entity::decode("e", Some(&bytes)), Ok(entity.clone()));
        assert_eq!(Entity::decode("e", None), Ok(Entity::default()));
        assert!(Entity::decode("e", Some(&bytes[..10])).is_err());
        entity.marks.forget_before(3);
        assert_eq!(entity.marks.until(2, 9), Some(3));
        entity.marks.forget_before(4);
        assert_eq!(entity.marks, Marks::default());
    }

    #[test]
    fn an_entity_keeps_at_most_its_newest_marks() {
        let mut marks = Marks::default();
        for at in 0..=MAX_MARKS as i64 {
            marks.set(
                Mark {
                    detection: 0,
                    key: at as u64,
                    until: at,
                },
                false,
            );
        }
        assert_eq!(marks.iter().count(), MAX_MARKS);
        assert_eq!(marks.until(0, 0), None, "the oldest went");
        assert_eq!(marks.until(0, 1), Some(1));
    }
}
