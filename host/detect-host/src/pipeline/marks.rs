//! Resume marks: how far each input file was read, kept in the state's table of inputs
//! ([`INPUTS_TABLE`]) and committed with the state that reading it produced.
//!
//! A file is recognised by its [`FileIdentity`] (size and hashes of its first and last
//! 4 KiB when it was read) under its path or, renamed (a rotated log) or copied, by that
//! content. Marks no run has touched for [`FORGET_AFTER`] are forgotten.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::error::Error;
use crate::input::{FileIdentity, InputMark, Source};
use crate::state::{self, Changes, INPUTS_TABLE, StateStore, StoreError};

/// Marks of files that no run has read for this long are forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(90 * 86_400);

/// The key of a file in the state's table of inputs: its canonical path, byte for byte.
pub fn input_key(canonical: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    match canonical.to_str() {
        Some(text) => text.to_owned(),
        None => format!(
            "bytes:{}",
            crate::input::hex(canonical.as_os_str().as_bytes())
        ),
    }
}

/// Seconds since the Unix epoch, by this machine's clock.
pub(crate) fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Every mark in `store`, by key.
fn all(store: &mut dyn StateStore) -> Result<Vec<(String, InputMark)>, Error> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let keys = store.keys_after(INPUTS_TABLE, after.as_deref(), 1000)?;
        let Some(last) = keys.last().cloned() else {
            return Ok(all);
        };
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        for (key, value) in keys.iter().zip(store.get_many(INPUTS_TABLE, &refs)?) {
            let mark: InputMark = serde_json::from_slice(&value.unwrap_or_default())
                .map_err(|e| unreadable(key, e))?;
            all.push((key.clone(), mark));
        }
        after = Some(last);
    }
}

/// A mark that does not parse: the store's own checksums passed, so the state file was
/// written by something else.
fn unreadable(key: &str, e: serde_json::Error) -> Error {
    Error::Store(StoreError(format!(
        "the state's record of how far input {key} was read is unreadable ({e}); restore the \
         state file from a backup, or move it away to start again with no history"
    )))
}

/// Where earlier runs left each input: the mark under its key, or else one of a file it
/// continues. Also the old marks to forget at the next commit.
pub(crate) fn load(
    store: &mut dyn StateStore,
    inputs: &[(Option<&str>, &Source)],
) -> Result<(Vec<Option<InputMark>>, Changes), Error> {
    let all = all(store)?;
    let horizon = now_seconds().saturating_sub(FORGET_AFTER.as_secs());
    let mut forget = Changes::new();
    for (key, _) in all.iter().filter(|(_, mark)| mark.read_at < horizon) {
        state::change(&mut forget, INPUTS_TABLE, key.clone(), None);
    }
    let marks = inputs
        .iter()
        .map(|&(key, source)| find(&all, key?, source))
        .collect();
    Ok((marks, forget))
}

/// The mark of one file: under its key, or one whose file this one continues.
fn find(all: &[(String, InputMark)], key: &str, source: &Source) -> Option<InputMark> {
    let Source::File(path) = source else {
        return None;
    };
    if let Some((_, mark)) = all.iter().find(|(k, _)| k == key) {
        return Some(mark.clone());
    }
    // Only a regular file can be recognised: opening a FIFO would take its data.
    if !fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let file = fs::File::open(path).ok()?;
    let now = FileIdentity::of(&file).ok()??;
    all.iter()
        .map(|(_, mark)| mark)
        .find(|mark| mark.identity.continued_by(&now, &file).unwrap_or(false))
        .cloned()
}

/// The write that records `mark` under `key`.
pub(crate) fn record(changes: &mut Changes, key: &str, mark: &InputMark) {
    let value = serde_json::to_vec(mark).expect("a mark serializes");
    state::change(changes, INPUTS_TABLE, key.to_owned(), Some(value));
}
