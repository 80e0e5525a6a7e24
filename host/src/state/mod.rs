//! Where a rule's state lives: the backing stores of the host's `wasi:keyvalue`.
//!
//! A store holds buckets of key-value pairs. The harness hands a store one call's worth
//! of writes at a time ([`Changes`]), and only once the call has succeeded, so every
//! store sees state move from one record boundary to the next. A persistent store may
//! hold applied changes in memory for a while and make them durable in batches
//! ([`StateStore::flush`]): a crash then loses at most the unflushed tail, which
//! replaying the same input re-creates.

mod memory;
mod persistent;

use std::collections::BTreeMap;

pub use memory::MemoryStore;
pub use persistent::RedbStore;

/// A failure of the backing store.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// One call's writes: for each (bucket, key), the new value, or `None` to delete it.
pub type Changes = BTreeMap<(String, String), Option<Vec<u8>>>;

/// A backing store for rule state.
pub trait StateStore: Send {
    /// The values of `keys` in `bucket`, in order.
    fn get_many(&mut self, bucket: &str, keys: &[&str])
    -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// Up to `limit` keys of `bucket` in key order, starting after `after`.
    fn keys_after(
        &mut self,
        bucket: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// Applies one call's writes. Reads see them at once; durability may wait for `flush`.
    fn apply(&mut self, changes: Changes) -> Result<(), StoreError>;

    /// Makes everything applied so far durable.
    fn flush(&mut self) -> Result<(), StoreError>;

    /// Every (bucket, key, value), for `state dump` style inspection and tests.
    fn entries(&mut self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError>;
}
