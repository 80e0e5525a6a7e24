//! Event time. A rule never reads a clock: every window is measured between records'
//! event times, so replaying a month of logs gives the alerts a live run would have.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// A point in time: milliseconds since the Unix epoch, UTC. State, windows and alerts
/// all use this one unit.
pub type Millis = i64;

/// One second.
pub const SECOND: Millis = 1_000;
/// One minute.
pub const MINUTE: Millis = 60 * SECOND;
/// One hour.
pub const HOUR: Millis = 60 * MINUTE;
/// One day.
pub const DAY: Millis = 24 * HOUR;

/// Parses CloudTrail's `eventTime`: RFC 3339 (`2025-02-19T20:13:49Z`, with a fraction
/// or an offset), or the normalized form `2025-02-19 20:13:49[.f]` that log platforms
/// such as Panther write, read as UTC. Digits past the millisecond are dropped.
pub fn parse_event_time(text: &str) -> Result<Millis, String> {
    let normalized = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    let parsed = OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| PrimitiveDateTime::parse(text, normalized).map(|t| t.assume_utc()));
    match parsed {
        Ok(t) => Ok(t.unix_timestamp_nanos().div_euclid(1_000_000) as Millis),
        Err(_) => Err(format!(
            "`{text}` is neither RFC 3339 nor `YYYY-MM-DD HH:MM:SS[.fff]`"
        )),
    }
}

/// Formats a time as RFC 3339 in UTC, with milliseconds only when there are any.
pub fn format_rfc3339(at: Millis) -> String {
    let fraction = at.rem_euclid(SECOND);
    let mut out = String::with_capacity(24);
    if !write_second(&mut out, at) {
        return at.to_string();
    }
    if fraction != 0 {
        out.push('.');
        push_digits(&mut out, fraction as u32, 3);
    }
    out.push('Z');
    out
}

/// Formats a time as `YYYY-MM-DDTHH:MM:SSZ`, the second it falls in: the event time of an
/// alert line.
pub fn format_event_time(at: Millis) -> String {
    let mut out = String::with_capacity(20);
    push_event_time(&mut out, at);
    out
}

/// Appends [`format_event_time`]'s text to `out`: no character of it needs escaping in JSON.
pub fn push_event_time(out: &mut String, at: Millis) {
    match write_second(out, at) {
        true => out.push('Z'),
        false => out.push_str(&at.to_string()),
    }
}

/// Appends `YYYY-MM-DDTHH:MM:SS` of the second `at` falls in, for years 0 to 9999; false
/// (and nothing written) for others. The calendar is the time crate's; the digits are
/// written here, which costs a fraction of its formatter (that reads a format description
/// on every call), and these times are written for every alert.
fn write_second(out: &mut String, at: Millis) -> bool {
    let Ok(t) = OffsetDateTime::from_unix_timestamp(at.div_euclid(SECOND)) else {
        return false;
    };
    let (year, month, day) = t.to_calendar_date();
    if !(0..=9999).contains(&year) {
        return false;
    }
    push_digits(out, year as u32, 4);
    out.push('-');
    push_digits(out, u8::from(month).into(), 2);
    out.push('-');
    push_digits(out, day.into(), 2);
    out.push('T');
    push_digits(out, t.hour().into(), 2);
    out.push(':');
    push_digits(out, t.minute().into(), 2);
    out.push(':');
    push_digits(out, t.second().into(), 2);
    true
}

/// Appends the last `width` decimal digits of `n`.
fn push_digits(out: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10u32.pow(place) % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: Millis = 1_739_996_029_000; // 2025-02-19T20:13:49Z

    #[test]
    fn parses_rfc3339_and_its_variants() {
        assert_eq!(parse_event_time("2025-02-19T20:13:49Z"), Ok(SAMPLE));
        assert_eq!(
            parse_event_time("2025-02-19T20:13:49.250Z"),
            Ok(SAMPLE + 250)
        );
        assert_eq!(
            parse_event_time("2025-02-19T20:13:49.250999Z"),
            Ok(SAMPLE + 250)
        );
        assert_eq!(parse_event_time("2025-02-19T22:13:49+02:00"), Ok(SAMPLE));
        assert_eq!(parse_event_time("2025-02-19T15:13:49-05:00"), Ok(SAMPLE));
    }

    #[test]
    fn parses_the_normalized_form_as_utc() {
        assert_eq!(parse_event_time("2025-02-19 20:13:49"), Ok(SAMPLE));
        assert_eq!(parse_event_time("2025-02-19 20:13:49.4"), Ok(SAMPLE + 400));
    }

    #[test]
    fn rejects_what_is_not_a_timestamp() {
        for bad in [
            "",
            "yesterday",
            "2025-02-19",
            "2025-02-19T20:13:49",
            "2025-13-01T00:00:00Z",
            "1739996029",
        ] {
            let err = parse_event_time(bad).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn formats_whole_seconds_and_milliseconds() {
        assert_eq!(format_rfc3339(SAMPLE), "2025-02-19T20:13:49Z");
        assert_eq!(format_rfc3339(SAMPLE + 7), "2025-02-19T20:13:49.007Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_event_time(SAMPLE + 999), "2025-02-19T20:13:49Z");
        assert_eq!(format_event_time(-1), "1969-12-31T23:59:59Z");
        // Outside the years RFC 3339 writes with four digits: the number.
        assert_eq!(format_rfc3339(Millis::MAX), Millis::MAX.to_string());
    }

    proptest::proptest! {
        /// Any time of years 0 to 9999, as the time crate formats it.
        #[test]
        fn times_are_written_as_the_time_crate_writes_them(
            at in -62_167_219_200_000i64..253_402_300_800_000,
        ) {
            let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000).unwrap();
            let seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
            let millis = format_description!("[subsecond digits:3]");
            let whole = t.format(seconds).unwrap();
            let expected = match at.rem_euclid(SECOND) {
                0 => format!("{whole}Z"),
                _ => format!("{whole}.{}Z", t.format(millis).unwrap()),
            };
            proptest::prop_assert_eq!(format_rfc3339(at), expected);
            proptest::prop_assert_eq!(format_event_time(at), format!("{whole}Z"));
        }
    }
}
