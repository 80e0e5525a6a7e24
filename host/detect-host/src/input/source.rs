//! Where records come from, and how a file is recognised when a run resumes it.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes at the start of a file that identify it.
pub const HEAD_BYTES: u64 = 4096;

/// An input named on the command line: a file, or `-` for standard input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    pub fn from_arg(arg: &Path) -> Source {
        if arg.as_os_str() == "-" {
            Source::Stdin
        } else {
            Source::File(arg.to_owned())
        }
    }

    /// As dead letters and messages name it.
    pub fn name(&self) -> String {
        match self {
            Source::Stdin => "-".into(),
            Source::File(path) => path.display().to_string(),
        }
    }

    /// Checks that the input can be read, without opening it: opening a FIFO to check it
    /// would consume its writer.
    pub fn check(&self) -> Result<(), String> {
        let Source::File(path) = self else {
            return Ok(());
        };
        match std::fs::metadata(path) {
            Err(e) => Err(format!("cannot open {}: {e}", path.display())),
            Ok(meta) if meta.is_dir() => Err(format!(
                "{} is a directory; name the files in it (e.g. {}/*.json.gz)",
                path.display(),
                path.display()
            )),
            Ok(_) => Ok(()),
        }
    }
}

/// What identifies a regular file across runs: its size, and hashes of its first and of
/// its last bytes at the time. A file that has grown since (a log being appended to)
/// still matches; a file that is shorter, or differs at either place, is another file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    /// The file's size when it was opened.
    pub size: u64,
    /// How many bytes of its start are hashed: [`HEAD_BYTES`], or all of a smaller file.
    pub head_bytes: u64,
    /// SHA-256 of those bytes, in hex.
    pub head_sha256: String,
    /// SHA-256 of the [`HEAD_BYTES`] (or fewer) before `size`, in hex.
    pub tail_sha256: String,
}

impl FileIdentity {
    /// The identity of `file` now; `None` when it is not a regular file (a FIFO, a
    /// device), which cannot be read again and so cannot be resumed.
    pub fn of(file: &File) -> io::Result<Option<FileIdentity>> {
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(None);
        }
        let size = meta.len();
        let head_bytes = size.min(HEAD_BYTES);
        Ok(Some(FileIdentity {
            size,
            head_bytes,
            head_sha256: range_hash(file, 0, head_bytes)?,
            tail_sha256: range_hash(file, size - head_bytes, size)?,
        }))
    }

    /// Whether `file` (whose identity today is `now`) is this file, possibly grown since.
    pub fn continued_by(&self, now: &FileIdentity, file: &File) -> io::Result<bool> {
        if now.size < self.size {
            return Ok(false);
        }
        let same_head = if now.head_bytes == self.head_bytes {
            now.head_sha256 == self.head_sha256
        } else {
            range_hash(file, 0, self.head_bytes)? == self.head_sha256
        };
        let tail = self.size - self.head_bytes.min(self.size);
        Ok(same_head && range_hash(file, tail, self.size)? == self.tail_sha256)
    }
}

/// Hex SHA-256 of the bytes `from..to` of `file`, read without moving its offset.
fn range_hash(file: &File, from: u64, to: u64) -> io::Result<String> {
    let mut bytes = Vec::with_capacity((to - from) as usize);
    let mut reader = ReadAt { file, offset: from }.take(to - from);
    reader.read_to_end(&mut bytes)?;
    Ok(hex(&Sha256::digest(&bytes)))
}

/// Reads a file from an offset of its own, leaving the file's offset alone.
struct ReadAt<'a> {
    file: &'a File,
    offset: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Bytes as lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How far runs have got in one file: kept in the state file with every commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputMark {
    pub identity: FileIdentity,
    /// Items (records and unusable ones) fully handled, from the start of the file.
    pub items: u64,
    /// When a run last read the file, in seconds since the Unix epoch: marks of files not
    /// read for long are forgotten.
    #[serde(default)]
    pub read_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_grown_file_continues_and_a_replaced_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        std::fs::write(&path, b"{\"n\": 1}\n").unwrap();
        let first = FileIdentity::of(&File::open(&path).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(first.head_bytes, 9);

        let mut appended = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        appended.write_all(&vec![b' '; 5000]).unwrap();
        let file = File::open(&path).unwrap();
        let now = FileIdentity::of(&file).unwrap().unwrap();
        assert_eq!(now.head_bytes, HEAD_BYTES);
        assert!(first.continued_by(&now, &file).unwrap());

        std::fs::write(&path, b"{\"n\": 2}\n").unwrap();
        let file = File::open(&path).unwrap();
        let replaced = FileIdentity::of(&file).unwrap().unwrap();
        assert!(!first.continued_by(&replaced, &file).unwrap());
        std::fs::write(&path, b"{\"n\"").unwrap();
        let file = File::open(&path).unwrap();
        let truncated = FileIdentity::of(&file).unwrap().unwrap();
        assert!(!first.continued_by(&truncated, &file).unwrap());
    }

    #[test]
    fn the_same_start_and_size_but_another_end_is_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let mut bytes = vec![b'a'; 9000];
        std::fs::write(&path, &bytes).unwrap();
        let first = FileIdentity::of(&File::open(&path).unwrap())
            .unwrap()
            .unwrap();
        bytes[8000] = b'b';
        bytes.extend(b"more");
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let now = FileIdentity::of(&file).unwrap().unwrap();
        assert_eq!(now.head_sha256, first.head_sha256);
        assert!(!first.continued_by(&now, &file).unwrap());
    }

    #[test]
    fn directories_are_refused_and_stdin_is_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Source::from_arg(dir.path()).check().unwrap_err();
        assert!(err.contains("is a directory"), "{err}");
        assert!(
            Source::from_arg(&dir.path().join("missing"))
                .check()
                .unwrap_err()
                .contains("cannot open")
        );
        assert_eq!(Source::from_arg(Path::new("-")), Source::Stdin);
    }
}
