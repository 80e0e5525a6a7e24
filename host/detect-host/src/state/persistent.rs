//! State on disk, in a redb database: one file, ACID, crash-safe, pure Rust.
//!
//! The state decides which alerts are raised, so the file is never trusted blindly:
//!
//! * it is created whole or not at all: built beside its path, then renamed into place.
//!   Only a path that does not exist starts a new state; an empty or unreadable file is an
//!   error, never "no history";
//! * it is opened only after redb has verified the checksum of every page, and with a
//!   repair that would fall back to an older commit refused;
//! * it records its format version, checked at open;
//! * every value carries a CRC-32 of its table, key and value, checked when it is read
//!   and, for every entry, when the file is opened;
//! * every commit is two-phase and followed by an empty one, so both of redb's commit
//!   slots hold the same data and a damaged slot cannot silently roll state back;
//! * a panic of the storage engine is caught here and becomes an error.
//!
//! Changes accumulate in one open write transaction (reads see them) until
//! [`StateStore::commit`]; dropping the store without a commit forgets them. A table
//! that does not exist is never opened for a read (in a write transaction, opening
//! creates): the store keeps the names of the tables that exist, and a read of any other
//! finds nothing. A table emptied by a call's writes is deleted.

use std::any::Any;
use std::cell::Cell;
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::ops::Bound;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;

use redb::{
    Builder, Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    StorageError, TableDefinition, TableHandle, WriteTransaction,
};

use super::{Changes, StateStore, StoreError};

/// The layout of tables and values this version writes. Older or newer files are refused.
pub const FORMAT_VERSION: u32 = 2;

/// The table that records the format.
const FORMAT_TABLE: &str = "harness/format";
const FORMAT_KEY: &[u8] = b"version";

/// redb's page cache: bounded, so memory does not grow with the state file.
const CACHE_BYTES: usize = 32 << 20;

/// Bytes of checksum after each value.
const CHECKSUM_BYTES: usize = 4;

fn table(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

/// A [`StateStore`] in a redb file.
pub struct RedbStore {
    /// `None` once the engine has failed: nothing more is read or written.
    db: Option<Database>,
    path: PathBuf,
    txn: Option<WriteTransaction>,
    /// The tables that exist, as the run's transaction sees them; `None` until listed, and
    /// again after a failure that may have left them unknown.
    tables: Option<BTreeSet<String>>,
}

impl RedbStore {
    /// Opens the state file at `path`, creating it if, and only if, the path does not exist.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        match fs::metadata(path) {
            // A symlink to nothing (an unmounted volume?) is not a missing state.
            Err(_) if fs::symlink_metadata(path).is_ok() => {
                return Err(StoreError(format!(
                    "state file {} is a symlink to a file that does not exist (is its volume \
                     mounted?); point --state at the state file itself",
                    path.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => create(path)?,
            Err(e) => return Err(cannot_open(path, e)),
            Ok(meta) if !meta.is_file() => {
                return Err(StoreError(format!(
                    "state file {} is not a regular file; name a file with --state",
                    path.display()
                )));
            }
            Ok(meta) if meta.len() == 0 => {
                return Err(StoreError(format!(
                    "state file {} is empty (0 bytes): it was truncated, or is not a state file. \
                     Restore it from a backup, or delete it to start again with no history",
                    path.display()
                )));
            }
            Ok(_) => {}
        }
        let opened = guard(path, || open_checked(path))?;
        let db = opened.map_err(|e| open_error(path, e))?;
        let mut store = RedbStore {
            db: Some(db),
            path: path.to_owned(),
            txn: None,
            tables: None,
        };
        store.check_format()?;
        store.verify_entries()?;
        Ok(store)
    }

    /// Runs `f` on the database, turning redb errors and panics into [`StoreError`]s. After
    /// a panic the database is dropped: its locks may be poisoned.
    fn with_db<T>(
        &mut self,
        f: impl FnOnce(&Database, &mut Option<WriteTransaction>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        let Some(db) = &self.db else {
            return Err(damaged(
                &path,
                "the storage engine failed earlier in this run",
            ));
        };
        match guard(&path, || f(db, &mut self.txn)) {
            Ok(result) => result,
            Err(e) => {
                self.tables = None;
                let (txn, db) = (self.txn.take(), self.db.take());
                let _ = guard(&path, move || drop((txn, db)));
                Err(e)
            }
        }
    }

    fn check_format(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        self.with_db(|db, _| {
            let read = || -> Result<Option<Vec<u8>>, redb::Error> {
                let txn = db.begin_read()?;
                let names: Vec<String> = txn.list_tables()?.map(|t| t.name().to_owned()).collect();
                if !names.iter().any(|n| n == FORMAT_TABLE) {
                    return Ok(None);
                }
                let format = txn.open_table(table(FORMAT_TABLE))?;
                let value = format.get(FORMAT_KEY)?.map(|v| v.value().to_vec());
                Ok(value)
            };
            let stored = read().map_err(|e| damaged(&path, e))?;
            let Some(stored) = stored else {
                return Err(StoreError(format!(
                    "state file {} has no format record: it was written by a rule-harness older \
                     than format {FORMAT_VERSION}, which this version cannot read, or by another \
                     program. Move it away to start again with no history",
                    path.display()
                )));
            };
            let version = unseal(&path, FORMAT_TABLE, FORMAT_KEY, &stored)?;
            match std::str::from_utf8(version)
                .ok()
                .and_then(|v| v.parse::<u32>().ok())
            {
                Some(FORMAT_VERSION) => Ok(()),
                Some(other) => Err(StoreError(format!(
                    "state file {} has format {other}; this rule-harness reads format \
                     {FORMAT_VERSION} only. {}",
                    path.display(),
                    if other > FORMAT_VERSION {
                        "Use the newer rule-harness that wrote it"
                    } else {
                        "Move it away to start again with no history"
                    }
                ))),
                None => Err(damaged(&path, "its format record is unreadable")),
            }
        })
    }

    /// Reads every entry once, so that damage is found at open, not at the record that
    /// happens to read it. Entries are checked one at a time: memory does not grow with
    /// the state.
    fn verify_entries(&mut self) -> Result<(), StoreError> {
        self.for_each_entry(|_, _, _| ())
    }

    /// Hands `each` every entry, checked, as the run's transaction sees them: its table,
    /// its key and its value.
    fn for_each_entry(
        &mut self,
        mut each: impl FnMut(&str, String, &[u8]),
    ) -> Result<(), StoreError> {
        let names = self.table_names()?.clone();
        let path = self.path.clone();
        self.with_db(|db, txn| {
            let txn = Self::write_txn(db, txn).map_err(|e| damaged(&path, e))?;
            for name in names {
                let table = txn
                    .open_table(table(&name))
                    .map_err(|e| damaged(&path, e))?;
                for entry in table.iter().map_err(|e| damaged(&path, e))? {
                    let (key, value) = entry.map_err(|e| damaged(&path, e))?;
                    let value = unseal(&path, &name, key.value(), value.value())?;
                    each(&name, key_text(&path, &name, key.value())?, value);
                }
            }
            Ok(())
        })
    }

    /// The tables that exist, as the run's transaction sees them. An empty table (which
    /// reads of a missing one left in files of older versions) does not count.
    fn table_names(&mut self) -> Result<&BTreeSet<String>, StoreError> {
        if self.tables.is_none() {
            let path = self.path.clone();
            let names = self.with_db(|db, txn| {
                let mut list = || -> Result<BTreeSet<String>, redb::Error> {
                    let txn = Self::write_txn(db, txn)?;
                    let mut names = BTreeSet::new();
                    for handle in txn.list_tables()? {
                        let name = handle.name().to_owned();
                        if !txn.open_table(table(&name))?.is_empty()? {
                            names.insert(name);
                        }
                    }
                    Ok(names)
                };
                list().map_err(|e| damaged(&path, e))
            })?;
            self.tables = Some(names);
        }
        Ok(self.tables.as_ref().expect("just listed"))
    }

    fn write_txn<'a>(
        db: &Database,
        txn: &'a mut Option<WriteTransaction>,
    ) -> Result<&'a WriteTransaction, redb::Error> {
        if txn.is_none() {
            let mut new = db.begin_write()?;
            new.set_two_phase_commit(true);
            *txn = Some(new);
        }
        Ok(txn.as_ref().expect("just opened"))
    }
}

/// Creates a new state file: built beside `path`, committed, synced, then linked into
/// place, so a crash never leaves a half-made file at `path`, and of two runs creating it
/// at once, one makes it and the other opens it.
fn create(path: &Path) -> Result<(), StoreError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let partial = path.with_file_name(format!(".{name}.{}.partial", std::process::id()));
    let _ = fs::remove_file(&partial);
    let made = guard(path, || -> Result<(), redb::Error> {
        let db = Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&partial)?;
        let mut txn = db.begin_write()?;
        txn.set_two_phase_commit(true);
        {
            let mut format = txn.open_table(table(FORMAT_TABLE))?;
            let version = FORMAT_VERSION.to_string();
            format.insert(
                FORMAT_KEY,
                seal(FORMAT_TABLE, FORMAT_KEY, version.as_bytes()).as_slice(),
            )?;
        }
        txn.commit()?;
        Ok(())
    })?;
    made.map_err(|e| StoreError(format!("cannot create state file {}: {e}", path.display())))?;
    let linked = File::open(&partial)
        .and_then(|f| f.sync_all())
        .and_then(|()| match fs::hard_link(&partial, path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        })
        .and_then(|()| fs::remove_file(&partial))
        .and_then(|()| sync_dir(path));
    let _ = fs::remove_file(&partial);
    linked.map_err(|e| StoreError(format!("cannot create state file {}: {e}", path.display())))
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

fn open_checked(path: &Path) -> Result<Database, DatabaseError> {
    Builder::new()
        .set_cache_size(CACHE_BYTES)
        .set_check_integrity_on_open(true)
        // redb reports progress 0.3 just before it adopts the previous commit in place of
        // a damaged one. State silently going back in time is exactly what must not happen.
        .set_repair_callback(|session| {
            if (0.2..0.4).contains(&session.progress()) {
                session.abort();
            }
        })
        .open(path)
}

fn open_error(path: &Path, e: DatabaseError) -> StoreError {
    match e {
        DatabaseError::DatabaseAlreadyOpen => StoreError(format!(
            "cannot open state file {}: another process has it open (one harness per state file)",
            path.display()
        )),
        DatabaseError::Storage(StorageError::Io(io))
            if !matches!(
                io.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            cannot_open(path, io)
        }
        other => damaged(path, other),
    }
}

fn cannot_open(path: &Path, e: io::Error) -> StoreError {
    StoreError(format!("cannot open state file {}: {e}", path.display()))
}

/// The error for a state file that cannot be trusted, with what to do about it.
fn damaged(path: &Path, what: impl std::fmt::Display) -> StoreError {
    StoreError(format!(
        "state file {} is damaged ({what}). It is not used: alerts computed from it could be \
         wrong. Restore it from a backup, or move it away to start again with no history \
         (the rule then learns anew for its training period)",
        path.display()
    ))
}

/// A value as stored: the value, then a CRC-32 of its table, key and value.
fn seal(table: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut sealed = Vec::with_capacity(value.len() + CHECKSUM_BYTES);
    sealed.extend_from_slice(value);
    sealed.extend_from_slice(&checksum(table, key, value).to_le_bytes());
    sealed
}

/// The value of a stored entry, after its checksum is verified.
fn unseal<'v>(
    path: &Path,
    table: &str,
    key: &[u8],
    stored: &'v [u8],
) -> Result<&'v [u8], StoreError> {
    let bad = || {
        damaged(
            path,
            format!(
                "the checksum of key `{}` in table `{table}` does not match",
                String::from_utf8_lossy(key)
            ),
        )
    };
    let split = stored.len().checked_sub(CHECKSUM_BYTES).ok_or_else(bad)?;
    let (value, sum) = stored.split_at(split);
    let sum = u32::from_le_bytes(sum.try_into().expect("four bytes"));
    if sum == checksum(table, key, value) {
        Ok(value)
    } else {
        Err(bad())
    }
}

fn checksum(table: &str, key: &[u8], value: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(table.as_bytes());
    crc.update(&[0]);
    crc.update(key);
    crc.update(&[0]);
    crc.update(value);
    crc.finalize()
}

/// Applies one table's writes in `txn`, keeping `tables` (those that exist) up to date:
/// only a value creates the table, and a table left empty is deleted.
fn write_table(
    txn: &WriteTransaction,
    tables: &mut BTreeSet<String>,
    name: &str,
    writes: &super::TableChanges,
) -> Result<(), redb::Error> {
    if !tables.contains(name) && writes.values().all(Option::is_none) {
        return Ok(()); // deletes in a table that does not exist
    }
    let mut table = txn.open_table(table(name))?;
    for (key, value) in writes {
        match value {
            Some(value) => {
                table.insert(key.as_bytes(), seal(name, key.as_bytes(), value).as_slice())?
            }
            None => table.remove(key.as_bytes())?,
        };
    }
    if table.is_empty()? {
        txn.delete_table(table)?;
        tables.remove(name);
    } else {
        tables.insert(name.to_owned());
    }
    Ok(())
}

fn key_text(path: &Path, table: &str, key: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(key.to_vec())
        .map_err(|_| damaged(path, format!("a key in table `{table}` is not UTF-8")))
}

impl StateStore for RedbStore {
    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn get_many(&mut self, name: &str, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if !self.has_table(name)? {
            return Ok(vec![None; keys.len()]);
        }
        let path = self.path.clone();
        self.with_db(|db, txn| {
            let txn = Self::write_txn(db, txn).map_err(|e| damaged(&path, e))?;
            let table = txn.open_table(table(name)).map_err(|e| damaged(&path, e))?;
            keys.iter()
                .map(|key| {
                    let stored = table.get(key.as_bytes()).map_err(|e| damaged(&path, e))?;
                    stored
                        .map(|v| unseal(&path, name, key.as_bytes(), v.value()).map(<[u8]>::to_vec))
                        .transpose()
                })
                .collect()
        })
    }

    fn keys_after(
        &mut self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        if !self.has_table(name)? {
            return Ok(Vec::new());
        }
        let path = self.path.clone();
        self.with_db(|db, txn| {
            let txn = Self::write_txn(db, txn).map_err(|e| damaged(&path, e))?;
            let table = txn.open_table(table(name)).map_err(|e| damaged(&path, e))?;
            let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.as_bytes()));
            let range = table
                .range::<&[u8]>((start, Bound::Unbounded))
                .map_err(|e| damaged(&path, e))?;
            let mut keys = Vec::new();
            for entry in range.take(limit) {
                let (key, _) = entry.map_err(|e| damaged(&path, e))?;
                keys.push(key_text(&path, name, key.value())?);
            }
            Ok(keys)
        })
    }

    fn tables(&mut self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let names = self.table_names()?;
        let from = names.range::<str, _>((Bound::Included(prefix), Bound::Unbounded));
        Ok(from
            .take_while(|name| name.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn has_table(&mut self, table: &str) -> Result<bool, StoreError> {
        Ok(self.table_names()?.contains(table))
    }

    fn apply(&mut self, changes: Changes) -> Result<(), StoreError> {
        let path = self.path.clone();
        self.table_names()?;
        let mut tables = self.tables.take().expect("just listed");
        let applied = self.with_db(|db, txn| {
            let txn = Self::write_txn(db, txn).map_err(|e| damaged(&path, e))?;
            for (name, writes) in &changes {
                write_table(txn, &mut tables, name, writes)
                    .map_err(|e| StoreError(format!("state file {}: {e}", path.display())))?;
            }
            Ok(())
        });
        // After a failure, which tables exist is listed again.
        self.tables = applied.is_ok().then_some(tables);
        applied
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let committed = self.with_db(|db, txn| {
            let Some(txn) = txn.take() else {
                return Ok(());
            };
            let commit = || -> Result<(), redb::Error> {
                txn.commit()?;
                // Both commit slots now hold this state: see the module documentation.
                let mut empty = db.begin_write()?;
                empty.set_two_phase_commit(true);
                empty.commit()?;
                Ok(())
            };
            commit()
                .map_err(|e| StoreError(format!("committing state file {}: {e}", path.display())))
        });
        if committed.is_err() {
            self.tables = None;
        }
        committed
    }

    fn entries(&mut self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        let mut all = Vec::new();
        self.for_each_entry(|table, key, value| all.push((table.to_owned(), key, value.to_vec())))?;
        Ok(all)
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Uncommitted changes are forgotten: only `commit` makes state durable.
        let (txn, db) = (self.txn.take(), self.db.take());
        let _ = guard(&self.path, move || drop((txn, db)));
    }
}

thread_local! {
    /// Set while redb runs inside [`guard`], whose panics are reported as errors instead.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Keeps the storage engine's panics, which [`RedbStore`] reports as errors, off
/// standard error, by a panic hook that passes every other panic to the one before it.
/// The library never installs a hook by itself: a program calls this once, if it wants.
pub fn quiet_engine_panics() {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into an error about `path`.
fn guard<T>(path: &Path, f: impl FnOnce() -> T) -> Result<T, StoreError> {
    let outer = GUARDED.with(|g| g.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    result.map_err(|panic| {
        damaged(
            path,
            format!("the storage engine failed: {}", message(&*panic)),
        )
    })
}

fn message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(table: &str, key: &str, value: Option<&str>) -> Changes {
        let mut changes = Changes::new();
        crate::state::change(&mut changes, table, key.into(), value.map(|v| v.into()));
        changes
    }

    #[test]
    fn committed_state_survives_reopening_and_uncommitted_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let mut store = RedbStore::open(&path).unwrap();
        store.apply(put("t", "a", Some("1"))).unwrap();
        store.apply(put("t", "b", Some("2"))).unwrap();
        store.commit().unwrap();
        store.apply(put("t", "a", None)).unwrap(); // not committed
        assert_eq!(
            store.get_many("t", &["a", "b"]).unwrap(),
            [None, Some(b"2".to_vec())]
        );
        drop(store);
        let mut store = RedbStore::open(&path).unwrap();
        assert_eq!(
            store.get_many("t", &["a", "b", "c"]).unwrap(),
            [Some(b"1".to_vec()), Some(b"2".to_vec()), None]
        );
        assert_eq!(store.get("t", "b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.get("t", "c").unwrap(), None);
        assert_eq!(store.keys_after("t", Some("a"), 10).unwrap(), ["b"]);
        assert_eq!(
            store.keys_after("other", None, 10).unwrap(),
            Vec::<String>::new()
        );
    }

    /// The tables in the file itself, as another reader of it would list them.
    fn tables_in_file(path: &Path) -> Vec<String> {
        let db = Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let names = txn.list_tables().unwrap();
        names.map(|t| t.name().to_owned()).collect()
    }

    #[test]
    fn only_a_value_creates_a_table_and_the_last_delete_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let mut store = RedbStore::open(&path).unwrap();
        assert_eq!(store.get_many("missing", &["k"]).unwrap(), [None]);
        assert!(store.keys_after("missing", None, 10).unwrap().is_empty());
        store.apply(put("missing", "k", None)).unwrap();
        assert!(!store.has_table("missing").unwrap());
        store.apply(put("rule/r/a", "k", Some("1"))).unwrap();
        store.apply(put("rule/r/b", "k", Some("1"))).unwrap();
        store.apply(put("rule/s/a", "k", Some("1"))).unwrap();
        assert_eq!(store.tables("rule/r/").unwrap(), ["rule/r/a", "rule/r/b"]);
        store.apply(put("rule/r/a", "k", None)).unwrap();
        assert_eq!(store.get_many("rule/r/a", &["k"]).unwrap(), [None]);
        store.commit().unwrap();
        drop(store);
        assert_eq!(
            tables_in_file(&path),
            ["harness/format", "rule/r/b", "rule/s/a"]
        );
        let mut store = RedbStore::open(&path).unwrap();
        assert_eq!(store.tables("rule/").unwrap(), ["rule/r/b", "rule/s/a"]);
        assert!(store.has_table("rule/s/a").unwrap());
    }

    #[test]
    fn a_second_process_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let _first = RedbStore::open(&path).unwrap();
        let err = RedbStore::open(&path).err().expect("already open");
        assert!(err.0.contains("another process"), "{err}");
    }

    #[test]
    fn only_a_missing_path_starts_a_new_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        for (content, needle) in [
            (&b""[..], "is empty (0 bytes)"),
            (
                &b"not a database, but long enough to look like one......"[..],
                "is damaged",
            ),
        ] {
            std::fs::write(&path, content).unwrap();
            let err = RedbStore::open(&path).err().expect("refused");
            assert!(err.0.contains(needle), "{err}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                content,
                "the file is left as it was"
            );
        }
        let err = RedbStore::open(dir.path()).err().expect("a directory");
        assert!(err.0.contains("not a regular file"), "{err}");
        let link = dir.path().join("link.redb");
        std::os::unix::fs::symlink(dir.path().join("unmounted/state.redb"), &link).unwrap();
        let err = RedbStore::open(&link).err().expect("a dangling symlink");
        assert!(
            err.0.contains("symlink to a file that does not exist"),
            "{err}"
        );
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_damaged_value_is_an_error_never_a_different_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let mut store = RedbStore::open(&path).unwrap();
        store.apply(put("t", "k", Some("1739996029000"))).unwrap();
        store.commit().unwrap();
        // Write a value without its checksum, as damage (or another program) would.
        let raw = store.db.as_ref().unwrap();
        let txn = raw.begin_write().unwrap();
        txn.open_table(table("t"))
            .unwrap()
            .insert(&b"k"[..], &b"1739996029001\0\0\0\0"[..])
            .unwrap();
        txn.commit().unwrap();
        let err = store.get_many("t", &["k"]).unwrap_err();
        assert!(err.0.contains("checksum of key `k` in table `t`"), "{err}");
        drop(store);
        let err = RedbStore::open(&path).err().expect("checked at open");
        assert!(err.0.contains("checksum"), "{err}");
    }

    #[test]
    fn other_formats_are_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        drop(RedbStore::open(&path).unwrap());
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(table(FORMAT_TABLE))
            .unwrap()
            .insert(FORMAT_KEY, seal(FORMAT_TABLE, FORMAT_KEY, b"3").as_slice())
            .unwrap();
        txn.commit().unwrap();
        drop(db);
        let err = RedbStore::open(&path).err().expect("newer");
        assert!(
            err.0.contains("has format 3") && err.0.contains("newer"),
            "{err}"
        );

        let old = dir.path().join("old.redb");
        let db = Database::create(&old).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TableDefinition::<&str, &[u8]>::new(
            "aws-ssm-sessions/default",
        ))
        .unwrap()
        .insert("meta", &b"{}"[..])
        .unwrap();
        txn.commit().unwrap();
        drop(db);
        let err = RedbStore::open(&old).err().expect("older");
        assert!(err.0.contains("no format record"), "{err}");
    }
}
