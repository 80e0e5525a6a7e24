//! The host side of `wasi:keyvalue/store` and `wasi:keyvalue/batch`.
//!
//! The rule reaches its state only within a [`Call`], the one transaction type of every
//! call into a rule: `process-event` and `process-batch` in the sandbox, and the rule
//! compiled into the harness. Every write a rule makes during a call goes into the call's
//! overlay, not into the backing [`StateStore`]. When the call returns normally the
//! harness commits it ([`Call::commit`]); when it traps, fails, or returns too much, the
//! call is dropped, and its writes with it. Each record is thus applied whole or not at
//! all, and a trap in the middle of a record cannot leave half its state behind. Reads
//! see the overlay first ("read your writes").
//!
//! `describe`, `configure` and instantiation run in a call of [`Phase::Setup`], which has
//! no store: `open` returns the `other` error there, so no bucket is opened and nothing
//! written. (The rule's name, which names its tables, is not even known during
//! `describe`.)
//!
//! The rule cannot grow the host through this interface: keys, values, the bytes and the
//! entries one call may write, bucket names, the buckets a rule may have and those open at
//! once are all capped ([`KvLimits`]); going past a cap traps the call. Nor can it keep the
//! host busy past the call's deadline ([`KvHost::set_deadline`]): the epoch that stops
//! wasm code is not checked while the host works, so every host function checks the
//! deadline itself (on entry, and as it goes through a long list) and traps the call with
//! [`DeadlineExceeded`] once it has passed.
//!
//! A bucket that does not exist reads as empty and creates nothing: only a write of a
//! value (counted against the call's budget and the rule's buckets) creates one, and
//! deleting its last key removes it. A failure of the backing store also traps the call, carrying the
//! [`StoreError`], which the runner turns into an error that stops the harness: a record
//! must never be judged against state that could not be read.
//!
//! `list-keys` cursors are kept in the state itself (a few per bucket, in one entry of
//! [`CURSORS_TABLE`] per bucket), so a listing under way resumes exactly where it was after
//! the harness restarts, and a crashed run replays its tail with the same cursors as the
//! run it replaces. Writing that entry counts against the call's budgets like the rule's
//! own writes, and a call that leaves a bucket without keys removes the bucket's entry with
//! it: cursor entries exist only for buckets that exist, which [`KvLimits::max_buckets`]
//! bounds.

use std::collections::BTreeSet;
use std::ops::{Bound, Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Resource, ResourceTable};

use crate::bindings::{BucketHandle, batch, store};
use crate::state::{self, CURSORS_TABLE, Changes, StateStore, StoreError};

/// Caps on what a rule may do with its state.
#[derive(Clone, Debug)]
pub struct KvLimits {
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Longest value, in bytes.
    pub max_value_bytes: usize,
    /// Bytes of keys and values one call may write, per record it carries. The harness's
    /// cursor entry, written by `list-keys`, counts too.
    pub max_call_write_bytes: usize,
    /// Keys one call may set or delete, per record it carries: every `set` and `delete`,
    /// each key of `set-many` and `delete-many`, and each write of the harness's cursor
    /// entry counts one. An entry costs the host about 64 bytes beyond its key and value
    /// (its place in the call's map of writes, its key's allocation), which
    /// `max_call_write_bytes` does not see: the default allows one entry per 64 bytes of
    /// the write budget (262,144), so a call of many small keys (a `delete-many` of
    /// millions of 4-byte keys) costs the host no more than one of a few large ones.
    pub max_call_entries: usize,
    /// Buckets a rule may hold open at once.
    pub max_open_buckets: usize,
    /// Longest bucket name (the identifier a rule opens), in bytes.
    pub max_bucket_name_bytes: usize,
    /// Buckets a rule may have: those of its buckets that exist in the store (hold a key),
    /// with those the call under way creates. Reading or opening a bucket that does not
    /// exist does not count; writing to one does.
    pub max_buckets: usize,
    /// Keys per `list-keys` page.
    pub page_size: usize,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits {
            max_key_bytes: 4 * 1024,
            max_value_bytes: 1024 * 1024,
            max_call_write_bytes: 16 * 1024 * 1024,
            max_call_entries: 16 * 1024 * 1024 / 64,
            max_open_buckets: 16,
            max_bucket_name_bytes: 256,
            max_buckets: 64,
            page_size: 1000,
        }
    }
}

/// A rule that went past one of the [`KvLimits`]; it traps the call. The message names
/// the limit.
#[derive(Debug, thiserror::Error)]
#[error("harness limit: {0}")]
pub struct KvLimitExceeded(pub String);

/// A call that ran past its deadline while the host worked for it; it traps the call, with
/// the message the epoch deadline gives (the deadline per record).
#[derive(Debug, thiserror::Error)]
#[error("the call ran past its deadline of {0:?}")]
pub struct DeadlineExceeded(pub Duration);

/// What `open` (and every other use of the store) returns outside `process-event` and
/// `process-batch`.
pub const UNAVAILABLE: &str = "the key-value store is not available during describe or \
    configure: a rule may use it only in process-event and process-batch";

/// Listings under way per bucket; opening one more forgets the oldest, whose cursor then
/// restarts its listing.
const MAX_CURSORS: usize = 16;

/// Keys a host function goes through between two checks of the deadline.
const CHUNK: usize = 256;

/// What a call into a rule is for, which decides whether it may use the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `describe`, `configure`, or instantiation: no store. The rule's name may not be
    /// known yet, and nothing written there would belong to a record.
    Setup,
    /// `process-event` or `process-batch` over this many records, with that many records'
    /// write budget.
    Records(usize),
}

/// What holds a rule's [`KvHost`]: the host itself, or the wasmtime store of a rule's
/// instance. A [`Call`] is begun on it.
pub trait WithKv {
    /// The rule's key-value state.
    fn kv(&mut self) -> &mut KvHost;
}

impl WithKv for KvHost {
    fn kv(&mut self) -> &mut KvHost {
        self
    }
}

/// One call into a rule, as a transaction over its state: begun with [`Call::begin`],
/// ended by [`Call::commit`], which applies the call's writes to the store, or by being
/// dropped, which forgets them. It dereferences to what holds the state, through which
/// the call is made (a wasmtime `Store` is passed to the rule's export as `&mut *call`).
#[must_use = "a call dropped without `commit` discards its writes"]
pub struct Call<'a, T: WithKv + ?Sized> {
    holder: &'a mut T,
}

impl<'a, T: WithKv + ?Sized> Call<'a, T> {
    /// Begins a call in `phase`; one of [`Phase::Records`] may use the store.
    pub fn begin(holder: &'a mut T, phase: Phase) -> Self {
        holder.kv().begin(phase);
        Call { holder }
    }

    /// Ends the call, applying its writes to the store.
    pub fn commit(self) -> Result<(), StoreError> {
        // What `drop` then discards is nothing.
        self.holder.kv().commit()
    }

    /// The values of `keys` in the rule's bucket `bucket`, as this call sees them. An error
    /// (a limit, the store failing, no store in this phase) fails the call.
    pub fn read(
        &mut self,
        bucket: &str,
        keys: &[impl AsRef<str>],
    ) -> wasmtime::Result<Vec<Option<Vec<u8>>>> {
        let kv = self.holder.kv();
        kv.check_deadline()?;
        let table = kv.table_named(bucket)?;
        kv.read(&table, keys)
    }

    /// Sets `key` of `bucket` to `value`, or deletes it (`None`), within the call's limits.
    pub fn write(
        &mut self,
        bucket: &str,
        key: String,
        value: Option<Vec<u8>>,
    ) -> wasmtime::Result<()> {
        let kv = self.holder.kv();
        kv.check_deadline()?;
        let table = kv.table_named(bucket)?;
        kv.write(&table, key, value)
    }

    /// One page of the keys of `bucket`, after the page that `cursor` follows.
    pub fn list(
        &mut self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> wasmtime::Result<store::KeyResponse> {
        let kv = self.holder.kv();
        kv.check_deadline()?;
        let table = kv.table_named(bucket)?;
        kv.list(&table, cursor)
    }
}

impl<T: WithKv + ?Sized> Deref for Call<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.holder
    }
}

impl<T: WithKv + ?Sized> DerefMut for Call<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.holder
    }
}

impl<T: WithKv + ?Sized> Drop for Call<'_, T> {
    fn drop(&mut self) {
        self.holder.kv().discard();
    }
}

/// The writes of a call of [`Phase::Records`], not yet in the store.
#[derive(Default)]
struct Pending {
    /// Records in the call: its write budget is this many records'.
    records: usize,
    changes: Changes,
    bytes: usize,
    /// Keys set or deleted, the harness's cursor entry included.
    entries: usize,
    /// Rule tables this call has set a value in: each exists, or is counted in `created`.
    written: BTreeSet<String>,
    /// Tables this call creates.
    created: usize,
}

/// The key-value state of one rule, seen through the overlay of the call under way.
pub struct KvHost {
    store: Box<dyn StateStore>,
    /// Names the rule's tables; `None` until the rule has described itself.
    rule: Option<String>,
    /// The last bucket named and its table: a compiled-in rule names its bucket on every
    /// read and write, and need not have its table's name made each time.
    last_table: Option<(String, Arc<str>)>,
    limits: KvLimits,
    table: ResourceTable,
    open_buckets: usize,
    /// The call under way, if it may use the store.
    pending: Option<Pending>,
    /// How long a call may take per record it carries; `None`: as long as it likes.
    deadline: Option<Duration>,
    /// When the call under way began, and how long it may take.
    call_time: Option<(Instant, Duration)>,
}

type HostResult<T> = wasmtime::Result<Result<T, store::Error>>;

/// The value of a [`HostResult`], or an early return of its error to the rule.
macro_rules! or_return {
    ($result:expr) => {
        match $result? {
            Ok(value) => value,
            Err(error) => return Ok(Err(error)),
        }
    };
}

impl KvHost {
    /// State over `store`, for a rule not yet named ([`KvHost::set_rule`]).
    pub fn new(store: Box<dyn StateStore>, limits: KvLimits) -> Self {
        KvHost {
            store,
            rule: None,
            last_table: None,
            limits,
            table: ResourceTable::new(),
            open_buckets: 0,
            pending: None,
            deadline: None,
            call_time: None,
        }
    }

    /// Gives every later call `deadline` per record it carries, as the epoch does to its
    /// wasm code: a host function entered after it has passed, or working past it, traps
    /// the call with [`DeadlineExceeded`].
    pub fn set_deadline(&mut self, deadline: Duration) {
        self.deadline = Some(deadline);
    }

    /// Traps the call if it has run past its deadline.
    fn check_deadline(&self) -> wasmtime::Result<()> {
        match (self.deadline, self.call_time) {
            (Some(deadline), Some((began, allowed))) if began.elapsed() > allowed => {
                Err(wasmtime::Error::new(DeadlineExceeded(deadline)))
            }
            _ => Ok(()),
        }
    }

    /// Names the rule: its buckets are the tables `rule/{rule}/{bucket}` of the store.
    pub fn set_rule(&mut self, rule: &str) {
        self.rule = Some(rule.to_owned());
        self.last_table = None;
    }

    fn begin(&mut self, phase: Phase) {
        let records = match phase {
            Phase::Setup => 1,
            Phase::Records(records) => records.max(1),
        };
        self.call_time = self.deadline.map(|deadline| {
            let records = u32::try_from(records).unwrap_or(u32::MAX);
            (Instant::now(), deadline.saturating_mul(records))
        });
        self.pending = match phase {
            Phase::Setup => None,
            Phase::Records(records) => Some(Pending {
                records: records.max(1),
                ..Pending::default()
            }),
        };
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        let Some(Pending { changes, .. }) = self.pending.take() else {
            return Ok(());
        };
        if changes.is_empty() {
            return Ok(());
        }
        // The tables this call may have left without keys: those it deleted in, and those
        // whose cursors it wrote (an entry from an older run may outlive its table).
        let listed = changes
            .get(CURSORS_TABLE)
            .into_iter()
            .flat_map(|c| c.keys());
        let deleted = (changes.iter())
            .filter(|(table, writes)| {
                *table != CURSORS_TABLE && writes.values().any(Option::is_none)
            })
            .map(|(table, _)| table);
        let maybe_gone: BTreeSet<String> = listed.chain(deleted).cloned().collect();
        self.store.apply(changes)?;
        // A table that is gone takes its listings with it.
        let mut gone = Changes::new();
        for table in maybe_gone {
            if !self.store.has_table(&table)? {
                state::change(&mut gone, CURSORS_TABLE, table, None);
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        self.store.apply(gone)
    }

    fn discard(&mut self) {
        self.pending = None;
        self.call_time = None;
    }

    /// Forgets the handles of an instance that is gone, and any call under way.
    pub fn reset(&mut self) {
        self.discard();
        self.table = ResourceTable::new();
        self.open_buckets = 0;
    }

    /// The backing store.
    pub fn store(&mut self) -> &mut dyn StateStore {
        self.store.as_mut()
    }

    /// The backing store, as it is (what is not committed to it is not in it).
    pub fn into_store(self) -> Box<dyn StateStore> {
        self.store
    }

    /// The table of the rule's bucket `identifier`, if the call may use the store: a name
    /// past the limit traps.
    fn table_of(&mut self, identifier: &str) -> HostResult<Arc<str>> {
        let (Some(rule), Some(_)) = (&self.rule, &self.pending) else {
            return Ok(Err(store::Error::Other(UNAVAILABLE.to_owned())));
        };
        let max = self.limits.max_bucket_name_bytes;
        if identifier.len() > max {
            return Err(limit(format!(
                "a bucket name of {} bytes exceeds the limit of {max}",
                identifier.len()
            )));
        }
        if let Some((named, table)) = &self.last_table
            && named == identifier
        {
            return Ok(Ok(table.clone()));
        }
        let table: Arc<str> = state::rule_table(rule, identifier).into();
        self.last_table = Some((identifier.to_owned(), table.clone()));
        Ok(Ok(table))
    }

    /// [`KvHost::table_of`], the rule's error as a failure of the call.
    fn table_named(&mut self, identifier: &str) -> wasmtime::Result<Arc<str>> {
        self.table_of(identifier)?
            .map_err(|e| wasmtime::format_err!("key-value store: {e:?}"))
    }

    /// The table of an open bucket, if the call may use the store.
    fn bucket(&self, handle: &Resource<BucketHandle>) -> HostResult<Arc<str>> {
        if self.pending.is_none() {
            return Ok(Err(store::Error::Other(UNAVAILABLE.to_owned())));
        }
        Ok(Ok(self.table.get(handle)?.table.clone()))
    }

    fn pending(&mut self) -> wasmtime::Result<&mut Pending> {
        self.pending.as_mut().ok_or_else(unavailable)
    }

    /// Values of `keys` in `table`, overlay first. A store failure traps the call.
    fn read(
        &mut self,
        table: &str,
        keys: &[impl AsRef<str>],
    ) -> wasmtime::Result<Vec<Option<Vec<u8>>>> {
        let pending = self.pending.as_ref().ok_or_else(unavailable)?;
        let pending = pending.changes.get(table);
        let mut values = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (at, key) in keys.iter().enumerate() {
            match pending.and_then(|p| p.get(key.as_ref())) {
                Some(value) => values.push(value.clone()),
                None => {
                    values.push(None);
                    missing.push(at);
                }
            }
        }
        // In chunks, so that a long list cannot keep the host past the deadline.
        for chunk in missing.chunks(CHUNK) {
            self.check_deadline()?;
            let names: Vec<&str> = chunk.iter().map(|&at| keys[at].as_ref()).collect();
            let stored = self.store.get_many(table, &names)?;
            for (&at, value) in chunk.iter().zip(stored) {
                values[at] = value;
            }
        }
        Ok(values)
    }

    /// [`KvHost::read`] of one key, without its lists.
    fn read_one(&mut self, table: &str, key: &str) -> wasmtime::Result<Option<Vec<u8>>> {
        let pending = self.pending.as_ref().ok_or_else(unavailable)?;
        match pending.changes.get(table).and_then(|p| p.get(key)) {
            Some(value) => Ok(value.clone()),
            None => Ok(self.store.get(table, key)?),
        }
    }

    /// Up to `limit` keys of `table` after `after`, as this call sees them: the store's,
    /// with the call's own writes and deletes.
    fn keys_after(
        &mut self,
        table: &str,
        after: Option<&str>,
        limit: usize,
    ) -> wasmtime::Result<Vec<String>> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let pending: Vec<(&String, bool)> = (self.pending.as_ref())
            .ok_or_else(unavailable)?
            .changes
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
    fn write(&mut self, table: &str, key: String, value: Option<Vec<u8>>) -> wasmtime::Result<()> {
        let size = value.as_ref().map_or(0, Vec::len);
        self.check_sizes(key.len(), size)?;
        if value.is_some() {
            self.admit(table)?;
        }
        self.charge(key.len() + size)?;
        state::change(&mut self.pending()?.changes, table, key, value);
        Ok(())
    }

    /// Counts one entry of `bytes` against the call's budgets, and every [`CHUNK`]
    /// entries checks the deadline.
    fn charge(&mut self, bytes: usize) -> wasmtime::Result<()> {
        let (max_bytes, max_entries) = (
            self.limits.max_call_write_bytes,
            self.limits.max_call_entries,
        );
        let pending = self.pending()?;
        pending.bytes += bytes;
        pending.entries += 1;
        let (records, entries) = (pending.records, pending.entries);
        let budget = max_bytes.saturating_mul(records);
        if pending.bytes > budget {
            return Err(limit(format!(
                "one call of {records} record(s) may write at most {budget} bytes"
            )));
        }
        let max = max_entries.saturating_mul(records);
        if entries > max {
            return Err(limit(format!(
                "one call of {records} record(s) may write or delete at most {max} keys"
            )));
        }
        if entries % CHUNK == 0 {
            self.check_deadline()?;
        }
        Ok(())
    }

    fn check_sizes(&self, key: usize, value: usize) -> wasmtime::Result<()> {
        let limits = &self.limits;
        if key > limits.max_key_bytes {
            return Err(limit(format!(
                "a key of {key} bytes exceeds the limit of {}",
                limits.max_key_bytes
            )));
        }
        if value > limits.max_value_bytes {
            return Err(limit(format!(
                "a value of {value} bytes exceeds the limit of {}",
                limits.max_value_bytes
            )));
        }
        Ok(())
    }

    /// Lets the call set a value in `table`: if the table does not exist, the call creates
    /// it, within the rule's bucket limit.
    fn admit(&mut self, table: &str) -> wasmtime::Result<()> {
        if self.pending()?.written.contains(table) {
            return Ok(());
        }
        if !self.store.has_table(table)? {
            let rule = self.rule.as_deref().unwrap_or_default();
            let existing = self.store.tables(&state::rule_prefix(rule))?.len();
            let max = self.limits.max_buckets;
            if existing + self.pending()?.created >= max {
                return Err(limit(format!("a rule may have at most {max} buckets")));
            }
            self.pending()?.created += 1;
        }
        self.pending()?.written.insert(table.to_owned());
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

    /// One page of the keys of `table`, after the page that `cursor` follows.
    fn list(&mut self, table: &str, cursor: Option<u64>) -> wasmtime::Result<store::KeyResponse> {
        let mut cursors = self.cursors(table)?;
        let before = cursors.len();
        let after = cursor.and_then(|c| {
            let at = cursors.iter().position(|(token, _)| *token == c)?;
            Some(cursors.remove(at).1)
        });
        let page = self.limits.page_size;
        let mut keys = self.keys_after(table, after.as_deref(), page + 1)?;
        let next = (keys.len() > page).then(|| {
            keys.truncate(page);
            let last = keys.last().expect("the page is not empty").clone();
            let token = cursor_token(table, &last);
            cursors.retain(|(t, _)| *t != token);
            cursors.push((token, last));
            if cursors.len() > MAX_CURSORS {
                cursors.remove(0);
            }
            token
        });
        if next.is_some() || cursors.len() != before {
            let value = (!cursors.is_empty())
                .then(|| serde_json::to_vec(&cursors))
                .transpose()?;
            // The harness's own bookkeeping, but the rule's doing: it counts against the
            // call's budgets like the rule's writes.
            self.charge(table.len() + value.as_ref().map_or(0, Vec::len))?;
            let changes = &mut self.pending()?.changes;
            state::change(changes, CURSORS_TABLE, table.to_owned(), value);
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

/// The failure of a call that used the store in a phase without one.
fn unavailable() -> wasmtime::Error {
    wasmtime::format_err!("{UNAVAILABLE}")
}

fn limit(message: String) -> wasmtime::Error {
    wasmtime::Error::new(KvLimitExceeded(message))
}

impl store::Host for KvHost {
    fn open(&mut self, identifier: String) -> HostResult<Resource<BucketHandle>> {
        self.check_deadline()?;
        let table = or_return!(self.table_of(&identifier));
        if self.open_buckets >= self.limits.max_open_buckets {
            let max = self.limits.max_open_buckets;
            return Err(limit(format!("at most {max} buckets may be open at once")));
        }
        self.open_buckets += 1;
        Ok(Ok(self.table.push(BucketHandle { table })?))
    }
}

impl store::HostBucket for KvHost {
    fn get(&mut self, bucket: Resource<BucketHandle>, key: String) -> HostResult<Option<Vec<u8>>> {
        self.check_deadline()?;
        let table = or_return!(self.bucket(&bucket));
        Ok(Ok(self.read_one(&table, &key)?))
    }

    fn set(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        value: Vec<u8>,
    ) -> HostResult<()> {
        self.check_deadline()?;
        let table = or_return!(self.bucket(&bucket));
        Ok(Ok(self.write(&table, key, Some(value))?))
    }

    fn delete(&mut self, bucket: Resource<BucketHandle>, key: String) -> HostResult<()> {
        self.check_deadline()?;
        let table = or_return!(self.bucket(&bucket));
        Ok(Ok(self.write(&table, key, None)?))
    }

    fn exists(&mut self, bucket: Resource<BucketHandle>, key: String) -> HostResult<bool> {
        self.check_deadline()?;
        let table = or_return!(self.bucket(&bucket));
        Ok(Ok(self.read_one(&table, &key)?.is_some()))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<BucketHandle>,
        cursor: Option<u64>,
    ) -> HostResult<store::KeyResponse> {
        self.check_deadline()?;
        let table = or_return!(self.bucket(&bucket));
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
        self.check_deadline()?;
        let table = or_return!(self.bucket(&bucket));
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
        self.check_deadline()?;
        let table = or_return!(self.bucket(&bucket));
        for (k, v) in key_values {
            self.write(&table, k, Some(v))?;
        }
        Ok(Ok(()))
    }

    fn delete_many(&mut self, bucket: Resource<BucketHandle>, keys: Vec<String>) -> HostResult<()> {
        self.check_deadline()?;
        let table = or_return!(self.bucket(&bucket));
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
    use crate::state::{MemoryStore, RedbStore};

    /// A host for the rule `rule` over `store`, in a call of one record.
    fn host(store: Box<dyn StateStore>, limits: KvLimits) -> KvHost {
        let mut kv = KvHost::new(store, limits);
        kv.set_rule("rule");
        kv.begin(Phase::Records(1));
        kv
    }

    /// A host in a call, and the bucket `default` open in it.
    fn kv(limits: KvLimits) -> (KvHost, Resource<BucketHandle>) {
        let mut kv = host(Box::new(MemoryStore::new()), limits);
        let bucket = kv.open("default".into()).unwrap().unwrap();
        (kv, bucket)
    }

    /// Commits the call under way and begins the next.
    fn commit(kv: &mut KvHost) {
        kv.commit().unwrap();
        kv.begin(Phase::Records(1));
    }

    /// Drops the call under way and begins the next.
    fn discard(kv: &mut KvHost) {
        kv.discard();
        kv.begin(Phase::Records(1));
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

    fn trap(e: wasmtime::Error) -> String {
        e.downcast::<KvLimitExceeded>().unwrap().to_string()
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
        commit(&mut kv);
        for (key, value) in [("a", Some(b"v".to_vec())), ("b", None)] {
            let read = kv.get(handle(&bucket), key.into()).unwrap().unwrap();
            assert_eq!(read, value, "{key} as stored");
        }
        set(&mut kv, &bucket, "b").unwrap();
        kv.delete(handle(&bucket), "a".into()).unwrap().unwrap();
        assert!(
            !kv.exists(handle(&bucket), "a".into()).unwrap().unwrap(),
            "a pending delete hides the stored value"
        );
        assert_eq!(kv.get(handle(&bucket), "a".into()).unwrap().unwrap(), None);
        discard(&mut kv);
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

    /// A call commits when told to and discards when dropped, whatever holds the host.
    #[test]
    fn a_call_commits_or_discards() {
        let mut kv = KvHost::new(Box::new(MemoryStore::new()), KvLimits::default());
        kv.set_rule("rule");
        let mut call = Call::begin(&mut kv, Phase::Records(1));
        call.write("b", "dropped".into(), Some(b"v".to_vec()))
            .unwrap();
        drop(call);
        let mut call = Call::begin(&mut kv, Phase::Records(1));
        assert_eq!(call.read("b", &["dropped"]).unwrap(), [None]);
        call.write("b", "kept".into(), Some(b"v".to_vec())).unwrap();
        call.commit().unwrap();
        assert_eq!(
            stored(&mut kv),
            [("rule/rule/b".to_owned(), "kept".to_owned())]
        );
        // Between calls, the store is out of reach.
        assert!(kv.read("rule/rule/b", &["kept"]).is_err());
    }

    /// `describe`, `configure` and instantiation run without a store: `open` fails with
    /// the `other` error, and nothing can be read or written.
    #[test]
    fn a_setup_call_has_no_store() {
        let mut kv = KvHost::new(Box::new(MemoryStore::new()), KvLimits::default());
        let mut call = Call::begin(&mut kv, Phase::Setup);
        match call.open("default".into()).unwrap() {
            Err(store::Error::Other(message)) => assert_eq!(message, UNAVAILABLE),
            other => panic!("expected an error, got {other:?}"),
        }
        let write = call.write("default", "k".into(), Some(b"v".to_vec()));
        assert!(format!("{:#}", write.unwrap_err()).contains("not available during describe"));
        assert!(call.read("default", &["k"]).is_err());
        call.commit().unwrap();
        // A handle kept from a call of records is unusable in a setup call.
        kv.set_rule("rule");
        let mut call = Call::begin(&mut kv, Phase::Records(1));
        let bucket = call.open("default".into()).unwrap().unwrap();
        call.commit().unwrap();
        let mut call = Call::begin(&mut kv, Phase::Setup);
        let set = call
            .set(handle(&bucket), "k".into(), b"v".to_vec())
            .unwrap();
        assert!(matches!(set, Err(store::Error::Other(_))), "{set:?}");
        drop(call);
        assert!(stored(&mut kv).is_empty());
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
            commit(&mut kv);
            listed.extend(page.keys);
            pages += 1;
            if pages % restart_every == 0 {
                let limits = KvLimits {
                    page_size: 2,
                    ..KvLimits::default()
                };
                kv = host(kv.into_store(), limits);
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
            commit(&mut kv);
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
        commit(&mut kv);
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
        commit(&mut kv);
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
        assert!(trap(set(&mut kv, &bucket, "toolong").unwrap_err()).contains("key of 7 bytes"));
        let big = kv
            .set(handle(&bucket), "k".into(), b"vv".to_vec())
            .unwrap_err();
        assert!(trap(big).contains("value of 2 bytes"));
        set(&mut kv, &bucket, "abc").unwrap();
        assert!(trap(set(&mut kv, &bucket, "def").unwrap_err()).contains("at most 6 bytes"));
        discard(&mut kv);
        set(&mut kv, &bucket, "def").unwrap();
        kv.open("second".into()).unwrap().unwrap();
        assert!(trap(kv.open("third".into()).unwrap_err()).contains("at most 2 buckets"));
    }

    /// Every key set or deleted counts one entry, however small: a call of many tiny
    /// deletes is bounded by entries, not bytes.
    #[test]
    fn entries_per_call_are_bounded() {
        let limits = KvLimits {
            max_call_entries: 3,
            ..KvLimits::default()
        };
        let (mut kv, bucket) = kv(limits);
        set(&mut kv, &bucket, "a").unwrap();
        let keys = vec!["b".to_owned(), "c".to_owned(), "d".to_owned()];
        let many = kv.delete_many(handle(&bucket), keys).unwrap_err();
        assert_eq!(
            trap(many),
            "harness limit: one call of 1 record(s) may write or delete at most 3 keys"
        );
        // A call of two records has twice the entries.
        kv.discard();
        kv.begin(Phase::Records(2));
        let keys: Vec<String> = (0..6).map(|n| n.to_string()).collect();
        kv.delete_many(handle(&bucket), keys).unwrap().unwrap();
    }

    /// A table that a call leaves without keys takes its cursor entry along, whether the
    /// listing was made in an earlier call or in the same one.
    #[test]
    fn an_emptied_table_takes_its_cursors_along() {
        let (mut kv, bucket) = kv(KvLimits {
            page_size: 2,
            ..KvLimits::default()
        });
        for key in ["a", "b", "c"] {
            set(&mut kv, &bucket, key).unwrap();
        }
        commit(&mut kv);
        let page = kv.list_keys(handle(&bucket), None).unwrap().unwrap();
        assert!(page.cursor.is_some());
        commit(&mut kv);
        assert!(stored(&mut kv).iter().any(|(t, _)| t == CURSORS_TABLE));
        let all = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        kv.delete_many(handle(&bucket), all.clone())
            .unwrap()
            .unwrap();
        commit(&mut kv);
        assert_eq!(stored(&mut kv), []);
        // Filled, listed and emptied in one call.
        for key in ["a", "b", "c"] {
            set(&mut kv, &bucket, key).unwrap();
        }
        let page = kv.list_keys(handle(&bucket), None).unwrap().unwrap();
        assert!(page.cursor.is_some());
        kv.delete_many(handle(&bucket), all).unwrap().unwrap();
        commit(&mut kv);
        assert_eq!(stored(&mut kv), []);
    }

    /// The cursor entry a listing writes counts against the call's write budget.
    #[test]
    fn a_cursor_counts_against_the_write_budget() {
        let limits = KvLimits {
            page_size: 1,
            max_call_write_bytes: 20,
            ..KvLimits::default()
        };
        let (mut kv, bucket) = kv(limits);
        set(&mut kv, &bucket, "a").unwrap();
        set(&mut kv, &bucket, "b").unwrap();
        commit(&mut kv);
        let listed = kv.list_keys(handle(&bucket), None).unwrap_err();
        assert_eq!(
            trap(listed),
            "harness limit: one call of 1 record(s) may write at most 20 bytes"
        );
    }

    /// A host function entered after the call's deadline traps it, with the epoch's
    /// message; the next call has a deadline of its own.
    #[test]
    fn host_functions_check_the_deadline() {
        let mut kv = KvHost::new(Box::new(MemoryStore::new()), KvLimits::default());
        kv.set_rule("rule");
        kv.set_deadline(Duration::from_millis(20));
        kv.begin(Phase::Records(1));
        let bucket = kv.open("default".into()).unwrap().unwrap();
        set(&mut kv, &bucket, "a").unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let late = kv.get(handle(&bucket), "a".into()).unwrap_err();
        let late = late.downcast::<DeadlineExceeded>().unwrap();
        assert_eq!(late.to_string(), "the call ran past its deadline of 20ms");
        discard(&mut kv);
        set(&mut kv, &bucket, "a").unwrap();
        // A call of two records may take two records' time.
        kv.discard();
        kv.begin(Phase::Records(2));
        std::thread::sleep(Duration::from_millis(30));
        set(&mut kv, &bucket, "a").unwrap();
    }

    #[test]
    fn bucket_names_and_buckets_are_bounded() {
        let limits = KvLimits {
            max_bucket_name_bytes: 8,
            max_buckets: 3,
            ..KvLimits::default()
        };
        let mut kv = host(Box::new(MemoryStore::new()), limits);
        let too_long = kv.open("123456789".into()).unwrap_err();
        assert_eq!(
            trap(too_long),
            "harness limit: a bucket name of 9 bytes exceeds the limit of 8"
        );
        let mut call = Call::begin(&mut kv, Phase::Records(1));
        call.write("a", "k".into(), Some(b"v".to_vec())).unwrap();
        call.write("b", "k".into(), Some(b"v".to_vec())).unwrap();
        call.commit().unwrap();
        let mut call = Call::begin(&mut kv, Phase::Records(1));
        // Reading, listing and deleting in buckets that do not exist create none of them.
        for name in ["x", "y", "z"] {
            assert_eq!(call.read(name, &["k"]).unwrap(), [None]);
            assert!(call.list(name, None).unwrap().keys.is_empty());
            call.write(name, "k".into(), None).unwrap();
        }
        // Two in the store and one created by this call: the next is one too many.
        call.write("c", "k".into(), Some(b"v".to_vec())).unwrap();
        call.write("c", "l".into(), Some(b"v".to_vec())).unwrap();
        call.write("a", "l".into(), Some(b"v".to_vec())).unwrap();
        let fourth = call
            .write("d", "k".into(), Some(b"v".to_vec()))
            .unwrap_err();
        assert_eq!(
            trap(fourth),
            "harness limit: a rule may have at most 3 buckets"
        );
        drop(call);
        // A bucket whose last key is deleted is gone, and makes room for another.
        let mut call = Call::begin(&mut kv, Phase::Records(1));
        call.write("b", "k".into(), None).unwrap();
        call.commit().unwrap();
        let mut call = Call::begin(&mut kv, Phase::Records(1));
        call.write("c", "k".into(), Some(b"v".to_vec())).unwrap();
        call.write("d", "k".into(), Some(b"v".to_vec())).unwrap();
        call.write("e", "k".into(), Some(b"v".to_vec()))
            .unwrap_err();
        call.commit().unwrap();
        let tables = kv.store().tables("rule/").unwrap();
        assert_eq!(tables, ["rule/rule/a", "rule/rule/c", "rule/rule/d"]);
    }

    /// A rule that opens a new bucket for each record and only reads it, through every
    /// reading call, leaves the state file as it found it.
    #[test]
    fn reading_new_buckets_creates_no_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let store = RedbStore::open(&path).unwrap();
        let mut kv = host(Box::new(store), KvLimits::default());
        let before = kv.store().tables("").unwrap();
        for n in 0..300 {
            let bucket = kv.open(format!("{n:0200}")).unwrap().unwrap();
            assert_eq!(kv.get(handle(&bucket), "k".into()).unwrap().unwrap(), None);
            assert!(!kv.exists(handle(&bucket), "k".into()).unwrap().unwrap());
            let page = kv.list_keys(handle(&bucket), None).unwrap().unwrap();
            assert!(page.keys.is_empty());
            let many = kv.get_many(handle(&bucket), vec!["k".into()]).unwrap();
            assert_eq!(many.unwrap(), [None]);
            kv.delete(handle(&bucket), "k".into()).unwrap().unwrap();
            store::HostBucket::drop(&mut kv, bucket).unwrap();
            commit(&mut kv);
        }
        kv.store().commit().unwrap();
        assert_eq!(kv.store().tables("").unwrap(), before);
        assert_eq!(before, ["harness/format"]);
    }
}
