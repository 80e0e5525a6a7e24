//! Reading CloudTrail records from files and streams.
//!
//! Accepted, each optionally gzip-compressed (as CloudTrail writes to S3), detected by
//! content rather than by file name:
//!
//! * NDJSON: one record per line. A line that is itself a CloudTrail log file
//!   (`{"Records": [...]}`) or a JSON array is expanded, so concatenated log files work.
//! * A JSON document or a stream of them, pretty-printed or not: a JSON array of records,
//!   a CloudTrail log file, or a single record.
//!
//! Records are handed on as their raw JSON text, never re-serialized. A broken line is
//! reported and skipped; in a multi-line document, a syntax error ends that input, since
//! no reader can find where the next record starts.

use std::io::{self, BufRead, BufReader, Cursor, Read};

use flate2::read::MultiGzDecoder;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Where a record sits in its input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// 1-based line of NDJSON input; `None` inside a multi-line document.
    pub line: Option<u64>,
    /// 1-based count of records (and unreadable items) so far in this input.
    pub index: u64,
}

/// One item of input: a record's JSON text, or why an item could not be read.
pub type Item<'a> = Result<&'a str, String>;

/// Reads every record of `input`, handing each to `visit`. Stops early, with its error,
/// only when `visit` fails.
pub fn read_records<E>(
    input: impl Read,
    visit: &mut dyn FnMut(Position, Item) -> Result<(), E>,
) -> Result<(), E> {
    let mut reader = Reader {
        visit,
        position: Position::default(),
    };
    match decompressed(input) {
        Ok(decoded) => reader.read(decoded),
        Err(e) => reader.emit(Err(format!("reading input: {e}"))),
    }
}

fn decompressed<'a>(input: impl Read + 'a) -> io::Result<Box<dyn BufRead + 'a>> {
    let mut buffered = BufReader::with_capacity(1 << 16, input);
    let head = buffered.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(
            1 << 16,
            MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    })
}

struct Reader<'v, E> {
    visit: &'v mut dyn FnMut(Position, Item) -> Result<(), E>,
    position: Position,
}

impl<E> Reader<'_, E> {
    fn emit(&mut self, item: Item) -> Result<(), E> {
        self.position.index += 1;
        (self.visit)(self.position, item)
    }

    fn read(&mut self, mut input: Box<dyn BufRead + '_>) -> Result<(), E> {
        let mut first = Vec::new();
        if let Err(e) =
            skip_whitespace(&mut input).and_then(|_| input.read_until(b'\n', &mut first))
        {
            return self.emit(Err(format!("reading input: {e}")));
        }
        // NDJSON if the first line is a whole JSON value, else one document that spans lines.
        let first_is_whole = serde_json::from_slice::<serde::de::IgnoredAny>(&first).is_ok();
        if first.is_empty() || first_is_whole || !matches!(first[0], b'{' | b'[') {
            self.lines(Cursor::new(first).chain(input))
        } else {
            self.documents(Cursor::new(first).chain(input))
        }
    }

    fn lines(&mut self, mut input: impl BufRead) -> Result<(), E> {
        let mut line = Vec::new();
        let mut number = 0;
        loop {
            line.clear();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return self.emit(Err(format!("reading input after line {number}: {e}"))),
            }
            number += 1;
            self.position.line = Some(number);
            match std::str::from_utf8(&line) {
                Ok(text) if text.trim().is_empty() => {}
                Ok(text) => self.expand(text.trim())?,
                Err(e) => self.emit(Err(format!("the line is not UTF-8: {e}")))?,
            }
        }
    }

    fn documents(&mut self, input: impl Read) -> Result<(), E> {
        for document in serde_json::Deserializer::from_reader(input).into_iter::<Box<RawValue>>() {
            match document {
                Ok(document) => self.expand(document.get())?,
                Err(e) => return self.emit(Err(format!("{e}; the rest of this input is skipped"))),
            }
        }
        Ok(())
    }

    /// Emits the records of one JSON text: an array's elements, a log file's `Records`,
    /// or the text itself (the rule decides whether it is a usable record).
    fn expand(&mut self, text: &str) -> Result<(), E> {
        #[derive(Deserialize)]
        struct LogFile<'a> {
            #[serde(rename = "Records", borrow)]
            records: Option<&'a RawValue>,
        }
        let records = if text.starts_with('[') {
            text
        } else if text.starts_with('{') && text.contains("\"Records\"") {
            match serde_json::from_str::<LogFile>(text) {
                Ok(LogFile {
                    records: Some(records),
                }) => records.get(),
                _ => return self.emit(Ok(text)),
            }
        } else {
            return self.emit(Ok(text));
        };
        match serde_json::from_str::<Vec<&RawValue>>(records) {
            Ok(records) => records.into_iter().try_for_each(|r| self.emit(Ok(r.get()))),
            Err(e) => self.emit(Err(format!("expected an array of records: {e}"))),
        }
    }
}

fn skip_whitespace(input: &mut dyn BufRead) -> io::Result<()> {
    loop {
        let buffer = input.fill_buf()?;
        let blank = buffer
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        let done = blank < buffer.len() || buffer.is_empty();
        input.consume(blank);
        if done {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn read(input: &[u8]) -> Vec<(Position, Result<String, String>)> {
        let mut items = Vec::new();
        read_records::<()>(input, &mut |p, item| {
            items.push((p, item.map(str::to_owned)));
            Ok(())
        })
        .unwrap();
        items
    }

    fn texts(input: &[u8]) -> Vec<String> {
        read(input)
            .into_iter()
            .map(|(_, item)| item.unwrap_or_else(|e| format!("ERR {e}")))
            .collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn ndjson_lines_keep_their_text_and_line_numbers() {
        let items = read(b"{\"a\": 1}\n\n  {\"b\": 2}  \r\nnot json\n");
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[0],
            (
                Position {
                    line: Some(1),
                    index: 1
                },
                Ok("{\"a\": 1}".into())
            )
        );
        assert_eq!(
            items[1],
            (
                Position {
                    line: Some(3),
                    index: 2
                },
                Ok("{\"b\": 2}".into())
            )
        );
        // Not JSON is the rule's to reject, with its own reason.
        assert_eq!(
            items[2],
            (
                Position {
                    line: Some(4),
                    index: 3
                },
                Ok("not json".into())
            )
        );
    }

    #[test]
    fn log_files_and_arrays_are_expanded_wherever_they_appear() {
        let log = br#"{"Records": [{"n": 1}, {"n": 2}]}"#;
        assert_eq!(texts(log), [r#"{"n": 1}"#, r#"{"n": 2}"#]);
        assert_eq!(
            texts(b"[{\"n\": 1},\n {\"n\": 2}\n]"),
            [r#"{"n": 1}"#, r#"{"n": 2}"#]
        );
        let pretty = b"{\n  \"Records\": [\n    {\"n\": 1}\n  ]\n}\n{\"Records\": [{\"n\": 2}]}";
        assert_eq!(texts(pretty), [r#"{"n": 1}"#, r#"{"n": 2}"#]);
        let mixed = b"{\"Records\": [{\"n\": 1}]}\n{\"n\": 2}\n[{\"n\": 3}]\n";
        assert_eq!(texts(mixed), [r#"{"n": 1}"#, r#"{"n": 2}"#, r#"{"n": 3}"#]);
        let pretty_record = b"{\n  \"n\": 1\n}\n";
        assert_eq!(texts(pretty_record), ["{\n  \"n\": 1\n}"]);
    }

    #[test]
    fn gzip_is_detected_by_content_including_concatenated_members() {
        let mut two = gzip(br#"{"Records": [{"n": 1}]}"#);
        two.extend(gzip(b"\n{\"n\": 2}\n"));
        assert_eq!(texts(&two), [r#"{"n": 1}"#, r#"{"n": 2}"#]);
    }

    #[test]
    fn broken_input_is_reported_not_fatal() {
        let items = texts(b"{\"ok\": 1}\n\xff\xfe\n{\"Records\": 5}\n{\"ok\": 2}\n");
        assert_eq!(items[0], r#"{"ok": 1}"#);
        assert!(
            items[1].starts_with("ERR the line is not UTF-8"),
            "{}",
            items[1]
        );
        assert!(
            items[2].starts_with("ERR expected an array of records"),
            "{}",
            items[2]
        );
        assert_eq!(items[3], r#"{"ok": 2}"#);
        let truncated = texts(b"[\n{\"n\": 1},\n{\"n\": ");
        assert_eq!(truncated.len(), 1);
        assert!(
            truncated[0].contains("the rest of this input is skipped"),
            "{}",
            truncated[0]
        );
        let bad_gzip = texts(&gzip(b"{\"n\": 1}\n")[..12]);
        assert!(
            bad_gzip.iter().all(|t| t.starts_with("ERR")),
            "{bad_gzip:?}"
        );
        assert!(texts(b"").is_empty());
        assert!(texts(b"  \n\n").is_empty());
    }
}
