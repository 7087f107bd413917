//! Local time: the time zone the service works in and its business hours (elapsed time
//! counted only while the service is open); the periods are the SDK's, counted in local dates.
//!
//! Timestamps arrive as instants (microseconds since 1970 UTC). A contact opened on Friday at
//! 17:55 in Helsinki and answered on Monday at 08:05 waited 62 hours on the clock but ten
//! minutes of business hours 08:00–18:00; and the month it belongs to is Helsinki's, not UTC's.

use std::collections::BTreeSet;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;
use mittari_sdk::MetricError;

const MICROS_PER_HOUR: f64 = 3_600_000_000.0;

/// How elapsed time is counted: around the clock, or in business hours.
#[derive(Debug, Clone)]
pub(crate) struct Calendar {
    pub(crate) zone: Tz,
    pub(crate) hours: Option<BusinessHours>,
}

/// When the service is open: the same hours on each working day, holidays excepted.
#[derive(Debug, Clone)]
pub(crate) struct BusinessHours {
    open: NaiveTime,
    /// `None` for midnight at the end of the day (`24:00`).
    close: Option<NaiveTime>,
    /// Monday first.
    days: [bool; 7],
    holidays: BTreeSet<NaiveDate>,
}

impl Calendar {
    /// From the parameters `timezone`, `business_hours` (`08:00-16:30`, empty for around
    /// the clock), `business_days` (`mon-fri`, `mon,tue,thu`) and `holidays`
    /// (`2024-12-24,2024-12-25`). Also returns the names of given parameters that change
    /// nothing (business days or holidays without business hours).
    pub(crate) fn from_params(
        zone: &str,
        hours: &str,
        days: Option<&str>,
        holidays: Option<&str>,
    ) -> Result<(Calendar, Vec<&'static str>), MetricError> {
        let zone: Tz = zone.parse().map_err(|_| {
            MetricError::invalid_parameter(
                "timezone",
                format!("{zone:?} is not an IANA time zone; write e.g. Europe/Helsinki or UTC"),
            )
        })?;
        let mut unused = Vec::new();
        let hours = hours.trim();
        if hours.is_empty() {
            if days.is_some() {
                unused.push("business_days");
            }
            if holidays.is_some() {
                unused.push("holidays");
            }
            return Ok((Calendar { zone, hours: None }, unused));
        }
        let (open, close) = parse_hours(hours)?;
        let days = parse_days(days.unwrap_or("mon-fri"))?;
        let holidays = parse_holidays(holidays.unwrap_or(""))?;
        Ok((
            Calendar {
                zone,
                hours: Some(BusinessHours {
                    open,
                    close,
                    days,
                    holidays,
                }),
            },
            unused,
        ))
    }

    /// The local date of an instant.
    pub(crate) fn local_date(&self, micros: i64) -> NaiveDate {
        self.local(micros).date()
    }

    fn local(&self, micros: i64) -> NaiveDateTime {
        utc(micros).with_timezone(&self.zone).naive_local()
    }

    /// The instant a local wall-clock time happens. In the hour skipped when clocks go
    /// forward it is the instant an hour later on the clock; in the hour repeated when they
    /// go back, its first occurrence.
    pub(crate) fn instant(&self, local: NaiveDateTime) -> i64 {
        let at = match self.zone.from_local_datetime(&local) {
            LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at,
            LocalResult::None => match self.zone.from_local_datetime(&(local + Duration::hours(1)))
            {
                LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at,
                LocalResult::None => return local.and_utc().timestamp_micros(),
            },
        };
        at.timestamp_micros()
    }

    /// The instant a local date starts.
    pub(crate) fn day_start(&self, date: NaiveDate) -> i64 {
        self.instant(date.and_time(NaiveTime::MIN))
    }

    /// Hours from `from` to `to` (instants, `from <= to`): on the clock, or only those within
    /// business hours.
    pub(crate) fn elapsed_hours(&self, from: i64, to: i64) -> f64 {
        let Some(hours) = &self.hours else {
            return (to - from) as f64 / MICROS_PER_HOUR;
        };
        let mut open_micros = 0i64;
        let mut date = self.local_date(from);
        let last = self.local_date(to);
        while date <= last {
            if hours.is_open_on(date) {
                let open = self.instant(date.and_time(hours.open));
                let close = match hours.close {
                    Some(close) => self.instant(date.and_time(close)),
                    None => self.day_start(date.succ_opt().unwrap_or(NaiveDate::MAX)),
                };
                open_micros += (to.min(close) - from.max(open)).max(0);
            }
            match date.succ_opt() {
                Some(next) => date = next,
                None => break,
            }
        }
        open_micros as f64 / MICROS_PER_HOUR
    }
}

impl BusinessHours {
    fn is_open_on(&self, date: NaiveDate) -> bool {
        self.days[date.weekday().num_days_from_monday() as usize] && !self.holidays.contains(&date)
    }
}

fn utc(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn parse_hours(text: &str) -> Result<(NaiveTime, Option<NaiveTime>), MetricError> {
    let fail = |why: &str| {
        MetricError::invalid_parameter(
            "business_hours",
            format!(
                "{text:?} {why}; write opening and closing time as 08:00-16:30, or leave it empty for around the clock"
            ),
        )
    };
    let (open, close) = text.split_once('-').ok_or_else(|| fail("has no '-'"))?;
    let open = NaiveTime::parse_from_str(open.trim(), "%H:%M")
        .map_err(|_| fail("has no opening time as HH:MM"))?;
    let close = match close.trim() {
        "24:00" => None,
        close => Some(
            NaiveTime::parse_from_str(close, "%H:%M")
                .map_err(|_| fail("has no closing time as HH:MM"))?,
        ),
    };
    if close.is_some_and(|close| close <= open) {
        return Err(fail(
            "closes before it opens (hours past midnight are not supported)",
        ));
    }
    Ok((open, close))
}

fn parse_days(text: &str) -> Result<[bool; 7], MetricError> {
    let day = |name: &str| -> Result<usize, MetricError> {
        name.trim()
            .parse::<Weekday>()
            .map(|d| d.num_days_from_monday() as usize)
            .map_err(|_| {
                MetricError::invalid_parameter(
                    "business_days",
                    format!("{name:?} is not a weekday; write days as mon-fri or mon,tue,sat"),
                )
            })
    };
    let mut days = [false; 7];
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (day(first)?, day(last)?);
                let mut d = first;
                loop {
                    days[d] = true;
                    if d == last {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day(part)?] = true,
        }
    }
    if !days.contains(&true) {
        return Err(MetricError::invalid_parameter(
            "business_days",
            "names no day; write days as mon-fri or mon,tue,sat",
        ));
    }
    Ok(days)
}

fn parse_holidays(text: &str) -> Result<BTreeSet<NaiveDate>, MetricError> {
    text.split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
                MetricError::invalid_parameter(
                    "holidays",
                    format!("{d:?} is not a date; write dates as 2024-12-24,2024-12-25"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> i64 {
        mittari_sdk::time::parse_timestamp(text).unwrap()
    }

    fn calendar(zone: &str, hours: &str, days: Option<&str>, holidays: Option<&str>) -> Calendar {
        Calendar::from_params(zone, hours, days, holidays)
            .unwrap()
            .0
    }

    /// `check((zone, hours, holidays), (from, to), expected hours)`.
    fn check(setup: (&str, &str, Option<&str>), span: (&str, &str), expect: f64) {
        let cal = calendar(setup.0, setup.1, None, setup.2);
        let got = cal.elapsed_hours(micros(span.0), micros(span.1));
        assert!(
            (got - expect).abs() < 1e-9,
            "{setup:?} {span:?}: {got} != {expect}"
        );
    }

    #[test]
    fn elapsed_business_hours() {
        // Around the clock: Friday 17:55 to Monday 08:05 is 62 h 10 min.
        check(
            ("UTC", "", None),
            ("2024-03-01T17:55:00Z", "2024-03-04T08:05:00Z"),
            62.0 + 10.0 / 60.0,
        );
        // 08:00-18:00 Monday to Friday: 5 min on Friday, 5 min on Monday.
        check(
            ("UTC", "08:00-18:00", None),
            ("2024-03-01T17:55:00Z", "2024-03-04T08:05:00Z"),
            10.0 / 60.0,
        );
        // Helsinki is UTC+2 in March: 15:55Z is 17:55 local.
        check(
            ("Europe/Helsinki", "08:00-18:00", None),
            ("2024-03-01T15:55:00Z", "2024-03-04T06:05:00Z"),
            10.0 / 60.0,
        );
        // Opened and closed outside hours on the same evening: nothing.
        check(
            ("UTC", "08:00-16:00", None),
            ("2024-03-05T17:00:00Z", "2024-03-05T23:00:00Z"),
            0.0,
        );
        // Monday 2024-12-23 12:00 to Friday 2024-12-27 12:00 with 24th-26th as holidays:
        // 4 h on Monday, 4 h on Friday.
        check(
            (
                "UTC",
                "08:00-16:00",
                Some("2024-12-24,2024-12-25,2024-12-26"),
            ),
            ("2024-12-23T12:00:00Z", "2024-12-27T12:00:00Z"),
            8.0,
        );
        // Until midnight: Tuesday 20:00 to Wednesday 02:00 with 18:00-24:00 is 4 h.
        check(
            ("UTC", "18:00-24:00", None),
            ("2024-03-05T20:00:00Z", "2024-03-06T02:00:00Z"),
            4.0,
        );
        // Over the spring-forward night in Helsinki (2024-03-31, 03:00 -> 04:00), a Sunday:
        // around the clock it is 23 real hours from Saturday 12:00 to Sunday 12:00 local.
        check(
            ("Europe/Helsinki", "", None),
            ("2024-03-30T10:00:00Z", "2024-03-31T09:00:00Z"),
            23.0,
        );
    }

    #[test]
    fn local_dates_and_day_starts() {
        let cal = calendar("Europe/Helsinki", "", None, None);
        // 22:30Z on 31 January is already February in Helsinki.
        assert_eq!(
            cal.local_date(micros("2024-01-31T22:30:00Z")),
            NaiveDate::from_ymd_opt(2024, 2, 1).unwrap()
        );
        // Helsinki's February starts at 22:00Z on 31 January.
        assert_eq!(
            cal.day_start(NaiveDate::from_ymd_opt(2024, 2, 1).unwrap()),
            micros("2024-01-31T22:00:00Z")
        );
    }

    #[test]
    fn bad_settings_say_what_to_write() {
        let error = |zone, hours, days: Option<&str>, holidays: Option<&str>| {
            Calendar::from_params(zone, hours, days, holidays)
                .unwrap_err()
                .to_string()
        };
        assert!(error("Mars/Olympus", "", None, None).contains("not an IANA time zone"));
        assert!(error("UTC", "8-16", None, None).contains("HH:MM"));
        assert!(error("UTC", "16:00-08:00", None, None).contains("closes before it opens"));
        assert!(
            error("UTC", "08:00-16:00", Some("mon-fry"), None).contains("\"fry\" is not a weekday")
        );
        assert!(error("UTC", "08:00-16:00", None, Some("24.12.2024")).contains("not a date"));
        // Days and holidays without hours change nothing, and are named.
        let (_, unused) =
            Calendar::from_params("UTC", "", Some("mon-sat"), Some("2024-12-24")).unwrap();
        assert_eq!(unused, ["business_days", "holidays"]);
        // sat-mon wraps around the week.
        assert_eq!(
            parse_days("sat-mon").unwrap(),
            [true, false, false, false, false, true, true]
        );
    }
}
