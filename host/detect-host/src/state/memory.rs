//! State in memory: for fixture tests (each case starts empty) and for runs whose state
//! need not outlive the process.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use super::{Changes, StateStore, StoreError};

/// A [`StateStore`] in hash maps, one per table: a record's reads and writes of keys
/// that exist touch no ordered index. Each table keeps its keys' order apart, changed
/// only when a key comes or goes, for listings (a rule's sweep). Every table in it holds
/// at least one key.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: HashMap<String, Table>,
}

#[derive(Debug, Default)]
struct Table {
    values: HashMap<String, Vec<u8>>,
    order: BTreeSet<String>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl StateStore for MemoryStore {
    fn get_many(&mut self, table: &str, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|key| self.get(table, key)).collect()
    }

    fn get(&mut self, table: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tables
            .get(table)
            .and_then(|t| t.values.get(key))
            .cloned())
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
        let range = table.order.range::<str, _>((start, Bound::Unbounded));
        Ok(range.take(limit).cloned().collect())
    }

    fn tables(&mut self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = (self.tables.keys())
            .filter(|name| name.starts_with(prefix))
            .cloned()
            .collect();
        names.sort();
        Ok(names)
    }

    fn has_table(&mut self, table: &str) -> Result<bool, StoreError> {
        Ok(self.tables.contains_key(table))
    }

    fn apply(&mut self, changes: Changes) -> Result<(), StoreError> {
        for (name, writes) in changes {
            let table = self.tables.entry(name).or_default();
            for (key, value) in writes {
                match value {
                    Some(value) => {
                        if let Some(stored) = table.values.get_mut(&key) {
                            *stored = value;
                        } else {
                            table.order.insert(key.clone());
                            table.values.insert(key, value);
                        }
                    }
                    None => {
                        if table.values.remove(&key).is_some() {
                            table.order.remove(&key);
                        }
                    }
                }
            }
        }
        self.tables.retain(|_, table| !table.values.is_empty());
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
            .flat_map(|(b, table)| {
                (table.values.iter()).map(move |(k, v)| (b.clone(), k.clone(), v.clone()))
            })
            .collect();
        all.sort();
        Ok(all)
    }
}
