//! The reading side of `run`: a thread that reads the inputs in order and hands their
//! items over in bounded batches. The rule never waits on a disk, and a slow stream never
//! keeps the main loop from committing on time.
//!
//! A file that an earlier run has read (its [`InputMark`] matches it) is resumed: its
//! first items are counted, not handed over.

use std::fs::File;
use std::io::{self, IsTerminal, Read};
use std::ops::ControlFlow;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;
use std::time::Duration;

use indicatif::ProgressBar;

use crate::input::{
    self, Ending, FileIdentity, FrameLimits, InputMark, Item, Position, ReadEnd, Source, Visit,
};

/// What reading ahead may hold: batches of about this many bytes (or a single larger
/// record), each item counted with what it costs beyond its bytes, one batch waiting.
const BATCH_BYTES: usize = 1 << 20;
const ITEM_OVERHEAD: usize = 128;
const BATCHES_IN_FLIGHT: usize = 1;

/// A file modified this recently may still be being written.
const STILL_WRITTEN: Duration = Duration::from_secs(300);

/// An item, owned, to cross to the main thread.
pub enum Owned {
    Record(String),
    Unusable {
        kind: &'static str,
        reason: String,
        bytes: Vec<u8>,
        digest: Option<(u64, [u8; 32])>,
    },
}

impl Owned {
    fn size(&self) -> usize {
        match self {
            Owned::Record(text) => text.len(),
            Owned::Unusable { bytes, .. } => bytes.len(),
        }
    }

    pub fn unusable(&self) -> Option<input::Unusable<'_>> {
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

/// What the reader tells the main loop, in order.
pub enum Message {
    /// A source starts. `identity` is set for a file that can be resumed; `skipped` items
    /// were handled by earlier runs.
    Start {
        source: usize,
        identity: Option<FileIdentity>,
        skipped: u64,
        notice: Option<String>,
    },
    Items {
        source: usize,
        items: Vec<(Position, Owned)>,
    },
    End {
        source: usize,
        end: ReadEnd,
    },
    /// A source could not be opened: the run stops.
    Failed(String),
}

/// Starts reading `sources` in order; `marks[i]` is where earlier runs left source `i`.
pub fn spawn(
    sources: Vec<Source>,
    marks: Vec<Option<InputMark>>,
    limits: FrameLimits,
    progress: ProgressBar,
) -> Receiver<Message> {
    let (tx, rx) = sync_channel(BATCHES_IN_FLIGHT);
    thread::Builder::new()
        .name("rule-input".into())
        .spawn(move || {
            for (index, (source, mark)) in sources.iter().zip(marks).enumerate() {
                if read_source(index, source, mark, &limits, &progress, &tx).is_break() {
                    return;
                }
            }
        })
        .expect("a thread can be spawned");
    rx
}

fn read_source(
    index: usize,
    source: &Source,
    mark: Option<InputMark>,
    limits: &FrameLimits,
    progress: &ProgressBar,
    tx: &SyncSender<Message>,
) -> ControlFlow<()> {
    let send = |message| {
        tx.send(message)
            .map_or(ControlFlow::Break(()), |()| ControlFlow::Continue(()))
    };
    let (reader, identity): (Box<dyn Read>, _) = match source {
        Source::Stdin => {
            if io::stdin().is_terminal() {
                eprintln!("rule-harness: reading records from the terminal; end with Ctrl-D");
            }
            (Box::new(io::stdin().lock()), None)
        }
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
    let mut batcher = Batcher {
        source: index,
        skipped,
        items: Vec::new(),
        bytes: 0,
        tx,
    };
    let end = input::read_into(progress.wrap_read(reader), limits, ending, &mut batcher);
    batcher.send()?;
    send(Message::End { source: index, end })
}

/// Gathers a source's items into batches for the main loop.
struct Batcher<'a> {
    source: usize,
    /// Items of this source handled by earlier runs: counted, not handed over.
    skipped: u64,
    items: Vec<(Position, Owned)>,
    bytes: usize,
    tx: &'a SyncSender<Message>,
}

impl Batcher<'_> {
    fn send(&mut self) -> ControlFlow<()> {
        if self.items.is_empty() {
            return ControlFlow::Continue(());
        }
        self.bytes = 0;
        let items = std::mem::take(&mut self.items);
        let message = Message::Items {
            source: self.source,
            items,
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
            Item::Record(text) => Owned::Record(text.to_owned()),
            Item::Unusable(u) => Owned::Unusable {
                kind: u.kind,
                reason: u.reason,
                bytes: u.bytes.to_vec(),
                digest: u.digest,
            },
        };
        let size = owned.size() + ITEM_OVERHEAD;
        if self.bytes + size > BATCH_BYTES {
            self.send()?;
        }
        self.bytes += size;
        self.items.push((at, owned));
        ControlFlow::Continue(())
    }

    /// Whatever came in with the last chunk goes on now: the next read may wait long.
    fn pause(&mut self) -> ControlFlow<()> {
        self.send()
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
