//! The strings a rule declares that every relevant record contains, so that hosts can
//! skip the others without parsing them, or without entering the sandbox at all.
//!
//! A rule lists groups of strings ([`RuleInfo::prefilter`](crate::RuleInfo::prefilter)):
//! a record can be relevant only if, for every group, it contains at least one of the
//! group's strings, byte for byte as the record is written. JSON can spell any character
//! of a string as a `\u` escape (`"Start\u0053ession"`), so a record with a `\u` in it is
//! always a candidate. The other escapes spell only `"`, `\`, `/` and control characters,
//! so a string may not contain `\`, `/` or a control character: its spelling in a record
//! would not be certain. A quote may open and close the string, to match a whole JSON
//! string (`"\"StartSession\""`), but not stand inside it: a string spanning JSON tokens
//! (`"\"eventName\":\"StartSession\""`) would miss the same record written with a
//! space after the colon. Strings without quotes must be string content too: a number
//! has many spellings (`403`, `4.03e2`).
//!
//! A prefilter must be sound: it never rules out a record the rule finds relevant. The
//! test kit checks this on every case a rule ships (`testkit::cases`, with the `testkit`
//! feature).

use crate::bytes::{self, Needle};
#[cfg(any(test, feature = "fluent-bit", feature = "fluvio"))]
use crate::cloudtrail;

/// A compiled prefilter.
#[derive(Clone, Debug)]
pub struct Prefilter {
    groups: Vec<Vec<Needle>>,
    escape: Needle,
    /// The group of at most two strings whose rarest bytes the one-pass scan looks for:
    /// see [`Prefilter::in_one_pass`].
    anchored: Option<usize>,
}

/// The group of at most two strings whose rarest bytes are the rarest in JSON (and
/// ASCII, as [`bytes::Stops`] needs).
fn anchored(groups: &[Vec<Needle>]) -> Option<usize> {
    let rarity = |group: &Vec<Needle>| group.iter().map(Needle::rarity).max();
    (groups.iter().enumerate())
        .filter(|(_, group)| group.len() <= 2)
        .filter(|(_, group)| group.iter().all(|needle| needle.rarest().is_ascii()))
        .min_by_key(|(_, group)| rarity(group))
        .map(|(n, _)| n)
}

impl Prefilter {
    /// Compiles a rule's groups; an empty list lets every record through.
    pub fn new<G, S>(groups: &[G]) -> Result<Prefilter, String>
    where
        G: AsRef<[S]>,
        S: AsRef<str>,
    {
        let mut compiled = Vec::with_capacity(groups.len());
        for group in groups {
            let group = group.as_ref();
            if group.is_empty() {
                return Err("a prefilter group is empty: no record could pass it".into());
            }
            let mut needles = Vec::with_capacity(group.len());
            for needle in group {
                let needle = needle.as_ref();
                check(needle)?;
                needles.push(Needle::new(needle.as_bytes()));
            }
            compiled.push(needles);
        }
        Ok(Prefilter {
            anchored: anchored(&compiled),
            groups: compiled,
            escape: Needle::new(b"\\u"),
        })
    }

    /// Lets every record through.
    pub fn everything() -> Prefilter {
        Prefilter::new::<[&str; 0], &str>(&[]).expect("no groups is valid")
    }

    /// Whether the rule may find `record` relevant: it must be handed to the rule.
    pub fn is_candidate(&self, record: &[u8]) -> bool {
        // Without SIMD (WebAssembly, and interpreters such as Fluent Bit's above all)
        // every pass over a record costs: one pass beats one for each string.
        if cfg!(target_arch = "wasm32") {
            self.in_one_pass(record)
        } else {
            self.by_finders(record)
        }
    }

    /// `record` as text, and its records that the rule may find relevant, for a binding
    /// that has already asked [`Prefilter::is_candidate`] of the whole record, and had a
    /// yes: each record of a CloudTrail log file that it lets through, or the record
    /// itself, not looked at again. An error if `record` is not UTF-8.
    #[cfg(any(test, feature = "fluent-bit", feature = "fluvio"))]
    pub(crate) fn candidates<'t>(
        &self,
        record: &'t [u8],
    ) -> Result<(&'t str, Vec<&'t str>), std::str::Utf8Error> {
        let (text, log_file) = bytes::text_holding(record, cloudtrail::log_file_key())?;
        let mut records = match log_file {
            true => cloudtrail::records(text),
            false => vec![text],
        };
        // A log file's record is shorter than the file.
        records.retain(|r| r.len() == text.len() || self.is_candidate(r.as_bytes()));
        Ok((text, records))
    }

    /// Every group and the escape looked for in turn.
    fn by_finders(&self, record: &[u8]) -> bool {
        self.all_groups_but(None, record)
    }

    /// Whether `record` has a string of every group but `found` (one already found in
    /// it), or an escape.
    fn all_groups_but(&self, found: Option<usize>, record: &[u8]) -> bool {
        let others = (self.groups.iter().enumerate()).filter(|(n, _)| Some(*n) != found);
        others
            .map(|(_, group)| group)
            .all(|group| group.iter().any(|needle| needle.is_in(record)))
            || self.escape.is_in(record)
    }

    /// The same answer in one pass, for `\` and the rarest byte of each string of one
    /// group, eight bytes at a time ([`bytes::positions`]); the other groups are looked
    /// for only once one of its strings is found, which in a record the rule does not
    /// concern is rare.
    fn in_one_pass(&self, record: &[u8]) -> bool {
        let Some(anchored) = self.anchored else {
            return self.by_finders(record);
        };
        let strings = &self.groups[anchored];
        // Each byte looked for costs in every word: a second string's only if there is one.
        let (first, second) = (strings[0].rarest(), strings[strings.len() - 1].rarest());
        match strings.len() {
            1 => self.through_hits(
                record,
                anchored,
                bytes::positions(record, bytes::Stops::new([b'\\', first], 0)),
            ),
            _ => self.through_hits(
                record,
                anchored,
                bytes::positions(record, bytes::Stops::new([b'\\', first, second], 0)),
            ),
        }
    }

    /// [`Prefilter::in_one_pass`] from the places of `\` and of the rarest bytes.
    fn through_hits(
        &self,
        record: &[u8],
        anchored: usize,
        hits: impl Iterator<Item = usize>,
    ) -> bool {
        for at in hits {
            if record[at] == b'\\' {
                if record.get(at + 1) == Some(&b'u') {
                    return true;
                }
                continue;
            }
            if self.groups[anchored]
                .iter()
                .any(|needle| needle.is_at(record, at))
            {
                return self.all_groups_but(Some(anchored), record);
            }
        }
        false
    }

    /// Whether this prefilter lets every record through.
    pub fn is_everything(&self) -> bool {
        self.groups.is_empty()
    }
}

/// A string whose spelling in a JSON record is certain: the content of one JSON string,
/// optionally with its opening and closing quotes. A quote inside would span tokens, and
/// JSON allows any whitespace between tokens.
fn check(needle: &str) -> Result<(), String> {
    if needle.is_empty() {
        return Err("a prefilter string is empty".into());
    }
    let inner = needle.strip_prefix('"').unwrap_or(needle);
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    if inner.contains('"') {
        return Err(format!(
            "the prefilter string {needle:?} has a quote inside: JSON may put whitespace \
             between the tokens it spans; quote one string's content only"
        ));
    }
    match needle
        .chars()
        .find(|c| matches!(c, '\\' | '/') || c.is_control())
    {
        Some(c) => Err(format!(
            "the prefilter string {needle:?} contains {c:?}, which JSON may write escaped"
        )),
        None => Ok(()),
    }
}

/// Whether `record` is framed as a JSON object: `{` first and `}` last, whitespace aside.
/// What a host still checks of a record the prefilter skips.
pub fn framed_as_object(record: &[u8]) -> bool {
    let trimmed = record.trim_ascii();
    trimmed.first() == Some(&b'{') && trimmed.last() == Some(&b'}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssm() -> Prefilter {
        Prefilter::new(&[["\"StartSession\""], ["\"ssm.amazonaws.com\""]]).unwrap()
    }

    #[test]
    fn every_group_must_match() {
        let p = ssm();
        let start = br#"{"eventSource": "ssm.amazonaws.com", "eventName": "StartSession"}"#;
        assert!(p.is_candidate(start));
        assert!(!p.is_candidate(
            br#"{"eventSource": "ssm.amazonaws.com", "eventName": "ResumeSession"}"#
        ));
        assert!(
            !p.is_candidate(
                br#"{"eventName": "StartSession", "eventSource": "ec2.amazonaws.com"}"#
            )
        );
        let either = Prefilter::new(&[["\"A\"", "\"B\""]]).unwrap();
        assert!(either.is_candidate(br#"{"x": "B"}"#));
        assert!(!either.is_candidate(br#"{"x": "C"}"#));
    }

    #[test]
    fn an_escape_makes_a_candidate() {
        let escaped = br#"{"eventSource": "ssm.amazonaws.com", "eventName": "Start\u0053ession"}"#;
        assert!(ssm().is_candidate(escaped));
    }

    #[test]
    fn strings_json_may_escape_are_refused() {
        let bad: [&[&str]; 7] = [
            &["a/b"],
            &["a\\b"],
            &["tab\t"],
            &[""],
            &["\"eventName\":\"StartSession\""],
            &["a\"b"],
            &["\"a\" \"b\""],
        ];
        for bad in bad {
            assert!(Prefilter::new(&[bad]).is_err(), "{bad:?}");
        }
        assert!(Prefilter::new::<[&str; 0], &str>(&[[]]).is_err());
        assert!(Prefilter::everything().is_candidate(b"anything"));
    }

    #[test]
    fn anchors_are_rare_in_json() {
        let anchor = |p: &Prefilter| p.groups[p.anchored.unwrap()][0].rarest();
        assert_eq!(anchor(&ssm()), b'S');
        // The group with the rarer bytes, wherever it is.
        let swapped = Prefilter::new(&[["\"ssm.amazonaws.com\""], ["\"StartSession\""]]);
        assert_eq!(anchor(&swapped.unwrap()), b'S');
        let login = Prefilter::new(&[["\"ConsoleLogin\""]]).unwrap();
        assert_eq!(anchor(&login), b'C');
        // The scan looks for ASCII bytes: a string with some is anchored on one, a group
        // with none is left to the finders.
        let accented = Prefilter::new(&[["\"café\""]]).unwrap();
        assert!(anchor(&accented).is_ascii());
        let unicode = Prefilter::new(&[["日本"]]).unwrap();
        assert!(unicode.anchored.is_none());
        assert!(unicode.is_candidate("{\"a\":\"日本\"}".as_bytes()));
        assert!(!unicode.is_candidate(b"{\"a\":\"b\"}"));
    }

    /// The one-pass scan WebAssembly builds use answers as the finders do, on records
    /// with the strings, parts of them, escapes and backslashes anywhere.
    #[test]
    fn one_pass_and_finders_agree() {
        let prefilters = [
            ssm(),
            Prefilter::new(&[["\"ssm.amazonaws.com\""], ["\"StartSession\""]]).unwrap(),
            Prefilter::new(&[&["\"A\"", "zz"][..], &["\"ssm\""]]).unwrap(),
            Prefilter::new(&[&["a", "S"][..], &["zq", "A"]]).unwrap(),
            Prefilter::new(&[["\"café\""]]).unwrap(),
        ];
        for p in &prefilters {
            assert!(p.anchored.is_some(), "the one-pass scan is what is tested");
        }
        let pieces: [&[u8]; 14] = [
            b"{\"eventName\": ",
            b"\"StartSession\"",
            b"StartSessio",
            b"\"ssm.amazonaws.com\"",
            b"Sssm.amazonaws.com",
            b"\\u0053",
            b"\\\\",
            b"\\",
            b"u",
            b"\"A\"zz\"ssm\"",
            b"Azq",
            b"S",
            "\"café\"".as_bytes(),
            b"caf\"",
        ];
        // Every sequence of four pieces (14^4 records).
        let mut record = Vec::new();
        for n in 0..pieces.len().pow(4) {
            record.clear();
            let mut k = n;
            for _ in 0..4 {
                record.extend_from_slice(pieces[k % pieces.len()]);
                k /= pieces.len();
            }
            for p in &prefilters {
                assert_eq!(
                    p.in_one_pass(&record),
                    p.by_finders(&record),
                    "{}",
                    String::from_utf8_lossy(&record)
                );
            }
        }
    }

    #[test]
    fn a_log_files_records_are_looked_at_one_by_one() {
        let start = r#"{"eventSource":"ssm.amazonaws.com","eventName":"StartSession"}"#;
        let other = r#"{"eventSource":"ssm.amazonaws.com","eventName":"ResumeSession"}"#;
        let file = format!(r#"{{"Records":[{other},{start},{other}]}}"#);
        fn records(record: &str) -> Vec<&str> {
            ssm().candidates(record.as_bytes()).unwrap().1
        }
        assert_eq!(records(&file), [start]);
        assert_eq!(records(start), [start]);
        assert!(ssm().candidates(b"{\"Records\":[\xe9]}").is_err());
    }

    #[test]
    fn framing() {
        assert!(framed_as_object(b" {\"a\": 1}\r\n"));
        assert!(!framed_as_object(b"[1]"));
        assert!(!framed_as_object(b"{\"a\": 1"));
        assert!(!framed_as_object(b""));
    }
}
