//! The host side of `wasi:keyvalue/store` and `wasi:keyvalue/batch`.
//!
//! Every write a rule makes during a call goes into a per-call overlay, not into the
//! backing [`StateStore`]. When the call returns normally the harness commits the overlay;
//! when it traps, fails, or returns too much, the overlay is dropped. Each record is thus
//! applied whole or not at all, and a trap in the middle of a record cannot leave half
//! its state behind. Reads see the overlay first ("read your writes").
//!
//! The rule cannot grow the host through this interface: keys, values, the bytes one call
//! may write and the number of open buckets are all capped ([`KvLimits`]); going past a cap
//! traps the call. A failure of the backing store also traps it, carrying the
//! [`StoreError`], which the runner turns into an error that stops the harness: a record
//! must never be judged against state that could not be read.
//!
//! `list-keys` cursors are kept in the state itself (a few per bucket), so a listing under
//! way resumes exactly where it was after the harness restarts, and a crashed run replays
//! its tail with the same cursors as the run it replaces.

use std::collections::BTreeSet;
use std::ops::Bound;

use sha2::{Digest, Sha256};
use wasmtime::component::{Resource, ResourceTable};

use crate::bindings::{BucketHandle, batch, store};
use crate::state::{self, CURSORS_TABLE, Changes, StateStore, StoreError};

/// Caps on what a rule may do with its state.
#[derive(Clone, Debug)]
pub struct KvLimits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// Bytes of keys and values one call may write.
    pub max_call_write_bytes: usize,
    pub max_open_buckets: usize,
    /// Keys per `list-keys` page.
    pub page_size: usize,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits {
            max_key_bytes: 4 * 1024,
            max_value_bytes: 1024 * 1024,
            max_call_write_bytes: 16 * 1024 * 1024,
            max_open_buckets: 16,
            page_size: 1000,
        }
    }
}

/// A rule that went past one of the [`KvLimits`]; it traps the call.
#[derive(Debug, thiserror::Error)]
#[error("harness limit: {0}")]
pub struct KvLimitExceeded(pub String);

/// Listings under way per bucket; opening one more forgets the oldest, whose cursor then
/// restarts its listing.
const MAX_CURSORS: usize = 16;

/// The key-value state of one rule, seen through its per-call overlay.
pub struct KvHost {
    store: Box<dyn StateStore>,
    rule: String,
    limits: KvLimits,
    table: ResourceTable,
    open_buckets: usize,
    pending: Changes,
    pending_bytes: usize,
    /// Records in the current call: its write budget is this many records'.
    records: usize,
}

type HostResult<T> = wasmtime::Result<Result<T, store::Error>>;

impl KvHost {
    /// State for a rule; its buckets are tables `rule/{rule}/{identifier}` of `store`.
    pub fn new(store: Box<dyn StateStore>, rule: &str, limits: KvLimits) -> Self {
        KvHost {
            store,
            rule: rule.to_owned(),
            limits,
            table: ResourceTable::new(),
            open_buckets: 0,
            pending: Changes::new(),
            pending_bytes: 0,
            records: 1,
        }
    }

    /// Starts a call over `records` records, with that many records' write budget.
    pub fn begin_call(&mut self, records: usize) {
        self.records = records.max(1);
    }

    pub fn set_rule(&mut self, rule: &str) {
        self.rule = rule.to_owned();
    }

    /// Applies the current call's writes to the store.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        self.pending_bytes = 0;
        let changes = std::mem::take(&mut self.pending);
        if changes.is_empty() {
            Ok(())
        } else {
            self.store.apply(changes)
        }
    }

    /// Drops the current call's writes.
    pub fn discard(&mut self) {
        self.pending.clear();
        self.pending_bytes = 0;
    }

    /// Forgets the handles of an instance that is gone, and its uncommitted writes.
    pub fn reset(&mut self) {
        self.discard();
        self.table = ResourceTable::new();
        self.open_buckets = 0;
    }

    pub fn store(&mut self) -> &mut dyn StateStore {
        self.store.as_mut()
    }

    pub fn into_store(self) -> Box<dyn StateStore> {
        self.store
    }

    fn bucket(&self, handle: &Resource<BucketHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(handle)?.table.clone())
    }

    /// Values of `keys` in `table`, overlay first. A store failure traps the call.
    pub fn read(
        &mut self,
        table: &str,
        keys: &[String],
    ) -> wasmtime::Result<Vec<Option<Vec<u8>>>> {
        let pending = self.pending.get(table);
        let mut values = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (at, key) in keys.iter().enumerate() {
            match pending.and_then(|p| p.get(key)) {
                Some(value) => values.push(value.clone()),
                None => {
                    values.push(None);
                    missing.push(at);
                }
            }
        }
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|&at| keys[at].as_str()).collect();
            let stored = self.store.get_many(table, &names)?;
            for (at, value) in missing.into_iter().zip(stored) {
                values[at] = value;
            }
        }
        Ok(values)
    }

    /// Up to `limit` keys of `table` after `after`, as this call sees them: the store's,
    /// with the call's own writes and deletes.
    fn keys_after(
        &mut self,
        table: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let pending: Vec<(&String, bool)> = self
            .pending
            .get(table)
            .map(|p| p.range::<str, _>((start, Bound::Unbounded)))
            .into_iter()
            .flatten()
            .map(|(key, value)| (key, value.is_some()))
            .collect();
        // Enough stored keys that, with the deleted ones dropped, `limit` are left.
        let deleted = pending.iter().filter(|(_, set)| !set).count();
        let stored = self.store.keys_after(table, after, limit + deleted)?;
        let mut keys: BTreeSet<String> = stored.into_iter().collect();
        for (key, set) in pending {
            if set {
                keys.insert(key.clone());
            } else {
                keys.remove(key);
            }
        }
        Ok(keys.into_iter().take(limit).collect())
    }

    /// Records a write in the overlay; a write past the limits traps the call.
    pub fn write(
        &mut self,
        table: &str,
        key: String,
        value: Option<Vec<u8>>,
    ) -> wasmtime::Result<()> {
        let limits = &self.limits;
        if key.len() > limits.max_key_bytes {
            return Err(limit(format!(
                "a key of {} bytes exceeds the limit of {}",
                key.len(),
                limits.max_key_bytes
            )));
        }
        let size = value.as_ref().map_or(0, Vec::len);
        if size > limits.max_value_bytes {
            return Err(limit(format!(
                "a value of {size} bytes exceeds the limit of {}",
                limits.max_value_bytes
            )));
        }
        self.pending_bytes += key.len() + size;
        let budget = limits.max_call_write_bytes.saturating_mul(self.records);
        if self.pending_bytes > budget {
            return Err(limit(format!(
                "one call of {} record(s) may write at most {budget} bytes",
                self.records
            )));
        }
        state::change(&mut self.pending, table, key, value);
        Ok(())
    }

    /// The listings under way in `table`: cursor → the last key of the page it follows.
    /// A cursor names a key, not an offset, so deleting keys between pages skips nothing.
    fn cursors(&mut self, table: &str) -> wasmtime::Result<Vec<(u64, String)>> {
        let stored = self
            .read(CURSORS_TABLE, &[table.to_owned()])?
            .pop()
            .flatten();
        // The table is the harness's own, checksummed by the store: unreadable is a bug.
        Ok(stored
            .map(|bytes| serde_json::from_slice(&bytes))
            .transpose()?
            .unwrap_or_default())
    }

    pub fn list(
        &mut self,
        table: &str,
        cursor: Option<u64>,
    ) -> wasmtime::Result<store::KeyResponse> {
        let mut cursors = self.cursors(table)?;
        let before = cursors.len();
        let after = cursor.and_then(|c| {
            let at = cursors.iter().position(|(token, _)| *token == c)?;
            Some(cursors.remove(at).1)
        });
        let page = self.limits.page_size;
        let mut keys = self.keys_after(table, after.as_deref(), page + 1)?;
        let next = if keys.len() > page {
            keys.truncate(page);
            let last = keys.last().expect("the page is not empty").clone();
            let token = cursor_token(table, &last);
            cursors.retain(|(t, _)| *t != token);
            cursors.push((token, last));
            if cursors.len() > MAX_CURSORS {
                cursors.remove(0);
            }
            Some(token)
        } else {
            None
        };
        if next.is_some() || cursors.len() != before {
            let value = (!cursors.is_empty())
                .then(|| serde_json::to_vec(&cursors))
                .transpose()?;
            // The harness's own bookkeeping: not counted against the rule's write limits.
            state::change(&mut self.pending, CURSORS_TABLE, table.to_owned(), value);
        }
        Ok(store::KeyResponse { keys, cursor: next })
    }
}

/// A cursor for the page after `last`: the same for the same page in every run.
fn cursor_token(table: &str, last: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(table)
        .chain_update([0])
        .chain_update(last)
        .finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("eight bytes"))
}

fn limit(message: String) -> wasmtime::Error {
    wasmtime::Error::new(KvLimitExceeded(message))
}

impl store::Host for KvHost {
    fn open(&mut self, identifier: String) -> HostResult<Resource<BucketHandle>> {
        if self.open_buckets >= self.limits.max_open_buckets {
            let max = self.limits.max_open_buckets;
            return Err(limit(format!("at most {max} buckets may be open at once")));
        }
        self.open_buckets += 1;
        let table = state::rule_table(&self.rule, &identifier);
        Ok(Ok(self.table.push(BucketHandle { table })?))
    }
}

impl store::HostBucket for KvHost {
    fn get(&mut self, bucket: Resource<BucketHandle>, key: String) -> HostResult<Option<Vec<u8>>> {
        let table = self.bucket(&bucket)?;
        Ok(Ok(self.read(&table, &[key])?.pop().flatten()))
    }

    fn set(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        value: Vec<u8>,
    ) -> HostResult<()> {
        let table = self.bucket(&bucket)?;
        Ok(Ok(self.write(&table, key, Some(value))?))
    }

    fn delete(&mut self, bucket: Resource<BucketHandle>, key: String) -> HostResult<()> {
        let table = self.bucket(&bucket)?;
        Ok(Ok(self.write(&table, key, None)?))
    }

    fn exists(&mut self, bucket: Resource<BucketHandle>, key: String) -> HostResult<bool> {
        let table = self.bucket(&bucket)?;
        Ok(Ok(self.read(&table, &[key])?[0].is_some()))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<BucketHandle>,
        cursor: Option<u64>,
    ) -> HostResult<store::KeyResponse> {
        let table = self.bucket(&bucket)?;
        Ok(Ok(self.list(&table, cursor)?))
    }

    fn drop(&mut self, bucket: Resource<BucketHandle>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        self.open_buckets -= 1;
        Ok(())
    }
}

impl batch::Host for KvHost {
    fn get_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> HostResult<Vec<Option<(String, Vec<u8>)>>> {
        let table = self.bucket(&bucket)?;
        let values = self.read(&table, &keys)?;
        Ok(Ok(keys
            .into_iter()
            .zip(values)
            .map(|(k, v)| v.map(|v| (k, v)))
            .collect()))
    }

    fn set_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> HostResult<()> {
        let table = self.bucket(&bucket)?;
        for (k, v) in key_values {
            self.write(&table, k, Some(v))?;
        }
        Ok(Ok(()))
    }

    fn delete_many(&mut self, bucket: Resource<BucketHandle>, keys: Vec<String>) -> HostResult<()> {
        let table = self.bucket(&bucket)?;
        for k in keys {
            self.write(&table, k, None)?;
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::batch::Host as _;
    use crate::bindings::store::{Host as _, HostBucket as _};
    use crate::state::MemoryStore;

    fn kv(limits: KvLimits) -> (KvHost, Resource<BucketHandle>) {
        let mut kv = KvHost::new(Box::new(MemoryStore::new()), "rule", limits);
        let bucket = kv.open("default".into()).unwrap().unwrap();
        (kv, bucket)
    }

    fn handle(bucket: &Resource<BucketHandle>) -> Resource<BucketHandle> {
        Resource::new_borrow(bucket.rep())
    }

    fn set(kv: &mut KvHost, bucket: &Resource<BucketHandle>, key: &str) -> wasmtime::Result<()> {
        kv.set(handle(bucket), key.into(), b"v".to_vec())
            .map(|r| r.unwrap())
    }

    fn stored(kv: &mut KvHost) -> Vec<(String, String)> {
        let entries = kv.store().entries().unwrap().into_iter();
        entries.map(|(t, k, _)| (t, k)).collect()
    }

    #[test]
    fn writes_are_visible_at_once_and_stored_only_on_commit() {
        let (mut kv, bucket) = kv(KvLimits::default());
        set(&mut kv, &bucket, "a").unwrap();
        assert_eq!(
            kv.get(handle(&bucket), "a".into()).unwrap().unwrap(),
            Some(b"v".to_vec())
        );
        assert!(
            stored(&mut kv).is_empty(),
            "nothing reaches the store before commit"
        );
        kv.commit().unwrap();
        set(&mut kv, &bucket, "b").unwrap();
        kv.delete(handle(&bucket), "a".into()).unwrap().unwrap();
        assert!(
            !kv.exists(handle(&bucket), "a".into()).unwrap().unwrap(),
            "a pending delete hides the stored value"
        );
        kv.discard();
        assert_eq!(
            stored(&mut kv),
            [("rule/rule/default".to_owned(), "a".to_owned())]
        );
        let many = kv
            .get_many(handle(&bucket), vec!["a".into(), "b".into()])
            .unwrap()
            .unwrap();
        assert_eq!(many, [Some(("a".into(), b"v".to_vec())), None]);
    }

    /// Lists the bucket to its end, deleting each page as the rule's sweep does, with a
    /// new host (as after a restart) every `restart_every` pages.
    fn sweep(kv: KvHost, restart_every: usize) -> (KvHost, Vec<String>) {
        let mut kv = kv;
        let mut bucket = kv.open("default".into()).unwrap().unwrap();
        let (mut listed, mut cursor, mut pages) = (Vec::new(), None, 0);
        loop {
            let page = kv.list_keys(handle(&bucket), cursor).unwrap().unwrap();
            kv.delete_many(handle(&bucket), page.keys.clone())
                .unwrap()
                .unwrap();
            kv.commit().unwrap();
            listed.extend(page.keys);
            pages += 1;
            if pages % restart_every == 0 {
                kv = KvHost::new(
                    kv.into_store(),
                    "rule",
                    KvLimits {
                        page_size: 2,
                        ..KvLimits::default()
                    },
                );
                bucket = kv.open("default".into()).unwrap().unwrap();
            }
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return (kv, listed),
            }
        }
    }

    #[test]
    fn cursors_name_keys_and_outlive_the_host() {
        for restart_every in [1, 2, 100] {
            let (mut kv, bucket) = kv(KvLimits {
                page_size: 2,
                ..KvLimits::default()
            });
            for key in ["a", "b", "c", "d", "e"] {
                set(&mut kv, &bucket, key).unwrap();
            }
            kv.commit().unwrap();
            let (mut kv, listed) = sweep(kv, restart_every);
            assert_eq!(listed, ["a", "b", "c", "d", "e"], "{restart_every}");
            assert!(
                stored(&mut kv).is_empty(),
                "finished listings leave no cursor behind"
            );
        }
        // A cursor the host does not know starts over rather than failing.
        let (mut kv, bucket) = kv(KvLimits::default());
        set(&mut kv, &bucket, "z").unwrap();
        kv.commit().unwrap();
        let page = kv.list_keys(handle(&bucket), Some(12345)).unwrap().unwrap();
        assert_eq!(page.keys, ["z"]);
    }

    /// Within one call (a batch of records), a listing sees the call's own writes, as the
    /// next record of a run of single records sees its predecessors' committed ones.
    #[test]
    fn a_listing_sees_the_calls_own_writes() {
        let (mut kv, bucket) = kv(KvLimits {
            page_size: 3,
            ..KvLimits::default()
        });
        for key in ["a", "c", "e", "g"] {
            set(&mut kv, &bucket, key).unwrap();
        }
        kv.commit().unwrap();
        set(&mut kv, &bucket, "b").unwrap();
        kv.delete(handle(&bucket), "c".into()).unwrap().unwrap();
        kv.delete(handle(&bucket), "e".into()).unwrap().unwrap();
        let first = kv.list_keys(handle(&bucket), None).unwrap().unwrap();
        assert_eq!(first.keys, ["a", "b", "g"]);
        assert!(first.cursor.is_none(), "nothing after g");
    }

    #[test]
    fn going_past_a_limit_traps_the_call() {
        let limits = KvLimits {
            max_key_bytes: 4,
            max_value_bytes: 1,
            max_call_write_bytes: 6,
            max_open_buckets: 2,
            ..KvLimits::default()
        };
        let (mut kv, bucket) = kv(limits);
        let trap = |e: wasmtime::Error| e.downcast::<KvLimitExceeded>().unwrap().0;
        assert!(trap(set(&mut kv, &bucket, "toolong").unwrap_err()).contains("key of 7 bytes"));
        let big = kv
            .set(handle(&bucket), "k".into(), b"vv".to_vec())
            .unwrap_err();
        assert!(trap(big).contains("value of 2 bytes"));
        set(&mut kv, &bucket, "abc").unwrap();
        assert!(trap(set(&mut kv, &bucket, "def").unwrap_err()).contains("at most 6 bytes"));
        kv.discard();
        set(&mut kv, &bucket, "def").unwrap();
        kv.open("second".into()).unwrap().unwrap();
        assert!(trap(kv.open("third".into()).unwrap_err()).contains("at most 2 buckets"));
    }
}
