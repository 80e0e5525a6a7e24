//! A resident rule's state on disk, in a directory the operator grants: crash-safe, and
//! bounded in size.
//!
//! * `snapshot`: the whole state at one moment, written whole: to `snapshot.partial`,
//!   synced, then renamed into place.
//! * `journal`: each call's writes since that snapshot, one frame per call, appended. A
//!   frame's header (its length and its payload's checksum) has a checksum of its own.
//!
//! Loading reads the snapshot, then replays the journal. A last frame cut short (the
//! process died while appending it) is dropped; damage anywhere else is an error, never a
//! silently older state. When the journal outgrows the snapshot (and
//! [`MIN_COMPACTION_BYTES`]), it is compacted: a new snapshot, then an empty journal. Both
//! files carry a generation number, so a journal that a crash during compaction left
//! behind (already in the new snapshot) is recognised and dropped; a journal newer than
//! the snapshot means the snapshot is missing or older than it was, and is an error.
//!
//! Appends are written at once and synced every [`SYNC_EVERY`] frames: Fluent Bit dying
//! loses nothing, the machine dying may lose the last frames' state.
//!
//! One writer per directory: before each append the journal is checked to be the file
//! this instance opened, as long as it left it; a second filter writing to the same
//! directory (or anyone else) is detected, and this one stops keeping state there.

use std::io::{self, BufWriter, Read, Write};

use super::fs::{Access, Dir, File};
use crate::kv::{Changes, Entries};

const SNAPSHOT_MAGIC: &[u8; 8] = b"DSNAP001";
const JOURNAL_MAGIC: &[u8; 8] = b"DJRNL002";
const HEADER_BYTES: u64 = 16;
/// A frame's header: payload length, payload checksum, and their checksum.
const FRAME_HEADER_BYTES: usize = 12;

/// A journal smaller than this is never compacted.
pub const MIN_COMPACTION_BYTES: u64 = 1 << 20;

/// Frames appended between syncs.
pub const SYNC_EVERY: u32 = 100;

/// The state of one rule in one directory.
pub struct Journal {
    dir: Dir,
    file: File,
    generation: u64,
    journal_bytes: u64,
    snapshot_bytes: u64,
    unsynced: u32,
}

impl Journal {
    /// Opens the state kept in `dir`, or starts an empty one there.
    pub fn open(dir: Dir) -> Result<(Journal, Entries), String> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            format!(
                "{}: {what}: {e}. Move the directory's files away to start again with no \
                 history",
                dir.name()
            )
        };
        let (generation, mut state, snapshot_bytes) = match dir.open("snapshot", Access::Read) {
            Ok(file) => read_snapshot(file).map_err(|e| fail("the snapshot is unreadable", &e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => (0, Entries::default(), 0),
            Err(e) => return Err(fail("cannot open the snapshot", &e)),
        };
        let replayed = match dir.open("journal", Access::Read) {
            Ok(file) => replay(file, generation, &mut state)
                .map_err(|e| fail("the journal is damaged", &e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(fail("cannot open the journal", &e)),
        };
        let journal_bytes = match replayed {
            Some(end) => {
                // Drop a torn last frame, if any, before appending after it.
                let file = dir.open("journal", Access::Update);
                file.and_then(|f| f.set_len(end))
                    .map_err(|e| fail("cannot repair the journal", &e))?;
                end
            }
            None => {
                write_empty_journal(&dir, generation)
                    .map_err(|e| fail("cannot start the journal", &e))?;
                HEADER_BYTES
            }
        };
        let file = dir
            .open("journal", Access::Append)
            .map_err(|e| fail("cannot open the journal", &e))?;
        let journal = Journal {
            dir,
            file,
            generation,
            journal_bytes,
            snapshot_bytes,
            unsynced: 0,
        };
        Ok((journal, state))
    }

    /// The directory's path, for messages.
    pub fn dir_name(&self) -> &str {
        self.dir.name()
    }

    /// Where the journal ends, and its generation: what [`Journal::truncate`] takes back.
    pub fn end(&self) -> (u64, u64) {
        (self.journal_bytes, self.generation)
    }

    /// Cuts the journal of `dir` back to `end`, if it is still of `generation`: undoes the
    /// frame of a call that a trap cut short before it answered.
    pub fn truncate(dir: &Dir, end: u64, generation: u64) -> io::Result<()> {
        let mut header = [0; HEADER_BYTES as usize];
        let mut file = dir.open("journal", Access::Update)?;
        file.read_exact(&mut header)?;
        let same = header[..8] == JOURNAL_MAGIC[..]
            && u64::from_le_bytes(header[8..].try_into().expect("eight bytes")) == generation;
        if same && file.size()? > end {
            file.set_len(end)?;
        }
        Ok(())
    }

    /// Appends one call's writes.
    pub fn append(&mut self, changes: &Changes) -> io::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.check_sole_writer()?;
        let mut payload = Vec::new();
        for (key, value) in changes {
            payload.push(u8::from(value.is_some()));
            put_bytes(&mut payload, key.as_bytes());
            if let Some(value) = value {
                put_bytes(&mut payload, value);
            }
        }
        let mut frame = Vec::with_capacity(payload.len() + FRAME_HEADER_BYTES);
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32(&payload).to_le_bytes());
        frame.extend_from_slice(&crc32(&frame).to_le_bytes());
        frame.extend_from_slice(&payload);
        self.file.write_all(&frame)?;
        self.journal_bytes += frame.len() as u64;
        self.unsynced += 1;
        if self.unsynced >= SYNC_EVERY {
            self.file.sync()?;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Writes `state` as the new snapshot and starts an empty journal.
    pub fn compact(&mut self, state: &Entries) -> io::Result<()> {
        let generation = self.generation + 1;
        let mut out = BufWriter::new(self.dir.open("snapshot.partial", Access::Create)?);
        let mut crc = crc32fast::Hasher::new();
        let mut put = |bytes: &[u8], out: &mut BufWriter<File>| -> io::Result<u64> {
            crc.update(bytes);
            out.write_all(bytes).map(|()| bytes.len() as u64)
        };
        let mut bytes = put(SNAPSHOT_MAGIC, &mut out)?;
        bytes += put(&generation.to_le_bytes(), &mut out)?;
        bytes += put(&(state.len() as u64).to_le_bytes(), &mut out)?;
        for (key, value) in state.iter() {
            for part in [key.as_bytes(), value] {
                bytes += put(&(part.len() as u32).to_le_bytes(), &mut out)?;
                bytes += put(part, &mut out)?;
            }
        }
        out.write_all(&crc.finalize().to_le_bytes())?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync()?;
        self.dir.rename("snapshot.partial", "snapshot")?;
        self.dir.sync();
        write_empty_journal(&self.dir, generation)?;
        self.file = self.dir.open("journal", Access::Append)?;
        self.generation = generation;
        self.snapshot_bytes = bytes + 4;
        self.journal_bytes = HEADER_BYTES;
        self.unsynced = 0;
        Ok(())
    }

    /// Whether the journal has outgrown the snapshot.
    pub fn needs_compaction(&self) -> bool {
        self.journal_bytes > self.snapshot_bytes.max(MIN_COMPACTION_BYTES)
    }

    /// Fails if the journal, as this instance holds it and as the directory names it,
    /// is not as long as this instance left it: someone else wrote it, or replaced it.
    fn check_sole_writer(&self) -> io::Result<()> {
        let ours = self.file.size()?;
        let at_path = self.dir.size_of("journal")?;
        if ours == self.journal_bytes && at_path == self.journal_bytes {
            return Ok(());
        }
        Err(io::Error::other(
            "the journal was changed by another writer: give each filter a rule-state/ \
             directory of its own",
        ))
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(bytes);
    crc.finalize()
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Reads all of a snapshot: its generation, its state and its size, checked by its CRC.
fn read_snapshot(mut file: File) -> io::Result<(u64, Entries, u64)> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let body_end = bytes
        .len()
        .checked_sub(4)
        .ok_or_else(|| invalid("too short"))?;
    let (body, sum) = bytes.split_at(body_end);
    if crc32(body) != u32::from_le_bytes(sum.try_into().expect("four bytes")) {
        return Err(invalid("its checksum does not match"));
    }
    let mut reader = Reader(body);
    if reader.take(8)? != SNAPSHOT_MAGIC {
        return Err(invalid("not a snapshot of this format"));
    }
    let generation = reader.u64()?;
    let count = reader.u64()?;
    let mut state = Entries::default();
    for _ in 0..count {
        let key = String::from_utf8(reader.sized()?.to_vec())
            .map_err(|_| invalid("a key is not UTF-8"))?;
        state.set(key, Some(reader.sized()?.to_vec()));
    }
    if !reader.0.is_empty() {
        return Err(invalid("bytes after the last entry"));
    }
    Ok((generation, state, bytes.len() as u64))
}

/// Replays a journal of `generation` into `state`. Returns where its whole frames end, or
/// `None` for a journal of another generation (already in the snapshot).
fn replay(mut file: File, generation: u64, state: &mut Entries) -> io::Result<Option<u64>> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let mut reader = Reader(&bytes);
    if reader.take(8).ok() != Some(&JOURNAL_MAGIC[..]) {
        return Err(invalid("not a journal of this format"));
    }
    let journal = reader.u64()?;
    if journal < generation {
        return Ok(None);
    }
    if journal > generation {
        return Err(invalid(format!(
            "it continues snapshot generation {journal}, but the snapshot is of generation \
             {generation} (missing or replaced)"
        )));
    }
    loop {
        let at = bytes.len() - reader.0.len();
        if reader.0.is_empty() {
            return Ok(Some(at as u64));
        }
        match frame(&mut reader) {
            Frame::Whole(payload) => apply_frame(payload, state)?,
            // Appends are whole frames; a crash leaves a prefix of the last one.
            Frame::CutShort => return Ok(Some(at as u64)),
            Frame::Damaged => return Err(invalid(format!("the frame at byte {at} is damaged"))),
        }
    }
}

enum Frame<'a> {
    Whole(&'a [u8]),
    CutShort,
    Damaged,
}

/// The next frame: its payload, or what is wrong with it. Only a frame that runs to the
/// end of the file can be cut short; one with a damaged header never is.
fn frame<'a>(reader: &mut Reader<'a>) -> Frame<'a> {
    // An append whose bytes never reached the disk may leave zeros to the end.
    if reader.0.iter().all(|&b| b == 0) {
        return Frame::CutShort;
    }
    let Ok(header) = reader.take(FRAME_HEADER_BYTES) else {
        return Frame::CutShort;
    };
    let field = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("four"));
    if crc32(&header[..8]) != field(8) {
        return Frame::Damaged;
    }
    let Ok(payload) = reader.take(field(0) as usize) else {
        return Frame::CutShort;
    };
    match (crc32(payload) == field(4), reader.0.is_empty()) {
        (true, _) => Frame::Whole(payload),
        // The last frame, whole in length but not in content: its end never reached disk.
        (false, true) => Frame::CutShort,
        (false, false) => Frame::Damaged,
    }
}

fn apply_frame(payload: &[u8], state: &mut Entries) -> io::Result<()> {
    let mut changes = Reader(payload);
    while !changes.0.is_empty() {
        let set = changes.take(1)?[0] == 1;
        let key = String::from_utf8(changes.sized()?.to_vec())
            .map_err(|_| invalid("a key is not UTF-8"))?;
        let value = if set {
            Some(changes.sized()?.to_vec())
        } else {
            None
        };
        state.set(key, value);
    }
    Ok(())
}

fn write_empty_journal(dir: &Dir, generation: u64) -> io::Result<()> {
    let mut file = dir.open("journal.partial", Access::Create)?;
    file.write_all(JOURNAL_MAGIC)?;
    file.write_all(&generation.to_le_bytes())?;
    file.sync()?;
    dir.rename("journal.partial", "journal")?;
    dir.sync();
    Ok(())
}

/// Reads little-endian fields off a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(invalid("cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("four bytes"),
        ))
    }

    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("eight bytes"),
        ))
    }

    fn sized(&mut self) -> io::Result<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn changes(pairs: &[(&str, Option<&str>)]) -> Changes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(|v| v.as_bytes().to_vec())))
            .collect()
    }

    fn state(pairs: &[(&str, &str)]) -> Entries {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn state_survives_reopening_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, loaded) = Journal::open(Dir::at(dir.path())).unwrap();
        assert!(loaded.is_empty());
        journal
            .append(&changes(&[("a", Some("1")), ("b", Some("2"))]))
            .unwrap();
        journal.append(&changes(&[("a", None)])).unwrap();
        drop(journal);
        let (mut journal, loaded) = Journal::open(Dir::at(dir.path())).unwrap();
        assert_eq!(loaded, state(&[("b", "2")]));
        journal.compact(&loaded).unwrap();
        journal.append(&changes(&[("c", Some("3"))])).unwrap();
        drop(journal);
        let (_, loaded) = Journal::open(Dir::at(dir.path())).unwrap();
        assert_eq!(loaded, state(&[("b", "2"), ("c", "3")]));
    }

    #[test]
    fn a_torn_last_frame_is_dropped_and_damage_elsewhere_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(Dir::at(dir.path())).unwrap();
        journal.append(&changes(&[("a", Some("1"))])).unwrap();
        journal.append(&changes(&[("b", Some("2"))])).unwrap();
        drop(journal);
        let path = dir.path().join("journal");
        let whole = fs::read(&path).unwrap();
        for cut in 1..12 {
            fs::write(&path, &whole[..whole.len() - cut]).unwrap();
            let (mut journal, loaded) = Journal::open(Dir::at(dir.path())).unwrap();
            assert_eq!(loaded, state(&[("a", "1")]), "cut {cut}");
            // Appending after a repaired tail keeps the file readable.
            journal.append(&changes(&[("c", Some("3"))])).unwrap();
            drop(journal);
            assert_eq!(
                Journal::open(Dir::at(dir.path())).unwrap().1,
                state(&[("a", "1"), ("c", "3")])
            );
        }
        // Any flipped bit of the first frame, its length included, is an error, never a
        // shorter journal.
        for byte in HEADER_BYTES as usize..HEADER_BYTES as usize + 23 {
            let mut damaged = whole.clone();
            damaged[byte] ^= 0x10;
            fs::write(&path, &damaged).unwrap();
            let err = Journal::open(Dir::at(dir.path())).err().unwrap_or_default();
            assert!(
                err.contains("is damaged") && err.contains("Move the directory"),
                "byte {byte}: {err}"
            );
        }
        // Zeros where the last frame should be: it never reached the disk.
        let mut zeroed = whole.clone();
        let end = zeroed.len();
        zeroed[end - 23..].fill(0);
        fs::write(&path, &zeroed).unwrap();
        assert_eq!(
            Journal::open(Dir::at(dir.path())).unwrap().1,
            state(&[("a", "1")])
        );
    }

    #[test]
    fn a_journal_newer_than_its_snapshot_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(Dir::at(dir.path())).unwrap();
        journal.append(&changes(&[("a", Some("1"))])).unwrap();
        journal.compact(&state(&[("a", "1")])).unwrap();
        journal.append(&changes(&[("b", Some("2"))])).unwrap();
        drop(journal);
        fs::remove_file(dir.path().join("snapshot")).unwrap();
        let err = Journal::open(Dir::at(dir.path())).err().unwrap();
        assert!(err.contains("missing or replaced"), "{err}");
    }

    #[test]
    fn a_second_writer_is_detected_and_a_frame_can_be_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut first, _) = Journal::open(Dir::at(dir.path())).unwrap();
        let (mut second, _) = Journal::open(Dir::at(dir.path())).unwrap();
        first.append(&changes(&[("a", Some("1"))])).unwrap();
        let err = second.append(&changes(&[("b", Some("2"))])).unwrap_err();
        assert!(err.to_string().contains("another writer"), "{err}");
        // A compaction by one replaces the journal under the other.
        first.compact(&state(&[("a", "1")])).unwrap();
        assert!(second.append(&changes(&[("b", Some("2"))])).is_err());
        drop(second);

        let (end, generation) = first.end();
        first.append(&changes(&[("c", Some("3"))])).unwrap();
        Journal::truncate(&Dir::at(dir.path()), end, generation).unwrap();
        drop(first);
        assert_eq!(
            Journal::open(Dir::at(dir.path())).unwrap().1,
            state(&[("a", "1")])
        );
    }

    #[test]
    fn a_damaged_snapshot_is_an_error_and_a_stale_journal_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(Dir::at(dir.path())).unwrap();
        journal.append(&changes(&[("a", Some("1"))])).unwrap();
        let stale = fs::read(dir.path().join("journal")).unwrap();
        journal.compact(&state(&[("a", "1")])).unwrap();
        drop(journal);
        // A crash between the new snapshot and the new journal leaves the old journal.
        fs::write(dir.path().join("journal"), &stale).unwrap();
        assert_eq!(
            Journal::open(Dir::at(dir.path())).unwrap().1,
            state(&[("a", "1")])
        );
        let snapshot = dir.path().join("snapshot");
        let mut bytes = fs::read(&snapshot).unwrap();
        bytes[20] ^= 4;
        fs::write(&snapshot, &bytes).unwrap();
        let err = Journal::open(Dir::at(dir.path())).err().unwrap();
        assert!(err.contains("snapshot is unreadable"), "{err}");
    }

    #[test]
    fn the_journal_is_compacted_when_it_outgrows_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(Dir::at(dir.path())).unwrap();
        let mut kv = crate::MemoryKv::new();
        let big = "x".repeat(64 * 1024);
        for n in 0..40 {
            let change = changes(&[("k", Some(&format!("{n}{big}")))]);
            if journal.needs_compaction() {
                journal.compact(&kv.entries).unwrap();
            }
            journal.append(&change).unwrap();
            kv.apply(change);
        }
        let size = fs::metadata(dir.path().join("journal")).unwrap().len();
        assert!(size < 2 * MIN_COMPACTION_BYTES, "{size}");
        let (_, loaded) = Journal::open(Dir::at(dir.path())).unwrap();
        assert_eq!(loaded, kv.entries);
    }
}
