//! Where a rule's state lives: the backing stores of the host's `wasi:keyvalue`.
//!
//! A store holds tables of key-value pairs: one per bucket of each rule
//! (`rule/{rule}/{bucket}`), and the harness's own (`harness/...`), which no rule can
//! name. A table exists from the first value written to it until its last key is
//! deleted: reading a table that does not exist finds nothing and creates nothing. The harness hands a store one call's worth of writes at a time ([`Changes`]),
//! and only once the call has succeeded, so every store sees state move from one record
//! boundary to the next. Writes are visible to reads at once and become durable together
//! at [`StateStore::commit`]; a store dropped without a commit forgets them, which is how
//! the harness keeps state from running ahead of the alerts it has written.

mod memory;
mod persistent;

use std::collections::BTreeMap;

pub use memory::MemoryStore;
pub use persistent::{FORMAT_VERSION, RedbStore, quiet_engine_panics};

/// A failure of the backing store. It stops the harness: the state can no longer be
/// trusted to move from one record to the next.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// One call's writes: for each table and key, the new value, or `None` to delete it.
pub type Changes = BTreeMap<String, TableChanges>;

/// The writes to one table.
pub type TableChanges = BTreeMap<String, Option<Vec<u8>>>;

/// `changes` with one more write.
pub fn change(changes: &mut Changes, table: &str, key: String, value: Option<Vec<u8>>) {
    match changes.get_mut(table) {
        Some(writes) => writes.insert(key, value),
        None => changes
            .entry(table.to_owned())
            .or_default()
            .insert(key, value),
    };
}

/// The table of a rule's bucket.
pub fn rule_table(rule: &str, bucket: &str) -> String {
    format!("{}{bucket}", rule_prefix(rule))
}

/// What the names of all the tables of a rule's buckets begin with.
pub fn rule_prefix(rule: &str) -> String {
    format!("rule/{rule}/")
}

/// The harness's table of how far each input file has been read.
pub const INPUTS_TABLE: &str = "harness/inputs";

/// The harness's table of `list-keys` cursors in use, one entry per rule table.
pub const CURSORS_TABLE: &str = "harness/cursors";

/// A backing store for rule state.
pub trait StateStore: Send {
    /// The values of `keys` in `table`, in order.
    fn get_many(&mut self, table: &str, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// The value of `key` in `table`: [`StateStore::get_many`] of one key, which a store
    /// may answer without its lists (a rule reads most keys one at a time).
    fn get(&mut self, table: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_many(table, &[key])?.pop().flatten())
    }

    /// Up to `limit` keys of `table` in key order, starting after `after`.
    fn keys_after(
        &mut self,
        table: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// The names of the tables that exist and begin with `prefix`, in order. A table
    /// exists from its first value until its last key is deleted.
    ///
    /// The default walks [`StateStore::entries`]: a store with many entries overrides it.
    fn tables(&mut self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self
            .entries()?
            .into_iter()
            .map(|(table, _, _)| table)
            .filter(|table| table.starts_with(prefix))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Whether `table` exists (holds at least one key).
    fn has_table(&mut self, table: &str) -> Result<bool, StoreError> {
        Ok(self.tables(table)?.iter().any(|name| name == table))
    }

    /// Applies one call's writes. Reads see them at once; they become durable at `commit`.
    /// A write of a value creates its table if need be; a table left without keys is
    /// removed.
    fn apply(&mut self, changes: Changes) -> Result<(), StoreError>;

    /// Makes everything applied so far durable, as one transaction.
    fn commit(&mut self) -> Result<(), StoreError>;

    /// The file the state is kept in, if it outlives the process.
    fn path(&self) -> Option<&std::path::Path> {
        None
    }

    /// Every (table, key, value), for inspection and tests.
    fn entries(&mut self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError>;
}
