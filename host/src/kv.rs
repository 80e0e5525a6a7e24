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
