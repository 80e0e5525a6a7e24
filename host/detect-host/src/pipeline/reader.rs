//! The reading side of a run: a thread that reads the inputs in order and hands their
//! items over in bounded batches. The rule never waits on a disk, and a slow stream never
//! keeps the main loop from committing on time.
//!
//! A file that an earlier run has read (its [`InputMark`] matches it) is resumed: its
//! first items are counted, not handed over.

use std::fs::File;
use std::io::{self, Read};
use std::ops::{ControlFlow, Range};
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, sync_channel};
use std::thread;
use std::time::Duration;

use super::Progress;
use crate::input::{
    self, Ending, FileIdentity, FrameLimits, InputMark, Item, Position, ReadEnd, Source, Visit,
};
use detect_sdk::prefilter::{Prefilter, framed_as_object};

/// What reading ahead may hold: batches of about this many bytes (or a single larger
/// record), each item counted with what it costs beyond its bytes, one batch waiting.
const BATCH_BYTES: usize = 1 << 20;
const ITEM_OVERHEAD: usize = 128;
const BATCHES_IN_FLIGHT: usize = 1;

/// A file modified this recently may still be being written.
const STILL_WRITTEN: Duration = Duration::from_secs(300);

/// An item, owned, to cross to the main thread; a record's text is in its batch's text.
pub(super) enum Owned {
    Record(Range<usize>),
    Unusable {
        kind: &'static str,
        reason: String,
        bytes: Vec<u8>,
        digest: Option<(u64, [u8; 32])>,
    },
}

impl From<input::Unusable<'_>> for Owned {
    fn from(unusable: input::Unusable<'_>) -> Self {
        Owned::Unusable {
            kind: unusable.kind,
            reason: unusable.reason,
            bytes: unusable.bytes.to_vec(),
            digest: unusable.digest,
        }
    }
}

impl Owned {
    fn size(&self) -> usize {
        match self {
            Owned::Record(text) => text.len(),
            Owned::Unusable { bytes, .. } => bytes.len(),
        }
    }

    pub(super) fn unusable(&self) -> Option<input::Unusable<'_>> {
        match self {
            Owned::Record(_) => None,
            Owned::Unusable {
                kind,
                reason,
                bytes,
                digest,
            } => Some(input::Unusable {
                kind,
                reason: reason.clone(),
                bytes,
                digest: *digest,
            }),
        }
    }
}

/// A batch's records, in one buffer that goes back to its reader once the batch is done
/// with: a fresh megabyte for every batch had the kernel clear new pages for it (4 % of
/// the samples of a compiled-in run over session starts).
pub(super) struct BatchText {
    text: String,
    back: Sender<String>,
}

impl std::ops::Deref for BatchText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl Drop for BatchText {
    fn drop(&mut self) {
        let mut text = std::mem::take(&mut self.text);
        // One grown for a record over a batch's size is not kept for the next.
        if text.capacity() > BATCH_BYTES {
            return;
        }
        text.clear();
        // A reader that is done has no use for it.
        let _ = self.back.send(text);
    }
}

/// What the reader tells the main loop, in order.
pub(super) enum Message {
    /// A source starts. `identity` is set for a file that can be resumed; `skipped` items
    /// were handled by earlier runs.
    Start {
        source: usize,
        identity: Option<FileIdentity>,
        skipped: u64,
        notice: Option<String>,
    },
    /// The next items of a source: those to hand to the rule (the records' text in one
    /// buffer, so that crossing threads costs one allocation a batch), and how many the
    /// rule's prefilter ruled out in between; `through` is the index of the last of them
    /// all.
    Items {
        source: usize,
        text: BatchText,
        items: Vec<(Position, Owned)>,
        unread: Unread,
        through: u64,
    },
    End {
        source: usize,
        end: ReadEnd,
    },
    /// A source could not be opened, or reading it failed unexpectedly: the run stops.
    Failed(String),
}

/// Records the prefilter ruled out: framed as JSON objects, but not read further.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Unread {
    pub records: u64,
    pub bytes: u64,
}

/// Starts reading `sources` in order; `marks[i]` is where earlier runs left source `i`.
/// Records that `prefilter` rules out are counted, not handed over.
pub(super) fn spawn(
    sources: Vec<Source>,
    marks: Vec<Option<InputMark>>,
    limits: FrameLimits,
    prefilter: Option<Prefilter>,
    progress: Option<Progress>,
) -> Receiver<Message> {
    let (tx, rx) = sync_channel(BATCHES_IN_FLIGHT);
    // Each file read ahead holds its buffers and up to four records: one being framed,
    // its copy, one in the batch being built and one in the batch waiting.
    let per_file = 4 * BATCH_BYTES + 4 * limits.max_record_bytes;
    let ahead = thread::available_parallelism()
        .map_or(1, |n| n.get().min(MAX_AHEAD))
        .min((AHEAD_BYTES / per_file).max(1));
    thread::Builder::new()
        .name("rule-input".into())
        .spawn(move || {
            let mut sources = sources.into_iter().zip(marks).enumerate();
            let mut started = std::collections::VecDeque::new();
            loop {
                // Files ahead are read and decompressed while the rule works on this one.
                while started.len() < ahead
                    && let Some((index, (source, mark))) = sources.next()
                {
                    let reading = Reading {
                        limits: limits.clone(),
                        prefilter: prefilter.clone(),
                        progress: progress.clone(),
                    };
                    started.push_back(reading.start(index, source, mark));
                }
                let Some(messages) = started.pop_front() else {
                    return;
                };
                for message in messages {
                    // The main loop is gone (it stopped the run): stop reading.
                    if tx.send(message).is_err() {
                        return;
                    }
                }
            }
        })
        .expect("a thread can be spawned");
    rx
}

/// Files read at once, at most (and no more than the cores), and what they may hold in
/// all: fewer files for larger records.
const MAX_AHEAD: usize = 4;
const AHEAD_BYTES: usize = 64 << 20;

/// What reading every source shares.
struct Reading {
    limits: FrameLimits,
    prefilter: Option<Prefilter>,
    progress: Option<Progress>,
}

impl Reading {
    /// Reads `source` in a thread of its own, into a channel of its own.
    fn start(self, index: usize, source: Source, mark: Option<InputMark>) -> Receiver<Message> {
        let (tx, rx) = sync_channel(BATCHES_IN_FLIGHT);
        thread::Builder::new()
            .name(format!("rule-input-{index}"))
            .spawn(move || {
                let read = panic::catch_unwind(AssertUnwindSafe(|| {
                    self.source(index, &source, mark, &tx)
                }));
                // A bug in reading must stop the run, not end the file early in silence.
                if let Err(panic) = read {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    let _ = tx.send(Message::Failed(format!(
                        "reading {} failed unexpectedly ({what}); please report this",
                        source.name()
                    )));
                }
            })
            .expect("a thread can be spawned");
        rx
    }

    fn source(
        &self,
        index: usize,
        source: &Source,
        mark: Option<InputMark>,
        tx: &SyncSender<Message>,
    ) -> ControlFlow<()> {
        let send = |message| {
            tx.send(message)
                .map_or(ControlFlow::Break(()), |()| ControlFlow::Continue(()))
        };
        let (reader, identity): (Box<dyn Read>, _) = match source {
            Source::Stdin => (Box::new(io::stdin().lock()), None),
            Source::File(path) => {
                let opened = File::open(path).and_then(|file| {
                    let identity = FileIdentity::of(&file)?;
                    Ok((file, identity))
                });
                match opened {
                    Ok((file, identity)) => (Box::new(file), identity),
                    Err(e) => {
                        return send(Message::Failed(format!(
                            "cannot open {}: {e}",
                            path.display()
                        )));
                    }
                }
            }
        };
        let (skipped, notice) = resume_point(source, mark, identity.as_ref());
        send(Message::Start {
            source: index,
            identity: identity.clone(),
            skipped,
            notice,
        })?;
        // A file still being written gets the end of its last record later; anything else
        // (a stream, a finished or compressed file) hands over what it has.
        let ending = match source {
            Source::File(path) if identity.is_some() && may_grow(path) => Ending::HoldIncomplete,
            _ => Ending::Deliver,
        };
        let (back, spares) = mpsc::channel();
        let mut batcher = Batcher {
            source: index,
            skipped,
            prefilter: self.prefilter.as_ref(),
            text: String::new(),
            back,
            spares,
            items: Vec::new(),
            unread: Unread::default(),
            through: skipped,
            bytes: 0,
            tx,
        };
        let reader: Box<dyn Read> = match &self.progress {
            Some(progress) => Box::new(Counted {
                inner: reader,
                progress: progress.clone(),
            }),
            None => reader,
        };
        let end = input::read_into(reader, &self.limits, ending, &mut batcher);
        batcher.send()?;
        send(Message::End { source: index, end })
    }
}

/// Gathers a source's items into batches for the main loop.
struct Batcher<'a> {
    source: usize,
    /// Items of this source handled by earlier runs: counted, not handed over.
    skipped: u64,
    prefilter: Option<&'a Prefilter>,
    text: String,
    /// Where the main loop gives batches' buffers back, and where they come from: as
    /// many as there are batches between this reader and the rule, and one being filled.
    back: Sender<String>,
    spares: Receiver<String>,
    items: Vec<(Position, Owned)>,
    unread: Unread,
    through: u64,
    bytes: usize,
    tx: &'a SyncSender<Message>,
}

impl Batcher<'_> {
    fn send(&mut self) -> ControlFlow<()> {
        if self.items.is_empty() && self.unread.records == 0 {
            return ControlFlow::Continue(());
        }
        self.bytes = 0;
        let next = (self.spares.try_recv()).unwrap_or_else(|_| String::with_capacity(BATCH_BYTES));
        let text = BatchText {
            text: std::mem::replace(&mut self.text, next),
            back: self.back.clone(),
        };
        let message = Message::Items {
            source: self.source,
            text,
            items: std::mem::take(&mut self.items),
            unread: std::mem::take(&mut self.unread),
            through: self.through,
        };
        // The main loop is gone (it stopped the run): stop reading.
        match self.tx.send(message) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    }
}

impl Visit for Batcher<'_> {
    fn item(&mut self, at: Position, item: Item) -> ControlFlow<()> {
        if at.index <= self.skipped {
            return ControlFlow::Continue(());
        }
        let owned = match item {
            Item::RuledOut(bytes) if framed_as_object(bytes) => {
                // Counted against the batch by its size, so progress goes on being sent.
                self.reserve(bytes.len())?;
                self.unread.records += 1;
                self.unread.bytes += bytes.len() as u64;
                self.through = at.index;
                return ControlFlow::Continue(());
            }
            Item::RuledOut(bytes) => not_an_object(bytes),
            Item::Record(text) => {
                self.reserve(text.len() + ITEM_OVERHEAD)?;
                let start = self.text.len();
                self.text.push_str(text);
                self.items.push((at, Owned::Record(start..self.text.len())));
                self.through = at.index;
                return ControlFlow::Continue(());
            }
            Item::Unusable(unusable) => Owned::from(unusable),
        };
        self.reserve(owned.size() + ITEM_OVERHEAD)?;
        self.items.push((at, owned));
        self.through = at.index;
        ControlFlow::Continue(())
    }

    /// Whatever came in with the last chunk goes on now: the next read may wait long.
    fn pause(&mut self) -> ControlFlow<()> {
        self.send()
    }

    /// A record the prefilter rules out cannot concern the rule, which does not read it.
    /// Only if it is not even framed as a JSON object is it dead-lettered.
    fn wants(&mut self, record: &[u8]) -> bool {
        self.prefilter.is_none_or(|p| p.is_candidate(record))
    }
}

impl Batcher<'_> {
    /// Makes room for `size` more bytes in the batch, sending it first if it is full.
    fn reserve(&mut self, size: usize) -> ControlFlow<()> {
        if self.bytes + size > BATCH_BYTES {
            self.send()?;
        }
        self.bytes += size;
        ControlFlow::Continue(())
    }
}

/// A record that is not framed as a JSON object: the dead letter reading it whole, and
/// then the rule, would give it.
fn not_an_object(bytes: &[u8]) -> Owned {
    let text = match input::record_text(bytes) {
        Ok(text) => text,
        Err(unusable) => return Owned::from(unusable),
    };
    let error = detect_sdk::cloudtrail::not_an_object(text);
    Owned::Unusable {
        kind: error.kind(),
        reason: error.to_string(),
        bytes: bytes.to_vec(),
        digest: None,
    }
}

/// Whether the file at `path` may still grow: not gzip-compressed (CloudTrail writes
/// those whole), and modified in the last [`STILL_WRITTEN`].
fn may_grow(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut magic = [0; 2];
    let gzip = file.read_at(&mut magic, 0).is_ok_and(|n| n == 2) && magic == [0x1f, 0x8b];
    let recent = file
        .metadata()
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < STILL_WRITTEN));
    !gzip && recent
}

/// How many items of `source` earlier runs handled, and what to tell the user about it.
fn resume_point(
    source: &Source,
    mark: Option<InputMark>,
    now: Option<&FileIdentity>,
) -> (u64, Option<String>) {
    let (Some(mark), Some(now), Source::File(path)) = (mark, now, source) else {
        return (0, None);
    };
    let same = File::open(path).and_then(|file| mark.identity.continued_by(now, &file));
    match same {
        Ok(true) => (
            mark.items,
            Some(format!(
                "{}: resuming after the {} item(s) read by earlier runs (--reprocess reads them again)",
                path.display(),
                mark.items
            )),
        ),
        _ => (
            0,
            Some(format!(
                "{}: not the file earlier runs read at this path (it is shorter, or starts \
                 differently); reading it from the start",
                path.display()
            )),
        ),
    }
}

/// A reader that tells `progress` how many bytes it read.
struct Counted {
    inner: Box<dyn Read>,
    progress: Progress,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}
