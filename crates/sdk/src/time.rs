//! ISO 8601 dates and timestamps as microseconds since 1970-01-01T00:00:00Z, the
//! representation of every timestamp column and parameter.
//!
//! Accepted: `2024-01-31` (midnight UTC), `2024-01-31T12:00:00Z`, with optional fractional
//! seconds (up to microseconds), a `±HH:MM` offset instead of `Z`, and a space instead of `T`.
//! A timestamp without an offset is taken as UTC.

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

fn number(text: &str, what: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} {text:?} is not a number"));
    }
    text.parse()
        .map_err(|_| format!("{what} {text:?} is out of range"))
}

/// Microseconds per day, for converting durations.
pub const MICROS_PER_DAY: i64 = SECONDS_PER_DAY * MICROS_PER_SECOND;

/// 0001-01-01T00:00:00Z, the earliest timestamp a metric receives.
///
/// The engine refuses timestamps outside years 1 to 9999 (the years ISO 8601 writes with four
/// digits) in columns and parameters before a plugin runs. Within them, differences of
/// timestamps, month counts and calendar arithmetic cannot overflow an `i64`, so a metric
/// need not guard every subtraction against the ±292 000 years microseconds could span.
pub const MIN_TIMESTAMP: i64 = -62_135_596_800_000_000;
/// 9999-12-31T23:59:59.999999Z, the latest timestamp a metric receives (see [`MIN_TIMESTAMP`]).
pub const MAX_TIMESTAMP: i64 = 253_402_300_799_999_999;

/// Whether `micros` is within the timestamps a metric accepts: years 1 to 9999.
#[inline]
pub fn is_accepted_timestamp(micros: i64) -> bool {
    (MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&micros)
}

/// Why `micros` is outside the timestamps a metric accepts, if it is.
pub fn check_timestamp(micros: i64) -> Result<(), String> {
    if is_accepted_timestamp(micros) {
        Ok(())
    } else {
        Err(format!(
            "{micros} microseconds since 1970 is outside years 1 to 9999 (0001-01-01 to 9999-12-31T23:59:59.999999Z)"
        ))
    }
}

/// The calendar date (year, month 1-12, day 1-31) of a timestamp, in UTC.
pub fn date_of(micros: i64) -> (i64, u32, u32) {
    civil_from_days(micros.div_euclid(MICROS_PER_DAY))
}

/// Midnight UTC of a calendar date; months past 12 roll into later years.
pub fn date_micros(year: i64, month: u32, day: u32) -> i64 {
    let months = year * 12 + i64::from(month) - 1;
    let (year, month) = (months.div_euclid(12), (months.rem_euclid(12) + 1) as u32);
    days_from_civil(year, month, day) * MICROS_PER_DAY
}

/// Parses an ISO 8601 date or timestamp into microseconds since the Unix epoch.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    let text = text.trim();
    match parse_common(text.as_bytes()) {
        Some(micros) => Ok(micros),
        None => parse_any(text),
    }
}

/// `YYYY-MM-DD`, `YYYY-MM-DD[T ]HH:MM:SS` and the same with `Z`: the shapes of nearly every
/// exported log, read a byte at a fixed place without splitting (a log of 100 million rows
/// spends seconds here). `None` for anything else, which [`parse_any`] reads or explains.
fn parse_common(text: &[u8]) -> Option<i64> {
    let timed = match text.len() {
        10 => false,
        19 => true,
        20 if matches!(text[19], b'Z' | b'z') => true,
        _ => return None,
    };
    let digit = |i: usize| {
        let b = text[i];
        b.is_ascii_digit().then(|| u32::from(b - b'0'))
    };
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    if text[4] != b'-' || text[7] != b'-' {
        return None;
    }
    let year = i64::from(two(0)? * 100 + two(2)?);
    let (month, day) = (two(5)?, two(8)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let mut seconds = days_from_civil(year, month, day) * SECONDS_PER_DAY;
    if timed {
        if !matches!(text[10], b'T' | b't' | b' ') || text[13] != b':' || text[16] != b':' {
            return None;
        }
        let (h, m, s) = (two(11)?, two(14)?, two(17)?);
        if h > 23 || m > 59 || s > 59 {
            return None;
        }
        seconds += i64::from(h * 3600 + m * 60 + s);
    }
    Some(seconds * MICROS_PER_SECOND)
}

/// Any ISO 8601 date or timestamp [`parse_timestamp`] takes, or why the text is not one.
fn parse_any(text: &str) -> Result<i64, String> {
    let fail = |why: String| {
        format!(
            "{text:?} is not an ISO 8601 date or timestamp ({why}); write 2024-01-31 or 2024-01-31T12:00:00Z"
        )
    };
    let (date, time) = match text.find(['T', 't', ' ']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(fail("the date needs year-month-day".into()));
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(fail(
            "the date needs a 4-digit year and 2-digit month and day".into(),
        ));
    }
    let year = i64::from(number(y, "year").map_err(fail)?);
    let month = number(m, "month").map_err(fail)?;
    let day = number(d, "day").map_err(fail)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(fail(format!("{year}-{month:02} has no day {day}")));
    }
    let mut micros = days_from_civil(year, month, day) * SECONDS_PER_DAY * MICROS_PER_SECOND;
    let Some(time) = time else { return Ok(micros) };

    let (clock, offset_seconds) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else if let Some(i) = time.rfind(['+', '-']).filter(|&i| i >= 8) {
        let (clock, offset) = time.split_at(i);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, m) = offset[1..].split_once(':').unwrap_or((&offset[1..], "00"));
        let (h, m) = (
            number(h, "offset hour").map_err(fail)?,
            number(m, "offset minute").map_err(fail)?,
        );
        if h > 23 || m > 59 {
            return Err(fail(format!("offset {offset} is out of range")));
        }
        (clock, sign * (i64::from(h) * 3600 + i64::from(m) * 60))
    } else {
        (time, 0)
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let fields: Vec<&str> = hms.split(':').collect();
    let [h, m, s] = match fields.as_slice() {
        [h, m, s] => [*h, *m, *s],
        [h, m] => [*h, *m, "00"],
        _ => return Err(fail("the time needs hours:minutes[:seconds]".into())),
    };
    let (h, m, s) = (
        number(h, "hour").map_err(fail)?,
        number(m, "minute").map_err(fail)?,
        number(s, "second").map_err(fail)?,
    );
    if h > 23 || m > 59 || s > 59 {
        return Err(fail(format!("{h:02}:{m:02}:{s:02} is not a time of day")));
    }
    if fraction.len() > 6 && !fraction[6..].bytes().all(|b| b == b'0') {
        return Err(fail("sub-microsecond precision is not supported".into()));
    }
    let fraction_micros = if fraction.is_empty() {
        0
    } else {
        let digits = &fraction[..fraction.len().min(6)];
        i64::from(number(digits, "fraction").map_err(fail)?) * 10i64.pow(6 - digits.len() as u32)
    };
    micros += (i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s) - offset_seconds)
        * MICROS_PER_SECOND
        + fraction_micros;
    Ok(micros)
}

/// Formats microseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`, or as a
/// plain date when the time is midnight.
pub fn format_timestamp(micros: i64) -> String {
    let seconds = micros.div_euclid(MICROS_PER_SECOND);
    let fraction = micros.rem_euclid(MICROS_PER_SECOND);
    let days = seconds.div_euclid(SECONDS_PER_DAY);
    let second_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if second_of_day == 0 && fraction == 0 {
        return format!("{year:04}-{month:02}-{day:02}");
    }
    let (h, m, s) = (
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
    );
    if fraction == 0 {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{fraction:06}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixed-place reading of the common shapes gives what the general parser gives, and
    /// leaves to it whatever it cannot read exactly.
    #[test]
    fn common_shapes_read_as_the_general_parser_reads_them() {
        let mut seen = 0;
        for year in [
            "1970", "2000", "2023", "2024", "1900", "0001", "9999", "20x4",
        ] {
            for month in ["01", "02", "12", "13", "00", "1a"] {
                for day in ["01", "28", "29", "30", "31", "00", "32"] {
                    for time in [
                        "",
                        "T00:00:00",
                        " 23:59:59",
                        "t12:34:56Z",
                        "T24:00:00",
                        "T12:60:00",
                        "T12:00:61",
                        "T1:00:00",
                        "T12:00:00z",
                        "T12:00:00+02:00",
                        "T12:00",
                    ] {
                        let text = format!("{year}-{month}-{day}{time}");
                        let common = parse_common(text.as_bytes());
                        if common.is_some() {
                            seen += 1;
                        }
                        if let Some(micros) = common {
                            assert_eq!(parse_any(&text), Ok(micros), "{text}");
                        }
                        assert_eq!(parse_timestamp(&text).ok(), parse_any(&text).ok(), "{text}");
                    }
                }
            }
        }
        assert!(seen > 300, "{seen}");
    }

    fn check(text: &str, expect: Result<i64, &str>) {
        match (parse_timestamp(text), expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{text}: {got:?} lacks {want:?}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_dates_and_timestamps() {
        // Reference values from `date -u -d ... +%s`.
        check("1970-01-01", Ok(0));
        check("2024-01-31", Ok(1_706_659_200_000_000));
        check("2024-01-31T12:00:00Z", Ok(1_706_702_400_000_000));
        check("2024-01-31 12:00:00", Ok(1_706_702_400_000_000));
        check("2024-01-31T12:00", Ok(1_706_702_400_000_000));
        check("2024-01-31T14:00:00+02:00", Ok(1_706_702_400_000_000));
        check("2024-01-31T07:30:00-04:30", Ok(1_706_702_400_000_000));
        check("2024-01-31T12:00:00.25Z", Ok(1_706_702_400_250_000));
        check("2024-02-29", Ok(1_709_164_800_000_000));
        check("1969-12-31T23:59:59Z", Ok(-1_000_000));
        check("2023-02-29", Err("has no day 29"));
        check("2024-13-01", Err("has no day"));
        check("31.1.2024", Err("not an ISO 8601"));
        check("2024-01-31T25:00:00Z", Err("not a time of day"));
        check("", Err("not an ISO 8601"));
    }

    #[test]
    fn calendar_helpers() {
        let t = parse_timestamp("2024-02-29T13:00:00Z").unwrap();
        assert_eq!(date_of(t), (2024, 2, 29));
        assert_eq!(
            date_micros(2024, 2, 29),
            parse_timestamp("2024-02-29").unwrap()
        );
        // Month 13 of 2024 is January 2025; month 15 March 2025.
        assert_eq!(
            date_micros(2024, 13, 1),
            parse_timestamp("2025-01-01").unwrap()
        );
        assert_eq!(
            date_micros(2024, 15, 1),
            parse_timestamp("2025-03-01").unwrap()
        );
        assert_eq!(date_of(-1), (1969, 12, 31));
    }

    #[test]
    fn formats_round_trip() {
        for text in [
            "2024-01-31",
            "2024-01-31T12:00:00Z",
            "1969-12-31T23:59:59.000001Z",
            "2000-02-29",
        ] {
            assert_eq!(format_timestamp(parse_timestamp(text).unwrap()), text);
        }
    }
}
