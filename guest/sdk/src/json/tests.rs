use proptest::prelude::*;
use serde_json::Value as Json;

use super::*;

/// serde_json's verdict on `text` when it skips values unread (no check of what `\u`
/// escapes decode to), and when it decodes every string.
fn serde_verdicts(text: &str) -> (bool, bool) {
    let skipped = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
    let decoded = serde_json::from_str::<Json>(text).is_ok();
    (skipped, decoded)
}

/// Holds the index to serde_json on `text`, an object's text: the same verdict, and for
/// text both accept, the same members at every depth.
fn agrees_with_serde(text: &str) {
    let ours = Document::parse(text);
    assert_eq!(
        check_object(text).map_err(|e| e.to_string()),
        ours.as_ref().map(drop).map_err(|e| e.to_string())
    );
    let (skipped, decoded) = serde_verdicts(text);
    // Ours decodes the keys it indexes and nothing else: between the two.
    if decoded {
        assert!(ours.is_ok(), "{text:?}: {ours:?}");
    }
    if ours.is_ok() {
        assert!(skipped, "{text:?} accepted");
    }
    if let (Ok(doc), Ok(json)) = (&ours, serde_json::from_str::<Json>(text)) {
        same_object(doc.root(), &json, text);
    }
}

fn same_object(object: Object, json: &Json, text: &str) {
    let map = json.as_object().expect("an object");
    assert_eq!(
        object
            .members()
            .map(|(k, _)| k)
            .collect::<std::collections::BTreeSet<_>>(),
        map.keys().map(|k| Cow::Borrowed(k.as_str())).collect(),
        "{text:?}"
    );
    for (key, expected) in map {
        let value = object.get(key).expect("a member serde has");
        let raw: Json = serde_json::from_str(value.raw()).expect("a value's text is JSON");
        assert_eq!(&raw, expected, "{text:?}: {key}");
        match expected {
            Json::Object(_) => same_object(value.as_object().unwrap(), expected, text),
            Json::String(s) => assert_eq!(value.as_str().unwrap().unwrap(), *s),
            _ => assert!(value.as_object().is_none() && value.as_str().is_none()),
        }
        let kind = match expected {
            Json::Object(_) => Kind::Object,
            Json::Array(_) => Kind::Array,
            Json::String(_) => Kind::String,
            Json::Number(_) => Kind::Number,
            Json::Bool(_) => Kind::Bool,
            Json::Null => Kind::Null,
        };
        assert_eq!(value.kind(), kind);
    }
}

#[test]
fn members_are_found_at_every_depth_and_the_last_of_a_key_wins() {
    let text = r#" {"a": {"b": "x", "c": [1, {"d": 2}], "k\u0065y": "v\u0041\ud83d\ude00"},
        "n": -0.5e+3, "t": true, "a": {"b": "y"}, "e": {}, "s": "q\"\\/\b\f\n\r\t"} "#;
    let doc = Document::parse(text).unwrap();
    let root = doc.root();
    let a = root.get("a").unwrap().as_object().unwrap();
    assert_eq!(a.get("b").unwrap().as_str().unwrap().unwrap(), "y");
    assert!(a.get("key").is_none());
    assert_eq!(root.get("n").unwrap().raw(), "-0.5e+3");
    assert_eq!(
        root.get("e")
            .unwrap()
            .as_object()
            .unwrap()
            .members()
            .count(),
        0
    );
    agrees_with_serde(text);
    let first = r#"{"a": {"b": "x", "k\u0065y": "v\u0041\ud83d\ude00"}}"#;
    let doc = Document::parse(first).unwrap();
    let a = doc.root().get("a").unwrap().as_object().unwrap();
    assert_eq!(a.get("key").unwrap().as_str().unwrap().unwrap(), "vA😀");
    assert!(matches!(
        a.get("b").unwrap().as_str().unwrap().unwrap(),
        Cow::Borrowed("x")
    ));
    // In order, repeats and all, inside an object as at the root.
    let doc = Document::parse(r#"{"o": {"b": 1, "a": {"x": 0}, "b": 3}, "z": {}}"#).unwrap();
    let o = doc.root().get("o").unwrap().as_object().unwrap();
    let members: Vec<(Cow<str>, &str)> = o.members().map(|(k, v)| (k, v.raw())).collect();
    assert_eq!(
        members,
        [
            ("b".into(), "1"),
            ("a".into(), r#"{"x": 0}"#),
            ("b".into(), "3")
        ]
    );
    assert_eq!(o.get("b").unwrap().raw(), "3");
}

#[test]
fn keys_of_one_tag_in_nested_objects_are_told_apart() {
    // Every key has the length, first, middle and last byte of the others (one tag), and
    // each appears in the root and in an object inside it, repeated there.
    let keys: Vec<String> = (0..150)
        .map(|n| format!("a{:02}c{}b", n / 10, n % 10))
        .collect();
    let members = |value: &dyn Fn(usize) -> String| {
        let members = keys
            .iter()
            .enumerate()
            .map(|(n, k)| format!("\"{k}\":{}", value(n)));
        members.collect::<Vec<_>>().join(",")
    };
    let inner = members(&|n| format!("{}", n + 1000));
    let again = members(&|n| format!("{}", n + 2000));
    let text = format!(
        "{{{},\"in\":{{{inner},{again}}}}}",
        members(&|n| n.to_string())
    );
    assert_eq!(tag(keys[0].as_bytes()), tag(keys[149].as_bytes()));
    let doc = Document::parse(&text).unwrap();
    let inside = doc.root().get("in").unwrap().as_object().unwrap();
    for (n, key) in keys.iter().enumerate() {
        assert_eq!(doc.root().get(key).unwrap().raw(), n.to_string());
        assert_eq!(inside.get(key).unwrap().raw(), (n + 2000).to_string());
    }
    for absent in ["a99c9b", "in2", ""] {
        assert!(doc.root().get(absent).is_none() && inside.get(absent).is_none());
    }
    assert!(inside.get("in").is_none());
    let wanted = [
        keys[3].as_str(),
        "a99c9b",
        keys[149].as_str(),
        keys[3].as_str(),
    ];
    let raw = |value: Option<Value>| value.map(|v| v.raw().to_owned());
    assert_eq!(
        inside.get_all(wanted).map(raw),
        wanted.map(|k| raw(inside.get(k)))
    );
    assert_eq!(inside.members().count(), 300);
    agrees_with_serde(&text);
}

#[test]
fn text_that_is_not_one_object_is_refused_where_it_goes_wrong() {
    for (text, what) in [
        ("", "EOF while parsing a value at line 1 column 1"),
        ("[1]", "expected an object at line 1 column 1"),
        (
            "{\"a\": 1",
            "EOF while parsing an object at line 1 column 8",
        ),
        ("{\"a\": 1,}", "key must be a string at line 1 column 9"),
        ("{\"a\" 1}", "expected `:` at line 1 column 6"),
        ("{\"a\": [1 2]}", "expected `,` or `]` at line 1 column 10"),
        ("{\"a\": 01}", "expected `,` or `}` at line 1 column 8"),
        ("{\"a\": 1.}", "invalid number at line 1 column 9"),
        ("{\"a\": tru}", "expected ident at line 1 column 7"),
        ("{\"a\": \"\\x\"}", "invalid escape at line 1 column 9"),
        (
            "{\"a\": \"\t\"}",
            "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 8",
        ),
        (
            "{\"a\":\n \"é",
            "EOF while parsing a string at line 2 column 4",
        ),
        ("{} {}", "trailing characters at line 1 column 4"),
        (
            "{\"\\ud800\": 1}",
            "lone leading surrogate in hex escape at line 1 column 3",
        ),
    ] {
        assert_eq!(
            Document::parse(text).unwrap_err().to_string(),
            what,
            "{text:?}"
        );
        if text.starts_with('{') && !text.contains("ud800") {
            assert_eq!(serde_verdicts(text), (false, false), "{text:?}");
        }
    }
    let deep = format!("{{\"a\": {}{}}}", "[".repeat(127), "]".repeat(127));
    assert!(Document::parse(&deep).is_ok());
    let too_deep = format!("{{\"a\": {}{}}}", "[".repeat(128), "]".repeat(128));
    assert!(
        Document::parse(&too_deep)
            .unwrap_err()
            .to_string()
            .starts_with("recursion limit")
    );
    // serde_json decodes one level less (and skips values at any depth).
    assert_eq!(serde_verdicts(&deep), (true, false));
}

#[test]
fn strings_are_scanned_to_their_first_special_byte() {
    let text = "abcdefghijklmnopqrstuvwxyz0123456789é漢字";
    for special in ["\"", "\\", "\u{1}", "\u{1f}", "\n"] {
        for at in 0..text.len() {
            if !text.is_char_boundary(at) {
                continue;
            }
            let with = format!("{}{special}{}", &text[..at], &text[at..]);
            assert_eq!(plain_until(with.as_bytes(), 0), at, "{with:?}");
            assert_eq!(plain_until(with.as_bytes(), at), at);
        }
    }
    assert_eq!(plain_until(text.as_bytes(), 3), text.len());
    // The byte after 0x1f and the high bytes of UTF-8 are plain.
    assert_eq!(plain_until(b" !#[]\x7f\x80\xff", 0), 8);
}

/// Arbitrary JSON objects, as serde_json writes them, with whitespace between tokens.
fn json_text() -> impl Strategy<Value = String> {
    let key = prop_oneof!["[a-c]{0,2}", Just("k\\u0065".to_owned())];
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i32>().prop_map(Json::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Json::from),
        "[a-z\"\\\\/\u{1}\u{7f}é😀 \t\n\r\u{8}\u{c}]{0,12}".prop_map(Json::String),
    ];
    let value = leaf.prop_recursive(6, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec(("[a-c]{0,2}", inner), 0..6)
                .prop_map(|members| Json::Object(members.into_iter().collect())),
        ]
    });
    let members = prop::collection::vec((key, value), 0..8);
    (members, prop::collection::vec(" |\n|\t|\r|", 1..40)).prop_map(|(members, spaces)| {
        let mut text = String::from("{");
        for (n, (key, value)) in members.iter().enumerate() {
            if n > 0 {
                text.push(',');
            }
            text.push_str(&spaces[n % spaces.len()]);
            text.push_str(&format!("\"{key}\""));
            text.push_str(&spaces[(n + 1) % spaces.len()]);
            text.push(':');
            text.push_str(&serde_json::to_string(value).unwrap());
        }
        text.push_str(&spaces[0]);
        text.push('}');
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn keys_found_in_one_walk_are_those_found_one_by_one(
        text in json_text(),
        picks in [0usize..10, 0usize..10, 0usize..10],
    ) {
        let doc = Document::parse(&text).unwrap();
        let root = doc.root();
        let keys: Vec<Cow<str>> = root.members().map(|(key, _)| key).collect();
        // Past the keys: one no object has.
        let key = |n: usize| keys.get(n).map_or("absent", |key| key.as_ref());
        let wanted = picks.map(key);
        let place = |value: Option<Value>| value.map(|v| (v.raw().as_ptr(), v.raw().len()));
        prop_assert_eq!(
            root.get_all(wanted).map(place),
            wanted.map(|key| place(root.get(key)))
        );
    }

    #[test]
    fn valid_objects_read_as_serde_reads_them(text in json_text()) {
        prop_assert!(Document::parse(&text).is_ok(), "{}", text);
        agrees_with_serde(&text);
    }

    #[test]
    fn damaged_objects_get_serdes_verdict(
        text in json_text(),
        at in any::<prop::sample::Index>(),
        edit in 0..3u8,
        byte in prop::sample::select(b"{}[]\",:\\ 0-9.eEu+tfnlx\x01\t".to_vec()),
    ) {
        let mut bytes = text.into_bytes();
        let at = at.index(bytes.len() + 1);
        match edit {
            0 if at < bytes.len() => { bytes.remove(at); }
            1 if at < bytes.len() => bytes[at] = byte,
            _ => bytes.insert(at, byte),
        }
        if let Ok(text) = String::from_utf8(bytes) && text.trim_start().starts_with('{') {
            agrees_with_serde(&text);
        }
    }
}

proptest! {
    #[test]
    fn strings_are_written_as_serde_writes_them(text in "\\PC*|[\u{0}-\u{1f}\"\\\\/a\u{7f}é😀]{0,20}") {
        let mut out = String::new();
        write_str(&mut out, &text);
        prop_assert_eq!(out, serde_json::to_string(&text).unwrap());
    }
}

#[test]
fn objects_are_written_field_by_field() {
    let mut object = ObjectWriter::with_capacity(8);
    object
        .str("a", "x\"")
        .opt_str("b", None)
        .opt_str("c", Some("y"))
        .strs("d", ["1", "2"])
        .strs("e", []);
    assert_eq!(
        object.finish(),
        r#"{"a":"x\"","b":null,"c":"y","d":["1","2"],"e":[]}"#
    );
    assert_eq!(ObjectWriter::with_capacity(0).finish(), "{}");
}
