//! Helpers for rule configurations: lengths of event time written the way people write
//! them, and identity patterns with wildcards.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::time::{DAY, HOUR, MINUTE, Millis, SECOND};

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
                let bad = || {
                    E::custom(format!(
                        "`{text}` is not a period such as \"90m\", \"1h\", \"14d\""
                    ))
                };
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
        d.deserialize_any(PeriodVisitor)
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
