use std::io::Write;

use flate2::{Compression, write::GzEncoder};
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;

/// Items as text: `R` record, `U` unusable with its kind and bytes.
fn read_with(input: &[u8], limits: FrameLimits) -> Vec<(Position, String)> {
    let mut items = Vec::new();
    let end = read_records(input, &limits, Ending::Deliver, |at, item| {
        items.push((at, describe(item)));
        ControlFlow::Continue(())
    });
    if let Some(error) = end.error {
        items.push((Position::default(), format!("ERROR {error}")));
    }
    items
}

fn describe(item: Item) -> String {
    match item {
        Item::Record(text) => format!("R {text}"),
        Item::RuledOut(bytes) => format!("O {}", String::from_utf8_lossy(bytes)),
        Item::Unusable(u) => format!(
            "U {} {} ({})",
            u.kind,
            String::from_utf8_lossy(u.bytes),
            u.reason
        ),
    }
}

fn texts(input: &[u8]) -> Vec<String> {
    read_with(input, FrameLimits::default())
        .into_iter()
        .map(|(_, t)| t)
        .collect()
}

fn records(input: &[u8]) -> Vec<String> {
    texts(input)
        .into_iter()
        .map(|t| t.strip_prefix("R ").map(str::to_owned).unwrap_or(t))
        .collect()
}

/// Frames `input` cut into pieces at `cuts` (offsets), as a slow reader would deliver it.
fn frames_in_pieces(input: &[u8], cuts: &[usize], limits: FrameLimits) -> Vec<(Position, String)> {
    let mut framer = Framer::new(limits);
    let mut items = Vec::new();
    let mut out = |at: Position, frame: Frame| items.push((at, format!("{frame:?}")));
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort();
    for cut in cuts.into_iter().chain([input.len()]) {
        framer.push(&input[start..cut], &mut out);
        start = cut;
        if framer.failed() {
            break;
        }
    }
    framer.finish(Ending::Deliver, &mut out);
    items
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn ndjson_lines_keep_their_text_and_line_numbers() {
    let items = read_with(
        b"{\"a\": 1}\n\n  {\"b\": 2}  \r\nnot json\n",
        FrameLimits::default(),
    );
    let at = |line, index| Position { line, index };
    assert_eq!(
        items,
        [
            (at(1, 1), "R {\"a\": 1}".into()),
            (at(3, 2), "R {\"b\": 2}".into()),
            // Not JSON is the rule's to reject, with its own reason.
            (at(4, 3), "R not json".into()),
        ]
    );
}

#[test]
fn a_line_is_one_record_whatever_follows_its_value() {
    assert_eq!(
        records(b"{\"a\": 1} {\"b\": 2}\n{\"c\": [}\n{\"d\": 4}"),
        ["{\"a\": 1} {\"b\": 2}", "{\"c\": [}", "{\"d\": 4}"]
    );
    // A broken line never swallows the next one, even inside a string.
    assert_eq!(
        records(b"{\"a\": \"unterminated\n{\"b\": 2}\n"),
        ["{\"a\": \"unterminated", "{\"b\": 2}"]
    );
}

#[test]
fn log_files_and_arrays_are_expanded_wherever_they_appear() {
    let log = br#"{"Records": [{"n": 1}, {"n": 2}]}"#;
    assert_eq!(records(log), [r#"{"n": 1}"#, r#"{"n": 2}"#]);
    assert_eq!(
        records(b"[{\"n\": 1},\n {\"n\": 2}\n]"),
        [r#"{"n": 1}"#, r#"{"n": 2}"#]
    );
    let pretty = b"{\n  \"Records\": [\n    {\"n\": 1}\n  ]\n}\n{\"Records\": [{\"n\": 2}]}";
    assert_eq!(records(pretty), [r#"{"n": 1}"#, r#"{"n": 2}"#]);
    let mixed = b"{\"Records\": [{\"n\": 1}]}\n{\"n\": 2}\n[{\"n\": 3}]\n";
    assert_eq!(
        records(mixed),
        [r#"{"n": 1}"#, r#"{"n": 2}"#, r#"{"n": 3}"#]
    );
    // One-line log files back to back (concatenated gzip members have no line break).
    let concatenated =
        b"{\"Records\": [{\"n\": 1}]}{\"Records\": [{\"n\": 2}]} [{\"n\": 3}]{\"n\": 4} x\n";
    assert_eq!(
        records(concatenated),
        [r#"{"n": 1}"#, r#"{"n": 2}"#, r#"{"n": 3}"#, r#"{"n": 4} x"#]
    );
    let pretty_record = b"{\n  \"n\": 1\n}\n";
    assert_eq!(records(pretty_record), ["{\n  \"n\": 1\n}"]);
    // Other keys of a log file are not records; brackets in strings do not count.
    let busy = br#"{"digest": {"x": "]}"}, "Records": [{"s": "[{,"}, 7, "x"], "tail": 1}"#;
    assert_eq!(records(busy), [r#"{"s": "[{,"}"#, "7", "\"x\""]);
    // A record may have a field called Records; it is a log only at the top.
    assert_eq!(
        records(br#"{"a": {"Records": [1]}}"#),
        [r#"{"a": {"Records": [1]}}"#]
    );
}

/// A reader that gives a byte at a time, each after an interruption by a signal.
struct Trickle<'a> {
    bytes: &'a [u8],
    interrupted: bool,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.interrupted = !self.interrupted;
        if self.interrupted {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = self.bytes.len().min(buffer.len()).min(1);
        buffer[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

#[test]
fn a_reader_giving_a_byte_at_a_time_reads_as_a_file_does() {
    let plain = b"{\"n\": 1}\n{\"n\": 2}\n".as_slice();
    for input in [plain.to_vec(), gzip(plain)] {
        let mut got = Vec::new();
        let trickle = Trickle {
            bytes: &input,
            interrupted: false,
        };
        let end = read_records(
            trickle,
            &FrameLimits::default(),
            Ending::Deliver,
            |_, item| {
                got.push(describe(item));
                ControlFlow::Continue(())
            },
        );
        assert!(end.error.is_none(), "{:?}", end.error);
        assert_eq!(got, texts(plain));
    }
}

#[test]
fn gzip_is_detected_by_content_including_concatenated_members() {
    let mut two = gzip(br#"{"Records": [{"n": 1}]}"#);
    two.extend(gzip(b"\n{\"n\": 2}\n"));
    assert_eq!(records(&two), [r#"{"n": 1}"#, r#"{"n": 2}"#]);
    // A damaged stream: what was read is handed on, then why the rest is not.
    let bad_gzip = texts(&gzip(b"{\"n\": 1}\n")[..12]);
    assert!(
        bad_gzip
            .last()
            .unwrap()
            .starts_with("ERROR reading the input failed after item"),
        "{bad_gzip:?}"
    );
    // A stream cut in the middle: whole records, then the error, which counts them; the
    // record the cut went through is not handed on.
    let many: String = (0..20_000).map(|n| format!("{{\"n\": {n}}}\n")).collect();
    let compressed = gzip(many.as_bytes());
    let mut cut = texts(&compressed[..compressed.len() / 2]);
    let error = cut.pop().unwrap();
    assert!(cut.len() > 100, "{} records", cut.len());
    for (n, text) in cut.iter().enumerate() {
        assert_eq!(*text, format!("R {{\"n\": {n}}}"));
    }
    let counted = format!("ERROR reading the input failed after item {}:", cut.len());
    assert!(error.starts_with(&counted), "{error}");
}

#[test]
fn a_byte_order_mark_is_skipped_even_when_split() {
    let input = b"\xEF\xBB\xBF{\"Records\": [{\"n\": 1}]}";
    assert_eq!(records(input), [r#"{"n": 1}"#]);
    for cut in 0..4 {
        let items = frames_in_pieces(input, &[cut, cut + 1], FrameLimits::default());
        assert_eq!(items.len(), 1, "{cut}: {items:?}");
    }
    // Two bytes of a BOM and then something else are input.
    let not_bom = records(b"\xEF\xBBx\n{}");
    assert!(
        not_bom[0].starts_with("U invalid-utf8 \u{fffd}x ("),
        "{not_bom:?}"
    );
    assert_eq!(not_bom[1], "{}");
}

#[test]
fn a_bad_byte_costs_only_its_record_in_every_layout() {
    let bad = b"{\"n\": \"\xff\x00\"}";
    let layouts: Vec<Vec<u8>> = vec![
        [&b"{\"n\": 1}\n"[..], bad, b"\n{\"n\": 3}\n"].concat(),
        [&b"{\"Records\": [{\"n\": 1}, "[..], bad, b", {\"n\": 3}]}"].concat(),
        [
            &b"{\n \"Records\": [\n  {\"n\": 1},\n  "[..],
            bad,
            b",\n  {\"n\": 3}\n ]\n}",
        ]
        .concat(),
        [&b"[\n{\"n\": 1},\n"[..], bad, b",\n{\"n\": 3}]"].concat(),
    ];
    for input in layouts {
        for input in [input.clone(), gzip(&input)] {
            let items = texts(&input);
            assert_eq!(items.len(), 3, "{items:?}");
            assert_eq!(items[0], "R {\"n\": 1}");
            assert!(
                items[1].starts_with("U invalid-utf8 {\"n\": \""),
                "{items:?}"
            );
            assert_eq!(items[2], "R {\"n\": 3}");
        }
    }
    // A NUL in valid UTF-8 is the rule's to reject: it reaches it.
    assert_eq!(records(b"{\"n\": \"\x00\"}\n{}"), ["{\"n\": \"\0\"}", "{}"]);
}

#[test]
fn oversized_records_keep_an_excerpt_a_size_and_a_digest() {
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(10_000));
    let limits = FrameLimits {
        max_record_bytes: 5000,
        ..FrameLimits::default()
    };
    for input in [
        format!("{{\"n\": 1}}\n{big}\n{{\"n\": 3}}\n"),
        format!("{{\"Records\": [{{\"n\": 1}}, {big}, {{\"n\": 3}}]}}"),
        format!("[\n{{\"n\": 1}},\n{big},\n{{\"n\": 3}}\n]"),
    ] {
        let mut seen = Vec::new();
        read_records(input.as_bytes(), &limits, Ending::Deliver, |_, item| {
            seen.push(match item {
                Item::Record(text) => text.to_owned(),
                Item::RuledOut(_) => unreachable!("every record is wanted"),
                Item::Unusable(u) => {
                    assert_eq!(u.kind, "record-too-large");
                    let size = format!("{} bytes", big.len());
                    assert!(u.reason.contains(&size), "{}", u.reason);
                    assert_eq!(u.bytes, &big.as_bytes()[..EXCERPT_BYTES]);
                    let digest: [u8; 32] = Sha256::digest(big.as_bytes()).into();
                    assert_eq!(u.digest, Some((big.len() as u64, digest)));
                    "BIG".into()
                }
            });
            ControlFlow::Continue(())
        });
        assert_eq!(seen, ["{\"n\": 1}", "BIG", "{\"n\": 3}"], "{input:.40}");
    }
}

#[test]
fn a_file_still_being_written_keeps_its_last_record_for_later() {
    let hold = |input: &[u8]| {
        let mut items = Vec::new();
        let end = read_records(
            input,
            &FrameLimits::default(),
            Ending::HoldIncomplete,
            |at, item| {
                items.push((at.index, describe(item)));
                ControlFlow::Continue(())
            },
        );
        (items, end)
    };
    let (items, end) = hold(b"{\"n\": 1}\n{\"n\": 2}");
    assert_eq!(items.len(), 2, "a whole last line needs no line break");
    assert_eq!((end.items, end.held_back), (2, None));
    let (items, end) = hold(b"{\"n\": 1}\n{\"n\": ");
    assert_eq!(items, [(1, "R {\"n\": 1}".to_owned())]);
    assert_eq!(end.items, 1);
    assert!(
        end.held_back
            .unwrap()
            .contains("ends inside a record (line 2)")
    );
    let (items, end) = hold(b"{\"Records\": [{\"n\": 1}, {\"n\": 2}");
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(
        end.held_back
            .unwrap()
            .contains("inside an array of records")
    );
    let (items, end) = hold(b"{\"n\": \"x\" ]\n{\"n\": \"y");
    assert_eq!(items.len(), 1, "a broken line is over: {items:?}");
    assert!(end.held_back.is_some());
}

#[test]
fn nesting_is_limited() {
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let lines = texts(format!("{deep}\n{{\"n\": 2}}\n").as_bytes());
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("U input [[[") && lines[0].contains("deeper than 128"),
        "{lines:?}"
    );
    assert_eq!(lines[1], "R {\"n\": 2}");
    // In a document, the broken record is kept, up to where the next one starts.
    let documents = texts(format!("[\n{{\"n\": 1}},\n{deep},\n{{\"n\": 2}}]").as_bytes());
    assert_eq!(documents.len(), 3, "{documents:?}");
    assert!(
        documents[1].starts_with("U input [[[")
            && documents[1].contains("nested deeper than 128 levels (line 3)"),
        "{documents:?}"
    );
    assert_eq!(documents[2], "R {\"n\": 2}");
}

#[test]
fn a_cut_first_line_of_ndjson_costs_only_that_line() {
    let input = b"{\"n\": 0, \"cut\":\n{\"n\": 1}\n{\"n\": 2}\n";
    let items = texts(input);
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(
        items[0].starts_with("U input {\"n\": 0, \"cut\": (cut short"),
        "{items:?}"
    );
    assert_eq!(&items[1..], ["R {\"n\": 1}", "R {\"n\": 2}"]);
    let garbage_first = texts(b"{bad json 0\n{\"n\": 1}\n");
    assert_eq!(garbage_first.len(), 2, "{garbage_first:?}");
    assert_eq!(garbage_first[1], "R {\"n\": 1}");
}

#[test]
fn a_broken_record_in_a_pretty_log_costs_only_itself() {
    let log = serde_json::to_string_pretty(&json!({"Records": [
        {"n": 1, "o": {"a": "b"}}, {"n": 2, "o": {"a": "c"}}, {"n": 3, "o": {"a": "d"}}
    ]}))
    .unwrap();
    // A quote lost: the string of record 2 never closes on its line.
    let lost_quote = log.replacen("\"c\"", "\"c", 1);
    let items = texts(lost_quote.as_bytes());
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(
        items[1].starts_with("U input {\n      \"n\": 2"),
        "{items:?}"
    );
    assert!(items[1].contains("a string is not closed"), "{items:?}");
    assert!(items[2].starts_with("R {\n      \"n\": 3"), "{items:?}");
    // A bracket too many: the same.
    let extra = log.replacen("\"c\"", "\"c\"]", 1);
    let items = texts(extra.as_bytes());
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items[1].contains("closes an object"), "{items:?}");
    // A record cut short in the middle of the file.
    let cut = log.replacen("\"c\"\n      }\n    },", "\"c\"", 1);
    let items = texts(cut.as_bytes());
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items[1].contains("cut short"), "{items:?}");
}

#[test]
fn broken_structure_is_reported_not_fatal_to_other_inputs() {
    let items = texts(b"{\"ok\": 1}\n{\"Records\": 5}\n{\"ok\": 2}\n");
    assert_eq!(
        items,
        [
            "R {\"ok\": 1}",
            "U input {\"Records\": 5} (`Records` of a log file must be an array)",
            "R {\"ok\": 2}",
        ]
    );
    let truncated = texts(b"[\n{\"n\": 1},\n{\"n\": ");
    assert_eq!(truncated, ["R {\"n\": 1}", "R {\"n\":"]);
    let cut_between = texts(b"{\n\"Records\": [\n{\"n\": 1},\n");
    assert_eq!(cut_between.len(), 2);
    assert!(
        cut_between[1].contains("ends inside an array"),
        "{cut_between:?}"
    );
    let wrong_closer = texts(b"{\n\"Records\": [\n{\"n\": 1},\n{\"n\": 2]}\n,{\"n\": 3}]}");
    assert_eq!(wrong_closer[0], "R {\"n\": 1}");
    assert!(
        wrong_closer[1].starts_with("U input {\"n\": 2")
            && wrong_closer[1].contains("`]` closes an object"),
        "{wrong_closer:?}"
    );
    assert_eq!(wrong_closer.len(), 2);
    assert!(texts(b"").is_empty());
    assert!(texts(b"  \n\n").is_empty());
}

/// Pieces of JSON and of damage, to build inputs from.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"{\"eventName\": \"StartSession\", \"n\": [1, {\"x\": \"]\"}]}".to_vec()),
        Just(b"{\"Records\": [".to_vec()),
        Just(b"{\"Records\"".to_vec()),
        Just(b"]}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b",".to_vec()),
        Just(b":".to_vec()),
        Just(b"\"s\\\"q\\\\\"".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"  ".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\xff\x00".to_vec()),
        Just(b"42".to_vec()),
        Just(b"garbage".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ]
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(fragment(), 0..40).prop_map(|parts| parts.concat())
}

/// A CloudTrail-like record.
fn record_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::from),
        "[a-z\"\\\\\\[\\]{},:\\n\u{e9}\u{1F600}]{0,12}".prop_map(Value::from),
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    proptest::collection::btree_map("[a-zA-Z]{1,10}", value, 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

proptest! {
    /// How the bytes arrive never changes what is read: this is what makes resuming a
    /// file by counting its records sound.
    #[test]
    fn framing_does_not_depend_on_chunking(input in input(), cuts in proptest::collection::vec(any::<usize>(), 0..6), limit in 8usize..64) {
        let limits = FrameLimits { max_record_bytes: limit, max_depth: 6 };
        let whole = frames_in_pieces(&input, &[], limits.clone());
        let pieces = frames_in_pieces(&input, &cuts, limits);
        prop_assert_eq!(whole, pieces);
    }

    /// Every layout of the same records gives back exactly those records.
    #[test]
    fn every_layout_gives_back_the_records(records in proptest::collection::vec(record_value(), 0..6), cuts in proptest::collection::vec(any::<usize>(), 0..4)) {
        let ndjson: Vec<u8> = records.iter().map(|r| format!("{r}\n")).collect::<String>().into();
        let log = serde_json::to_vec(&json!({"Records": records})).unwrap();
        let pretty_log = serde_json::to_vec_pretty(&json!({"Records": records})).unwrap();
        let pretty_array = serde_json::to_vec_pretty(&records).unwrap();
        let pretty_records: Vec<u8> = records.iter().map(|r| serde_json::to_string_pretty(r).unwrap() + "\n").collect::<String>().into();
        let mut layouts = vec![ndjson, log, pretty_log, pretty_array];
        // A first record that fits on one line makes the input NDJSON.
        if records.first().is_some_and(|r| r.as_object().is_some_and(|o| !o.is_empty())) {
            layouts.push(pretty_records);
        }
        for input in layouts {
            let input = if cuts.len() % 2 == 1 { gzip(&input) } else { input };
            let mut read = Vec::new();
            read_records(&input[..], &FrameLimits::default(), Ending::Deliver, |_, item| {
                read.push(match item {
                    Item::Record(text) => serde_json::from_str::<Value>(text).unwrap(),
                    other => panic!("{other:?}"),
                });
                ControlFlow::Continue(())
            });
            prop_assert_eq!(&read, &records);
        }
    }
}
