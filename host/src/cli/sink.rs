//! Where `run` writes alerts and dead letters: buffered, and made durable on demand, so
//! that the state which records an alert is committed only once the alert is out.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::Context;

/// A stream of JSON lines.
pub struct Sink {
    name: String,
    out: BufWriter<File>,
    /// A regular file is synced at each commit; a pipe or terminal has nothing to sync.
    regular: bool,
}

impl Sink {
    /// Standard output, written directly rather than through Rust's locked handle.
    pub fn stdout() -> anyhow::Result<Sink> {
        Sink::from_fd(io::stdout().as_fd(), "standard output")
    }

    pub fn stderr() -> anyhow::Result<Sink> {
        Sink::from_fd(io::stderr().as_fd(), "standard error")
    }

    /// A file, appended to: a rerun after a failure must not erase what was written.
    pub fn append(path: &Path) -> anyhow::Result<Sink> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Sink::new(file, path.display().to_string())
    }

    fn from_fd(fd: std::os::fd::BorrowedFd, name: &str) -> anyhow::Result<Sink> {
        let file = File::from(fd.try_clone_to_owned().with_context(|| name.to_string())?);
        Sink::new(file, name.to_owned())
    }

    fn new(file: File, name: String) -> anyhow::Result<Sink> {
        let regular = file.metadata().is_ok_and(|m| m.is_file());
        Ok(Sink {
            name,
            out: BufWriter::with_capacity(1 << 16, file),
            regular,
        })
    }

    pub fn write_line(&mut self, line: &impl serde::Serialize) -> anyhow::Result<()> {
        let written = serde_json::to_writer(&mut self.out, line)
            .map_err(io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        written.map_err(|e| self.failed(e))
    }

    /// Writes out everything buffered and, for a file, waits until it is on disk.
    pub fn make_durable(&mut self) -> anyhow::Result<()> {
        self.out
            .flush()
            .and_then(|()| {
                if self.regular {
                    self.out.get_ref().sync_data()
                } else {
                    Ok(())
                }
            })
            .map_err(|e| self.failed(e))
    }

    fn failed(&self, e: io::Error) -> anyhow::Error {
        anyhow::anyhow!(
            "cannot write to {}: {e}. The state stays as it was at the last commit, before \
             what could not be written: fix the output and rerun the same command to write it",
            self.name
        )
    }
}
