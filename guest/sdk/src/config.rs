//! Helpers for rule configurations ([`RuleConfig`]): lengths of event time written the
//! way people write them, identity patterns with wildcards, reading one period of a
//! configuration by its path ([`period_at`]), and the configuration in force with what
//! the SDK reads from it once ([`Configured`]).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{self, Impossible};
use serde::{Deserialize, Serialize, Serializer};

use crate::time::{DAY, HOUR, MINUTE, Millis, SECOND};
use crate::{Detection, Rule, RuleConfig};

/// A length of event time. In JSON: whole seconds (`3600`) or a number with a unit,
/// `s`, `m`, `h` or `d` (`"1h"`, `"14d"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period(pub Millis);

const UNITS: [(char, Millis); 4] = [('d', DAY), ('h', HOUR), ('m', MINUTE), ('s', SECOND)];

impl Period {
    /// `n` days.
    pub const fn days(n: i64) -> Self {
        Period(n * DAY)
    }
    /// `n` hours.
    pub const fn hours(n: i64) -> Self {
        Period(n * HOUR)
    }
    /// In milliseconds.
    pub fn millis(self) -> Millis {
        self.0
    }
    /// In whole seconds.
    pub fn seconds(self) -> u64 {
        (self.0 / SECOND) as u64
    }
}

/// The first of `periods` (named) that is not longer than zero, as an error.
pub fn check_positive(periods: &[(&str, Period)]) -> Result<(), String> {
    match periods.iter().find(|(_, p)| p.millis() <= 0) {
        Some((name, _)) => Err(format!("{name} must be longer than zero")),
        None => Ok(()),
    }
}

impl fmt::Display for Period {
    /// The largest unit that divides the period: `14d`, `90m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, size) = UNITS
            .into_iter()
            .find(|(_, size)| self.0 % size == 0)
            .unwrap_or(('s', SECOND));
        write!(f, "{}{unit}", self.0 / size)
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PeriodVisitor;
        impl Visitor<'_> for PeriodVisitor {
            type Value = Period;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a positive period: seconds, or a string such as \"90m\", \"1h\", \"14d\"",
                )
            }
            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Period, E> {
                i64::try_from(secs)
                    .ok()
                    .and_then(|s| s.checked_mul(SECOND))
                    .map(Period)
                    .ok_or_else(|| E::custom("period too long"))
            }
            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Period, E> {
                u64::try_from(secs)
                    .map_err(|_| E::custom("a period cannot be negative"))
                    .and_then(|s| self.visit_u64(s))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Period, E> {
                text.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(PeriodVisitor)
    }
}

impl FromStr for Period {
    type Err = String;

    /// A number with a unit: `"90m"`, `"1h"`, `"14d"`.
    fn from_str(text: &str) -> Result<Period, String> {
        let bad = || format!("`{text}` is not a period such as \"90m\", \"1h\", \"14d\"");
        let unit = text.chars().last().ok_or_else(bad)?;
        let size = UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(bad)?.1;
        let count: i64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
        count
            .checked_mul(size)
            .filter(|m| *m >= 0)
            .map(Period)
            .ok_or_else(bad)
    }
}

/// A rule's configuration in force, with what the SDK reads from it once rather than for
/// every alert: each detection's dedup period.
pub struct Configured<R: Rule> {
    config: R::Config,
    /// By the detection's place in the rule's catalog.
    dedup_periods: Vec<Millis>,
}

impl<R: Rule> Configured<R> {
    /// `config`, if it names a dedup period for each of the rule's detections.
    pub fn new(config: R::Config) -> Result<Self, String> {
        let periods = (R::info().detections.iter()).map(|d| dedup_period(&config, d));
        Ok(Configured {
            dedup_periods: periods.collect::<Result<_, _>>()?,
            config,
        })
    }

    /// The configuration in `text` (JSON), checked.
    pub fn from_json(text: &str) -> Result<Self, String> {
        Configured::new(R::Config::from_json(text)?)
    }

    /// The rule's defaults; a rule whose defaults lack a dedup period is a bug its test
    /// cases meet first.
    pub fn defaults() -> Self {
        Configured::new(R::Config::default()).expect("the defaults name every dedup period")
    }

    /// The configuration.
    pub fn config(&self) -> &R::Config {
        &self.config
    }

    /// The dedup period of the detection at `place` in the rule's catalog.
    pub fn dedup_period(&self, place: usize) -> Millis {
        self.dedup_periods[place]
    }
}

/// The dedup period of `detection` in the configuration `config`, read where the
/// detection names it.
pub(crate) fn dedup_period(
    config: &impl Serialize,
    detection: &Detection,
) -> Result<Millis, String> {
    period_at(config, detection.dedup_period)
        .map(Period::millis)
        .map_err(|e| format!("{}'s dedup period: {e}", detection.id))
}

/// The period at `path` (field names joined by `.`) of a configuration.
pub fn period_at(config: &impl Serialize, path: &str) -> Result<Period, String> {
    let fields: Vec<&str> = path.split('.').collect();
    let text = config.serialize(TextAt(&fields)).ok().flatten();
    text.ok_or_else(|| format!("the configuration has no period `{path}`"))?
        .parse()
        .map_err(|e| format!("{path}: {e}"))
}

/// Finds the text a value serializes at a path, serializing nothing off the path: the SDK
/// reads an alert's dedup period this way for every alert, where serializing the whole
/// configuration would cost about as much as reading the record.
struct TextAt<'p>(&'p [&'p str]);

/// Off the path, or not text: nothing to find.
#[derive(Debug)]
struct Nowhere;

impl fmt::Display for Nowhere {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no text at the path")
    }
}

impl std::error::Error for Nowhere {}

impl ser::Error for Nowhere {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Nowhere
    }
}

/// Values that hold no text, nor anything on a path.
macro_rules! no_text {
    ($($method:ident($($ty:ty),*)),* $(,)?) => {
        $(fn $method(self $(, _: $ty)*) -> Result<Option<String>, Nowhere> {
            Ok(None)
        })*
    };
}

impl<'p> Serializer for TextAt<'p> {
    type Ok = Option<String>;
    type Error = Nowhere;
    type SerializeSeq = Impossible<Option<String>, Nowhere>;
    type SerializeTuple = Impossible<Option<String>, Nowhere>;
    type SerializeTupleStruct = Impossible<Option<String>, Nowhere>;
    type SerializeTupleVariant = Impossible<Option<String>, Nowhere>;
    type SerializeMap = Entries<'p>;
    type SerializeStruct = Fields<'p>;
    type SerializeStructVariant = Impossible<Option<String>, Nowhere>;

    no_text!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_str(self, text: &str) -> Result<Option<String>, Nowhere> {
        Ok(self.0.is_empty().then(|| text.to_owned()))
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<Option<String>, Nowhere> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Option<String>, Nowhere> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Option<String>, Nowhere> {
        Ok(None)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Nowhere> {
        Err(Nowhere)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Nowhere> {
        Err(Nowhere)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Nowhere> {
        Err(Nowhere)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Nowhere> {
        Err(Nowhere)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Entries<'p>, Nowhere> {
        Ok(Entries {
            path: self.0,
            here: false,
            found: None,
        })
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Fields<'p>, Nowhere> {
        Ok(Fields {
            path: self.0,
            found: None,
        })
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Nowhere> {
        Err(Nowhere)
    }
}

/// A struct on the path: only the field named next is serialized.
struct Fields<'p> {
    path: &'p [&'p str],
    found: Option<String>,
}

impl ser::SerializeStruct for Fields<'_> {
    type Ok = Option<String>;
    type Error = Nowhere;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Nowhere> {
        if let Some((&next, rest)) = self.path.split_first()
            && next == name
        {
            self.found = value.serialize(TextAt(rest))?;
        }
        Ok(())
    }

    fn end(self) -> Result<Option<String>, Nowhere> {
        Ok(self.found)
    }
}

/// A map on the path (a flattened struct, say): only the value of the key named next.
struct Entries<'p> {
    path: &'p [&'p str],
    /// The last key was the one named next.
    here: bool,
    found: Option<String>,
}

impl ser::SerializeMap for Entries<'_> {
    type Ok = Option<String>;
    type Error = Nowhere;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Nowhere> {
        let key = key.serialize(TextAt(&[]))?;
        self.here = key.as_deref() == self.path.first().copied();
        Ok(())
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Nowhere> {
        if self.here {
            self.found = value.serialize(TextAt(&self.path[1..]))?;
        }
        Ok(())
    }

    fn end(self) -> Result<Option<String>, Nowhere> {
        Ok(self.found)
    }
}

/// Identity patterns, such as an allow-list: `*` matches any run of characters, which
/// is what assumed-role ARNs need (`arn:aws:sts::111122223333:assumed-role/Patching/*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Patterns(pub Vec<String>);

impl Patterns {
    /// Whether any pattern matches all of `text`.
    pub fn matches(&self, text: &str) -> bool {
        self.0.iter().any(|pattern| wildcard_match(pattern, text))
    }

    /// An empty pattern would match nothing: it is a mistake.
    pub fn check(&self, name: &str) -> Result<(), String> {
        if self.0.iter().any(String::is_empty) {
            return Err(format!("{name}: an empty pattern would match nothing"));
        }
        Ok(())
    }
}

/// `*` matches any run of characters, everything else itself. Greedy with backtracking to
/// the last `*`: linear in practice, and never worse than the product of the lengths.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_seconds_or_units_and_print_the_largest_unit() {
        let read = |json: &str| serde_json::from_str::<Period>(json);
        assert_eq!(read("86400").unwrap(), Period::days(1));
        assert_eq!(read("\"90m\"").unwrap().millis(), 90 * MINUTE);
        assert_eq!(read("\"30s\"").unwrap().to_string(), "30s");
        assert_eq!(Period::days(14).to_string(), "14d");
        assert!(read("-5").unwrap_err().to_string().contains("negative"));
        assert!(
            read("\"3w\"")
                .unwrap_err()
                .to_string()
                .contains("not a period")
        );
        assert!(
            check_positive(&[("a", Period::days(1)), ("b", Period(0))])
                .unwrap_err()
                .contains("b must")
        );
    }

    #[test]
    fn a_period_is_read_by_its_path_alone() {
        #[derive(Serialize)]
        struct Inner {
            list: Vec<u8>,
            period: Period,
            maybe: Option<Period>,
        }
        #[derive(Serialize)]
        struct Outer {
            top: Period,
            inner: Inner,
            #[serde(flatten)]
            flat: std::collections::BTreeMap<String, Period>,
        }
        let config = Outer {
            top: Period::days(1),
            inner: Inner {
                list: vec![1],
                period: Period::hours(3),
                maybe: None,
            },
            flat: [("f".to_owned(), Period(90 * MINUTE))].into(),
        };
        assert_eq!(period_at(&config, "top"), Ok(Period::days(1)));
        assert_eq!(period_at(&config, "inner.period"), Ok(Period::hours(3)));
        assert_eq!(period_at(&config, "f").unwrap().millis(), 90 * MINUTE);
        for missing in ["inner", "inner.list", "inner.maybe", "nope", "top.x", ""] {
            let err = period_at(&config, missing).unwrap_err();
            assert!(err.contains("has no period"), "{missing}: {err}");
        }
    }

    #[test]
    fn patterns_match_whole_texts_with_backtracking_wildcards() {
        let p = Patterns(vec![
            "arn:aws:sts::1:assumed-role/Patching/*".into(),
            "AIDAEXACT".into(),
        ]);
        assert!(p.matches("arn:aws:sts::1:assumed-role/Patching/i-0abc"));
        assert!(p.matches("AIDAEXACT"));
        assert!(!p.matches("AIDAEXACT2"));
        assert!(!p.matches("arn:aws:sts::1:assumed-role/PatchingX/i-0abc"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "aXbYbZc"));
        assert!(!wildcard_match("a*b", "aXbY"));
        assert!(!wildcard_match("", "x"));
        assert!(Patterns(vec![String::new()]).check("allowlist").is_err());
    }
}
