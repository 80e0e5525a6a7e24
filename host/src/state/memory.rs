//! State in memory: for fixture tests (each case starts empty) and for runs whose state
//! need not outlive the process.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::{Changes, StateStore, StoreError};

/// A [`StateStore`] in a map of sorted maps.
#[derive(Debug, Default)]
pub struct MemoryStore {
    buckets: HashMap<String, BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl StateStore for MemoryStore {
    fn get_many(
        &mut self,
        bucket: &str,
        keys: &[&str],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let bucket = self.buckets.get(bucket);
        Ok(keys
            .iter()
            .map(|k| bucket.and_then(|b| b.get(*k)).cloned())
            .collect())
    }

    fn keys_after(
        &mut self,
        bucket: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let Some(bucket) = self.buckets.get(bucket) else {
            return Ok(Vec::new());
        };
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let range = bucket.range::<str, _>((start, Bound::Unbounded));
        Ok(range.take(limit).map(|(k, _)| k.clone()).collect())
    }

    fn apply(&mut self, changes: Changes) -> Result<(), StoreError> {
        for ((bucket, key), value) in changes {
            let bucket = self.buckets.entry(bucket).or_default();
            match value {
                Some(value) => bucket.insert(key, value),
                None => bucket.remove(&key),
            };
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn entries(&mut self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        let mut all: Vec<_> = self
            .buckets
            .iter()
            .flat_map(|(b, kv)| {
                kv.iter()
                    .map(move |(k, v)| (b.clone(), k.clone(), v.clone()))
            })
            .collect();
        all.sort();
        Ok(all)
    }
}
