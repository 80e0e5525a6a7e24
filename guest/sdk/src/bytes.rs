//! Byte scans and comparisons as a rule's hot paths need them in WebAssembly, where
//! there is no SIMD (Fluent Bit's interpreter runs without it) and `usize` is 32 bits.
//!
//! `==` on slices compiles to a call of `memcmp`, which in a wasm32 module is
//! compiler-builtins' loop over one byte at a time: keys and field values of a dozen
//! bytes, compared tens of times a record, made it a tenth of the rule's compiled code's
//! work. `memchr`'s portable search reads a `usize` at a time, four bytes there. These
//! work on eight bytes at a time (SWAR); natively they cost no more than the others.
//! [`Needle`] finds a string with memchr's SIMD search natively, and with a scan of
//! these in WebAssembly.

use memchr::arch::all::packedpair::{HeuristicFrequencyRank, Pair};
use memchr::memmem::Finder;
use std::str::Utf8Error;

/// Eight bytes, each `b`.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

const HIGH_BITS: u64 = splat(0x80);

/// The bytes a scan stops at: any of `N` ASCII bytes, every byte below a bound, and
/// perhaps every byte that is not ASCII.
///
/// A byte of a word is zero exactly when subtracting one from it borrows into its high
/// bit while the byte's own high bit is clear. For an ASCII `b`, the high bit of
/// `word ^ b` is the high bit of `word`: so that test is made once for all the bytes
/// looked for, not once each. In an interpreter, which pays for every operation, that
/// halves the work of a scan. A byte that is not ASCII is its own high bit.
#[derive(Clone, Copy, Debug)]
pub struct Stops<const N: usize> {
    equal: [u8; N],
    below: u8,
    /// All ones to stop at bytes that are not ASCII, else zero.
    non_ascii: u64,
}

impl<const N: usize> Stops<N> {
    /// Stops at each of `equal` (ASCII) and at every byte below `below` (0 for none; at
    /// most 0x80).
    pub const fn new(equal: [u8; N], below: u8) -> Self {
        let mut n = 0;
        while n < N {
            assert!(equal[n].is_ascii(), "a stop must be an ASCII byte");
            n += 1;
        }
        assert!(below <= 0x80, "bytes below at most 0x80");
        Stops {
            equal,
            below,
            non_ascii: 0,
        }
    }

    /// These stops, and every byte that is not ASCII.
    pub const fn and_non_ascii(self) -> Self {
        Stops {
            non_ascii: u64::MAX,
            ..self
        }
    }

    /// Flags (sets the high bit of) the stops among the bytes of `word`: exactly the
    /// first, and perhaps some after it (a borrow carries upwards only).
    pub fn flags(&self, word: u64) -> u64 {
        let mut borrows = match self.below {
            0 => 0,
            below => word.wrapping_sub(splat(below)),
        };
        for b in self.equal {
            borrows |= (word ^ splat(b)).wrapping_sub(splat(1));
        }
        (borrows & !word | word & self.non_ascii) & HIGH_BITS
    }
}

/// The first place at or after `from` of a stop, read from little-endian words of eight
/// bytes (exact, since a word is read only when those before it had none).
// Inlined where it is used, with its stops as constants: as a call, a Fluent Bit filter's
// scans ran 5 % more instructions. Two words a turn share one bound check, one test and
// one branch: 14 % fewer instructions a byte of a long scan, 8 % fewer a record of a
// CloudTrail mix for a Fluent Bit filter (four words a turn did worse than two).
#[inline(always)]
pub fn find<const N: usize>(bytes: &[u8], from: usize, stops: &Stops<N>) -> Option<usize> {
    // With `from` within the text, `at + 16` below cannot overflow, and the loop needs no
    // check of it: 7 % fewer instructions for a Fluent Bit filter's prefilter over a
    // CloudTrail mix, 2 % more for the compiled rule's string scans.
    if from > bytes.len() {
        return None;
    }
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 16) {
        let (low, high) = (
            stops.flags(word::<8>(chunk, 0)),
            stops.flags(word::<8>(chunk, 8)),
        );
        if low | high != 0 {
            let first = if low != 0 {
                low.trailing_zeros()
            } else {
                64 + high.trailing_zeros()
            };
            return Some(at + (first / 8) as usize);
        }
        at += 16;
    }
    if let Some(chunk) = bytes.get(at..at + 8) {
        let found = stops.flags(word::<8>(chunk, 0));
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    // The last few bytes as the low bytes of a word zero-padded above (a flag in the
    // padding is past the end): the text's last eight shifted down, when it has eight.
    let rest = bytes.len().saturating_sub(at);
    let word = match bytes.len().checked_sub(8) {
        _ if rest == 0 => return None,
        Some(last) => word::<8>(bytes, last) >> (8 * (8 - rest)),
        None => (bytes[at..].iter().rev()).fold(0, |word, &b| word << 8 | u64::from(b)),
    };
    let first = (stops.flags(word).trailing_zeros() / 8) as usize;
    (first < rest).then_some(at + first)
}

/// Every place of a stop, in order ([`find`]).
pub fn positions<const N: usize>(bytes: &[u8], stops: Stops<N>) -> impl Iterator<Item = usize> {
    let mut from = 0;
    std::iter::from_fn(move || {
        let at = find(bytes, from, &stops)?;
        from = at + 1;
        Some(at)
    })
}

/// `bytes` as text, if they are UTF-8, and whether `needle` is in them. In WebAssembly
/// one pass does both, stopping at the needle's rarest byte and at any byte that is not
/// ASCII (a record almost never has one: the whole record is then checked as `str` does
/// it): in an interpreter each pass over a record costs, and the two had been a tenth of a
/// Fluent Bit filter's session start.
pub fn text_holding<'t>(bytes: &'t [u8], needle: &Needle) -> Result<(&'t str, bool), Utf8Error> {
    match cfg!(target_arch = "wasm32") && needle.rarest().is_ascii() {
        true => text_holding_in_one_pass(bytes, needle),
        false => Ok((std::str::from_utf8(bytes)?, needle.is_in(bytes))),
    }
}

/// [`text_holding`] as WebAssembly builds look, for a needle whose rarest byte is ASCII.
fn text_holding_in_one_pass<'t>(
    bytes: &'t [u8],
    needle: &Needle,
) -> Result<(&'t str, bool), Utf8Error> {
    let mut found = false;
    for at in positions(bytes, Stops::new([needle.rarest()], 0).and_non_ascii()) {
        if !bytes[at].is_ascii() {
            let text = std::str::from_utf8(bytes)?;
            return Ok((text, found || needle.is_in(bytes)));
        }
        found = found || needle.is_at(bytes, at);
    }
    // SAFETY: the scan stopped at every byte that is not ASCII, and there was none.
    Ok((unsafe { std::str::from_utf8_unchecked(bytes) }, found))
}

/// A string to look for in JSON text. Natively, memchr's SIMD search finds it. In
/// WebAssembly, which has no SIMD (and in an interpreter, which pays for every
/// operation), memchr's portable search costs several times more than a scan for the
/// string's byte rarest in JSON, eight bytes at a time ([`positions`]), that compares the
/// string only where that byte is, its second rarest byte first; a string whose rarest
/// byte is not ASCII is left to memchr's portable search there.
#[derive(Clone, Debug)]
pub struct Needle {
    finder: Finder<'static>,
    /// Where its rarest byte is, and its second rarest.
    rarest: usize,
    second: usize,
}

impl Needle {
    /// Looks for `needle`, which is not empty.
    pub fn new(needle: &[u8]) -> Needle {
        assert!(!needle.is_empty(), "a needle has bytes");
        // A string of one byte has no pair: that byte is both.
        let (rarest, second) = Pair::with_ranker(needle, JsonRank).map_or((0, 0), |p| {
            (usize::from(p.index1()), usize::from(p.index2()))
        });
        Needle {
            finder: Finder::new(needle).into_owned(),
            rarest,
            second,
        }
    }

    /// The string looked for.
    pub fn bytes(&self) -> &[u8] {
        self.finder.needle()
    }

    /// Its byte rarest in JSON, which a scan looks for.
    pub fn rarest(&self) -> u8 {
        self.bytes()[self.rarest]
    }

    /// How common its rarest byte is in JSON logs, roughly (higher: more common).
    pub fn rarity(&self) -> u8 {
        JsonRank.rank(self.rarest())
    }

    /// Whether it is in `haystack`.
    pub fn is_in(&self, haystack: &[u8]) -> bool {
        match cfg!(target_arch = "wasm32") {
            true => self.is_in_without_simd(haystack),
            false => self.finder.find(haystack).is_some(),
        }
    }

    /// [`Needle::is_in`] as WebAssembly builds look: by a scan for its rarest byte, or by
    /// memchr's portable search when that byte is not ASCII ([`Stops`] stops at given ASCII
    /// bytes).
    fn is_in_without_simd(&self, haystack: &[u8]) -> bool {
        let rarest = self.rarest();
        if !rarest.is_ascii() {
            return self.finder.find(haystack).is_some();
        }
        positions(haystack, Stops::new([rarest], 0)).any(|at| self.is_at(haystack, at))
    }

    /// Whether it is in `haystack` with its rarest byte at `at`.
    pub fn is_at(&self, haystack: &[u8], at: usize) -> bool {
        let Some(start) = at.checked_sub(self.rarest) else {
            return false;
        };
        let needle = self.bytes();
        haystack.get(start + self.second) == Some(&needle[self.second])
            && (haystack.get(start..start + needle.len())).is_some_and(|found| same(found, needle))
    }
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
            // A scan looks for ASCII bytes only.
            0x80.. => 254,
            _ => 100,
        }
    }
}

/// Whether `a` and `b` hold the same bytes: eight at a time (four for fewer than eight),
/// the last word overlapping the one before it rather than finishing byte by byte.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        // The first, middle and last bytes are every byte.
        1..4 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..8 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        _ => {
            let mut at = 0;
            while at + 8 < n {
                if word::<8>(a, at) != word::<8>(b, at) {
                    return false;
                }
                at += 8;
            }
            word::<8>(a, n - 8) == word::<8>(b, n - 8)
        }
    }
}

/// [`same`] for text.
pub fn same_text(a: &str, b: &str) -> bool {
    same(a.as_bytes(), b.as_bytes())
}

/// The `N` bytes at `at` as a number (`N` is 4 or 8).
fn word<const N: usize>(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word[..N].copy_from_slice(&bytes[at..at + N]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_length_and_every_differing_byte() {
        for n in 0..40 {
            let a: Vec<u8> = (0..n as u8).collect();
            assert!(same(&a, &a.clone()), "{n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x80;
                assert!(!same(&a, &b), "{n} {at}");
            }
            assert!(!same(&a, &[a.clone(), vec![0]].concat()));
        }
    }

    #[test]
    fn finds_the_first_flagged_byte_at_every_place() {
        let special = &Stops::new([b'"', b'\\'], 0x20);
        for n in 0..40 {
            for at in 0..n {
                for b in [b'"', b'\\', 0, 0x1f] {
                    let mut text = vec![b'a'; n];
                    text[at] = b;
                    // A second one after it must not hide the first.
                    if at + 1 < n {
                        text[at + 1] = b'"';
                    }
                    for from in 0..=at {
                        assert_eq!(find(&text, from, special), Some(at), "{n} {at} {b} {from}");
                    }
                    assert_eq!(find(&text, at + 2, special), None);
                }
            }
            assert_eq!(find(&vec![b' '; n], 0, special), None);
            // A match just before where a scan starts lends no borrow to the byte after it
            // (`#` is `"` with its lowest bit flipped).
            for at in 0..n.saturating_sub(1) {
                let mut text = vec![b'a'; n];
                (text[at], text[at + 1]) = (b'"', b'#');
                assert_eq!(find(&text, at + 1, special), None, "{n} {at}");
            }
        }
        assert_eq!(find(b"ab", 5, special), None);
    }

    /// Pieces of text: the needle below, its parts, and bytes that are not ASCII, valid
    /// UTF-8 or not.
    const TEXT_PIECES: &[&[u8]] = &[
        b"R",
        b"Rec",
        b"\"",
        b"\xc3\xa9",
        b"\xe9",
        b"x",
        b"\xf0\x9f\x98\x80",
    ];

    proptest! {
        #[test]
        fn positions_are_every_match(text in proptest::collection::vec(prop_oneof![Just(b'S'), Just(b'\\'), Just(0u8), Just(0x80u8), Just(b'x')], 0..80)) {
            let found: Vec<usize> = positions(&text, Stops::new([b'S', b'\\'], 0)).collect();
            let want: Vec<usize> = (0..text.len()).filter(|&i| text[i] == b'S' || text[i] == b'\\').collect();
            prop_assert_eq!(found, want);
        }

        /// The first flag of a word is on its first stop, for any stops: one test of the
        /// high bits serves them all. Words are made of the bytes that borrows could
        /// confuse: the stops, their neighbours, and bytes with the high bit set.
        #[test]
        fn flags_the_first_stop_exactly(
            equal in proptest::array::uniform3(0u8..0x80),
            below in 0u8..=0x80,
            non_ascii: bool,
            picks in proptest::array::uniform8((0usize..12, 0u8..=255)),
        ) {
            let stops = Stops::new(equal, below);
            let stops = if non_ascii { stops.and_non_ascii() } else { stops };
            let near = |b: u8, n: usize| match n % 3 {
                0 => b,
                1 => b.wrapping_add(1),
                _ => b ^ 1,
            };
            let bytes = picks.map(|(n, any)| match n {
                0..3 => near(equal[n], n),
                3..6 => near(equal[n - 3], n + 1),
                6 => below.wrapping_sub(1),
                7 => below,
                8 => 0x80,
                9 => 0xff,
                _ => any,
            });
            let word = u64::from_le_bytes(bytes);
            let stop = |b: u8| equal.contains(&b) || b < below || (non_ascii && !b.is_ascii());
            let first = bytes.iter().position(|&b| stop(b));
            let flagged = stops.flags(word);
            prop_assert_eq!((flagged != 0).then(|| flagged.trailing_zeros() as usize / 8), first);
        }

        /// The scan WebAssembly builds use finds what memchr's search finds.
        #[test]
        fn a_needle_is_found_by_its_scan_as_by_memchr(
            haystack in proptest::collection::vec(prop_oneof![Just(b'S'), Just(b's'), Just(b'"'), Just(b'x'), Just(0xc3u8)], 0..80),
            needle in proptest::collection::vec(prop_oneof![Just(b'S'), Just(b's'), Just(b'"'), Just(0xc3u8)], 1..5),
        ) {
            let found = Needle::new(&needle);
            let want = haystack.windows(needle.len()).any(|w| w == needle.as_slice());
            prop_assert_eq!(found.finder.find(&haystack).is_some(), want);
            prop_assert_eq!(found.is_in_without_simd(&haystack), want);
        }

        /// One pass finds what UTF-8's check and the needle's search find, in any text.
        #[test]
        fn text_holding_a_needle_in_one_pass_as_in_two(
            haystack in proptest::collection::vec(proptest::sample::select(TEXT_PIECES), 0..40),
        ) {
            let haystack = haystack.concat();
            let needle = Needle::new(b"\"Rec");
            let two_passes = std::str::from_utf8(&haystack).map(|text| (text, needle.is_in(&haystack)));
            prop_assert_eq!(text_holding_in_one_pass(&haystack, &needle), two_passes);
        }

        #[test]
        fn agrees_with_eq(a in proptest::collection::vec(0u8..3, 0..24), b in proptest::collection::vec(0u8..3, 0..24)) {
            prop_assert_eq!(same(&a, &b), a == b);
        }
    }
}
