//! Text cells parsed as the types metrics declare, in the reader's dialect: a decimal comma
//! and a date format of the user's locale.

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use chrono::format::{Item, StrftimeItems};
use mittari_sdk::{DataType, ParamValue};

/// Why numbers are read with a decimal comma, for the error that says how to change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalSeparator {
    /// `1234.5`, the default.
    Point,
    /// `1234,5` or `1.234,5`, asked for.
    Comma,
    /// A decimal comma because the delimiter is `;`, as spreadsheets in comma locales write.
    CommaForSemicolon,
}

impl DecimalSeparator {
    pub(crate) fn is_comma(self) -> bool {
        self != DecimalSeparator::Point
    }
}

/// A `--date-format`, checked when it is given.
#[derive(Debug, Clone)]
pub struct DateFormat {
    text: String,
    has_time: bool,
    has_offset: bool,
}

impl DateFormat {
    /// A chrono `strftime` format such as `%d.%m.%Y` or `%d/%m/%Y %H:%M`; the error says what
    /// is wrong with it. A date without a time is midnight; a time without an offset (`%z`) is
    /// UTC.
    pub fn new(text: &str) -> Result<DateFormat, String> {
        let items: Vec<Item<'_>> = StrftimeItems::new(text).collect();
        if items.iter().any(|item| matches!(item, Item::Error)) {
            return Err(format!(
                "{text:?} is not a chrono date format; write it as e.g. %d.%m.%Y or %Y-%m-%d %H:%M:%S"
            ));
        }
        let has = |spec: &[&str]| spec.iter().any(|s| text.contains(s));
        if !has(&["%Y", "%y", "%G", "%s", "%F", "%c", "%+"]) {
            return Err(format!("{text:?} has no year (%Y or %y)"));
        }
        Ok(DateFormat {
            text: text.to_owned(),
            has_time: has(&[
                "%H", "%I", "%k", "%l", "%T", "%R", "%s", "%c", "%+", "%X", "%r",
            ]),
            has_offset: has(&["%z", "%:z", "%::z", "%#z", "%+"]),
        })
    }

    /// Microseconds since the Unix epoch.
    pub(crate) fn parse(&self, cell: &str) -> Result<i64, String> {
        let fail = |e: chrono::ParseError| {
            format!(
                "{cell:?} does not match the date format {:?} ({e})",
                self.text
            )
        };
        let micros = if self.has_offset {
            chrono::DateTime::parse_from_str(cell, &self.text)
                .map_err(fail)?
                .timestamp_micros()
        } else if self.has_time {
            chrono::NaiveDateTime::parse_from_str(cell, &self.text)
                .map_err(fail)?
                .and_utc()
                .timestamp_micros()
        } else {
            chrono::NaiveDate::parse_from_str(cell, &self.text)
                .map_err(fail)?
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_micros())
                .ok_or_else(|| format!("{cell:?} has no midnight"))?
        };
        mittari_sdk::time::check_timestamp(micros)?;
        Ok(micros)
    }
}

/// How text cells are read: the same for every column of an input.
#[derive(Debug, Clone)]
pub(crate) struct Dialect {
    pub(crate) decimal: DecimalSeparator,
    pub(crate) date_format: Option<DateFormat>,
}

impl Dialect {
    pub(crate) fn number(&self, cell: &str) -> Result<f64, String> {
        if !self.decimal.is_comma() {
            // The common case directly; ParamValue says why anything else is no number.
            if let Ok(x) = cell.parse::<f64>()
                && x.is_finite()
            {
                return Ok(x);
            }
            return match ParamValue::parse(cell, DataType::Double)? {
                ParamValue::Double(x) => Ok(x),
                _ => Err(format!("{cell:?} is not a number")),
            };
        }
        decimal_comma(cell).ok_or_else(|| {
            let why = match self.decimal {
                DecimalSeparator::CommaForSemicolon => {
                    "; the file is read with a decimal comma because its delimiter is ';': pass --decimal-point if its numbers use a point"
                }
                _ => "",
            };
            format!("{cell:?} is not a number with a decimal comma (1234,5 or 1.234,5){why}")
        })
    }

    pub(crate) fn timestamp(&self, cell: &str) -> Result<i64, String> {
        match &self.date_format {
            Some(format) => format.parse(cell),
            None => {
                mittari_sdk::time::parse_timestamp(cell).map_err(|why| {
                    match locale_date_hint(cell) {
                        Some(hint) => format!("{why}; for dates like {cell:?} pass {hint}"),
                        None => why,
                    }
                })
            }
        }
    }
}

/// `1234,5`, `-1.234,5`, `1 234,5` (with a space, a no-break space or a thin one between
/// thousands) or `12`: the number, or `None` for anything else.
fn decimal_comma(cell: &str) -> Option<f64> {
    let (integer, fraction) = match cell.split_once(',') {
        Some((i, f)) => (i, Some(f)),
        None => (cell, None),
    };
    let (sign, digits) = match integer.strip_prefix(['-', '+']) {
        Some(rest) => (&integer[..1], rest),
        None => ("", integer),
    };
    let separator = digits
        .chars()
        .find(|c| matches!(c, '.' | ' ' | '\u{a0}' | '\u{202f}'));
    let mut plain = String::with_capacity(cell.len());
    plain.push_str(sign);
    match separator {
        None => plain.push_str(digits),
        Some(separator) => {
            // Thousands groups: 1 to 3 digits, then groups of exactly 3.
            let mut groups = digits.split(separator);
            let first = groups.next()?;
            if first.is_empty() || first.len() > 3 {
                return None;
            }
            plain.push_str(first);
            for group in groups {
                if group.len() != 3 {
                    return None;
                }
                plain.push_str(group);
            }
        }
    }
    if plain.len() == sign.len() || !plain[sign.len()..].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(fraction) = fraction {
        if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        plain.push('.');
        plain.push_str(fraction);
    }
    plain.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// A `--date-format` for a cell that looks like a date in a European or US notation.
fn locale_date_hint(cell: &str) -> Option<&'static str> {
    let date = cell.split([' ', 'T']).next()?;
    for (separator, hint) in [
        ('.', "--date-format %d.%m.%Y"),
        ('/', "--date-format %d/%m/%Y (or %m/%d/%Y)"),
        ('-', "--date-format %d-%m-%Y"),
    ] {
        let parts: Vec<&str> = date.split(separator).collect();
        if let [d, m, y] = parts.as_slice()
            && (1..=2).contains(&d.len())
            && (1..=2).contains(&m.len())
            && y.len() == 4
            && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Some(hint);
        }
    }
    None
}

/// A column's cells, parsed as its type while the input is read.
#[derive(Debug)]
pub(crate) enum Cells {
    Int64(Int64Builder),
    Double(Float64Builder),
    String(StringBuilder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Cells {
    pub(crate) fn new(data_type: DataType, rows: usize) -> Cells {
        match data_type {
            DataType::Int64 => Cells::Int64(Int64Builder::with_capacity(rows)),
            DataType::Double => Cells::Double(Float64Builder::with_capacity(rows)),
            DataType::String => Cells::String(StringBuilder::with_capacity(rows, rows * 8)),
            DataType::Bool => Cells::Bool(BooleanBuilder::with_capacity(rows)),
            DataType::Timestamp => Cells::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            ),
        }
    }

    /// Appends a cell (`None` when empty), parsed as the column's type.
    pub(crate) fn push(&mut self, cell: Option<&str>, dialect: &Dialect) -> Result<(), String> {
        let Some(cell) = cell else {
            match self {
                Cells::Int64(b) => b.append_null(),
                Cells::Double(b) => b.append_null(),
                Cells::String(b) => b.append_null(),
                Cells::Bool(b) => b.append_null(),
                Cells::Timestamp(b) => b.append_null(),
            }
            return Ok(());
        };
        match self {
            Cells::String(b) => b.append_value(cell),
            Cells::Double(b) => b.append_value(dialect.number(cell)?),
            Cells::Timestamp(b) => b.append_value(dialect.timestamp(cell)?),
            Cells::Int64(b) => b.append_value(
                cell.parse()
                    .map_err(|_| format!("{cell:?} is not an integer"))?,
            ),
            Cells::Bool(b) => match ParamValue::parse(cell, DataType::Bool)? {
                ParamValue::Bool(x) => b.append_value(x),
                _ => return Err(format!("{cell:?} is not a boolean; write true or false")),
            },
        }
        Ok(())
    }

    /// Appends a parsed piece of the same column.
    pub(crate) fn append(&mut self, array: &ArrayRef) -> Result<(), String> {
        use arrow_array::cast::AsArray as _;
        use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
        match self {
            Cells::Int64(b) => b.append_array(array.as_primitive::<Int64Type>()),
            Cells::Double(b) => b.append_array(array.as_primitive::<Float64Type>()),
            Cells::String(b) => b
                .append_array(array.as_string::<i32>())
                .map_err(|_| "a column of text too large to hold".to_owned())?,
            Cells::Bool(b) => b.append_array(array.as_boolean()),
            Cells::Timestamp(b) => b.append_array(array.as_primitive::<TimestampMicrosecondType>()),
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> ArrayRef {
        match self {
            Cells::Int64(mut b) => Arc::new(b.finish()),
            Cells::Double(mut b) => Arc::new(b.finish()),
            Cells::String(mut b) => Arc::new(b.finish()),
            Cells::Bool(mut b) => Arc::new(b.finish()),
            Cells::Timestamp(mut b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_number(decimal: DecimalSeparator, cell: &str, expect: Result<f64, &str>) {
        let dialect = Dialect {
            decimal,
            date_format: None,
        };
        match (dialect.number(cell), expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{cell}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{cell}: {got} lacks {want}"),
            (got, want) => panic!("{cell}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn numbers_in_either_notation() {
        use DecimalSeparator::*;
        check_number(Point, "12.50", Ok(12.5));
        check_number(Point, "1e3", Ok(1000.0));
        check_number(Point, "12,50", Err("not a finite number"));
        check_number(Comma, "12,50", Ok(12.5));
        check_number(Comma, "-1.234,5", Ok(-1234.5));
        check_number(Comma, "1 234 567,25", Ok(1_234_567.25));
        check_number(Comma, "1\u{a0}234", Ok(1234.0));
        check_number(Comma, "+7", Ok(7.0));
        check_number(Comma, "0,001", Ok(0.001));
        check_number(Comma, "1.23", Err("not a number with a decimal comma"));
        check_number(Comma, "1.2345,6", Err("decimal comma"));
        check_number(Comma, "1,2,3", Err("decimal comma"));
        check_number(Comma, ",5", Err("decimal comma"));
        check_number(Comma, "5,", Err("decimal comma"));
        check_number(Comma, "-", Err("decimal comma"));
        check_number(Comma, "NaN", Err("decimal comma"));
        check_number(CommaForSemicolon, "12.5", Err("pass --decimal-point"));
    }

    fn check_date(format: Option<&str>, cell: &str, expect: Result<&str, &str>) {
        let dialect = Dialect {
            decimal: DecimalSeparator::Point,
            date_format: format.map(|f| DateFormat::new(f).unwrap()),
        };
        let got = dialect
            .timestamp(cell)
            .map(mittari_sdk::time::format_timestamp);
        match (got, expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{cell}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{cell}: {got} lacks {want}"),
            (got, want) => panic!("{cell}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn dates_in_iso_and_in_the_given_format() {
        check_date(None, "2024-12-31", Ok("2024-12-31"));
        check_date(None, "31.12.2024", Err("pass --date-format %d.%m.%Y"));
        check_date(None, "12/31/2024", Err("%m/%d/%Y"));
        check_date(Some("%d.%m.%Y"), "31.12.2024", Ok("2024-12-31"));
        check_date(Some("%d.%m.%Y"), "1.2.2024", Ok("2024-02-01"));
        check_date(
            Some("%d.%m.%Y"),
            "2024-12-31",
            Err("does not match the date format"),
        );
        check_date(Some("%d.%m.%Y"), "31.02.2024", Err("does not match"));
        check_date(
            Some("%d.%m.%Y %H:%M"),
            "31.12.2024 23:59",
            Ok("2024-12-31T23:59:00Z"),
        );
        check_date(
            Some("%Y-%m-%d %H:%M:%S%z"),
            "2024-03-31 03:30:00+0300",
            Ok("2024-03-31T00:30:00Z"),
        );
        assert!(DateFormat::new("%d.%m.%Q").is_err());
        assert!(DateFormat::new("%d.%m").unwrap_err().contains("no year"));
    }
}
