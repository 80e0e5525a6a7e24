//! Reading CloudTrail records from files and streams, in bounded memory.
//!
//! Accepted, each optionally gzip-compressed (as CloudTrail writes to S3), detected by
//! content rather than by file name: NDJSON (one record per line; a line that is itself a
//! log file or an array is expanded), and JSON documents one after another, pretty-printed
//! or not: CloudTrail log files (`{"Records": [...]}`), arrays of records, single records.
//! A UTF-8 byte-order mark at the start is skipped. [`framer`] has the exact rules.
//!
//! Records are handed on as their raw text, never re-serialized. What cannot be a record
//! (bytes that are not UTF-8, a record over the size limit, text where a record should be)
//! is handed on as [`Unusable`], with what is needed to fix it and feed it again; it costs
//! only itself. Reading one input never holds more than one record (up to the limit)
//! and its buffers.

pub mod framer;
mod source;

use std::io::{self, BufReader, Read};
use std::ops::ControlFlow;

use flate2::bufread::MultiGzDecoder;

pub use framer::{EXCERPT_BYTES, Ending, Frame, FrameLimits, Framer, Position};
pub use source::hex;
pub use source::{FileIdentity, InputMark, Source};

/// Bytes read from the input at a time.
const CHUNK_BYTES: usize = 1 << 20;

/// One item of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A record's text, for the rule.
    Record(&'a str),
    /// A record the visitor ruled out ([`Visit::wants`]), as it was read: not even
    /// checked to be UTF-8.
    RuledOut(&'a [u8]),
    /// Something that cannot be handed to the rule.
    Unusable(Unusable<'a>),
}

/// Input that is not a usable record, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Unusable<'a> {
    /// `input`, `invalid-utf8` or `record-too-large`.
    pub kind: &'static str,
    pub reason: String,
    /// The bytes, or for an oversized record its first [`EXCERPT_BYTES`].
    pub bytes: &'a [u8],
    /// The whole item's size and SHA-256, when `bytes` is only an excerpt.
    pub digest: Option<(u64, [u8; 32])>,
}

/// A record's text, or why it cannot be one: its bytes are not UTF-8.
pub fn record_text(bytes: &[u8]) -> Result<&str, Unusable<'_>> {
    std::str::from_utf8(bytes).map_err(|e| Unusable {
        kind: "invalid-utf8",
        reason: format!(
            "the record is not UTF-8: invalid byte at offset {}",
            e.valid_up_to()
        ),
        bytes,
        digest: None,
    })
}

impl<'a> Item<'a> {
    fn from_frame(frame: Frame<'a>, limits: &FrameLimits) -> Self {
        match frame {
            Frame::Record(bytes) => match record_text(bytes) {
                Ok(text) => Item::Record(text),
                Err(unusable) => Item::Unusable(unusable),
            },
            Frame::Oversized {
                excerpt,
                size,
                sha256,
            } => Item::Unusable(Unusable {
                kind: "record-too-large",
                reason: format!(
                    "the record has {size} bytes; the limit is {} (--max-record-bytes)",
                    limits.max_record_bytes
                ),
                bytes: excerpt,
                digest: Some((size, sha256)),
            }),
            Frame::Unreadable { reason, bytes } => Item::Unusable(Unusable {
                kind: "input",
                reason,
                bytes,
                digest: None,
            }),
        }
    }
}

/// How reading one input ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReadEnd {
    /// Items handed over, numbered `1..=items` in their positions.
    pub items: u64,
    /// `visit` asked to stop.
    pub stopped: bool,
    /// Why the input could not be read to its end (I/O, decompression): what follows is
    /// unknown, and was not counted.
    pub error: Option<String>,
    /// Why the last item was left for a later run ([`Ending::HoldIncomplete`]).
    pub held_back: Option<String>,
}

/// What [`read_records`] hands the items to.
pub trait Visit {
    /// One item; `Break` stops the reading.
    fn item(&mut self, at: Position, item: Item) -> ControlFlow<()>;

    /// Called after each chunk of input, before the reader may wait for more: the moment
    /// to pass on what has been gathered, so that a slow stream does not hold it back.
    fn pause(&mut self) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }

    /// Whether a record's bytes make an [`Item::Record`]; the others come as
    /// [`Item::RuledOut`], without the cost of reading them further.
    fn wants(&mut self, _record: &[u8]) -> bool {
        true
    }
}

/// Reads every item of `input`, handing each to `visit`, which may stop the reading by
/// returning `Break`. `ending` says what to do with a last record whose end is missing.
pub fn read_records(
    input: impl Read,
    limits: &FrameLimits,
    ending: Ending,
    visit: impl FnMut(Position, Item) -> ControlFlow<()>,
) -> ReadEnd {
    struct Each<F>(F);
    impl<F: FnMut(Position, Item) -> ControlFlow<()>> Visit for Each<F> {
        fn item(&mut self, at: Position, item: Item) -> ControlFlow<()> {
            (self.0)(at, item)
        }
    }
    read_into(input, limits, ending, &mut Each(visit))
}

/// [`read_records`], for a [`Visit`] that also wants to know when input pauses.
pub fn read_into(
    input: impl Read,
    limits: &FrameLimits,
    ending: Ending,
    visit: &mut dyn Visit,
) -> ReadEnd {
    let mut framer = Framer::new(limits.clone());
    let mut feed = Feed {
        visit,
        limits,
        stopped: false,
    };
    let error = pump(input, &mut |chunk| {
        framer.push(chunk, &mut |at, frame| feed.frame(at, frame));
        if !feed.stopped {
            feed.stopped = feed.visit.pause().is_break();
        }
        if feed.stopped || framer.failed() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .err()
    .map(|e| {
        format!(
            "reading the input failed after item {}: {e}",
            framer.items()
        )
    });
    // After a read error the last item is cut by it, not by its writer: it is not handed
    // on, so that the file, once whole (an unfinished copy), resumes at it.
    let held_back = if feed.stopped || error.is_some() {
        None
    } else {
        framer.finish(ending, &mut |at, frame| feed.frame(at, frame))
    };
    ReadEnd {
        items: framer.items(),
        stopped: feed.stopped,
        error,
        held_back,
    }
}

/// Frames on their way to a [`Visit`], until it says stop.
struct Feed<'v, 'l> {
    visit: &'v mut dyn Visit,
    limits: &'l FrameLimits,
    stopped: bool,
}

impl Feed<'_, '_> {
    fn frame(&mut self, at: Position, frame: Frame) {
        if self.stopped {
            return;
        }
        let item = match frame {
            Frame::Record(bytes) if !self.visit.wants(bytes) => Item::RuledOut(bytes),
            frame => Item::from_frame(frame, self.limits),
        };
        self.stopped = self.visit.item(at, item).is_break();
    }
}

/// Hands the input, decompressed if it is gzip, to `chunk` piece by piece, until it ends
/// or `chunk` says to stop.
fn pump(mut input: impl Read, chunk: &mut dyn FnMut(&[u8]) -> ControlFlow<()>) -> io::Result<()> {
    // Read into a page-aligned buffer: the allocator puts a large block 16 bytes past a
    // page, and some CPUs (AMD EPYC here) copy from the page cache into that four times
    // slower: half the time of a compiled-in run over a plain log.
    let mut storage = vec![0; CHUNK_BYTES + PAGE_BYTES];
    let start = storage.as_ptr().align_offset(PAGE_BYTES);
    let buffer = &mut storage[start..start + CHUNK_BYTES];
    // Enough to tell gzip by its two magic bytes, even from a pipe that gives one.
    let mut first = 0;
    while first < 2 {
        match read_some(&mut input, &mut buffer[first..])? {
            0 => break,
            n => first += n,
        }
    }
    if buffer[..first].starts_with(&[0x1f, 0x8b]) {
        let read = io::Cursor::new(buffer[..first].to_vec()).chain(input);
        let gzip = MultiGzDecoder::new(BufReader::with_capacity(CHUNK_BYTES, read));
        return pump_from(gzip, buffer, 0, chunk);
    }
    pump_from(input, buffer, first, chunk)
}

const PAGE_BYTES: usize = 4096;

/// Hands the `filled` bytes of `buffer`, then each read of `input` into it, to `chunk`.
fn pump_from(
    mut input: impl Read,
    buffer: &mut [u8],
    mut filled: usize,
    chunk: &mut dyn FnMut(&[u8]) -> ControlFlow<()>,
) -> io::Result<()> {
    loop {
        if filled > 0 && chunk(&buffer[..filled]).is_break() {
            return Ok(());
        }
        filled = read_some(&mut input, buffer)?;
        if filled == 0 {
            return Ok(());
        }
    }
}

/// One read, retried when a signal interrupts it.
fn read_some(input: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match input.read(buffer) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            read => return read,
        }
    }
}

#[cfg(test)]
mod tests;
