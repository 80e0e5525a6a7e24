//! State in memory: for fixture tests (each case starts empty) and for runs whose state
//! need not outlive the process.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Changes, StateStore, StoreError};

/// A [`StateStore`] in a map of sorted maps. Every table in it holds at least one key.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
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

    fn tables(&mut self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let names = self
            .tables
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded));
        Ok(names
            .map(|(name, _)| name)
            .take_while(|name| name.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn has_table(&mut self, table: &str) -> Result<bool, StoreError> {
        Ok(self.tables.contains_key(table))
    }

    fn apply(&mut self, changes: Changes) -> Result<(), StoreError> {
        for (name, writes) in changes {
            let mut table = self.tables.remove(&name).unwrap_or_default();
            for (key, value) in writes {
                match value {
                    Some(value) => table.insert(key, value),
                    None => table.remove(&key),
                };
            }
            if !table.is_empty() {
                self.tables.insert(name, table);
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
