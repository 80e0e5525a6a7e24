//! The host side of `wasi:keyvalue/store` and `wasi:keyvalue/batch`.
//!
//! Every write a rule makes during a call goes into a per-call overlay, not into the
//! backing [`StateStore`]. When the call returns normally the harness commits the overlay;
//! when it traps, fails, or returns too much, the overlay is dropped. Each record is thus
//! applied whole or not at all, and a trap in the middle of a record cannot leave half
//! its state behind. Reads see the overlay first ("read your writes").
//!
//! The rule cannot grow the host through this interface: keys, values, the bytes one call
//! may write and the number of open buckets are all capped ([`KvLimits`]).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use wasmtime::component::{Resource, ResourceTable};

use crate::bindings::{batch, store};
use crate::state::{Changes, StateStore, StoreError};

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

/// An open bucket, as the rule holds it: the host-side name of its table.
pub struct BucketHandle {
    name: String,
}

/// `list-keys` cursors remembered at most; an older (or forged) cursor restarts the listing.
const MAX_CURSORS: usize = 4096;

/// The key-value state of one rule, seen through its per-call overlay.
pub struct KvHost {
    store: Box<dyn StateStore>,
    namespace: String,
    limits: KvLimits,
    table: ResourceTable,
    open_buckets: usize,
    pending: Changes,
    pending_bytes: usize,
    /// Cursor → (bucket, last key of the page it follows). A cursor names a key, not an
    /// offset, so deleting keys between pages skips nothing.
    cursors: HashMap<u64, (String, String)>,
}

impl KvHost {
    /// State for a rule; its buckets are named `{namespace}/{identifier}` in `store`.
    pub fn new(store: Box<dyn StateStore>, namespace: &str, limits: KvLimits) -> Self {
        KvHost {
            store,
            namespace: namespace.to_owned(),
            limits,
            table: ResourceTable::new(),
            open_buckets: 0,
            pending: Changes::new(),
            pending_bytes: 0,
            cursors: HashMap::new(),
        }
    }

    pub fn set_namespace(&mut self, namespace: &str) {
        self.namespace = namespace.to_owned();
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
        Ok(self.table.get(handle)?.name.clone())
    }

    fn read(
        &mut self,
        bucket: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, store::Error> {
        let mut values: Vec<Option<Option<Vec<u8>>>> = keys
            .iter()
            .map(|k| self.pending.get(&(bucket.to_owned(), k.clone())).cloned())
            .collect();
        let missing: Vec<&str> = keys
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.as_str())
            .collect();
        if !missing.is_empty() {
            let mut stored = self
                .store
                .get_many(bucket, &missing)
                .map_err(other)?
                .into_iter();
            for value in values.iter_mut().filter(|v| v.is_none()) {
                *value = Some(stored.next().flatten());
            }
        }
        Ok(values.into_iter().map(Option::flatten).collect())
    }

    fn write(
        &mut self,
        bucket: &str,
        key: String,
        value: Option<Vec<u8>>,
    ) -> Result<(), store::Error> {
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
        if self.pending_bytes > limits.max_call_write_bytes {
            return Err(limit(format!(
                "one call may write at most {} bytes",
                limits.max_call_write_bytes
            )));
        }
        self.pending.insert((bucket.to_owned(), key), value);
        Ok(())
    }

    fn list(
        &mut self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, store::Error> {
        let after = cursor
            .and_then(|c| self.cursors.get(&c))
            .filter(|(b, _)| b == bucket)
            .map(|(_, key)| key.clone());
        let page = self.limits.page_size;
        let mut keys = self
            .store
            .keys_after(bucket, after.as_deref(), page + 1)
            .map_err(other)?;
        let cursor = if keys.len() > page {
            keys.truncate(page);
            let last = keys.last().expect("page is not empty").clone();
            let mut hasher = DefaultHasher::new();
            (bucket, &last).hash(&mut hasher);
            let token = hasher.finish();
            if self.cursors.len() >= MAX_CURSORS {
                self.cursors.clear();
            }
            self.cursors.insert(token, (bucket.to_owned(), last));
            Some(token)
        } else {
            None
        };
        Ok(store::KeyResponse { keys, cursor })
    }
}

fn other(e: StoreError) -> store::Error {
    store::Error::Other(e.0)
}

fn limit(message: String) -> store::Error {
    store::Error::Other(format!("harness limit: {message}"))
}

impl store::Host for KvHost {
    fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<BucketHandle>, store::Error>> {
        if self.open_buckets >= self.limits.max_open_buckets {
            let max = self.limits.max_open_buckets;
            return Ok(Err(limit(format!(
                "at most {max} buckets may be open at once"
            ))));
        }
        self.open_buckets += 1;
        let name = format!("{}/{identifier}", self.namespace);
        Ok(Ok(self.table.push(BucketHandle { name })?))
    }
}

impl store::HostBucket for KvHost {
    fn get(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let bucket = self.bucket(&bucket)?;
        Ok(self
            .read(&bucket, std::slice::from_ref(&key))
            .map(|mut v| v.pop().flatten()))
    }

    fn set(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let bucket = self.bucket(&bucket)?;
        Ok(self.write(&bucket, key, Some(value)))
    }

    fn delete(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let bucket = self.bucket(&bucket)?;
        Ok(self.write(&bucket, key, None))
    }

    fn exists(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let bucket = self.bucket(&bucket)?;
        Ok(self
            .read(&bucket, std::slice::from_ref(&key))
            .map(|v| v[0].is_some()))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<BucketHandle>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let bucket = self.bucket(&bucket)?;
        Ok(self.list(&bucket, cursor))
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
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, store::Error>> {
        let name = self.bucket(&bucket)?;
        Ok(self.read(&name, &keys).map(|values| {
            keys.into_iter()
                .zip(values)
                .map(|(k, v)| v.map(|v| (k, v)))
                .collect()
        }))
    }

    fn set_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.bucket(&bucket)?;
        Ok(key_values
            .into_iter()
            .try_for_each(|(k, v)| self.write(&name, k, Some(v))))
    }

    fn delete_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.bucket(&bucket)?;
        Ok(keys
            .into_iter()
            .try_for_each(|k| self.write(&name, k, None)))
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

    fn set(
        kv: &mut KvHost,
        bucket: &Resource<BucketHandle>,
        key: &str,
    ) -> Result<(), store::Error> {
        kv.set(handle(bucket), key.into(), b"v".to_vec()).unwrap()
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
            kv.store().entries().unwrap().is_empty(),
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
        let stored: Vec<_> = kv
            .store()
            .entries()
            .unwrap()
            .into_iter()
            .map(|(b, k, _)| (b, k))
            .collect();
        assert_eq!(stored, [("rule/default".to_owned(), "a".to_owned())]);
        let many = kv
            .get_many(handle(&bucket), vec!["a".into(), "b".into()])
            .unwrap()
            .unwrap();
        assert_eq!(many, [Some(("a".into(), b"v".to_vec())), None]);
    }

    #[test]
    fn cursors_name_keys_so_deleting_between_pages_skips_nothing() {
        let (mut kv, bucket) = kv(KvLimits {
            page_size: 2,
            ..KvLimits::default()
        });
        for key in ["a", "b", "c", "d", "e"] {
            set(&mut kv, &bucket, key).unwrap();
        }
        kv.commit().unwrap();
        let (mut listed, mut cursor) = (Vec::new(), None);
        loop {
            let page = kv.list_keys(handle(&bucket), cursor).unwrap().unwrap();
            // Delete the page just listed, as the rule's sweep does.
            kv.delete_many(handle(&bucket), page.keys.clone())
                .unwrap()
                .unwrap();
            kv.commit().unwrap();
            listed.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(listed, ["a", "b", "c", "d", "e"]);
        // A cursor the host does not know starts over rather than failing.
        set(&mut kv, &bucket, "z").unwrap();
        kv.commit().unwrap();
        assert_eq!(
            kv.list_keys(handle(&bucket), Some(12345))
                .unwrap()
                .unwrap()
                .keys,
            ["z"]
        );
    }

    #[test]
    fn limits_refuse_oversized_writes_and_too_many_buckets() {
        let limits = KvLimits {
            max_key_bytes: 4,
            max_value_bytes: 1,
            max_call_write_bytes: 6,
            max_open_buckets: 2,
            ..KvLimits::default()
        };
        let (mut kv, bucket) = kv(limits);
        assert!(
            matches!(set(&mut kv, &bucket, "toolong"), Err(store::Error::Other(m)) if m.contains("key of 7 bytes"))
        );
        let big = kv.set(handle(&bucket), "k".into(), b"vv".to_vec()).unwrap();
        assert!(matches!(big, Err(store::Error::Other(m)) if m.contains("value of 2 bytes")));
        set(&mut kv, &bucket, "abc").unwrap();
        assert!(
            matches!(set(&mut kv, &bucket, "def"), Err(store::Error::Other(m)) if m.contains("at most 6 bytes"))
        );
        kv.discard();
        set(&mut kv, &bucket, "def").unwrap();
        kv.open("second".into()).unwrap().unwrap();
        assert!(
            matches!(kv.open("third".into()).unwrap(), Err(store::Error::Other(m)) if m.contains("at most 2 buckets"))
        );
    }
}
