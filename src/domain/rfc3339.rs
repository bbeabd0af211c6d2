//! Times as JSON: RFC 3339 in UTC, written exactly as chrono's serde writes them
//! (`2026-12-06T09:41:07.123456Z`: the fraction in 0, 3, 6 or 9 digits, as many as it needs),
//! but straight into a buffer. chrono writes a time a character at a time through
//! `collect_str`, which serde_json escapes a character at a time: about 2,000 instructions
//! a time, nine times per incident, a tenth of what serving one incident costs.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serializer;

/// Serialises a time as chrono's serde does (for `#[serde(serialize_with)]`).
pub fn serialize<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 30];
    match write(time, &mut buf) {
        Some(len) => serializer.serialize_str(std::str::from_utf8(&buf[..len]).expect("ASCII")),
        // Years before 0 or after 9999 (which nothing here stores) as chrono writes them.
        None => serde::Serialize::serialize(time, serializer),
    }
}

/// The same for an optional time (`null` when absent).
pub fn serialize_option<S: Serializer>(time: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serialize(time, serializer),
        None => serializer.serialize_none(),
    }
}

/// Writes `time` into `buf`, returning its length; `None` for a year outside 0–9999.
fn write(time: &DateTime<Utc>, buf: &mut [u8; 30]) -> Option<usize> {
    let year = u32::try_from(time.year()).ok().filter(|y| *y <= 9999)?;
    let (mut second, mut nano) = (time.second(), time.nanosecond());
    // A leap second is kept as a nanosecond count past 10⁹.
    if nano >= 1_000_000_000 {
        second += 1;
        nano -= 1_000_000_000;
    }
    let digits = |buf: &mut [u8], mut value: u32| {
        for slot in buf.iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    digits(&mut buf[0..4], year);
    buf[4] = b'-';
    digits(&mut buf[5..7], time.month());
    buf[7] = b'-';
    digits(&mut buf[8..10], time.day());
    buf[10] = b'T';
    digits(&mut buf[11..13], time.hour());
    buf[13] = b':';
    digits(&mut buf[14..16], time.minute());
    buf[16] = b':';
    digits(&mut buf[17..19], second);
    let mut len = 19;
    let (fraction, width) = match nano {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    if width > 0 {
        buf[len] = b'.';
        digits(&mut buf[len + 1..len + 1 + width], fraction);
        len += 1 + width;
    }
    buf[len] = b'Z';
    Some(len + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[derive(serde::Serialize)]
    struct Ours(#[serde(serialize_with = "serialize")] DateTime<Utc>);

    fn ours(time: DateTime<Utc>) -> String {
        serde_json::to_string(&Ours(time)).unwrap()
    }

    fn chronos(time: DateTime<Utc>) -> String {
        serde_json::to_string(&time).unwrap()
    }

    #[test]
    fn written_as_chrono_writes_them() {
        let base = Utc.with_ymd_and_hms(2026, 12, 6, 9, 41, 7).unwrap();
        for nanos in [0, 1, 999, 1_000, 123_000, 1_000_000, 120_000_000, 123_456_789, 999_999_999] {
            let time = base + chrono::Duration::nanoseconds(nanos);
            assert_eq!(ours(time), chronos(time), "{nanos} ns");
        }
        for time in [
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 15, 12, 0, 0).unwrap(),
        ] {
            assert_eq!(ours(time), chronos(time));
        }
        // A leap second.
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31).unwrap().and_hms_nano_opt(23, 59, 59, 1_500_000_000);
        let leap = Utc.from_utc_datetime(&leap.unwrap());
        assert_eq!(ours(leap), chronos(leap));
        #[derive(serde::Serialize)]
        struct Maybe(#[serde(serialize_with = "serialize_option")] Option<DateTime<Utc>>);
        assert_eq!(serde_json::to_string(&Maybe(None)).unwrap(), "null");
        assert_eq!(serde_json::to_string(&Maybe(Some(base))).unwrap(), chronos(base));
    }

    proptest! {
        #[test]
        fn any_time_is_written_as_chrono_writes_it(seconds in -62_167_219_200_i64..253_402_300_800, nanos in 0u32..1_000_000_000, round in 0..4u32) {
            // Round the fraction so that each of its widths is tried.
            let nanos = match round { 0 => 0, 1 => nanos / 1_000_000 * 1_000_000, 2 => nanos / 1_000 * 1_000, _ => nanos };
            let time = Utc.timestamp_opt(seconds, nanos).unwrap();
            prop_assert_eq!(ours(time), chronos(time));
        }
    }
}
