//! Reads a CSV file into an Arrow batch, typing each column by the metric's descriptor.
//!
//! Columns the metric declares are parsed as their declared type; group-by columns the metric
//! does not declare are int64 when every cell is an integer, string otherwise; other columns are
//! not sent. An empty cell is null. A bad cell is an error naming the file, line and column.
//!
//! Reading is often the largest part of a whole `compute` on a big file, so a file without a
//! single quote character, whose records are then exactly its lines, is cut at line ends and
//! its pieces parsed in parallel. A file with quotes is parsed in one piece, because a quoted
//! cell may hold a line end.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, RecordBatchOptions, StringArray};
use arrow_schema::{Field, Schema};
use mittari_engine::{DataType, MetricDescriptor, ParamValue};
use rayon::prelude::*;

/// A CSV file as a batch, with the file line of every row for error messages.
#[derive(Debug)]
pub(crate) struct CsvInput {
    pub(crate) batch: RecordBatch,
    /// `lines[row]` is the 1-based line of the file that row came from.
    pub(crate) lines: Vec<u64>,
}

pub(crate) fn read(
    path: &Path,
    descriptor: &MetricDescriptor,
    group_by: &[String],
) -> anyhow::Result<CsvInput> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open input file {}", path.display()))?;
    read_from(file, &path.display().to_string(), descriptor, group_by)
}

/// A column of the file that is sent: its position in a record, name and type.
struct Column {
    index: usize,
    name: String,
    data_type: DataType,
    /// A group-by column the metric does not declare, read as strings and typed afterwards.
    inferred: bool,
}

/// Pieces smaller than this are not worth a thread.
const MIN_PIECE_BYTES: usize = 1 << 20;
/// The header line must end within this many bytes.
const MAX_HEADER_BYTES: usize = 1 << 20;
/// The file is read in blocks of this size, each checked before the next is read.
const READ_BLOCK_BYTES: usize = 8 << 20;

/// Reads the whole input, block by block, refusing what is not CSV text as soon as it shows:
/// a NUL byte (a binary file, or `/dev/zero`, which would otherwise fill the memory), or a first
/// line that does not end within [`MAX_HEADER_BYTES`].
fn read_text(mut reader: impl Read, source: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut header_ends = false;
    loop {
        let start = bytes.len();
        bytes.resize(start + READ_BLOCK_BYTES, 0);
        let read = loop {
            match reader.read(&mut bytes[start..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                result => break result,
            }
        }
        .with_context(|| format!("{source}: cannot read the file"))?;
        bytes.truncate(start + read);
        if read == 0 {
            return Ok(bytes);
        }
        let block = &bytes[start..];
        if let Some(at) = block.iter().position(|&b| b == 0) {
            let offset = start + at;
            let line = 1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count();
            bail!(
                "{source}: line {line}: a NUL byte at byte {offset}; this is not a CSV text file"
            );
        }
        header_ends = header_ends || block.contains(&b'\n');
        if !header_ends && bytes.len() > MAX_HEADER_BYTES {
            bail!(
                "{source}: line 1: the header line is longer than {MAX_HEADER_BYTES} bytes; this is not a CSV file with a header line"
            );
        }
    }
}

/// The line where a quoted cell opens that never closes, if any: the csv parser would
/// otherwise read the rest of the file as that one cell and silently lose its rows. Follows
/// the parser's rules: a quote quotes only at the start of a cell, `""` inside a quoted cell is
/// a quote, and a quote elsewhere is text.
fn unclosed_quote(bytes: &[u8]) -> Option<u64> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        CellStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let (mut state, mut line, mut opened_at) = (State::CellStart, 1, 0);
    for &b in bytes {
        if b == b'\n' {
            line += 1;
        }
        state = match (state, b) {
            (State::CellStart, b'"') => {
                opened_at = line;
                State::Quoted
            }
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::Quoted, _) => State::Quoted,
            (State::QuoteInQuoted, b'"') => State::Quoted,
            (_, b',' | b'\n') => State::CellStart,
            _ => State::Unquoted,
        };
    }
    (state == State::Quoted).then_some(opened_at)
}

fn read_from(
    reader: impl Read,
    source: &str,
    descriptor: &MetricDescriptor,
    group_by: &[String],
) -> anyhow::Result<CsvInput> {
    let bytes = read_text(reader, source)?;
    if let Some(line) = unclosed_quote(&bytes) {
        bail!(
            "{source}: line {line}: a quote opens here and is never closed; close it, or double a quote inside a quoted cell (\"\")"
        );
    }
    let mut header_reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
    let headers = header_reader
        .headers()
        .with_context(|| format!("{source}: cannot read the header line"))?
        .clone();
    for (i, name) in headers.iter().enumerate() {
        if headers.iter().take(i).any(|h| h == name) {
            bail!("{source}: line 1: column {name} appears twice in the header");
        }
    }
    let mut columns = Vec::new();
    for (index, name) in headers.iter().enumerate() {
        if let Some(spec) = descriptor.input_column(name) {
            columns.push(Column {
                index,
                name: name.to_owned(),
                data_type: spec.data_type,
                inferred: false,
            });
        } else if group_by.iter().any(|g| g == name) {
            columns.push(Column {
                index,
                name: name.to_owned(),
                data_type: DataType::String,
                inferred: true,
            });
        }
    }
    let position = header_reader.position();
    let body = &bytes[(position.byte() as usize).min(bytes.len())..];
    let pieces = pieces(body, position.line());
    let shape = FileShape {
        source,
        columns: &columns,
        width: headers.len(),
    };
    let parsed: Vec<anyhow::Result<Parsed>> = pieces
        .into_par_iter()
        .map(|(piece, first_line)| shape.parse(piece, first_line))
        .collect();
    // The first bad line of the file, whichever piece it is in.
    let parsed = parsed
        .into_iter()
        .collect::<anyhow::Result<Vec<Parsed>>>()?;
    // The text is parsed: free it before the columns are assembled.
    drop(bytes);

    let lines: Vec<u64> = parsed
        .iter()
        .flat_map(|p| p.lines.iter().copied())
        .collect();
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (i, column) in columns.iter().enumerate() {
        let mut array = match parsed.as_slice() {
            [one] => Arc::clone(&one.arrays[i]),
            _ => {
                let parts: Vec<&dyn Array> = parsed.iter().map(|p| p.arrays[i].as_ref()).collect();
                arrow_select::concat::concat(&parts)
                    .with_context(|| format!("{source}: cannot assemble column {}", column.name))?
            }
        };
        if column.inferred {
            array = integers_if_all_are(array);
        }
        fields.push(Field::new(&column.name, array.data_type().clone(), true));
        arrays.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(lines.len()));
    let batch = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
        .with_context(|| format!("{source}: cannot assemble the table"))?;
    Ok(CsvInput { batch, lines })
}

/// Cuts the body of the file (after the header, which ends before line `first_line`) into
/// pieces of whole records, each with the file line it starts on: at line ends when the file
/// has no quotes, else one piece.
fn pieces(body: &[u8], first_line: u64) -> Vec<(&[u8], u64)> {
    let wanted = body.len() / MIN_PIECE_BYTES;
    if wanted < 2 || body.contains(&b'"') {
        return vec![(body, first_line)];
    }
    let count = wanted.min(4 * rayon::current_num_threads());
    let mut pieces = Vec::with_capacity(count);
    let mut start = 0;
    for i in 1..=count {
        let end = if i == count {
            body.len()
        } else {
            let target = (body.len() * i / count).max(start);
            body[target..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(body.len(), |at| target + at + 1)
        };
        if end > start {
            pieces.push(&body[start..end]);
        }
        start = end;
    }
    let newlines: Vec<u64> = pieces
        .par_iter()
        .map(|piece| piece.iter().filter(|&&b| b == b'\n').count() as u64)
        .collect();
    let mut line = first_line;
    pieces
        .into_iter()
        .zip(newlines)
        .map(|(piece, newlines)| {
            let starts_at = line;
            line += newlines;
            (piece, starts_at)
        })
        .collect()
}

/// What every piece's parser needs to know about the file.
struct FileShape<'a> {
    source: &'a str,
    columns: &'a [Column],
    /// Fields in the header: every record must have as many.
    width: usize,
}

/// A piece of the file, parsed: one array per sent column, and each row's file line.
struct Parsed {
    arrays: Vec<ArrayRef>,
    lines: Vec<u64>,
}

impl FileShape<'_> {
    fn parse(&self, piece: &[u8], first_line: u64) -> anyhow::Result<Parsed> {
        let source = self.source;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(piece);
        // A rough row count from the first line's length, to size the columns once.
        let estimate = piece
            .iter()
            .position(|&b| b == b'\n')
            .map_or(1, |len| piece.len() / (len + 1) + 1);
        let mut cells: Vec<Cells> = self
            .columns
            .iter()
            .map(|c| Cells::new(c.data_type, estimate))
            .collect();
        let mut lines = Vec::with_capacity(estimate);
        // One record, reused: a row costs no allocation.
        let mut record = csv::ByteRecord::new();
        loop {
            let more = reader.read_byte_record(&mut record).map_err(|e| {
                let line = e
                    .position()
                    .map_or(first_line, |p| first_line + p.line() - 1);
                anyhow::anyhow!("{source}: line {line}: cannot read the file as CSV: {e}")
            })?;
            if !more {
                break;
            }
            let line = first_line + record.position().map_or(0, |p| p.line() - 1);
            if record.len() != self.width {
                bail!(
                    "{source}: line {line}: {} cells, but the header names {} columns; give every row one cell per column",
                    record.len(),
                    self.width
                );
            }
            lines.push(line);
            for (column, cells) in self.columns.iter().zip(&mut cells) {
                let cell = record.get(column.index).unwrap_or_default();
                let cell = std::str::from_utf8(cell)
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "{source}: line {line}: column {}: the cell is not UTF-8 text",
                            column.name
                        )
                    })?
                    .trim();
                cells
                    .push((!cell.is_empty()).then_some(cell))
                    .map_err(|why| {
                        anyhow::anyhow!("{source}: line {line}: column {}: {why}", column.name)
                    })?;
            }
        }
        Ok(Parsed {
            arrays: cells.into_iter().map(Cells::finish).collect(),
            lines,
        })
    }
}

/// A column's cells, parsed as its type while the file is read.
enum Cells {
    Int64(Int64Builder),
    Double(Float64Builder),
    String(StringBuilder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Cells {
    fn new(data_type: DataType, rows: usize) -> Cells {
        match data_type {
            DataType::Int64 => Cells::Int64(Int64Builder::with_capacity(rows)),
            DataType::Double => Cells::Double(Float64Builder::with_capacity(rows)),
            DataType::String => Cells::String(StringBuilder::with_capacity(rows, rows * 8)),
            DataType::Bool => Cells::Bool(BooleanBuilder::with_capacity(rows)),
            DataType::Timestamp => {
                Cells::Timestamp(TimestampMicrosecondBuilder::with_capacity(rows))
            }
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            Cells::Int64(_) => DataType::Int64,
            Cells::Double(_) => DataType::Double,
            Cells::String(_) => DataType::String,
            Cells::Bool(_) => DataType::Bool,
            Cells::Timestamp(_) => DataType::Timestamp,
        }
    }

    /// Appends a cell (`None` when empty), parsed as the column's type.
    fn push(&mut self, cell: Option<&str>) -> Result<(), String> {
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
        if let Cells::String(b) = self {
            b.append_value(cell);
            return Ok(());
        }
        let value = ParamValue::parse(cell, self.data_type())?;
        match (self, value) {
            (Cells::Int64(b), ParamValue::Int64(x)) => b.append_value(x),
            (Cells::Timestamp(b), ParamValue::Timestamp(x)) => b.append_value(x),
            (Cells::Double(b), ParamValue::Double(x)) => b.append_value(x),
            (Cells::Bool(b), ParamValue::Bool(x)) => b.append_value(x),
            (cells, value) => {
                return Err(format!(
                    "parsed {value} as {}, not {}; this is a bug",
                    value.data_type(),
                    cells.data_type()
                ));
            }
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Cells::Int64(mut b) => Arc::new(b.finish()),
            Cells::Double(mut b) => Arc::new(b.finish()),
            Cells::String(mut b) => Arc::new(b.finish()),
            Cells::Bool(mut b) => Arc::new(b.finish()),
            Cells::Timestamp(mut b) => Arc::new(b.finish().with_timezone("UTC")),
        }
    }
}

/// A group-by column the metric does not declare: int64 when every cell is an integer.
fn integers_if_all_are(array: ArrayRef) -> ArrayRef {
    let Some(strings) = array.as_any().downcast_ref::<StringArray>() else {
        return array;
    };
    let integers: Option<Int64Array> = strings
        .iter()
        .map(|cell| match cell {
            Some(cell) => cell.parse::<i64>().ok().map(Some),
            None => Some(None),
        })
        .collect::<Option<Vec<Option<i64>>>>()
        .map(Int64Array::from);
    match integers {
        Some(integers) => Arc::new(integers),
        None => array,
    }
}

#[cfg(test)]
mod tests {
    use mittari_engine::ColumnSpec;

    use super::*;

    fn descriptor() -> MetricDescriptor {
        MetricDescriptor::new("m", "1", "test")
            .input(ColumnSpec::int64("score", "").required())
            .input(ColumnSpec::timestamp("at", ""))
    }

    fn check(csv: &str, group_by: &[&str], expect: Result<&[(&str, DataType, usize)], &str>) {
        let group_by: Vec<String> = group_by.iter().map(|s| (*s).to_owned()).collect();
        match (
            read_from(csv.as_bytes(), "in.csv", &descriptor(), &group_by),
            expect,
        ) {
            (Ok(input), Ok(columns)) => {
                let got: Vec<(String, arrow_schema::DataType, usize)> = input
                    .batch
                    .schema()
                    .fields()
                    .iter()
                    .zip(input.batch.columns())
                    .map(|(f, c)| (f.name().clone(), f.data_type().clone(), c.null_count()))
                    .collect();
                let want: Vec<(String, arrow_schema::DataType, usize)> = columns
                    .iter()
                    .map(|(n, t, nulls)| ((*n).to_owned(), t.arrow_type(), *nulls))
                    .collect();
                assert_eq!(got, want);
            }
            (Err(error), Err(expect)) => {
                assert!(error.to_string().contains(expect), "{error} lacks {expect}")
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn types_columns_by_descriptor_and_group_by() {
        check(
            "score,region,year,note,at\n9,fi,2024,x,2024-01-31\n,se,2023,y,\n",
            &["region", "year"],
            Ok(&[
                ("score", DataType::Int64, 1),
                ("region", DataType::String, 0),
                ("year", DataType::Int64, 0),
                ("at", DataType::Timestamp, 1),
            ]),
        );
        check(
            "score\n9\nten\n",
            &[],
            Err("in.csv: line 3: column score: \"ten\" is not an integer"),
        );
        check(
            "score,at\n9,31.1.2024\n",
            &[],
            Err("in.csv: line 2: column at:"),
        );
        check("score,score\n1,2\n", &[], Err("column score appears twice"));
        check(
            "score,at\n9\n",
            &[],
            Err("in.csv: line 2: 1 cells, but the header names 2 columns"),
        );
        check(
            "score,at\n9,\"2024-01-31\"\n\"1\n0\",\n",
            &[],
            Err("in.csv: line 3: column score: \"1\\n0\" is not an integer"),
        );
        // A quote left open would swallow the rest of the file into one cell.
        check(
            "score,region\n10,\"north\n9,south\n8,east\n",
            &["region"],
            Err("in.csv: line 2: a quote opens here and is never closed"),
        );
        // Quotes that close, doubled quotes inside a quoted cell and a quote inside an
        // unquoted cell are all fine.
        check(
            "score,region\n10,\"a \"\"b\"\" c\"\n9,12\" pizza\n",
            &["region"],
            Ok(&[
                ("score", DataType::Int64, 0),
                ("region", DataType::String, 0),
            ]),
        );
        // Binary data is refused at its first NUL byte, before the rest is read.
        check(
            "score\n1\n\0\0\0",
            &[],
            Err("in.csv: line 3: a NUL byte at byte 8"),
        );
    }

    #[test]
    fn an_endless_input_is_refused_early() {
        let endless = std::io::repeat(b'x');
        let error = read_from(endless, "/dev/x", &descriptor(), &[]).unwrap_err();
        assert!(
            error.to_string().contains("the header line is longer than"),
            "{error}"
        );
        let zeros = std::io::repeat(0);
        let error = read_from(zeros, "/dev/zero", &descriptor(), &[]).unwrap_err();
        assert!(error.to_string().contains("NUL byte at byte 0"), "{error}");
    }

    /// A file big enough to be cut into pieces parses to the same rows, in order, with the
    /// same lines as one read in one piece, and a bad cell deep in it names its own line.
    #[test]
    fn pieces_of_a_big_file_read_as_one() {
        let rows = 300_000;
        let mut csv = String::from("score,note,at\n");
        for i in 0..rows {
            csv.push_str(&format!("{i},n{i},2024-01-{:02}\n", 1 + i % 28));
        }
        assert!(pieces(csv.as_bytes(), 2).len() > 1);
        let input = read_from(csv.as_bytes(), "in.csv", &descriptor(), &[]).unwrap();
        let scores = input
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(scores.len(), rows);
        assert!(
            scores
                .values()
                .iter()
                .enumerate()
                .all(|(i, &v)| v == i as i64)
        );
        assert!(
            input
                .lines
                .iter()
                .enumerate()
                .all(|(i, &l)| l == i as u64 + 2)
        );

        let bad_row = rows - 12_345;
        let bad = csv.replacen(&format!("\n{bad_row},"), "\nten,", 1);
        let error = read_from(bad.as_bytes(), "in.csv", &descriptor(), &[]).unwrap_err();
        let line = bad_row + 2;
        assert!(
            error
                .to_string()
                .starts_with(&format!("in.csv: line {line}: column score: \"ten\"")),
            "{error}"
        );
    }
}
