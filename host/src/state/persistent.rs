//! State on disk, in a redb database: one file, ACID, crash-safe, pure Rust.
//!
//! Each bucket is a redb table. The store keeps one write transaction open across calls
//! and commits it every `batch_size` applied change sets (and on `flush` and drop):
//! reads inside the transaction see uncommitted writes, a commit is one fsync for many
//! records, and a crash rolls back to the last commit, which is always at a record
//! boundary.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
    WriteTransaction,
};

use super::{Changes, StateStore, StoreError};

/// Change sets per commit when none is given: a few milliseconds of work at most.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// A [`StateStore`] in a redb file.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    txn: Option<WriteTransaction>,
    uncommitted: usize,
    batch_size: usize,
}

fn table(bucket: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(bucket)
}

impl RedbStore {
    /// Opens the state file at `path`, creating it if needed.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| {
            let why = match e {
                DatabaseError::DatabaseAlreadyOpen => {
                    "another process has it open (one harness per state file)".to_string()
                }
                other => format!(
                    "{other} (if it is not a state file of this harness, name another with --state)"
                ),
            };
            StoreError(format!("cannot open state file {}: {why}", path.display()))
        })?;
        Ok(RedbStore {
            db,
            path: path.to_owned(),
            txn: None,
            uncommitted: 0,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }

    /// Commits every `n` change sets (at least 1).
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn txn(&mut self) -> Result<&WriteTransaction, StoreError> {
        if self.txn.is_none() {
            self.txn = Some(self.db.begin_write().map_err(|e| self.error(e))?);
        }
        Ok(self.txn.as_ref().expect("just opened"))
    }

    fn error(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError(format!("state file {}: {}", self.path.display(), e.into()))
    }
}

impl StateStore for RedbStore {
    fn get_many(
        &mut self,
        bucket: &str,
        keys: &[&str],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let txn = self.txn()?;
        let read = || -> Result<_, redb::Error> {
            let table = txn.open_table(table(bucket))?;
            keys.iter()
                .map(|k| Ok(table.get(*k)?.map(|v| v.value().to_vec())))
                .collect()
        };
        read().map_err(|e| self.error(e))
    }

    fn keys_after(
        &mut self,
        bucket: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let txn = self.txn()?;
        let read = || -> Result<_, redb::Error> {
            let table = txn.open_table(table(bucket))?;
            let start = after.map_or(Bound::Unbounded, Bound::Excluded);
            let mut keys = Vec::new();
            for entry in table.range::<&str>((start, Bound::Unbounded))?.take(limit) {
                keys.push(entry?.0.value().to_owned());
            }
            Ok(keys)
        };
        read().map_err(|e| self.error(e))
    }

    fn apply(&mut self, changes: Changes) -> Result<(), StoreError> {
        let txn = self.txn()?;
        let write = || -> Result<(), redb::Error> {
            for ((bucket, key), value) in &changes {
                let mut table = txn.open_table(table(bucket))?;
                match value {
                    Some(value) => table.insert(key.as_str(), value.as_slice())?,
                    None => table.remove(key.as_str())?,
                };
            }
            Ok(())
        };
        write().map_err(|e| self.error(e))?;
        self.uncommitted += 1;
        if self.uncommitted >= self.batch_size {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if let Some(txn) = self.txn.take() {
            txn.commit().map_err(|e| self.error(e))?;
        }
        self.uncommitted = 0;
        Ok(())
    }

    fn entries(&mut self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        self.flush()?;
        let read = || -> Result<_, redb::Error> {
            let txn = self.db.begin_read()?;
            let mut all = Vec::new();
            for handle in txn.list_tables()? {
                let bucket = handle.name().to_owned();
                let table = txn.open_table(table(&bucket))?;
                for entry in table.iter()? {
                    let (k, v) = entry?;
                    all.push((bucket.clone(), k.value().to_owned(), v.value().to_vec()));
                }
            }
            Ok(all)
        };
        read().map_err(|e| self.error(e))
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Best effort; callers that must know call `flush` themselves.
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(bucket: &str, key: &str, value: Option<&str>) -> Changes {
        [(
            (bucket.to_owned(), key.to_owned()),
            value.map(|v| v.as_bytes().to_vec()),
        )]
        .into()
    }

    #[test]
    fn committed_state_survives_reopening_and_uncommitted_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let mut store = RedbStore::open(&path).unwrap().with_batch_size(2);
        store.apply(put("r/default", "a", Some("1"))).unwrap();
        store.apply(put("r/default", "b", Some("2"))).unwrap(); // second change set: commits
        store.apply(put("r/default", "a", None)).unwrap(); // pending
        assert_eq!(
            store.get_many("r/default", &["a", "b"]).unwrap(),
            [None, Some(b"2".to_vec())]
        );
        // Simulate a crash: forget the open transaction without committing it.
        drop(store.txn.take());
        drop(store);
        let mut store = RedbStore::open(&path).unwrap();
        assert_eq!(
            store.get_many("r/default", &["a", "b", "c"]).unwrap(),
            [Some(b"1".to_vec()), Some(b"2".to_vec()), None]
        );
        assert_eq!(store.keys_after("r/default", Some("a"), 10).unwrap(), ["b"]);
        assert_eq!(
            store.keys_after("other", None, 10).unwrap(),
            Vec::<String>::new()
        );
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
    fn a_file_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(
            &path,
            "not a database, but long enough to look like one......",
        )
        .unwrap();
        let err = RedbStore::open(&path).err().expect("not redb");
        assert!(err.0.contains("cannot open state file"), "{err}");
    }
}
