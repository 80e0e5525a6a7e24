//! Where a run writes alerts and dead letters, and how it knows they arrived.
//!
//! Lines go to a writer thread, so that a reader that stops reading never blocks the run
//! (which must still see SIGINT and SIGTERM). [`Sink::deliver`] returns once everything
//! written so far has arrived: synced to disk for a file, and for a pipe, *read* by the
//! process at its other end (the pipe is empty), so that lines the reader never took are
//! not counted as delivered when it dies. Only then may the state that records them be
//! committed. State that ends with the process records nothing: its run waits only until
//! the lines are written ([`Sink::written`]), as any other tool would.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread;
use std::time::Duration;

use super::Stop;
use crate::error::Error;
use crate::output::{Alert, AlertFormat};

/// Bytes gathered before they go to the writer, and writes queued for it: each handover
/// may switch threads, and on one core 64 KiB ones doubled the run's context switches.
const SHIP_BYTES: usize = 256 * 1024;
const QUEUED_WRITES: usize = 4;

/// A buffer for the next shipment, with room for the line that takes it past
/// [`SHIP_BYTES`] (which would otherwise double it).
fn shipment() -> String {
    String::with_capacity(SHIP_BYTES + SHIP_BYTES / 4)
}

/// How often a wait for the writer or the reader looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

enum ToWriter {
    Lines(Vec<u8>),
    /// Answers once every line before it is written, and has arrived if `arrive`.
    Deliver {
        ack: mpsc::Sender<io::Result<()>>,
        arrive: bool,
    },
}

/// What the output is, which decides what "arrived" means.
#[derive(Clone, Copy)]
enum Kind {
    File,
    Pipe,
    Other,
}

/// A stream of JSON lines.
pub struct Sink {
    name: String,
    pending: String,
    /// `None` for a sink that throws its lines away.
    to_writer: Option<SyncSender<ToWriter>>,
    stop: Stop,
    /// Device and inode of a regular file, to tell it from the run's inputs.
    file_id: Option<(u64, u64)>,
    null: bool,
}

impl Sink {
    /// Standard output, written directly rather than through Rust's locked handle.
    pub fn stdout(stop: &Stop) -> Result<Sink, Error> {
        Sink::from_fd(io::stdout().as_fd(), "standard output", stop)
    }

    /// Standard error.
    pub fn stderr(stop: &Stop) -> Result<Sink, Error> {
        Sink::from_fd(io::stderr().as_fd(), "standard error", stop)
    }

    /// A file, appended to: a rerun after a failure must not erase what was written.
    pub fn append(path: &Path, stop: &Stop) -> Result<Sink, Error> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(|e| Error::Output(format!("cannot open {}: {e}", path.display())))?;
        Sink::new(file, path.display().to_string(), stop)
    }

    /// Any open file, pipe or socket; `name` says what it is in errors.
    pub fn file(file: File, name: &str, stop: &Stop) -> Result<Sink, Error> {
        Sink::new(file, name.to_owned(), stop)
    }

    /// A sink that counts as delivered at once and keeps nothing.
    pub fn discard(stop: &Stop) -> Sink {
        Sink {
            name: "nowhere".into(),
            pending: String::new(),
            to_writer: None,
            stop: stop.clone(),
            file_id: None,
            null: true,
        }
    }

    fn from_fd(fd: BorrowedFd, name: &str, stop: &Stop) -> Result<Sink, Error> {
        let owned = fd
            .try_clone_to_owned()
            .map_err(|e| Error::Output(format!("{name}: {e}")))?;
        Sink::new(File::from(owned), name.to_owned(), stop)
    }

    fn new(file: File, name: String, stop: &Stop) -> Result<Sink, Error> {
        let meta = file
            .metadata()
            .map_err(|e| Error::Output(format!("{name}: {e}")))?;
        let kind = if meta.is_file() {
            Kind::File
        } else if meta.file_type().is_fifo() {
            Kind::Pipe
        } else {
            Kind::Other
        };
        // A closed standard output is /dev/null by the time the process runs (the runtime
        // puts it there so that no file takes its place).
        let dev_null = std::fs::metadata("/dev/null").ok().map(|m| m.rdev());
        let null = meta.file_type().is_char_device() && Some(meta.rdev()) == dev_null;
        let mut pending = shipment();
        // A line cut short by a crash of an earlier run stays one bad line, not two.
        if meta.is_file() && last_byte(&file, meta.len()).is_some_and(|b| b != b'\n') {
            pending.push('\n');
        }
        let (to_writer, from_run) = mpsc::sync_channel(QUEUED_WRITES);
        let writer_name = name.clone();
        thread::Builder::new()
            .name("rule-output".into())
            .spawn(move || write(file, kind, &writer_name, from_run))
            .expect("a thread can be spawned");
        Ok(Sink {
            name,
            pending,
            to_writer: Some(to_writer),
            stop: stop.clone(),
            file_id: meta.is_file().then(|| (meta.dev(), meta.ino())),
            null,
        })
    }

    /// What the sink writes to, as errors name it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether what it is given is thrown away (/dev/null, or [`Sink::discard`]).
    pub fn is_null(&self) -> bool {
        self.null
    }

    pub(super) fn file_id(&self) -> Option<(u64, u64)> {
        self.file_id
    }

    /// Queues one JSON line.
    pub fn write_line(&mut self, line: &impl serde::Serialize) -> Result<(), Error> {
        if self.to_writer.is_none() {
            return Ok(());
        }
        let line = serde_json::to_string(line).expect("output lines serialize");
        self.pending.push_str(&line);
        self.pending.push('\n');
        self.shipped_when_full()
    }

    /// Queues one alert, a JSON line in `format`.
    pub fn write_alert(&mut self, alert: &Alert, format: AlertFormat) -> Result<(), Error> {
        if self.to_writer.is_none() {
            return Ok(());
        }
        alert.write(&mut self.pending, format);
        self.shipped_when_full()
    }

    fn shipped_when_full(&mut self) -> Result<(), Error> {
        match self.pending.len() >= SHIP_BYTES {
            true => self.ship(),
            false => Ok(()),
        }
    }

    /// Returns once every line written so far has arrived.
    pub fn deliver(&mut self) -> Result<(), Error> {
        self.wait(true)
    }

    /// Returns once every line written so far is written out (in the kernel's hands, not
    /// yet on disk or read from the pipe), with the error writing it met, if any.
    pub fn written(&mut self) -> Result<(), Error> {
        self.wait(false)
    }

    fn wait(&mut self, arrive: bool) -> Result<(), Error> {
        if self.to_writer.is_none() {
            return Ok(());
        }
        self.ship()?;
        let (ack, arrived) = mpsc::channel();
        self.send(ToWriter::Deliver { ack, arrive })?;
        loop {
            match arrived.recv_timeout(POLL) {
                Ok(result) => return result.map_err(|e| self.failed(e)),
                Err(RecvTimeoutError::Timeout) if self.stop.requested() => {
                    return Err(Error::Interrupted(self.name.clone()));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.failed(io::Error::other("the writer stopped")));
                }
            }
        }
    }

    fn ship(&mut self) -> Result<(), Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let lines = std::mem::replace(&mut self.pending, shipment());
        self.send(ToWriter::Lines(lines.into_bytes()))
    }

    /// Queues a message for the writer, waiting while its queue is full, unless the run
    /// is asked to stop.
    fn send(&mut self, mut message: ToWriter) -> Result<(), Error> {
        let to_writer = self.to_writer.as_ref().expect("only a writing sink sends");
        loop {
            match to_writer.try_send(message) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) => {
                    if self.stop.requested() {
                        return Err(Error::Interrupted(self.name.clone()));
                    }
                    message = back;
                    thread::sleep(Duration::from_millis(2));
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err(self.failed(io::Error::other("the writer stopped")));
                }
            }
        }
    }

    fn failed(&self, e: io::Error) -> Error {
        Error::Output(format!(
            "cannot write to {}: {e}. The state stays as it was at the last commit, before \
             what could not be written: fix the output and rerun the same command to write it",
            self.name
        ))
    }
}

/// The last byte of a file of `len` bytes, read through the descriptor, or (for a
/// descriptor opened write-only, as a shell's `>>` does) through a new one.
fn last_byte(file: &File, len: u64) -> Option<u8> {
    let mut last = [0];
    let at = len.checked_sub(1)?;
    let read = file.read_at(&mut last, at).or_else(|_| {
        File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))?.read_at(&mut last, at)
    });
    read.ok().filter(|n| *n == 1).map(|_| last[0])
}

/// The writer thread: writes lines as they come and answers each delivery request. After
/// a failure it writes nothing more and answers every request with the failure.
fn write(mut file: File, kind: Kind, name: &str, from_run: Receiver<ToWriter>) {
    let mut failure: Option<(io::ErrorKind, String)> = None;
    for message in from_run {
        match message {
            ToWriter::Lines(lines) if failure.is_none() => {
                if let Err(e) = file.write_all(&lines) {
                    failure = Some((e.kind(), e.to_string()));
                }
            }
            ToWriter::Lines(_) => {}
            ToWriter::Deliver {
                ack,
                arrive: wanted,
            } => {
                if wanted
                    && failure.is_none()
                    && let Err(e) = arrive(&file, kind, name)
                {
                    failure = Some((e.kind(), e.to_string()));
                }
                let result = match &failure {
                    Some((kind, message)) => Err(io::Error::new(*kind, message.clone())),
                    None => Ok(()),
                };
                let _ = ack.send(result);
            }
        }
    }
}

/// Waits until what was written has arrived where `kind` says it arrives.
fn arrive(file: &File, kind: Kind, name: &str) -> io::Result<()> {
    match kind {
        Kind::File => file.sync_data(),
        Kind::Pipe => drained(file, name),
        Kind::Other => Ok(()),
    }
}

/// Waits until the pipe is empty: its reader has read everything. Errors if the reader
/// goes away first.
fn drained(pipe: &File, name: &str) -> io::Result<()> {
    let fd = pipe.as_raw_fd();
    loop {
        let mut unread: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int to the pointer given.
        if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread) } != 0 || unread == 0 {
            return Ok(());
        }
        let mut poll = libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd. The kernel reports POLLERR on a pipe without readers.
        unsafe { libc::poll(&mut poll, 1, POLL.as_millis() as libc::c_int) };
        if poll.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("the reader of {name} went away before reading the last {unread} bytes"),
            ));
        }
    }
}
