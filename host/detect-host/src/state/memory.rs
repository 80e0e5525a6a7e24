//! State in memory: for fixture tests (each case starts empty) and for runs whose state
//! need not outlive the process.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::{Changes, StateStore, StoreError};

/// A [`StateStore`] in a map of sorted maps.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: HashMap<String, BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl StateStore for MemoryStore {
    fn get_many(&mut self, table: &str, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let table = self.tables.get(table);
        Ok(keys
            .iter()
            .map(|k| table.and_then(|t| t.get(*k)).cloned())
            .collect())
    }

    fn keys_after(
        &mut self,
        table: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let Some(table) = self.tables.get(table) else {
            return Ok(Vec::new());
        };
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let range = table.range::<str, _>((start, Bound::Unbounded));
        Ok(range.take(limit).map(|(k, _)| k.clone()).collect())
    }

    fn apply(&mut self, changes: Changes) -> Result<(), StoreError> {
        for (name, writes) in changes {
            let table = self.tables.entry(name).or_default();
            for (key, value) in writes {
                match value {
                    Some(value) => table.insert(key, value),
                    None => table.remove(&key),
                };
            }
        }
        Ok(())
    }

    /// State in memory ends with the process: there is nothing to make durable.
    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn entries(&mut self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        let mut all: Vec<_> = self
            .tables
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
