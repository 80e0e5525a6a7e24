//! Byte scans and comparisons as a rule's hot paths need them in WebAssembly, where
//! there is no SIMD (Fluent Bit's interpreter runs without it) and `usize` is 32 bits.
//!
//! `==` on slices compiles to a call of `memcmp`, which in a wasm32 module is
//! compiler-builtins' loop over one byte at a time: keys and field values of a dozen
//! bytes, compared tens of times a record, made it a tenth of the rule's compiled code's
//! work. `memchr`'s portable search reads a `usize` at a time, four bytes there. These
//! work on eight bytes at a time (SWAR); natively they cost no more than the others.

/// Eight bytes, each `b`.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// Flags (sets the high bit of) the bytes of `word` below `n`: exactly the first such
/// byte, and perhaps some after it (a borrow carries upwards only).
pub const fn below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(splat(n)) & !word & splat(0x80)
}

/// Flags the bytes of `word` equal to `b`, as [`below`] does.
pub const fn equal(word: u64, b: u8) -> u64 {
    below(word ^ splat(b), 1)
}

/// The first place at or after `from` of a byte that `flags` flags in its little-endian
/// word of eight bytes, built of [`below`] and [`equal`] (exact for the first flagged byte
/// of a word, since a word is read only when those before it had none).
pub fn find(bytes: &[u8], from: usize, flags: impl Fn(u64) -> u64) -> Option<usize> {
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let found = flags(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
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
        Some(last) => {
            let word = u64::from_le_bytes(bytes[last..].try_into().expect("eight bytes"));
            word >> (8 * (8 - rest))
        }
        None => (bytes[at..].iter().rev()).fold(0, |word, &b| word << 8 | u64::from(b)),
    };
    let first = (flags(word).trailing_zeros() / 8) as usize;
    (first < rest).then_some(at + first)
}

/// Every place of a byte that `flags` flags, in order ([`find`]).
pub fn positions(bytes: &[u8], flags: impl Fn(u64) -> u64) -> impl Iterator<Item = usize> {
    let mut from = 0;
    std::iter::from_fn(move || {
        let at = find(bytes, from, &flags)?;
        from = at + 1;
        Some(at)
    })
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
        let special = |w: u64| equal(w, b'"') | equal(w, b'\\') | below(w, 0x20);
        for n in 0..20 {
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

    proptest! {
        #[test]
        fn positions_are_every_match(text in proptest::collection::vec(prop_oneof![Just(b'S'), Just(b'\\'), Just(0u8), Just(0x80u8), Just(b'x')], 0..40)) {
            let found: Vec<usize> = positions(&text, |w| equal(w, b'S') | equal(w, b'\\')).collect();
            let want: Vec<usize> = (0..text.len()).filter(|&i| text[i] == b'S' || text[i] == b'\\').collect();
            prop_assert_eq!(found, want);
        }

        #[test]
        fn agrees_with_eq(a in proptest::collection::vec(0u8..3, 0..24), b in proptest::collection::vec(0u8..3, 0..24)) {
            prop_assert_eq!(same(&a, &b), a == b);
        }
    }
}
