//! Compact binary values: fixed-width little-endian fields and length-prefixed text,
//! written with [`Writer`] and read back with [`Reader`], which makes a value cut short or
//! of the wrong shape an error naming its key, never a default.

use crate::error::RuleError;
use crate::time::Millis;

/// Reads the fields of the value stored under a key, in the order they were written.
pub struct Reader<'a> {
    key: &'a str,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader of `bytes`, the value of `key` (named in errors).
    pub fn new(key: &'a str, bytes: &'a [u8]) -> Self {
        Reader { key, rest: bytes }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The bytes not read yet, all of them.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], RuleError> {
        if self.rest.len() < n {
            return Err(self.damaged("cut short"));
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RuleError> {
        Ok(self.bytes(N)?.try_into().expect("N bytes"))
    }

    /// A byte.
    pub fn u8(&mut self) -> Result<u8, RuleError> {
        Ok(self.array::<1>()?[0])
    }

    /// A `u16`.
    pub fn u16(&mut self) -> Result<u16, RuleError> {
        self.array().map(u16::from_le_bytes)
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Result<u32, RuleError> {
        self.array().map(u32::from_le_bytes)
    }

    /// A `u64`.
    pub fn u64(&mut self) -> Result<u64, RuleError> {
        self.array().map(u64::from_le_bytes)
    }

    /// A time.
    pub fn time(&mut self) -> Result<Millis, RuleError> {
        self.array().map(Millis::from_le_bytes)
    }

    /// Text written by [`Writer::str`].
    pub fn str(&mut self) -> Result<&'a str, RuleError> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.bytes(len)?).map_err(|e| self.damaged(e))
    }

    /// A count of items that follow, each at least `item_bytes` long: a count larger than
    /// the bytes left could hold is damage (and must not size an allocation).
    pub fn count(&mut self, item_bytes: usize) -> Result<usize, RuleError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(item_bytes) > self.rest.len() {
            return Err(self.damaged("cut short"));
        }
        Ok(n)
    }

    /// The error for this value being damaged.
    pub fn damaged(&self, what: impl std::fmt::Display) -> RuleError {
        RuleError::damaged(self.key, what)
    }
}

/// Writes the fields of a value, for [`Reader`] to read back.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// A byte.
    pub fn u8(&mut self, n: u8) {
        self.0.push(n);
    }

    /// A `u16`.
    pub fn u16(&mut self, n: u16) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    /// A `u32`.
    pub fn u32(&mut self, n: u32) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    /// A `u64`.
    pub fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    /// A time.
    pub fn time(&mut self, at: Millis) {
        self.0.extend_from_slice(&at.to_le_bytes());
    }

    /// A count of the items that follow (values are far below 4 GiB: the host bounds them).
    pub fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("a count that fits a value"));
    }

    /// Text, after its length.
    pub fn str(&mut self, text: &str) {
        self.count(text.len());
        self.0.extend_from_slice(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_and_damage_is_an_error() {
        let mut w = Writer::default();
        w.u8(7);
        w.u16(300);
        w.time(-5);
        w.str("é");
        w.count(2);
        let bytes = w.0;
        let mut r = Reader::new("k", &bytes);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u16(), Ok(300));
        assert_eq!(r.time(), Ok(-5));
        assert_eq!(r.str(), Ok("é"));
        assert!(r.count(1).unwrap_err().to_string().contains("`k`"));
        let mut cut = Reader::new("k", &bytes[..5]);
        cut.u8().unwrap();
        cut.u16().unwrap();
        assert!(cut.time().is_err());
        assert!(Reader::new("k", &[1, 0, 0, 0, 0xff]).str().is_err());
    }
}
