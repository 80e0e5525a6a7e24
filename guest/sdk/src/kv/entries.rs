//! The entries of a [`MemoryKv`](super::MemoryKv): found by their key's hash, listed in
//! key order.
//!
//! In Fluent Bit's interpreter a lookup in a map ordered by key compared strings three
//! dozen times, a tenth of a session start. A hash table would avoid it, but a module
//! may import no randomness, so its hash key is public, and the keys come from fields an
//! attacker writes (a role session name is any string): keys colliding in a table's few
//! low bits are cheap to find offline, and would make every lookup linear. Here values
//! are ordered by their key's whole 64-bit hash instead: the tree is as deep as before,
//! but compares integers. Two keys with the same hash cost about 2^32 tries to find, and
//! the second one lives in a map ordered by key, as every key did before: colliding keys
//! can make lookups no slower than they always were, never linear.

use std::collections::btree_map::{BTreeMap, Entry};
use std::ops::Bound::{self, Unbounded};
use std::sync::Arc;

use crate::bytes;

/// Values found by their key's 64-bit SipHash; a key whose hash another key holds lives in
/// a map ordered by key, so that keys chosen to collide make no lookup slower than such a
/// map's.
#[derive(Debug, Clone, Default)]
pub struct Entries {
    /// Each value under its key's hash, with the key (the first key of that hash).
    by_hash: BTreeMap<u64, (Arc<str>, Vec<u8>)>,
    /// Values whose key's hash another key held when they were set.
    collided: BTreeMap<Arc<str>, Vec<u8>>,
    /// Every key and its hash, for listings in order.
    order: BTreeMap<Arc<str>, u64>,
}

#[cfg(not(test))]
fn hash(key: &str) -> u64 {
    use std::hash::Hasher;
    let mut hasher = siphasher::sip::SipHasher13::new();
    hasher.write(key.as_bytes());
    hasher.finish()
}

/// In the SDK's own tests keys of one length share a hash, so that every test of a
/// store also runs through the collided keys' map.
#[cfg(test)]
fn hash(key: &str) -> u64 {
    key.len() as u64
}

impl Entries {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Vec<u8>> {
        self.get_hashed(key, hash(key))
    }

    fn get_hashed(&self, key: &str, hash: u64) -> Option<&Vec<u8>> {
        // Not `==`: that is `memcmp`, a loop over one byte at a time in WebAssembly
        // ([`bytes`]); so in `set` too.
        match self.by_hash.get(&hash) {
            Some((held, value)) if bytes::same_text(held, key) => Some(value),
            _ if self.collided.is_empty() => None,
            _ => self.collided.get(key),
        }
    }

    /// Sets `key` to `value`, or deletes it for `None`.
    pub fn set(&mut self, key: String, value: Option<Vec<u8>>) {
        let hash = hash(&key);
        let held = self
            .by_hash
            .get_mut(&hash)
            .filter(|(held, _)| bytes::same_text(held, &key));
        match (value, held) {
            (Some(value), Some((_, stored))) => *stored = value,
            (None, Some(_)) => {
                self.by_hash.remove(&hash);
                self.order.remove(key.as_str());
            }
            (Some(value), None) => {
                if let Some(stored) = self.collided.get_mut(key.as_str()) {
                    *stored = value;
                    return;
                }
                let key = Arc::<str>::from(key);
                self.order.insert(key.clone(), hash);
                match self.by_hash.entry(hash) {
                    Entry::Vacant(slot) => {
                        slot.insert((key, value));
                    }
                    Entry::Occupied(_) => {
                        self.collided.insert(key, value);
                    }
                }
            }
            (None, None) => {
                if self.collided.remove(key.as_str()).is_some() {
                    self.order.remove(key.as_str());
                }
            }
        }
    }

    /// How many keys have a value.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The keys from `start` on, in order.
    pub fn keys_from(&self, start: Bound<&str>) -> impl Iterator<Item = &str> {
        self.order
            .range::<str, _>((start, Unbounded))
            .map(|(key, _)| &**key)
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> {
        (self.order.iter()).map(|(key, &hash)| {
            let value = self
                .get_hashed(key, hash)
                .expect("a listed key has a value");
            (&**key, value.as_slice())
        })
    }
}

impl PartialEq for Entries {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Entries {}

impl std::ops::Index<&str> for Entries {
    type Output = Vec<u8>;

    fn index(&self, key: &str) -> &Vec<u8> {
        self.get(key)
            .unwrap_or_else(|| panic!("no entry for {key:?}"))
    }
}

impl FromIterator<(String, Vec<u8>)> for Entries {
    fn from_iter<I: IntoIterator<Item = (String, Vec<u8>)>>(entries: I) -> Self {
        let mut all = Entries::default();
        for (key, value) in entries {
            all.set(key, Some(value));
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(&str, &str)]) -> Entries {
        let owned = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()));
        owned.collect()
    }

    proptest::proptest! {
        /// Any sequence of writes leaves what a map ordered by key would hold, with keys
        /// of few lengths, so that many share a hash.
        #[test]
        fn writes_leave_what_an_ordered_map_holds(
            writes in proptest::collection::vec(("[ab]{1,3}", proptest::option::of(0u8..4)), 0..60),
        ) {
            let (mut all, mut model) = (Entries::default(), std::collections::BTreeMap::new());
            for (key, value) in writes {
                let value = value.map(|v| vec![v]);
                match &value {
                    Some(v) => model.insert(key.clone(), v.clone()),
                    None => model.remove(&key),
                };
                all.set(key, value);
            }
            let expected: Vec<_> = model.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
            proptest::prop_assert_eq!(all.iter().collect::<Vec<_>>(), expected);
            proptest::prop_assert_eq!(all.len(), model.len());
            for key in ["a", "b", "ab", "ba", "aba", "bbb"] {
                proptest::prop_assert_eq!(all.get(key), model.get(key));
                let after: Vec<_> = all.keys_from(Bound::Excluded(key)).collect();
                let want: Vec<_> = model.range::<str, _>((Bound::Excluded(key), Unbounded)).map(|(k, _)| k.as_str()).collect();
                proptest::prop_assert_eq!(after, want);
            }
        }
    }

    #[test]
    fn keys_of_one_hash_are_found_replaced_deleted_and_listed_in_order() {
        // "b", "a" and "c" share a hash in tests: "b" holds it, the others collided.
        let mut all = entries(&[("b", "2"), ("a", "1"), ("c", "3"), ("dd", "4")]);
        assert_eq!((all.by_hash.len(), all.collided.len()), (2, 2));
        all.set("a".into(), Some(b"one".to_vec()));
        all.set("b".into(), None);
        all.set("x".into(), None);
        assert_eq!((all.get("a"), all.get("b")), (Some(&b"one".to_vec()), None));
        // Its hash free again, a new key takes it; the collided ones stay found.
        all.set("e".into(), Some(b"5".to_vec()));
        all.set("c".into(), None);
        let listed: Vec<_> = all.iter().collect();
        assert_eq!(listed, [("a", &b"one"[..]), ("dd", b"4"), ("e", b"5")]);
        assert_eq!(
            all.keys_from(Bound::Excluded("a")).collect::<Vec<_>>(),
            ["dd", "e"]
        );
        assert_eq!(
            (all.len(), all.by_hash.len(), all.collided.len()),
            (3, 2, 1)
        );
        assert_eq!(all, entries(&[("dd", "4"), ("e", "5"), ("a", "one")]));
        assert_ne!(all, entries(&[("dd", "4"), ("e", "5"), ("a", "1")]));
    }
}
