//! A rule's state: the key-value store the host keeps for it, and typed helpers over it.
//!
//! The store is batch-oriented, like `wasi:keyvalue/batch`: a rule reads every key one
//! record may need in one call and writes them back in one call, after every check has
//! passed, so a failed record writes nothing. Values are bytes; [`decode_time`] and
//! [`decode_json`] read them back and make a value that does not decode an error, never
//! "absent": reading damage as "no history" would turn it into false alerts.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Unbounded};

mod entries;
pub use entries::Entries;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::RuleError;
use crate::time::Millis;

/// The part of `wasi:keyvalue` a rule uses. The component binding implements it over the
/// host's bucket; [`MemoryKv`] over a map in the module's own memory.
pub trait KeyValue {
    /// The values of `keys`, in order, `None` where a key is absent.
    fn get_many(&mut self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, String>;
    /// Sets each key to its value.
    fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), String>;
    /// Deletes each key.
    fn delete_many(&mut self, keys: Vec<String>) -> Result<(), String>;
    /// One page of keys and the cursor of the next page (`None` after the last).
    fn list_keys(&mut self, cursor: Option<u64>) -> Result<(Vec<String>, Option<u64>), String>;
}

/// A key of fixed length for what `parts` name, under `prefix`: the prefix's segments
/// joined by `/`, a `/`, and 16 hex digits of a 64-bit SipHash of the parts (each after
/// its length, so no two lists of parts hash the same bytes). Identities and values of any
/// length then make short keys, which compare fast even when they share long beginnings
/// (ARNs). Two distinct parts lists share a key with odds of 2^-64; the hash key is fixed
/// and public, so colliding with a given identity takes about 2^64 tries, but two new
/// names that collide with each other can be found with about 2^32.
pub fn hashed_key(prefix: &[&str], parts: &[&str]) -> String {
    let hash = hash_parts(parts);
    let mut key = String::with_capacity(prefix.iter().map(|p| p.len() + 1).sum::<usize>() + 16);
    for segment in prefix {
        key.push_str(segment);
        key.push('/');
    }
    for shift in (0..16).rev() {
        let digit = ((hash >> (shift * 4)) & 0xf) as u32;
        key.push(char::from_digit(digit, 16).expect("a hex digit"));
    }
    key
}

/// The 64-bit SipHash of `parts` that [`hashed_key`] writes in hex: for values kept
/// inside a value, where a number is shorter than its hex.
pub fn hash_parts(parts: &[&str]) -> u64 {
    use std::hash::Hasher;
    let mut hasher = siphasher::sip::SipHasher13::new_with_keys(0, 0);
    for part in parts {
        hasher.write(&(part.len() as u64).to_le_bytes());
        hasher.write(part.as_bytes());
    }
    hasher.finish()
}

/// A time as stored: decimal milliseconds.
pub fn encode_time(at: Millis) -> Vec<u8> {
    at.to_string().into_bytes()
}

/// The time stored under `key`, if any.
pub fn decode_time(key: &str, bytes: Option<&[u8]>) -> Result<Option<Millis>, RuleError> {
    let Some(bytes) = bytes else { return Ok(None) };
    let text = std::str::from_utf8(bytes).map_err(|e| RuleError::damaged(key, e))?;
    text.parse()
        .map(Some)
        .map_err(|e| RuleError::damaged(key, e))
}

/// A value as stored: JSON.
pub fn encode_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("state values serialize")
}

/// The JSON value stored under `key`, if any.
pub fn decode_json<T: DeserializeOwned>(
    key: &str,
    bytes: Option<&[u8]>,
) -> Result<Option<T>, RuleError> {
    bytes
        .map(|b| serde_json::from_slice(b).map_err(|e| RuleError::damaged(key, e)))
        .transpose()
}

/// Listings under way that [`MemoryKv`] remembers; an older cursor restarts its listing.
const MAX_CURSORS: usize = 16;

/// A [`KeyValue`] in memory: the state of a rule hosted in a pipeline's own process, and
/// of native tests. Keys are listed in order; a cursor stands for the last key of its
/// page, so deleting keys between pages (as a sweep does) skips nothing. Memory is
/// bounded: entries by the rule's own sweep, cursors by `MAX_CURSORS`.
#[derive(Debug, Clone)]
pub struct MemoryKv {
    /// The state.
    pub entries: Entries,
    /// Keys per `list_keys` page.
    pub page_size: usize,
    /// The last key of each page handed out, by cursor.
    cursors: Vec<(u64, String)>,
    next_cursor: u64,
}

impl Default for MemoryKv {
    fn default() -> Self {
        MemoryKv {
            entries: Entries::default(),
            page_size: 100,
            cursors: Vec::new(),
            next_cursor: 0,
        }
    }
}

impl MemoryKv {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `entries`.
    pub fn with_entries(entries: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        MemoryKv {
            entries: entries.into_iter().collect(),
            ..Self::default()
        }
    }

    /// The keys, for assertions.
    pub fn keys(&self) -> Vec<&str> {
        self.entries.keys_from(Unbounded).collect()
    }

    /// Applies a record's writes: a value, or `None` to delete.
    pub fn apply(&mut self, changes: impl IntoIterator<Item = (String, Option<Vec<u8>>)>) {
        for (key, value) in changes {
            self.entries.set(key, value);
        }
    }

    /// A page of keys after `after`, and the key to continue after, if there are more.
    fn page_after(&self, after: Option<&String>) -> (Vec<String>, Option<String>) {
        let start = after.map_or(Unbounded, |after| Excluded(after.as_str()));
        let mut keys = self.entries.keys_from(start);
        let page: Vec<String> = keys
            .by_ref()
            .take(self.page_size)
            .map(str::to_owned)
            .collect();
        let more = keys.next().is_some();
        let next = page.last().filter(|_| more).cloned();
        (page, next)
    }
}

impl From<Entries> for MemoryKv {
    fn from(entries: Entries) -> Self {
        MemoryKv {
            entries,
            ..Self::default()
        }
    }
}

impl KeyValue for MemoryKv {
    fn get_many(&mut self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, String> {
        Ok(keys.iter().map(|k| self.entries.get(k).cloned()).collect())
    }

    fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        self.apply(entries.into_iter().map(|(k, v)| (k, Some(v))));
        Ok(())
    }

    fn delete_many(&mut self, keys: Vec<String>) -> Result<(), String> {
        self.apply(keys.into_iter().map(|k| (k, None)));
        Ok(())
    }

    fn list_keys(&mut self, cursor: Option<u64>) -> Result<(Vec<String>, Option<u64>), String> {
        let after = cursor.and_then(|c| {
            let at = self.cursors.iter().position(|(token, _)| *token == c)?;
            Some(self.cursors.remove(at).1)
        });
        let (page, next) = self.page_after(after.as_ref());
        let Some(last) = next else {
            return Ok((page, None));
        };
        self.next_cursor += 1;
        self.cursors.push((self.next_cursor, last));
        if self.cursors.len() > MAX_CURSORS {
            self.cursors.remove(0);
        }
        Ok((page, Some(self.next_cursor)))
    }
}

/// One record's writes, not yet applied: a value, or `None` for a delete.
pub type Changes = BTreeMap<String, Option<Vec<u8>>>;

/// A store seen through one record's pending writes: reads see them, the store does not
/// until [`Changes`] are applied (to a [`MemoryKv`]) or written (to a host's bucket, by
/// [`Overlay::flush`]). How a record is applied whole or not at all.
pub struct Overlay<'a, K: KeyValue> {
    /// The committed state.
    pub base: &'a mut K,
    /// This record's writes.
    pub pending: &'a mut Changes,
}

impl<K: KeyValue> Overlay<'_, K> {
    /// Writes the pending changes to the base: one `set_many` and one `delete_many` at most.
    pub fn flush(self) -> Result<(), String> {
        let (mut sets, mut deletes) = (Vec::new(), Vec::new());
        for (key, value) in std::mem::take(self.pending) {
            match value {
                Some(value) => sets.push((key, value)),
                None => deletes.push(key),
            }
        }
        if !sets.is_empty() {
            self.base.set_many(sets)?;
        }
        if !deletes.is_empty() {
            self.base.delete_many(deletes)?;
        }
        Ok(())
    }
}

impl<K: KeyValue> KeyValue for Overlay<'_, K> {
    fn get_many(&mut self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, String> {
        if self.pending.is_empty() {
            return self.base.get_many(keys);
        }
        let missing: Vec<&str> = keys
            .iter()
            .filter(|k| !self.pending.contains_key(**k))
            .copied()
            .collect();
        let mut stored = if missing.is_empty() {
            Vec::new()
        } else {
            self.base.get_many(&missing)?
        }
        .into_iter();
        Ok(keys
            .iter()
            .map(|k| match self.pending.get(*k) {
                Some(pending) => pending.clone(),
                None => stored.next().flatten(),
            })
            .collect())
    }

    fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        self.pending
            .extend(entries.into_iter().map(|(k, v)| (k, Some(v))));
        Ok(())
    }

    fn delete_many(&mut self, keys: Vec<String>) -> Result<(), String> {
        self.pending.extend(keys.into_iter().map(|k| (k, None)));
        Ok(())
    }

    /// Lists the committed keys, as a host lists its store: not this record's writes.
    fn list_keys(&mut self, cursor: Option<u64>) -> Result<(Vec<String>, Option<u64>), String> {
        self.base.list_keys(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv_with(keys: &[&str]) -> MemoryKv {
        MemoryKv::with_entries(keys.iter().map(|k| (k.to_string(), vec![])))
    }

    #[test]
    fn pages_cover_every_key_once_even_when_deleted_between_pages() {
        let mut kv = kv_with(&["a", "b", "c", "d", "e"]);
        kv.page_size = 2;
        let (mut seen, mut cursor) = (vec![], None);
        loop {
            let (page, next) = kv.list_keys(cursor).unwrap();
            kv.delete_many(page.clone()).unwrap();
            seen.extend(page);
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["a", "b", "c", "d", "e"]);
        assert!(kv.entries.is_empty() && kv.cursors.is_empty());
    }

    #[test]
    fn abandoned_listings_are_forgotten() {
        let mut kv = kv_with(&["a", "b", "c"]);
        kv.page_size = 1;
        for _ in 0..100 {
            kv.list_keys(None).unwrap();
        }
        assert_eq!(kv.cursors.len(), MAX_CURSORS);
        // A forgotten cursor starts over.
        assert_eq!(kv.list_keys(Some(1)).unwrap().0, ["a"]);
    }

    #[test]
    fn an_overlay_reads_its_writes_and_leaves_the_base_alone() {
        let mut base = kv_with(&["a"]);
        let mut pending = Changes::new();
        let mut overlay = Overlay {
            base: &mut base,
            pending: &mut pending,
        };
        overlay.set_many(vec![("b".into(), b"1".to_vec())]).unwrap();
        overlay.delete_many(vec!["a".into()]).unwrap();
        assert_eq!(
            overlay.get_many(&["a", "b"]).unwrap(),
            [None, Some(b"1".to_vec())]
        );
        assert_eq!(base.keys(), ["a"]);
        base.apply(pending);
        assert_eq!(base.keys(), ["b"]);
    }

    #[test]
    fn hashed_keys_are_short_stable_and_distinct() {
        let alice = "arn:aws:sts::111122223333:assumed-role/Engineer/alice";
        let key = hashed_key(&["last"], &[alice]);
        assert_eq!(key.len(), "last/".len() + 16);
        assert_eq!(key, hashed_key(&["last"], &[alice]));
        let split = |a, b| hashed_key(&["s"], &[a, b]);
        assert_ne!(split("ab", "c"), split("a", "bc"));
        assert!(hashed_key(&["seen", "target"], &["a"]).starts_with("seen/target/"));
        // What the state files hold depends on it: a change is a new state format.
        assert_eq!(hashed_key(&["k"], &["a"]), "k/beb9a6bbf61b58b4");
    }

    #[test]
    fn damaged_values_are_errors_not_absence() {
        assert_eq!(decode_time("k", Some(b"12")), Ok(Some(12)));
        assert_eq!(decode_time("k", None), Ok(None));
        for bad in [&b"x"[..], &[0xff], b""] {
            let err = decode_time("last/a", Some(bad)).unwrap_err().to_string();
            assert!(err.contains("`last/a` is damaged"), "{err}");
        }
        let err = decode_json::<Vec<u8>>("meta", Some(b"{")).unwrap_err();
        assert!(err.to_string().contains("`meta`"), "{err}");
    }
}
