//! JSON text read in one pass: the whole text is checked once, and every member of every
//! object outside arrays is indexed by where its key and value lie in the text, so that a
//! field is then found by path without reading the text again, and nothing is copied (a
//! string without escapes is its own text between its quotes).
//!
//! A rule reads a dozen fields of a record of a few kilobytes, and runs where every byte
//! read costs (an interpreter inside a log shipper): so the text is scanned once, strings
//! eight bytes at a time, with one allocation for the index. The grammar is RFC 8259's,
//! as `serde_json` accepts it (the tests hold the two to the same verdicts), up to 128
//! nested objects and arrays.

use std::borrow::Cow;
use std::fmt;

use crate::bytes;

/// Deepest nesting of objects and arrays, as `serde_json` allows.
const MAX_DEPTH: usize = 128;

/// What kind of value a JSON value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `{...}`
    Object,
    /// `[...]`
    Array,
    /// `"..."`
    String,
    /// `-1.5e3`
    Number,
    /// `true`, `false`
    Bool,
    /// `null`
    Null,
}

impl Kind {
    /// As messages name it: "an object", "a string", ...
    pub fn name(self) -> &'static str {
        match self {
            Kind::Object => "an object",
            Kind::Array => "an array",
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Bool => "a boolean",
            Kind::Null => "null",
        }
    }
}

/// Text that is not JSON: what is wrong, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    what: &'static str,
    line: usize,
    column: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.what, self.line, self.column
        )
    }
}

impl std::error::Error for Error {}

/// Where no member is: the end of an object's chain of members.
const NONE: u32 = u32::MAX;

/// One member of an indexed object: offsets into the text, and the member before it in
/// its object. Members are indexed as their values end, each in one push: an object's
/// members are found from its last one backwards, which is also the order in which a
/// repeated key's last value wins.
#[derive(Clone, Copy, Debug)]
struct Member {
    /// The key's [`tag`], so that a lookup passes over most keys without comparing them.
    tag: u32,
    /// The member before it in its object, or [`NONE`].
    previous: u32,
    /// The key, between its quotes.
    key: (u32, u32),
    /// The value's text (a string's with its quotes).
    value: (u32, u32),
    /// For an object: its last member, or [`NONE`].
    last: u32,
    kind: Kind,
    key_escaped: bool,
    value_escaped: bool,
}

/// A JSON object's text, checked and indexed.
#[derive(Debug)]
pub struct Document<'a> {
    text: &'a str,
    /// Every indexed member.
    members: Vec<Member>,
    /// The document's own last member.
    root: u32,
}

thread_local! {
    /// The index of the document dropped last, for the next one: a rule reads one record
    /// after another, and need not allocate its index each time.
    static SPARE: std::cell::Cell<Option<Vec<Member>>> = const { std::cell::Cell::new(None) };
}

/// Keeps `members`, emptied, for the next document.
fn spare(mut members: Vec<Member>) {
    members.clear();
    SPARE.set(Some(members));
}

impl Drop for Document<'_> {
    fn drop(&mut self) {
        spare(std::mem::take(&mut self.members));
    }
}

impl<'a> Document<'a> {
    /// Checks `text`, which must be one JSON object, and indexes its members.
    pub fn parse(text: &'a str) -> Result<Document<'a>, Error> {
        let mut parser = Parser::new(text, SPARE.take().unwrap_or_default());
        let root = parser.document();
        let Parser { members, .. } = parser;
        match root {
            Ok(root) => Ok(Document {
                text,
                members,
                root,
            }),
            Err(e) => {
                spare(members);
                Err(e)
            }
        }
    }

    /// The object the text is.
    pub fn root(&self) -> Object<'_, 'a> {
        Object {
            doc: self,
            last: self.root,
        }
    }
}

/// Checks that `text` is one JSON object, as [`Document::parse`] does, indexing nothing
/// (so escaped keys are not decoded).
pub fn check_object(text: &str) -> Result<(), Error> {
    let mut parser = Parser::new(text, Vec::new());
    parser.index = false;
    parser.document().map(drop)
}

/// An object of a [`Document`].
#[derive(Clone, Copy, Debug)]
pub struct Object<'d, 'a> {
    doc: &'d Document<'a>,
    last: u32,
}

impl<'d, 'a> Object<'d, 'a> {
    /// Its members and their places, last first.
    fn backwards(&self) -> impl Iterator<Item = (u32, &'d Member)> + 'd {
        let members = &self.doc.members;
        let mut at = self.last;
        std::iter::from_fn(move || {
            let here = at;
            let member = members.get(here as usize)?;
            at = member.previous;
            Some((here, member))
        })
    }

    /// The value of `key`: the last, if the object repeats it, as a parsed object keeps it.
    // Inlined, so that a literal key's tag is a constant where it is written.
    #[inline(always)]
    pub fn get(&self, key: &str) -> Option<Value<'d, 'a>> {
        self.get_tagged(key, tag(key.as_bytes()))
    }

    /// [`Object::get`] of a key whose tag is `want`: one copy of the walk, however many
    /// callers inline `get`.
    // A walk of its own, not `get_all` of one key: that bookkeeping cost a Fluent Bit
    // filter 1.8 % more instructions a session start.
    #[inline(never)]
    fn get_tagged(&self, key: &str, want: u32) -> Option<Value<'d, 'a>> {
        let members = &self.doc.members[..];
        let mut at = self.last;
        loop {
            let member = members.get(at as usize)?;
            if member.tag == want && self.doc.key_is(member, key) {
                return Some(Value { doc: self.doc, at });
            }
            at = member.previous;
        }
    }

    /// The values of `keys`, each as [`Object::get`] gives it, found in one walk over the
    /// members: for reading several fields of one object.
    // Inlined, so that literal keys' tags are constants where they are written.
    #[inline(always)]
    pub fn get_all<const N: usize>(&self, keys: [&str; N]) -> [Option<Value<'d, 'a>>; N] {
        self.get_all_tagged(keys, keys.map(|key| tag(key.as_bytes())))
    }

    /// [`Object::get_all`] of keys whose tags are `wants`: one copy of the walk, however
    /// many callers inline `get_all`.
    #[inline(never)]
    fn get_all_tagged<const N: usize>(
        &self,
        keys: [&str; N],
        wants: [u32; N],
    ) -> [Option<Value<'d, 'a>>; N] {
        let mut found = [None; N];
        let mut missing = N;
        let members = &self.doc.members[..];
        let mut at = self.last;
        while let (1.., Some(member)) = (missing, members.get(at as usize)) {
            for n in 0..N {
                if member.tag == wants[n] && found[n].is_none() && self.doc.key_is(member, keys[n])
                {
                    found[n] = Some(Value { doc: self.doc, at });
                    missing -= 1;
                }
            }
            at = member.previous;
        }
        found
    }

    /// The members, in order: each key (decoded) and its value. (Listed from the last
    /// one back, so each call allocates the list.)
    pub fn members(self) -> impl Iterator<Item = (Cow<'a, str>, Value<'d, 'a>)> + 'd {
        let doc = self.doc;
        let places: Vec<(u32, &Member)> = self.backwards().collect();
        places
            .into_iter()
            .rev()
            .map(move |(at, member)| (doc.key(member), Value { doc, at }))
    }
}

/// A member's value in a [`Document`].
#[derive(Clone, Copy, Debug)]
pub struct Value<'d, 'a> {
    doc: &'d Document<'a>,
    at: u32,
}

impl<'d, 'a> Value<'d, 'a> {
    fn member(&self) -> &'d Member {
        &self.doc.members[self.at as usize]
    }

    /// What kind of value it is.
    pub fn kind(&self) -> Kind {
        self.member().kind
    }

    /// Its JSON text, as written.
    pub fn raw(&self) -> &'a str {
        let (start, end) = self.member().value;
        &self.doc.text[start as usize..end as usize]
    }

    /// The object it is, if it is one.
    pub fn as_object(&self) -> Option<Object<'d, 'a>> {
        (self.kind() == Kind::Object).then(|| Object {
            doc: self.doc,
            last: self.member().last,
        })
    }

    /// The string it is, decoded, if it is one: borrowed from the text unless it has
    /// escapes. A `\u` escape of half a surrogate pair is an error.
    pub fn as_str(&self) -> Option<Result<Cow<'a, str>, Error>> {
        let member = self.member();
        if member.kind != Kind::String {
            return None;
        }
        // One slice of the text, whose ends are checked once (a Fluent Bit filter: 1 %
        // fewer instructions a session start than slicing `raw()` again).
        let (start, end) = member.value;
        let inner = &self.doc.text[start as usize + 1..end as usize - 1];
        Some(match member.value_escaped {
            false => Ok(Cow::Borrowed(inner)),
            true => unescape(inner)
                .map(Cow::Owned)
                .map_err(|what| error_at(self.doc.text, member.value.0 as usize, what)),
        })
    }
}

impl<'a> Document<'a> {
    fn key_text(&self, member: &Member) -> &'a str {
        &self.text[member.key.0 as usize..member.key.1 as usize]
    }

    fn key_is(&self, member: &Member, key: &str) -> bool {
        // As bytes: slicing the text would check both ends fall between characters, a
        // cost on every lookup for what the parser already knows.
        let (start, end) = (member.key.0 as usize, member.key.1 as usize);
        match member.key_escaped {
            false => bytes::same(&self.text.as_bytes()[start..end], key.as_bytes()),
            true => self.key(member) == key,
        }
    }

    fn key(&self, member: &Member) -> Cow<'a, str> {
        let text = self.key_text(member);
        match member.key_escaped {
            false => Cow::Borrowed(text),
            // Checked when indexed.
            true => Cow::Owned(unescape(text).unwrap_or_default()),
        }
    }
}

/// A key's length, and its first, middle and last bytes: keys of one object seldom share
/// all four.
fn tag(key: &[u8]) -> u32 {
    let (Some(&first), Some(&last)) = (key.first(), key.last()) else {
        return 0;
    };
    u32::from_le_bytes([key.len() as u8, first, key[key.len() / 2], last])
}

/// `what` at byte `pos` of `text`, by line and column (1-based).
fn error_at(text: &str, pos: usize, what: &'static str) -> Error {
    let before = &text.as_bytes()[..pos.min(text.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |n| n + 1);
    Error {
        what,
        line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
        column: 1 + text[line_start..pos.min(text.len())].chars().count(),
    }
}

/// Reads a text by recursive descent, indexing (if asked) what it reads.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    index: bool,
    members: Vec<Member>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, members: Vec<Member>) -> Self {
        Parser {
            text,
            pos: 0,
            index: true,
            members,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn error(&self, what: &'static str) -> Error {
        error_at(self.text, self.pos, what)
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// The whole text: one object, and nothing after it but whitespace; its last member.
    fn document(&mut self) -> Result<u32, Error> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => {}
            None => return Err(self.error("EOF while parsing a value")),
            Some(_) => return Err(self.error("expected an object")),
        }
        let root = self.object(self.index, 1)?;
        self.skip_whitespace();
        match self.peek() {
            None => Ok(root),
            Some(_) => Err(self.error("trailing characters")),
        }
    }

    /// An object, at its `{`, `depth` deep; if `indexed`, its members are, and its last
    /// member is returned.
    fn object(&mut self, indexed: bool, depth: usize) -> Result<u32, Error> {
        self.pos += 1;
        let mut last = NONE;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(last);
        }
        loop {
            last = self.member(indexed, depth, last)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(last);
                }
                None => return Err(self.error("EOF while parsing an object")),
                Some(_) => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    /// A member: its key, `:` and value; indexed after `previous` if `indexed`, and then
    /// its place returned.
    fn member(&mut self, indexed: bool, depth: usize, previous: u32) -> Result<u32, Error> {
        let (key, key_escaped) = self.key()?;
        let key_tag = match (indexed, key_escaped) {
            (false, _) => 0,
            (true, false) => tag(&self.bytes()[key.0..key.1]),
            // Checked, and tagged, as it reads.
            (true, true) => match unescape(&self.text[key.0..key.1]) {
                Ok(decoded) => tag(decoded.as_bytes()),
                Err(what) => return Err(error_at(self.text, key.0, what)),
            },
        };
        self.skip_whitespace();
        match self.peek() {
            Some(b':') => self.pos += 1,
            None => return Err(self.error("EOF while parsing an object")),
            Some(_) => return Err(self.error("expected `:`")),
        }
        self.skip_whitespace();
        let start = self.pos;
        let (kind, value_escaped, last) = self.value(indexed, depth)?;
        if !indexed {
            return Ok(NONE);
        }
        let at = self.members.len() as u32;
        self.members.push(Member {
            tag: key_tag,
            previous,
            key: (key.0 as u32, key.1 as u32),
            value: (start as u32, self.pos as u32),
            last,
            kind,
            key_escaped,
            value_escaped,
        });
        Ok(at)
    }

    /// A value in a container `depth` deep, its members indexed if it is an object and
    /// `indexed`: its kind, whether it is a string with escapes, and an object's last
    /// member.
    // Inlined where it is read, with the scan of a string, which most values are: as a
    // call, a string cost a Fluent Bit filter 2 % more instructions a session start. A
    // container is a call of its own (and must be: objects nest), and so are the rare
    // numbers and literals.
    #[inline(always)]
    fn value(&mut self, indexed: bool, depth: usize) -> Result<(Kind, bool, u32), Error> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                Ok((Kind::String, self.string()?, NONE))
            }
            Some(b'{' | b'[') => self.container(indexed, depth),
            _ => Ok((self.bare()?, false, NONE)),
        }
    }

    /// An object or array, at its bracket, in a container `depth` deep: [`Parser::value`].
    #[inline(never)]
    fn container(&mut self, indexed: bool, depth: usize) -> Result<(Kind, bool, u32), Error> {
        if depth == MAX_DEPTH {
            return Err(self.error("recursion limit exceeded"));
        }
        match self.peek() {
            Some(b'{') => Ok((Kind::Object, false, self.object(indexed, depth + 1)?)),
            _ => {
                self.array(depth + 1)?;
                Ok((Kind::Array, false, NONE))
            }
        }
    }

    /// An array, at its `[`, `depth` deep: its elements are checked, not indexed.
    fn array(&mut self, depth: usize) -> Result<(), Error> {
        self.pos += 1;
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.value(false, depth)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                None => return Err(self.error("EOF while parsing a list")),
                Some(_) => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    /// A key: where its text lies between the quotes, and whether it has escapes.
    fn key(&mut self) -> Result<((usize, usize), bool), Error> {
        match self.peek() {
            Some(b'"') => self.pos += 1,
            None => return Err(self.error("EOF while parsing an object")),
            Some(_) => return Err(self.error("key must be a string")),
        }
        let start = self.pos;
        let escaped = self.string()?;
        Ok(((start, self.pos - 1), escaped))
    }

    /// A number or a literal (`true`, `false`, `null`).
    fn bare(&mut self) -> Result<Kind, Error> {
        let literal = |parser: &mut Self, word: &[u8], kind| match parser.bytes()[parser.pos..]
            .starts_with(word)
        {
            true => {
                parser.pos += word.len();
                Ok(kind)
            }
            false => Err(parser.error("expected ident")),
        };
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number().map(|()| Kind::Number),
            Some(b't') => literal(self, b"true", Kind::Bool),
            Some(b'f') => literal(self, b"false", Kind::Bool),
            Some(b'n') => literal(self, b"null", Kind::Null),
            None => Err(self.error("EOF while parsing a value")),
            Some(_) => Err(self.error("expected value")),
        }
    }

    /// The rest of a string after its opening quote; whether it has escapes.
    // Most strings are a dozen bytes: as a call, its prologue and constants cost more than
    // the scan (a Fluent Bit filter ran 4 % more instructions a session start).
    #[inline(always)]
    fn string(&mut self) -> Result<bool, Error> {
        let mut escaped = false;
        loop {
            self.pos = plain_until(self.bytes(), self.pos);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(_) => {
                    return Err(self.error(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ));
                }
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
    }

    /// An escape, at its backslash.
    fn escape(&mut self) -> Result<(), Error> {
        self.pos += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
            Some(b'u') => {
                self.pos += 1;
                for _ in 0..4 {
                    match self.peek() {
                        Some(b) if b.is_ascii_hexdigit() => self.pos += 1,
                        None => return Err(self.error("EOF while parsing a string")),
                        Some(_) => return Err(self.error("invalid escape")),
                    }
                }
            }
            None => return Err(self.error("EOF while parsing a string")),
            Some(_) => return Err(self.error("invalid escape")),
        }
        Ok(())
    }

    fn number(&mut self) -> Result<(), Error> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), Error> {
        match self.peek() {
            Some(b'0'..=b'9') => {
                self.digits();
                Ok(())
            }
            _ => Err(self.error("invalid number")),
        }
    }
}

/// The first byte at or after `from` that a string cannot hold as it is (a quote, a
/// backslash, a control character), or the end; eight bytes at a time.
// A call of its own for each string cost the compiled rule 3 % more instructions.
#[inline(always)]
fn plain_until(bytes: &[u8], from: usize) -> usize {
    const SPECIAL: bytes::Stops<2> = bytes::Stops::new([b'"', b'\\'], 0x20);
    bytes::find(bytes, from, &SPECIAL).unwrap_or(bytes.len())
}

/// Appends `text` to `out` as a JSON string, escaping only what JSON requires (as
/// `serde_json` writes it, byte for byte).
pub fn write_str(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let mut plain = plain_until(bytes, 0);
    out.reserve(bytes.len() + 2);
    out.push('"');
    out.push_str(&text[..plain]);
    while let Some(&special) = bytes.get(plain) {
        match special {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            control => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[usize::from(control >> 4)] as char);
                out.push(HEX[usize::from(control & 0xf)] as char);
            }
        }
        let from = plain + 1;
        plain = plain_until(bytes, from);
        out.push_str(&text[from..plain]);
    }
    out.push('"');
}

/// A JSON object written field by field, in the order given, with no other allocation
/// than its text.
#[derive(Debug)]
pub struct ObjectWriter(String);

impl ObjectWriter {
    /// An object about `capacity` bytes long.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut text = String::with_capacity(capacity);
        text.push('{');
        ObjectWriter(text)
    }

    fn key(&mut self, key: &str) -> &mut String {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        write_str(&mut self.0, key);
        self.0.push(':');
        &mut self.0
    }

    /// A string field.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        write_str(self.key(key), value);
        self
    }

    /// A string field, `null` for none.
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.str(key, value),
            None => {
                self.key(key).push_str("null");
                self
            }
        }
    }

    /// A member whose value is JSON text the caller vouches for (a number it wrote, say).
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key).push_str(json);
        self
    }

    /// An array of strings.
    pub fn strs<'s>(&mut self, key: &str, values: impl IntoIterator<Item = &'s str>) -> &mut Self {
        let out = self.key(key);
        out.push('[');
        for (n, value) in values.into_iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            write_str(out, value);
        }
        out.push(']');
        self
    }

    /// The object's text.
    pub fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// A string's text between its quotes, checked by the parser, decoded.
fn unescape(text: &str) -> Result<String, &'static str> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = memchr::memchr(b'\\', &bytes[at..]) {
        out.push_str(&text[at..at + found]);
        at += found + 1;
        let simple = match bytes[at] {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            _ => {
                let (c, len) = code_point(&bytes[at - 1..])?;
                out.push(c);
                at += len - 1;
                continue;
            }
        };
        out.push(simple);
        at += 1;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

/// The character of the `\uXXXX` escape (or surrogate pair of them) at the start of
/// `bytes`, and how many bytes it took.
fn code_point(bytes: &[u8]) -> Result<(char, usize), &'static str> {
    let hex = |at: usize| {
        std::str::from_utf8(&bytes[at..at + 4])
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .expect("checked by the parser")
    };
    let first = hex(2);
    match first {
        0xD800..=0xDBFF => {
            let second = match bytes.get(6..8) {
                Some(b"\\u") => hex(8),
                _ => return Err("lone leading surrogate in hex escape"),
            };
            if !(0xDC00..=0xDFFF).contains(&second) {
                return Err("lone leading surrogate in hex escape");
            }
            let c = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
            Ok((char::from_u32(c).expect("a surrogate pair"), 12))
        }
        _ => char::from_u32(first)
            .map(|c| (c, 6))
            .ok_or("invalid unicode code point"),
    }
}

#[cfg(test)]
mod tests;
