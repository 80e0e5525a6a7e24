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
//! test kit checks this on every case a rule ships ([`testkit::cases`](crate::testkit)).

use memchr::arch::all::packedpair::{HeuristicFrequencyRank, Pair};
use memchr::memmem::Finder;

use crate::bytes;

/// A compiled prefilter.
#[derive(Clone, Debug)]
pub struct Prefilter {
    groups: Vec<Vec<Finder<'static>>>,
    escape: Finder<'static>,
    /// The group whose strings' rare bytes the one-pass scan looks for: see
    /// [`Prefilter::in_one_pass`].
    anchored: Option<Anchored>,
}

/// A group of at most two strings, and where in each are its two bytes rarest in JSON.
#[derive(Clone, Debug)]
struct Anchored {
    group: usize,
    pairs: Vec<RarePair>,
}

/// Where a string's rarest byte is, which the scan looks for, and its second rarest,
/// checked before the whole string is compared.
#[derive(Clone, Copy, Debug, Default)]
struct RarePair {
    rarest: usize,
    second: usize,
}

impl Anchored {
    /// The group of at most two strings whose rare bytes are the rarest.
    fn choose(groups: &[Vec<Finder<'static>>]) -> Option<Anchored> {
        // A string of one byte has no pair: that byte is both.
        let pair = |needle: &[u8]| {
            Pair::with_ranker(needle, JsonRank).map_or(RarePair::default(), |p| RarePair {
                rarest: usize::from(p.index1()),
                second: usize::from(p.index2()),
            })
        };
        groups
            .iter()
            .enumerate()
            .filter(|(_, group)| group.len() <= 2)
            .map(|(group, strings)| Anchored {
                group,
                pairs: strings.iter().map(|f| pair(f.needle())).collect(),
            })
            .min_by_key(|anchored| anchored.rarity(groups))
    }

    /// How common the commonest of its bytes is.
    fn rarity(&self, groups: &[Vec<Finder<'static>>]) -> u8 {
        let strings = &groups[self.group];
        let ranks = strings.iter().zip(&self.pairs);
        ranks
            .map(|(f, pair)| JsonRank.rank(f.needle()[pair.rarest]))
            .max()
            .unwrap_or(u8::MAX)
    }
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
            let mut finders = Vec::with_capacity(group.len());
            for needle in group {
                let needle = needle.as_ref();
                check(needle)?;
                finders.push(Finder::new(needle.as_bytes()).into_owned());
            }
            compiled.push(finders);
        }
        Ok(Prefilter {
            anchored: Anchored::choose(&compiled),
            groups: compiled,
            escape: Finder::new(b"\\u").into_owned(),
        })
    }

    /// Lets every record through.
    pub fn everything() -> Prefilter {
        Prefilter::new::<[&str; 0], &str>(&[]).expect("no groups is valid")
    }

    /// Whether the rule may find `record` relevant: it must be handed to the rule.
    pub fn is_candidate(&self, record: &[u8]) -> bool {
        // Without SIMD (WebAssembly, and interpreters such as Fluent Bit's above all)
        // every pass over a record costs: one pass beats the finders' two.
        if cfg!(target_arch = "wasm32") {
            self.in_one_pass(record)
        } else {
            self.by_finders(record)
        }
    }

    /// Every group and the escape looked for in turn, each with a SIMD substring search.
    fn by_finders(&self, record: &[u8]) -> bool {
        self.groups
            .iter()
            .all(|group| group.iter().any(|f| f.find(record).is_some()))
            || self.escape.find(record).is_some()
    }

    /// The same answer in one pass, for `\` and the rarest byte of each string of one
    /// group, eight bytes at a time ([`bytes::positions`]); the other groups are looked
    /// for only once one of its strings is found, which in a record the rule does not
    /// concern is rare.
    fn in_one_pass(&self, record: &[u8]) -> bool {
        let Some(anchored) = &self.anchored else {
            return self.by_finders(record);
        };
        let strings = &self.groups[anchored.group];
        let rarest = |n: usize| strings[n].needle()[anchored.pairs[n].rarest];
        // Each byte looked for costs in every word: a second string's only if there is one.
        let (first, second) = (rarest(0), rarest(strings.len() - 1));
        match strings.len() {
            1 => self.through_hits(
                record,
                anchored,
                bytes::positions(record, |w| bytes::equal(w, b'\\') | bytes::equal(w, first)),
            ),
            _ => self.through_hits(
                record,
                anchored,
                bytes::positions(record, |w| {
                    bytes::equal(w, b'\\') | bytes::equal(w, first) | bytes::equal(w, second)
                }),
            ),
        }
    }

    /// [`Prefilter::in_one_pass`] from the places of `\` and of the rarest bytes.
    fn through_hits(
        &self,
        record: &[u8],
        anchored: &Anchored,
        hits: impl Iterator<Item = usize>,
    ) -> bool {
        let strings = || self.groups[anchored.group].iter().zip(&anchored.pairs);
        for at in hits {
            if record[at] == b'\\' {
                if record.get(at + 1) == Some(&b'u') {
                    return true;
                }
                continue;
            }
            if strings().any(|(finder, pair)| at_rarest(record, at, finder.needle(), *pair)) {
                let others = self.groups.iter().enumerate();
                return others
                    .filter(|(n, _)| *n != anchored.group)
                    .all(|(_, group)| group.iter().any(|f| f.find(record).is_some()))
                    || self.escape.find(record).is_some();
            }
        }
        false
    }

    /// Whether this prefilter lets every record through.
    pub fn is_everything(&self) -> bool {
        self.groups.is_empty()
    }
}

/// Whether `needle` is in `record` with its rarest byte at `at`: its second rarest byte
/// first, which rules out most places without comparing the rest.
fn at_rarest(record: &[u8], at: usize, needle: &[u8], pair: RarePair) -> bool {
    let Some(start) = at.checked_sub(pair.rarest) else {
        return false;
    };
    record.get(start + pair.second) == Some(&needle[pair.second])
        && (record.get(start..start + needle.len())).is_some_and(|found| bytes::same(found, needle))
}

/// How common a byte is in JSON logs, roughly (higher: more common): to scan for a rare
/// byte of a string. memchr's own ranking is for prose, where `"` is rare.
struct JsonRank;

impl HeuristicFrequencyRank for JsonRank {
    fn rank(&self, byte: u8) -> u8 {
        match byte {
            b'"' | b':' | b',' | b' ' | b'{' | b'}' => 255,
            b'e' | b't' | b'a' | b's' | b'n' | b'o' | b'i' | b'r' => 200,
            b'a'..=b'z' | b'0'..=b'9' => 150,
            b'A'..=b'Z' => 80,
            _ => 100,
        }
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
        let anchor = |p: &Prefilter| {
            let anchored = p.anchored.as_ref().unwrap();
            let string = &p.groups[anchored.group][0];
            string.needle()[anchored.pairs[0].rarest]
        };
        assert_eq!(anchor(&ssm()), b'S');
        // The group with the rarer bytes, wherever it is.
        let swapped = Prefilter::new(&[["\"ssm.amazonaws.com\""], ["\"StartSession\""]]);
        assert_eq!(anchor(&swapped.unwrap()), b'S');
        let login = Prefilter::new(&[["\"ConsoleLogin\""]]).unwrap();
        assert_eq!(anchor(&login), b'C');
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
        ];
        for p in &prefilters {
            assert!(p.anchored.is_some(), "the one-pass scan is what is tested");
        }
        let pieces: [&[u8]; 12] = [
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
        ];
        // Every sequence of up to four pieces (12^4 records).
        let mut record = Vec::new();
        for n in 0..12usize.pow(4) {
            record.clear();
            let mut k = n;
            for _ in 0..4 {
                record.extend_from_slice(pieces[k % 12]);
                k /= 12;
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
    fn framing() {
        assert!(framed_as_object(b" {\"a\": 1}\r\n"));
        assert!(!framed_as_object(b"[1]"));
        assert!(!framed_as_object(b"{\"a\": 1"));
        assert!(!framed_as_object(b""));
    }
}
