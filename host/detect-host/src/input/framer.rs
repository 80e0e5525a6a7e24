//! Finds the records in a stream of JSON bytes without parsing them, in bounded memory.
//!
//! The framer follows only what it must to find where each record starts and ends:
//! strings (so that brackets inside them do not count), brackets (a stack of object or
//! array, up to [`FrameLimits::max_depth`]), and the keys of a top-level object (to tell a
//! CloudTrail log file, `{"Records": [...]}`, from a record). It never validates a record
//! nor decodes its text: a bad byte inside a string is the rule's to reject, and costs only
//! the record that holds it.
//!
//! Two layouts, told apart by the first value of the input:
//!
//! * **Lines** (NDJSON), when the first value ends on its first line. Each line is one
//!   record, unless it is a log file or an array, whose elements are the records. A line
//!   break always ends a record, so a broken line cannot swallow the next one.
//! * **Documents**, when the first value spans lines: pretty-printed log files, arrays or
//!   records, one after another. Line breaks are whitespace. A structural error (a bracket
//!   that closes the wrong thing, nesting past the limit) leaves no way to find the next
//!   record, so the rest of such an input is skipped, and said so.
//!
//! A record larger than [`FrameLimits::max_record_bytes`] is not buffered: the framer keeps
//! its first [`EXCERPT_BYTES`], counts the rest and hashes the whole. Output does not depend
//! on how the input is cut into chunks, which is what lets a run resume by counting records.

use memchr::memmem;
use sha2::{Digest, Sha256};

/// Bytes of an oversized record kept for its dead letter (at most the size limit).
pub const EXCERPT_BYTES: usize = 4096;

/// The deepest nesting the framer can track.
pub const MAX_DEPTH_LIMIT: u32 = 256;

/// What the framer holds on to.
#[derive(Clone, Debug)]
pub struct FrameLimits {
    /// Larger records are reported as [`Frame::Oversized`].
    pub max_record_bytes: usize,
    /// Deeper nesting is a structural error (at most [`MAX_DEPTH_LIMIT`]).
    pub max_depth: u32,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_record_bytes: 1 << 20,
            // serde_json's own recursion limit: a rule could not read anything deeper.
            max_depth: 128,
        }
    }
}

/// Where an item starts in its input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// 1-based line of the item's first byte.
    pub line: u64,
    /// 1-based count of items so far in this input.
    pub index: u64,
}

/// One item of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A record's bytes, neither validated nor decoded.
    Record(&'a [u8]),
    /// A record over the size limit: its first bytes, its size and its SHA-256.
    Oversized {
        excerpt: &'a [u8],
        size: u64,
        sha256: [u8; 32],
    },
    /// Input that holds no record where one was expected, with what could be kept of it.
    Unreadable { reason: String, bytes: &'a [u8] },
}

/// What [`Framer::finish`] does with a record whose end was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Hand it over as it is: the input will not be read again (a stream).
    Deliver,
    /// Leave it: the input is a file that a later run resumes.
    HoldIncomplete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Detect,
    Lines,
    Documents,
}

/// The top-level value being scanned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Top {
    None,
    Object,
    Array,
}

/// Where the scan is among the keys of a top-level object (depth 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    /// After a value: waiting for `,` or `}`.
    Idle,
    /// After `{` or `,`: the next string is a key.
    Expect,
    /// Inside a key; `matches` while it still reads `Records`.
    In { len: u8, matches: bool },
    /// After a key, before `:`.
    After(bool),
    /// After `:`, before the value; `true` for the value of `Records`.
    Value(bool),
}

/// How an open item ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ends {
    /// At the end of its line.
    Line,
    /// At a `,` or `]` of the array that holds it.
    Element,
    /// With the top-level object it is.
    Document,
}

#[derive(Debug)]
struct Item {
    at: Position,
    ends: Ends,
    /// Report it as unreadable, for this reason, instead of as a record.
    unreadable: Option<String>,
    /// The column of its first byte, and the depth it starts at.
    column: u64,
    base: u32,
}

const RECORDS_KEY: &[u8] = b"Records";

/// How the scan reads the bytes ahead: what it is inside of. Exactly one at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Outside strings: each byte is structure.
    Structure,
    /// Inside a string; `escaped` right after a backslash.
    String { escaped: bool },
    /// The line's value is done, or broken: copy (or skip) to the end of the line.
    RestOfLine,
    /// Documents: the open record is broken; skip lines to where the next one starts.
    Resyncing,
    /// Documents: a structural error left no way to find the next record, so the rest of
    /// the input is ignored. Nothing leaves this mode.
    Failed,
}

/// The framer: feed it chunks with [`Framer::push`], then call [`Framer::finish`].
pub struct Framer {
    limits: FrameLimits,
    layout: Layout,
    mode: Mode,
    // `started`, `bad_log` and `at_line_start` stay flags: each holds across changes of
    // mode, so none of them could be part of one.
    /// The byte-order mark is behind (or was not there): settled before any mode applies.
    started: bool,
    line: u64,
    index: u64,
    depth: u32,
    /// One bit per level, set for an object.
    stack: [u64; 4],
    /// The depth of the array whose elements are items, if any.
    element_depth: Option<u32>,
    top: Top,
    key: Key,
    /// The top-level object has `Records` that is not an array: a fact about that object,
    /// learnt in one mode and read when its record ends, in another.
    bad_log: bool,
    /// Nothing but blanks yet on the current line: where the scan is on its line, not how
    /// it reads. A line break sets it in any mode (inside a string, in the rest of a line),
    /// and the line's first byte is judged later, in structure or resyncing.
    at_line_start: bool,
    /// Offset in the input of the current chunk, and of the current line.
    consumed: u64,
    line_start: u64,
    item: Option<Item>,
    /// The open item's bytes from earlier chunks (up to the limit), or its excerpt.
    buffer: Vec<u8>,
    /// The open item's size so far, and its hash once it is over the limit.
    size: u64,
    hasher: Option<Sha256>,
    records_key: memmem::Finder<'static>,
}

impl Framer {
    pub fn new(mut limits: FrameLimits) -> Self {
        limits.max_depth = limits.max_depth.clamp(1, MAX_DEPTH_LIMIT);
        Framer {
            limits,
            layout: Layout::Detect,
            mode: Mode::Structure,
            started: false,
            line: 1,
            index: 0,
            depth: 0,
            stack: [0; 4],
            element_depth: None,
            top: Top::None,
            key: Key::Idle,
            bad_log: false,
            at_line_start: true,
            consumed: 0,
            line_start: 0,
            item: None,
            buffer: Vec::new(),
            size: 0,
            hasher: None,
            records_key: memmem::Finder::new(b"\"Records\"").into_owned(),
        }
    }

    /// Whether a structural error ended this input: no more items will come.
    pub fn failed(&self) -> bool {
        self.mode == Mode::Failed
    }

    /// Items so far.
    pub fn items(&self) -> u64 {
        self.index
    }

    /// The line the framer has reached.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Frames `chunk`, handing each complete item to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut dyn FnMut(Position, Frame)) {
        if !self.started {
            // A byte-order mark is not part of the first record. It may come split.
            let bom = b"\xEF\xBB\xBF";
            let seen = self.buffer.len();
            let take = (bom.len() - seen).min(chunk.len());
            if bom[seen..].starts_with(&chunk[..take]) {
                self.buffer.extend_from_slice(&chunk[..take]);
                if self.buffer.len() < bom.len() {
                    return;
                }
                self.buffer.clear();
                chunk = &chunk[take..];
            } else if seen > 0 {
                // Not a BOM after all: the bytes held back are input.
                let held = std::mem::take(&mut self.buffer);
                self.started = true;
                self.push(&held, out);
            }
            self.started = true;
        }
        Scan {
            framer: self,
            chunk,
            from: None,
        }
        .run(out);
        self.consumed += chunk.len() as u64;
    }

    /// Ends the input. An item still open at the end is handed over as it is, or, with
    /// [`Ending::HoldIncomplete`], held back when its end has not been read: the input may
    /// be a file still being written, to be read again. Returns why something was held back.
    pub fn finish(
        &mut self,
        ending: Ending,
        out: &mut dyn FnMut(Position, Frame),
    ) -> Option<String> {
        if !self.started && !self.buffer.is_empty() {
            let held = std::mem::take(&mut self.buffer);
            self.started = true;
            self.push(&held, out);
        }
        if self.mode == Mode::Failed {
            return None;
        }
        let hold = ending == Ending::HoldIncomplete;
        let held = |what: &str, line: u64| {
            Some(format!(
                "the input ends inside {what} (line {line}); it is left for a later run, once \
                 the rest is written"
            ))
        };
        let rest_of_line = self.mode == Mode::RestOfLine;
        let complete = match &self.item {
            _ if rest_of_line => true,
            Some(item) if item.ends == Ends::Element => {
                Some(self.depth) == self.element_depth && !self.in_string()
            }
            _ => self.depth == 0 && !self.in_string(),
        };
        if self.item.is_some() && !complete && hold {
            return held("a record", self.line);
        }
        // A record cut short says enough about the array it was cut from.
        let said = rest_of_line || (self.item.is_some() && !complete);
        let mut scan = Scan {
            framer: self,
            chunk: &[],
            from: None,
        };
        if scan.framer.item.is_some() {
            scan.end_item(0, out);
        }
        if scan.framer.element_depth.is_none() || said {
            return None;
        }
        if hold {
            return held("an array of records", scan.framer.line);
        }
        let reason = "the input ends inside an array of records (a truncated file?)";
        scan.emit_unreadable(reason.into(), out);
        None
    }

    /// Back to the top level. Never reached once failed: the scan stops there.
    fn reset_structure(&mut self) {
        self.mode = Mode::Structure;
        self.depth = 0;
        self.element_depth = None;
        self.top = Top::None;
        self.key = Key::Idle;
        self.bad_log = false;
    }

    fn in_string(&self) -> bool {
        matches!(self.mode, Mode::String { .. })
    }

    fn is_object(&self, depth: u32) -> bool {
        let bit = depth - 1;
        self.stack[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    fn set_level(&mut self, depth: u32, object: bool) {
        let bit = depth - 1;
        let word = &mut self.stack[(bit / 64) as usize];
        if object {
            *word |= 1 << (bit % 64);
        } else {
            *word &= !(1 << (bit % 64));
        }
    }

    /// Bytes of an oversized record kept: [`EXCERPT_BYTES`], or less under a smaller limit.
    fn excerpt_bytes(&self) -> usize {
        EXCERPT_BYTES.min(self.limits.max_record_bytes)
    }

    /// Adds bytes to the open item, keeping at most the limit, and only an excerpt and a
    /// running hash once the item is over it.
    fn append(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.hasher.is_none() {
            if self.buffer.len() + bytes.len() <= self.limits.max_record_bytes {
                self.buffer.extend_from_slice(bytes);
                return;
            }
            let mut hasher = Sha256::new();
            hasher.update(&self.buffer);
            self.hasher = Some(hasher);
            self.buffer.truncate(self.excerpt_bytes());
        }
        self.hasher.as_mut().expect("set above").update(bytes);
        let more = self
            .excerpt_bytes()
            .saturating_sub(self.buffer.len())
            .min(bytes.len());
        self.buffer.extend_from_slice(&bytes[..more]);
    }
}

/// One chunk being scanned; `from` is where the open item's bytes start in it.
struct Scan<'f, 'c> {
    framer: &'f mut Framer,
    chunk: &'c [u8],
    from: Option<usize>,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !is_space(*b))
        .map_or(0, |p| p + 1);
    &bytes[..end]
}

impl Scan<'_, '_> {
    fn run(mut self, out: &mut dyn FnMut(Position, Frame)) {
        if self.framer.item.is_some() {
            self.from = Some(0);
        }
        let mut i = 0;
        while i < self.chunk.len() {
            i = match self.framer.mode {
                Mode::Structure => self.structure(i, out),
                Mode::String { escaped } => self.string(i, escaped, out),
                Mode::RestOfLine => self.rest_of_line(i, out),
                Mode::Resyncing => self.resync(i, out),
                Mode::Failed => break,
            };
        }
        if let Some(from) = self.from.take() {
            let rest = &self.chunk[from..];
            self.framer.append(rest);
        }
    }

    /// Inside a string: jump to its end, an escape or a line break.
    fn string(
        &mut self,
        mut i: usize,
        escaped: bool,
        out: &mut dyn FnMut(Position, Frame),
    ) -> usize {
        if escaped {
            self.framer.mode = Mode::String { escaped: false };
            if self.chunk[i] != b'\n' {
                self.key_bytes(i, i + 1);
                return i + 1;
            }
        }
        let Some(k) = memchr::memchr3(b'"', b'\\', b'\n', &self.chunk[i..]) else {
            self.key_bytes(i, self.chunk.len());
            return self.chunk.len();
        };
        let j = i + k;
        self.key_bytes(i, j);
        match self.chunk[j] {
            b'"' => {
                self.framer.mode = Mode::Structure;
                self.end_string();
                j + 1
            }
            b'\\' => {
                self.key_bytes(j, j + 1);
                self.framer.mode = Mode::String { escaped: true };
                j + 1
            }
            _ => {
                i = j;
                self.newline(i, out);
                i + 1
            }
        }
    }

    /// Bytes of the string between `from` and `to`, for a key being read.
    fn key_bytes(&mut self, from: usize, to: usize) {
        if let Key::In { len, matches } = &mut self.framer.key {
            let bytes = &self.chunk[from..to];
            let at = *len as usize;
            *matches = *matches
                && at + bytes.len() <= RECORDS_KEY.len()
                && RECORDS_KEY[at..at + bytes.len()] == *bytes;
            *len = (at + bytes.len()).min(u8::MAX as usize) as u8;
        }
    }

    fn end_string(&mut self) {
        let f = &mut *self.framer;
        if let Key::In { len, matches } = f.key {
            f.key = Key::After(matches && len as usize == RECORDS_KEY.len());
        }
    }

    /// Lines: copy (or skip) to the end of the line.
    fn rest_of_line(&mut self, i: usize, out: &mut dyn FnMut(Position, Frame)) -> usize {
        let Some(k) = memchr::memchr(b'\n', &self.chunk[i..]) else {
            if self.framer.item.is_none() {
                self.garbage(i);
            }
            return self.chunk.len();
        };
        let j = i + k;
        if self.framer.item.is_none() && self.chunk[i..j].iter().any(|b| !is_space(*b)) {
            self.garbage(i);
        }
        self.newline(j, out);
        j + 1
    }

    /// Text after a line's value: the rest of the line is one unreadable item.
    fn garbage(&mut self, i: usize) {
        let start = i + self.chunk[i..].iter().take_while(|b| is_space(**b)).count();
        if start < self.chunk.len() && self.chunk[start] != b'\n' {
            self.open_item(start, Ends::Line);
            self.framer.item.as_mut().expect("just opened").unreadable =
                Some("text after the end of the line's JSON value".into());
        }
    }

    /// Outside strings: one structural byte.
    fn structure(&mut self, i: usize, out: &mut dyn FnMut(Position, Frame)) -> usize {
        let b = self.chunk[i];
        if self.framer.at_line_start && !matches!(b, b' ' | b'\t' | b'\r') {
            self.framer.at_line_start = false;
            if b == b'{' && self.starts_like_the_open_record(i) {
                return self.cut_short(i, out);
            }
        }
        if self.framer.depth == 0 && !matches!(b, b'\n' | b' ' | b'\t' | b'\r' | b'{' | b'[') {
            return self.top_level_text(i);
        }
        match b {
            b'\n' => self.newline(i, out),
            b' ' | b'\t' | b'\r' => {}
            b'"' => self.string_starts(i),
            b'{' | b'[' => return self.open(i, b == b'{', out),
            b'}' | b']' => return self.close(i, b == b'}', out),
            b',' => self.comma(i, out),
            b':' => self.colon(),
            _ => self.value_starts(i),
        }
        i + 1
    }

    /// Documents: a record that starts where the open one started, at `i`, means the open
    /// one was cut short: a truncated record, or a cut first line of NDJSON.
    fn cut_short(&mut self, i: usize, out: &mut dyn FnMut(Position, Frame)) -> usize {
        let reason = format!(
            "cut short: another record starts at line {} before this one ends",
            self.framer.line
        );
        self.cut(i, reason, out)
    }

    /// A `"` at `i`: a string value, or a key of the top-level object.
    fn string_starts(&mut self, i: usize) {
        self.value_starts(i);
        let f = &mut *self.framer;
        f.mode = Mode::String { escaped: false };
        if f.depth == 1 && f.top == Top::Object && f.key == Key::Expect {
            f.key = Key::In {
                len: 0,
                matches: true,
            };
        }
    }

    /// A `,` at `i`: ends an element of the array of records; the next key follows.
    fn comma(&mut self, i: usize, out: &mut dyn FnMut(Position, Frame)) {
        let f = &mut *self.framer;
        if f.element_depth == Some(f.depth) && f.item.is_some() {
            self.end_item(i, out);
        }
        let f = &mut *self.framer;
        if f.depth == 1 && f.top == Top::Object {
            f.key = Key::Expect;
        }
    }

    /// A `:`: after a key of the top-level object, its value follows.
    fn colon(&mut self) {
        let f = &mut *self.framer;
        if f.depth == 1
            && f.top == Top::Object
            && let Key::After(records) = f.key
        {
            f.key = Key::Value(records);
        }
    }

    /// A value (not a container) starts at `i`, inside some container.
    fn value_starts(&mut self, i: usize) {
        let f = &mut *self.framer;
        if f.element_depth == Some(f.depth) && f.item.is_none() {
            self.open_item(i, Ends::Element);
            return;
        }
        let f = &mut *self.framer;
        if f.depth == 1
            && f.top == Top::Object
            && let Key::Value(records) = f.key
        {
            f.bad_log |= records;
            f.key = Key::Idle;
        }
    }

    /// Text at the top level that is not a container: a scalar, or not JSON at all. It is
    /// one item, up to the end of its line, for the rule to judge.
    fn top_level_text(&mut self, i: usize) -> usize {
        let f = &mut *self.framer;
        if f.layout == Layout::Detect {
            f.layout = Layout::Lines;
        }
        self.open_item(i, Ends::Line);
        self.framer.mode = Mode::RestOfLine;
        i
    }

    fn open(&mut self, i: usize, object: bool, out: &mut dyn FnMut(Position, Frame)) -> usize {
        let f = &mut *self.framer;
        if f.depth == 0 {
            if object
                && f.layout == Layout::Lines
                && let Some(next) = self.whole_line(i, out)
            {
                return next;
            }
            self.top_value(i, object);
        } else if f.element_depth == Some(f.depth) && f.item.is_none() {
            self.open_item(i, Ends::Element);
        } else if f.depth == 1 && f.top == Top::Object {
            match f.key {
                Key::Value(true) if !object => {
                    // `"Records": [`: a log file. Its other keys are not records.
                    self.drop_item();
                    self.framer.element_depth = Some(2);
                    self.framer.key = Key::Idle;
                }
                Key::Value(records) => {
                    f.bad_log |= records;
                    f.key = Key::Idle;
                }
                _ => {}
            }
        }
        let f = &mut *self.framer;
        if f.depth >= f.limits.max_depth {
            let reason = format!("JSON nested deeper than {} levels", f.limits.max_depth);
            return self.structural_error(i, reason, out);
        }
        f.depth += 1;
        f.set_level(f.depth, object);
        i + 1
    }

    /// Lines: a line that is an object and cannot be a log file is one record, found with
    /// two vector searches instead of a scan. The result is the same as the scan's.
    fn whole_line(&mut self, i: usize, out: &mut dyn FnMut(Position, Frame)) -> Option<usize> {
        let f = &mut *self.framer;
        let k = memchr::memchr(b'\n', &self.chunk[i..])?;
        // The limit counts trailing blanks, as it does for a record read in pieces.
        if k > f.limits.max_record_bytes {
            return None;
        }
        let line = trim_end(&self.chunk[i..i + k]);
        if f.records_key.find(line).is_some() {
            return None;
        }
        f.index += 1;
        let at = Position {
            line: f.line,
            index: f.index,
        };
        f.line += 1;
        f.line_start = f.consumed + (i + k + 1) as u64;
        out(at, Frame::Record(line));
        Some(i + k + 1)
    }

    fn top_value(&mut self, i: usize, object: bool) {
        let f = &mut *self.framer;
        if object {
            f.top = Top::Object;
            f.key = Key::Expect;
            let ends = match f.layout {
                Layout::Lines => Ends::Line,
                Layout::Detect | Layout::Documents => Ends::Document,
            };
            self.open_item(i, ends);
        } else {
            f.top = Top::Array;
            f.element_depth = Some(1);
        }
    }

    fn close(&mut self, i: usize, object: bool, out: &mut dyn FnMut(Position, Frame)) -> usize {
        let f = &mut *self.framer;
        if f.depth == 0 {
            return self.top_level_text(i);
        }
        if f.is_object(f.depth) != object {
            let reason = format!(
                "`{}` closes {}",
                if object { '}' } else { ']' },
                if object { "an array" } else { "an object" }
            );
            return self.structural_error(i, reason, out);
        }
        f.depth -= 1;
        if f.element_depth == Some(f.depth + 1) {
            // The array of records closed.
            if f.item.is_some() {
                self.end_item(i, out);
            }
            let f = &mut *self.framer;
            f.element_depth = None;
            f.key = Key::Idle;
        } else if f.depth == 1 && f.top == Top::Object {
            f.key = Key::Idle;
        }
        if self.framer.depth == 0 {
            self.top_value_ends(i + 1, out);
        }
        i + 1
    }

    /// The top-level value ended just before `end`.
    fn top_value_ends(&mut self, end: usize, out: &mut dyn FnMut(Position, Frame)) {
        let f = &mut *self.framer;
        if f.layout == Layout::Detect {
            // The first value ended on its first line: NDJSON.
            f.layout = Layout::Lines;
            if let Some(item) = &mut f.item {
                item.ends = Ends::Line;
            }
        }
        if f.layout == Layout::Lines && f.item.is_some() {
            // A record's line is the record, whatever follows its value.
            f.mode = Mode::RestOfLine;
            return;
        }
        if f.item.is_some() {
            self.end_item(end, out);
        }
        // After a log file or an array, another value may follow on the same line: gzip
        // members of one-line log files concatenated have no line break between them.
        self.framer.reset_structure();
    }

    fn newline(&mut self, i: usize, out: &mut dyn FnMut(Position, Frame)) {
        let f = &mut *self.framer;
        f.at_line_start = true;
        f.line_start = f.consumed + i as u64 + 1;
        match f.layout {
            Layout::Lines => {
                if f.item.is_some() {
                    self.end_item(i, out);
                } else if f.element_depth.is_some() {
                    let reason = "the line ends inside an array of records".into();
                    self.emit_unreadable(reason, out);
                }
                self.framer.reset_structure();
            }
            // A value that goes on to the next line is pretty-printed, unless the break
            // is inside a string, where JSON allows none: then the line is broken.
            Layout::Detect if f.in_string() => {
                f.layout = Layout::Lines;
                return self.newline(i, out);
            }
            Layout::Detect if f.depth > 0 => f.layout = Layout::Documents,
            // JSON has no line breaks inside strings: this string was never closed.
            Layout::Documents if f.in_string() && f.item.is_some() => {
                let reason = format!("a string is not closed at the end of line {}", f.line);
                self.break_record(reason);
            }
            Layout::Detect | Layout::Documents => {
                if f.item.as_ref().is_some_and(|item| item.ends == Ends::Line) {
                    self.end_item(i, out);
                    self.framer.reset_structure();
                }
            }
        }
        self.framer.line += 1;
    }

    /// A bracket that cannot be matched, or nesting past the limit.
    fn structural_error(
        &mut self,
        i: usize,
        reason: String,
        out: &mut dyn FnMut(Position, Frame),
    ) -> usize {
        let f = &mut *self.framer;
        if f.layout == Layout::Detect {
            f.layout = Layout::Lines;
        }
        if f.layout == Layout::Lines {
            // The rest of the line is one item. A line that is a record goes to the rule
            // as it is, as it would without a scan; anything else is reported here.
            match &mut f.item {
                None => {
                    self.open_item(i, Ends::Line);
                    self.framer.item.as_mut().expect("just opened").unreadable = Some(reason);
                }
                Some(item) => {
                    if item.ends == Ends::Element {
                        item.unreadable = Some(reason);
                    }
                    item.ends = Ends::Line;
                }
            }
            self.framer.mode = Mode::RestOfLine;
            return i;
        }
        if f.item.is_some() {
            let reason = format!("{reason} (line {})", f.line);
            self.break_record(reason);
            return i + 1;
        }
        let reason = format!(
            "{reason} (line {}); no record can be found after it, so the rest of this input is skipped",
            f.line
        );
        self.emit_unreadable(reason, out);
        self.framer.mode = Mode::Failed;
        self.chunk.len()
    }

    /// Documents: the open record is broken. Its bytes are kept, and lines are skipped to
    /// one that starts where a record of its array (or the next document) would.
    fn break_record(&mut self, reason: String) {
        let f = &mut *self.framer;
        let item = f.item.as_mut().expect("a record is open");
        item.unreadable.get_or_insert(reason);
        f.mode = Mode::Resyncing;
    }

    /// Whether a `{` at `i`, first on its line, is where the open record started: in its
    /// column, while the record is still inside its own brackets.
    fn starts_like_the_open_record(&self, i: usize) -> bool {
        let f = &*self.framer;
        f.layout != Layout::Lines
            && f.item
                .as_ref()
                .is_some_and(|item| f.depth > item.base && self.column(i) == item.column)
    }

    fn column(&self, i: usize) -> u64 {
        let f = &*self.framer;
        f.consumed + i as u64 - f.line_start
    }

    /// Ends the open record at `i`, broken, and goes on from its array (or the top level)
    /// with the byte at `i`.
    fn cut(&mut self, i: usize, reason: String, out: &mut dyn FnMut(Position, Frame)) -> usize {
        let base = self.framer.item.as_ref().expect("a record is open").base;
        let item = self.framer.item.as_mut().expect("a record is open");
        item.unreadable.get_or_insert(reason);
        self.end_item(i, out);
        let f = &mut *self.framer;
        f.mode = Mode::Structure;
        f.at_line_start = false;
        if base == 0 {
            f.reset_structure();
            // What follows decides its layout afresh: a cut first line of NDJSON is
            // followed by whole lines.
            f.layout = Layout::Detect;
        } else {
            f.depth = base;
        }
        i
    }

    /// Skipping a broken record: to the first line that starts with `{` in the record's
    /// column (the next record) or with a closing bracket left of it (the array's end).
    fn resync(&mut self, mut i: usize, out: &mut dyn FnMut(Position, Frame)) -> usize {
        loop {
            if self.framer.at_line_start {
                let blanks = self.chunk[i..]
                    .iter()
                    .take_while(|b| matches!(b, b' ' | b'\t' | b'\r'))
                    .count();
                i += blanks;
                if i == self.chunk.len() {
                    return i;
                }
                self.framer.at_line_start = false;
                let column = self.column(i);
                let record = self
                    .framer
                    .item
                    .as_ref()
                    .expect("resyncing a record")
                    .column;
                let resumes = match self.chunk[i] {
                    b'{' => column == record,
                    b']' | b'}' => column < record,
                    _ => false,
                };
                if resumes {
                    let reason = "broken".to_owned();
                    return self.cut(i, reason, out);
                }
            }
            let Some(k) = memchr::memchr(b'\n', &self.chunk[i..]) else {
                return self.chunk.len();
            };
            let f = &mut *self.framer;
            f.line += 1;
            f.line_start = f.consumed + (i + k + 1) as u64;
            f.at_line_start = true;
            i += k + 1;
        }
    }

    fn open_item(&mut self, i: usize, ends: Ends) {
        let column = self.column(i);
        let f = &mut *self.framer;
        let base = match ends {
            Ends::Element => f.element_depth.unwrap_or(0),
            Ends::Line | Ends::Document => 0,
        };
        f.item = Some(Item {
            at: Position {
                line: f.line,
                index: 0,
            },
            ends,
            unreadable: None,
            column,
            base,
        });
        f.buffer.clear();
        f.size = 0;
        f.hasher = None;
        self.from = Some(i);
    }

    /// The open object turned out to be a log file, not a record.
    fn drop_item(&mut self) {
        let f = &mut *self.framer;
        f.item = None;
        f.buffer.clear();
        f.size = 0;
        f.hasher = None;
        self.from = None;
    }

    /// Ends the open item just before `end` and hands it over.
    fn end_item(&mut self, end: usize, out: &mut dyn FnMut(Position, Frame)) {
        let f = &mut *self.framer;
        let item = f.item.take().expect("an item is open");
        f.index += 1;
        let at = Position {
            index: f.index,
            ..item.at
        };
        let unreadable = item.unreadable.or_else(|| {
            (f.bad_log && item.ends != Ends::Element)
                .then(|| "`Records` of a log file must be an array".to_owned())
        });
        let from = self.from.take().unwrap_or(end);
        let here = &self.chunk[from..end];
        let frame =
            if f.buffer.is_empty() && f.hasher.is_none() && here.len() <= f.limits.max_record_bytes
            {
                // Wholly inside this chunk: no copy.
                record_or_unreadable(trim_end(here), unreadable)
            } else {
                f.append(here);
                match f.hasher.take() {
                    Some(hasher) => Frame::Oversized {
                        excerpt: &f.buffer,
                        size: f.size,
                        sha256: hasher.finalize().into(),
                    },
                    None => record_or_unreadable(trim_end(&f.buffer), unreadable),
                }
            };
        out(at, frame);
        f.buffer.clear();
        f.size = 0;
    }

    fn emit_unreadable(&mut self, reason: String, out: &mut dyn FnMut(Position, Frame)) {
        let f = &mut *self.framer;
        f.index += 1;
        let at = Position {
            line: f.line,
            index: f.index,
        };
        out(at, Frame::Unreadable { reason, bytes: &[] });
    }
}

fn record_or_unreadable(bytes: &[u8], unreadable: Option<String>) -> Frame<'_> {
    match unreadable {
        Some(reason) => Frame::Unreadable { reason, bytes },
        None => Frame::Record(bytes),
    }
}
