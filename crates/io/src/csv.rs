//! CSV in any locale, read into an Arrow batch typed by the metric's descriptor.
//!
//! The dialect comes from the file: the delimiter (`,` `;` tab or `|`) is the one the header
//! line uses most, a `;` file has a decimal comma (`12,50`, `1.234,50`) as spreadsheets in
//! comma locales write it, a UTF-8 byte order mark is skipped and CRLF line ends are line ends.
//! Options override each: the delimiter, the decimal separator and the date format.
//!
//! Columns the metric declares are parsed as their declared type; group-by columns the metric
//! does not declare are int64 when every cell is an integer, string otherwise; other columns are
//! not read. An empty cell is null. A bad cell is an error naming the file, line and column.
//!
//! The file is read in blocks of whole records (about 32 MiB of text at a time, quotes
//! followed across blocks), so its text is never held whole: what stays is the Arrow columns,
//! grown block by block. Reading is often the largest part of a whole `compute` on a big file,
//! so a block without a single quote character, whose records are then exactly its lines, is
//! cut at line ends and its pieces parsed in parallel; a block with quotes is parsed in one
//! piece, because a quoted cell may hold a line end.
//!
//! What is not CSV text is refused as soon as it shows (a NUL byte, a header line or a record
//! that never ends, a quote that is never closed), so `/dev/zero` or a binary file ends with a
//! clear error instead of filling the memory.

use std::io::Read;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, RecordBatchOptions, StringArray};
use arrow_schema::{Field, Schema};
use mittari_sdk::{DataType, MetricDescriptor};
use rayon::prelude::*;

use crate::cells::{Cells, DateFormat, DecimalSeparator, Dialect};
use crate::columns::{ColumnMapping, select};
use crate::error::{Location, ReadError};
use crate::{Chunk, Origins, Table};

/// How a CSV input is read; `None` is "from the file".
#[derive(Debug, Clone, Default)]
pub(crate) struct CsvOptions<'a> {
    pub(crate) delimiter: Option<u8>,
    pub(crate) decimal: Option<DecimalSeparator>,
    pub(crate) date_format: Option<&'a DateFormat>,
    pub(crate) mappings: &'a [ColumnMapping],
    /// (parameter, column) for the columns the request's parameters name.
    pub(crate) named: &'a [(String, String)],
}

/// The delimiters a header line is searched for, in the order that breaks a tie.
pub(crate) const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// A column of the file that is read: its position in a record, name and type.
struct Column {
    index: usize,
    name: String,
    data_type: DataType,
    /// A group-by column the metric does not declare, read as strings and typed afterwards.
    inferred: bool,
    /// A column a parameter names (a covariate): numbers in the file's dialect become numbers.
    named: bool,
}

/// Pieces smaller than this are not worth a thread.
#[cfg(not(test))]
const MIN_PIECE_BYTES: usize = 1 << 20;
/// Small pieces in tests, so that the tests' blocks are cut into pieces too.
#[cfg(test)]
const MIN_PIECE_BYTES: usize = 512;
/// The header line must end within this many bytes.
const MAX_HEADER_BYTES: usize = 1 << 20;
/// The file is read and parsed in blocks of about this size: the text in memory at once.
#[cfg(not(test))]
const BLOCK_BYTES: usize = 32 << 20;
/// Small blocks in tests, so that every test file crosses block boundaries.
#[cfg(test)]
const BLOCK_BYTES: usize = 4096;
/// A single record may not be longer than this (a quote left open would otherwise grow one
/// record over the whole file).
const MAX_RECORD_BYTES: usize = 64 << 20;
const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// Cuts a byte stream into blocks of whole records, following quotes across blocks, and
/// refuses what is not CSV text as soon as it shows: a NUL byte (a binary file, or
/// `/dev/zero`), a header line that does not end within [`MAX_HEADER_BYTES`], a record longer
/// than [`MAX_RECORD_BYTES`], and a quote that opens a cell and never closes.
struct Blocks<R> {
    reader: R,
    source: String,
    /// Known once the header line has been read; bytes are scanned for quotes from then on.
    delimiter: Option<u8>,
    /// Bytes read and not yet handed out: the start of an unfinished record.
    pending: Vec<u8>,
    /// Where the quote scan of `pending` stopped, and the state there.
    scanned: usize,
    quotes: Quotes,
    /// End of the last whole record in `pending`, and the line after it.
    boundary: usize,
    boundary_line: u64,
    /// End of the first record of the input (the header), and the line after it.
    header_end: Option<(usize, u64)>,
    /// The file line `pending` starts on, and bytes handed out (or skipped) before it.
    first_line: u64,
    consumed: u64,
    /// Bytes of a byte order mark skipped at the start (0 or 3): `consumed` is this until the
    /// first block is handed out.
    bom_bytes: u64,
    /// A block handed out before and given back ([`Blocks::recycle`]): the next block's
    /// buffer, so reading a large file does not map and fault in fresh memory per block.
    spare: Vec<u8>,
    /// Record starts in `pending` about [`MIN_PIECE_BYTES`] apart, found by the quote scan of
    /// text with quotes: where such a block can be cut into pieces parsed in parallel.
    cuts: Vec<usize>,
    done: bool,
}

/// Whole records of the input: their bytes, the file line they start on, and record starts
/// within them where they may be cut (found for text with quotes).
struct Block {
    bytes: Vec<u8>,
    first_line: u64,
    cuts: Vec<usize>,
}

/// What takes each block's pieces, parsed, in file order.
type PartsSink<'s> = dyn FnMut(&[Column], Vec<Parsed>) -> Result<(), ReadError> + 's;

/// The csv parser's quoting, byte by byte: a quote quotes only at the start of a cell, `""`
/// inside a quoted cell is a quote, and a quote elsewhere is text.
#[derive(Debug, Clone, Copy)]
struct Quotes {
    state: QuoteState,
    line: u64,
    opened_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum QuoteState {
    CellStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

impl<R: Read> Blocks<R> {
    fn new(reader: R, source: &str) -> Self {
        Blocks {
            reader,
            source: source.to_owned(),
            delimiter: None,
            pending: Vec::new(),
            scanned: 0,
            quotes: Quotes {
                state: QuoteState::CellStart,
                line: 1,
                opened_at: 0,
            },
            boundary: 0,
            boundary_line: 1,
            header_end: None,
            first_line: 1,
            consumed: 0,
            bom_bytes: 0,
            spare: Vec::new(),
            cuts: Vec::new(),
            done: false,
        }
    }

    /// Reads at most `BLOCK_BYTES` more; false at the end of the input.
    fn fill(&mut self) -> Result<bool, ReadError> {
        let start = self.pending.len();
        // Read into the reserved capacity as it is: zeroing 32 MB first cost more than reading
        // a small file (a file reads into uninitialized memory; other readers have theirs
        // zeroed once per call by `read_to_end`).
        self.pending.reserve(BLOCK_BYTES);
        let read = (&mut self.reader)
            .take(BLOCK_BYTES as u64)
            .read_to_end(&mut self.pending)
            .map_err(|e| ReadError::io(&self.source, "cannot read the file", e))?;
        if let Some(at) = memchr::memchr(0, &self.pending[start..]) {
            let line = self.quotes.line + count_newlines(&self.pending[self.scanned..start + at]);
            let offset = self.consumed + (start + at) as u64;
            return Err(ReadError::at(
                &self.source,
                Location::Line(line),
                format!("a NUL byte at byte {offset}; this is not a CSV text file"),
            ));
        }
        if self.delimiter.is_some() {
            self.scan();
        }
        Ok(read > 0)
    }

    /// Follows quotes over the bytes read since the last scan, finding record ends.
    fn scan(&mut self) {
        let delimiter = self.delimiter.unwrap_or(b',');
        let at_start = self.consumed == self.bom_bytes;
        let new = &self.pending[self.scanned..];
        let quoting = matches!(
            self.quotes.state,
            QuoteState::Quoted | QuoteState::QuoteInQuoted
        );
        if !quoting && !new.contains(&b'"') {
            // No quotes: records end at line ends, and the scan is a count of them.
            let q = &mut self.quotes;
            let start_line = q.line;
            q.line += count_newlines(new);
            if let Some(last) = memchr::memrchr(b'\n', new) {
                self.boundary = self.scanned + last + 1;
                self.boundary_line = q.line;
                if self.header_end.is_none() && at_start {
                    let first = new.iter().position(|&b| b == b'\n').unwrap_or(last);
                    self.header_end = Some((self.scanned + first + 1, start_line + 1));
                }
            }
            // Every line end here ends a record: note some, for cutting a block that also
            // holds quotes elsewhere.
            let mut next = self.cuts.last().copied().unwrap_or(0) + MIN_PIECE_BYTES;
            while next < self.pending.len() {
                let from = next.max(self.scanned);
                match self.pending[from..].iter().position(|&b| b == b'\n') {
                    Some(at) => {
                        self.cuts.push(from + at + 1);
                        next = from + at + 1 + MIN_PIECE_BYTES;
                    }
                    None => break,
                }
            }
            let new = &self.pending[self.scanned..];
            if let Some(&last) = new.last() {
                q.state = if last == b'\n' || last == delimiter {
                    QuoteState::CellStart
                } else {
                    QuoteState::Unquoted
                };
            }
            self.scanned = self.pending.len();
            return;
        }
        for (i, &b) in self.pending[self.scanned..].iter().enumerate() {
            let q = &mut self.quotes;
            if b == b'\n' {
                q.line += 1;
            }
            q.state = match (q.state, b) {
                (QuoteState::CellStart, b'"') => {
                    q.opened_at = q.line;
                    QuoteState::Quoted
                }
                (QuoteState::Quoted, b'"') => QuoteState::QuoteInQuoted,
                (QuoteState::Quoted, _) => QuoteState::Quoted,
                (QuoteState::QuoteInQuoted, b'"') => QuoteState::Quoted,
                (_, b'\n') => QuoteState::CellStart,
                (_, b) if b == delimiter => QuoteState::CellStart,
                _ => QuoteState::Unquoted,
            };
            if b == b'\n' && q.state == QuoteState::CellStart {
                self.boundary = self.scanned + i + 1;
                self.boundary_line = q.line;
                if self.boundary - self.cuts.last().copied().unwrap_or(0) >= MIN_PIECE_BYTES {
                    self.cuts.push(self.boundary);
                }
                if self.header_end.is_none() && at_start {
                    self.header_end = Some((self.boundary, q.line));
                }
            }
        }
        self.scanned = self.pending.len();
    }

    /// Reads up to the end of the header line, skipping a byte order mark, and settles the
    /// delimiter: the one given, or the one the header line uses most.
    fn header(&mut self, delimiter: Option<u8>) -> Result<u8, ReadError> {
        while !self.done && !self.pending.contains(&b'\n') {
            if self.pending.len() > MAX_HEADER_BYTES {
                return Err(ReadError::at(
                    &self.source,
                    Location::Line(1),
                    format!(
                        "the header line is longer than {MAX_HEADER_BYTES} bytes; this is not a CSV file with a header line"
                    ),
                ));
            }
            self.done = !self.fill()?;
        }
        if self.pending.starts_with(BYTE_ORDER_MARK) {
            self.pending.drain(..BYTE_ORDER_MARK.len());
            self.bom_bytes = BYTE_ORDER_MARK.len() as u64;
            self.consumed = self.bom_bytes;
        }
        let first_line = self
            .pending
            .split(|&b| b == b'\n')
            .next()
            .unwrap_or_default();
        let delimiter = delimiter.unwrap_or_else(|| detect_delimiter(first_line));
        self.delimiter = Some(delimiter);
        self.scan();
        // A quoted header cell may hold a line end: read on to the header record's end.
        while self.header_end.is_none() && !self.done {
            if self.pending.len() > MAX_HEADER_BYTES {
                return Err(ReadError::at(
                    &self.source,
                    Location::Line(1),
                    format!("the header record is longer than {MAX_HEADER_BYTES} bytes"),
                ));
            }
            self.done = !self.fill()?;
        }
        Ok(delimiter)
    }

    /// Takes back a block's buffer for a later block.
    fn recycle(&mut self, block: Vec<u8>) {
        if block.capacity() > self.spare.capacity() {
            self.spare = block;
        }
    }

    /// The next block of whole records, the file line it starts on, and record starts within
    /// it where it may be cut (for text with quotes); `None` at the end.
    fn next_block(&mut self) -> Result<Option<Block>, ReadError> {
        while !self.done && self.boundary < BLOCK_BYTES {
            if self.pending.len() - self.boundary > MAX_RECORD_BYTES {
                return Err(ReadError::at(
                    &self.source,
                    Location::Line(self.boundary_line),
                    format!("a record longer than {MAX_RECORD_BYTES} bytes; is a quote left open?"),
                ));
            }
            self.done = !self.fill()?;
        }
        if self.done {
            if self.quotes.state == QuoteState::Quoted {
                return Err(ReadError::at(
                    &self.source,
                    Location::Line(self.quotes.opened_at),
                    "a quote opens here and is never closed; close it, or double a quote inside a quoted cell (\"\")",
                ));
            }
            // The last record may lack a line end.
            self.boundary = self.pending.len();
            self.boundary_line = self.quotes.line;
        }
        if self.boundary == 0 {
            return Ok(None);
        }
        let mut rest = std::mem::take(&mut self.spare);
        rest.clear();
        rest.extend_from_slice(&self.pending[self.boundary..]);
        self.pending.truncate(self.boundary);
        let block = std::mem::replace(&mut self.pending, rest);
        let first_line = self.first_line;
        self.consumed += block.len() as u64;
        self.first_line = self.boundary_line;
        self.scanned -= self.boundary;
        let later = self.cuts.partition_point(|&cut| cut < self.boundary);
        let mut cuts: Vec<usize> = self.cuts.drain(..later).collect();
        cuts.retain(|&cut| cut > 0);
        for cut in &mut self.cuts {
            *cut -= self.boundary;
        }
        self.boundary = 0;
        Ok(Some(Block {
            bytes: block,
            first_line,
            cuts,
        }))
    }
}

/// The delimiter a header line uses most, outside quotes; `,` for a one-column file.
fn detect_delimiter(line: &[u8]) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for &b in line {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(i) = DELIMITERS.iter().position(|&d| d == b) {
            counts[i] += 1;
        }
    }
    let mut best = 0;
    for i in 1..DELIMITERS.len() {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    DELIMITERS[best]
}

/// Reads CSV text into a table of the columns `descriptor` declares and `group_by` names.
/// The column names of a CSV input's header line.
pub(crate) fn header_names(
    reader: impl Read,
    source: &str,
    delimiter: Option<u8>,
) -> Result<Vec<String>, ReadError> {
    let mut blocks = Blocks::new(reader, source);
    Ok(header_of(&mut blocks, delimiter)?.1)
}

/// Reads the header record: the delimiter, the column names, where the header ends in
/// `blocks.pending` and the body's first line.
fn header_of<R: Read>(
    blocks: &mut Blocks<R>,
    delimiter: Option<u8>,
) -> Result<(u8, Vec<String>, usize, u64), ReadError> {
    let delimiter = blocks.header(delimiter)?;
    // The header is the first record; the body starts on the line after it.
    let (header_end, body_line) = blocks
        .header_end
        .unwrap_or((blocks.pending.len(), blocks.quotes.line + 1));
    let mut header_reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .trim(csv::Trim::All)
        .from_reader(&blocks.pending[..header_end]);
    let headers: Vec<String> = header_reader
        .headers()
        .map_err(|e| {
            ReadError::at(
                &blocks.source,
                Location::Line(1),
                format!("cannot read the header line: {e}"),
            )
        })?
        .iter()
        .map(str::to_owned)
        .collect();
    Ok((delimiter, headers, header_end, body_line))
}

pub(crate) fn read(
    reader: impl Read,
    source: &str,
    descriptor: &MetricDescriptor,
    group_by: &[String],
    options: &CsvOptions<'_>,
) -> Result<Table, ReadError> {
    let mut cells: Option<Vec<Cells>> = None;
    let mut lines: Vec<u64> = Vec::new();
    let (columns, dialect) = parse_blocks(
        reader,
        source,
        descriptor,
        group_by,
        options,
        &mut |columns, parts| {
            let cells = cells.get_or_insert_with(|| {
                columns.iter().map(|c| Cells::new(c.data_type, 0)).collect()
            });
            for part in parts {
                for ((cells, array), column) in cells.iter_mut().zip(&part.arrays).zip(columns) {
                    cells.append(array).map_err(|why| {
                        ReadError::input(source, format!("column {}: {why}", column.name))
                    })?;
                }
                lines.extend_from_slice(&part.lines);
            }
            Ok(())
        },
    )?;
    let cells =
        cells.unwrap_or_else(|| columns.iter().map(|c| Cells::new(c.data_type, 0)).collect());
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (column, cells) in columns.iter().zip(cells) {
        let mut array = cells.finish();
        if column.inferred {
            array = integers_if_all_are(array);
        }
        if column.named {
            array = numbers_if_all_are(array, &dialect);
        }
        fields.push(Field::new(&column.name, array.data_type().clone(), true));
        arrays.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(lines.len()));
    let batch = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
        .map_err(|e| ReadError::input(source, format!("cannot assemble the table: {e}")))?;
    Ok(Table {
        batch,
        origins: Origins::Lines(lines),
    })
}

/// Reads CSV text a block at a time (about 32 MiB of text), handing `sink` each block's rows
/// as a batch of the columns `descriptor` declares, typed as [`read`] types them, with each
/// row's line: the text and its rows are never held whole.
pub(crate) fn read_chunks(
    reader: impl Read,
    source: &str,
    descriptor: &MetricDescriptor,
    options: &CsvOptions<'_>,
    sink: &mut dyn FnMut(Chunk) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let mut first_row = 1u64;
    let (columns, _) = parse_blocks(
        reader,
        source,
        descriptor,
        &[],
        options,
        &mut |columns, parts| {
            let mut fields = Vec::with_capacity(columns.len());
            let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
            for (i, column) in columns.iter().enumerate() {
                let pieces: Vec<&dyn Array> = parts.iter().map(|p| p.arrays[i].as_ref()).collect();
                let array = arrow_select::concat::concat(&pieces).map_err(|e| {
                    ReadError::input(source, format!("column {}: {e}", column.name))
                })?;
                fields.push(Field::new(&column.name, array.data_type().clone(), true));
                arrays.push(array);
            }
            let lines: Vec<u64> = parts.iter().flat_map(|p| p.lines.iter().copied()).collect();
            let rows = lines.len();
            let options = RecordBatchOptions::new().with_row_count(Some(rows));
            let batch =
                RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
                    .map_err(|e| {
                        ReadError::input(source, format!("cannot assemble the rows: {e}"))
                    })?;
            let chunk = Chunk {
                batch,
                first_row,
                lines: Some(lines),
            };
            first_row += rows as u64;
            sink(chunk)
        },
    )?;
    if first_row == 1 {
        // No rows: one empty part, so that what reads it still sees the columns.
        let arrays: Vec<ArrayRef> = columns
            .iter()
            .map(|c| Cells::new(c.data_type, 0).finish())
            .collect();
        let fields: Vec<Field> = columns
            .iter()
            .zip(&arrays)
            .map(|(c, a)| Field::new(&c.name, a.data_type().clone(), true))
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(0));
        let batch =
            RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
                .map_err(|e| ReadError::input(source, format!("cannot assemble the rows: {e}")))?;
        sink(Chunk {
            batch,
            first_row,
            lines: Some(Vec::new()),
        })?;
    }
    Ok(())
}

/// The shared part of [`read`] and [`read_chunks`]: reads the header, then each block, whose
/// pieces are parsed in parallel and handed to `each` in file order. Returns the columns read
/// and the dialect of their cells.
fn parse_blocks(
    reader: impl Read,
    source: &str,
    descriptor: &MetricDescriptor,
    group_by: &[String],
    options: &CsvOptions<'_>,
    each: &mut PartsSink<'_>,
) -> Result<(Vec<Column>, Dialect), ReadError> {
    let mut blocks = Blocks::new(reader, source);
    let (delimiter, headers, header_end, body_line) = header_of(&mut blocks, options.delimiter)?;
    let columns: Vec<Column> = select(
        &headers,
        descriptor,
        group_by,
        options.mappings,
        options.named,
    )
    .map_err(|message| ReadError::input(source, message))?
    .into_iter()
    .map(|s| Column {
        // A declared column keeps its declared type, whatever names it.
        named: s.data_type.is_none() && options.named.iter().any(|(_, c)| *c == s.name),
        index: s.index,
        name: s.name,
        data_type: s.data_type.unwrap_or(DataType::String),
        inferred: s.data_type.is_none(),
    })
    .collect();
    let decimal = options.decimal.unwrap_or(if delimiter == b';' {
        DecimalSeparator::CommaForSemicolon
    } else {
        DecimalSeparator::Point
    });
    let shape = FileShape {
        source,
        columns: &columns,
        width: headers.len(),
        delimiter,
        dialect: Dialect {
            decimal,
            date_format: options.date_format.cloned(),
        },
    };
    let mut header_pending = true;
    while let Some(Block {
        bytes: block,
        first_line,
        mut cuts,
    }) = blocks.next_block()?
    {
        let (body, first_line) = if std::mem::take(&mut header_pending) {
            let skip = header_end.min(block.len());
            cuts.retain(|&cut| cut > skip);
            for cut in &mut cuts {
                *cut -= skip;
            }
            (&block[skip..], body_line)
        } else {
            (&block[..], first_line)
        };
        let parsed: Vec<Result<Parsed, ReadError>> = pieces(body, first_line, &cuts)
            .into_par_iter()
            .map(|(piece, first_line)| shape.parse(piece, first_line))
            .collect();
        // The first bad line of the block, whichever piece it is in.
        let parts = parsed
            .into_iter()
            .collect::<Result<Vec<Parsed>, ReadError>>()?;
        if parts.iter().any(|p| !p.lines.is_empty()) {
            each(&columns, parts)?;
        }
        blocks.recycle(block);
    }
    let dialect = shape.dialect;
    Ok((columns, dialect))
}

/// Cuts the body of the file (after the header, which ends before line `first_line`) into
/// pieces of whole records, each with the file line it starts on: at line ends when the block
/// has no quotes, else at `cuts`, the record starts the quote scan found (a quoted cell may
/// hold a line end).
fn pieces<'b>(body: &'b [u8], first_line: u64, cuts: &[usize]) -> Vec<(&'b [u8], u64)> {
    let wanted = body.len() / MIN_PIECE_BYTES;
    if wanted < 2 {
        return vec![(body, first_line)];
    }
    let count = wanted.min(4 * rayon::current_num_threads());
    let quoted = body.contains(&b'"');
    let mut pieces = Vec::with_capacity(count);
    let mut start = 0;
    for i in 1..=count {
        let target = (body.len() * i / count).max(start);
        let end = if i == count {
            body.len()
        } else if quoted {
            // The first record start at or after the target.
            cuts.get(cuts.partition_point(|&cut| cut < target))
                .copied()
                .unwrap_or(body.len())
        } else {
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
        .map(|piece| count_newlines(piece))
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
    delimiter: u8,
    dialect: Dialect,
}

/// A piece of the file, parsed: one array per read column, and each row's file line.
struct Parsed {
    arrays: Vec<ArrayRef>,
    lines: Vec<u64>,
}

/// The line a byte offset of a piece is on, for offsets that only grow: counts the line ends
/// between one call and the next, so a piece costs one pass whatever its records.
struct LineCounter<'a> {
    piece: &'a [u8],
    counted_to: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(piece: &'a [u8], first_line: u64) -> Self {
        LineCounter {
            piece,
            counted_to: 0,
            line: first_line,
        }
    }

    /// The line of the record that starts at `byte`. A record never starts with a line end:
    /// after a CRLF record the csv crate places the next one at the `\n` it has not read yet,
    /// which belongs to the line before.
    fn line_at(&mut self, byte: u64) -> u64 {
        let mut start = usize::try_from(byte)
            .unwrap_or(usize::MAX)
            .min(self.piece.len());
        if self.piece.get(start) == Some(&b'\n') {
            start += 1;
        }
        if start > self.counted_to {
            self.line += count_newlines(&self.piece[self.counted_to..start]);
            self.counted_to = start;
        }
        self.line
    }
}

impl FileShape<'_> {
    fn parse(&self, piece: &[u8], first_line: u64) -> Result<Parsed, ReadError> {
        let source = self.source;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(self.delimiter)
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
        // Lines are counted here from the records' byte offsets: the csv crate counts a CRLF
        // line end only when it reads the next record, so its line numbers run one low after
        // every CRLF line (each spreadsheet export).
        let mut lines_before = LineCounter::new(piece, first_line);
        loop {
            let more = reader.read_byte_record(&mut record).map_err(|e| {
                let line = e
                    .position()
                    .map_or(first_line, |p| lines_before.line_at(p.byte()));
                ReadError::at(
                    source,
                    Location::Line(line),
                    format!("cannot read the file as CSV: {e}"),
                )
            })?;
            if !more {
                break;
            }
            let line = record
                .position()
                .map_or(first_line, |p| lines_before.line_at(p.byte()));
            if record.len() != self.width {
                let delimiter = char::from(self.delimiter).escape_default();
                return Err(ReadError::at(
                    source,
                    Location::Line(line),
                    format!(
                        "{} cells, but the header names {} columns; give every row one cell per column (the delimiter is '{delimiter}')",
                        record.len(),
                        self.width
                    ),
                ));
            }
            lines.push(line);
            for (column, cells) in self.columns.iter().zip(&mut cells) {
                let cell = record.get(column.index).unwrap_or_default();
                let cell = std::str::from_utf8(cell)
                    .map_err(|_| {
                        ReadError::cell(
                            source,
                            Location::Line(line),
                            &column.name,
                            "the cell is not UTF-8 text; save the file as UTF-8",
                        )
                    })?
                    .trim();
                cells
                    .push((!cell.is_empty()).then_some(cell), &self.dialect)
                    .map_err(|why| {
                        ReadError::cell(source, Location::Line(line), &column.name, why)
                    })?;
            }
        }
        Ok(Parsed {
            arrays: cells.into_iter().map(Cells::finish).collect(),
            lines,
        })
    }
}

/// A group-by column the metric does not declare: int64 when every cell is an integer.
/// A text column as doubles where every cell is a number in the file's dialect (a covariate
/// such as 0.25, or 0,25 in a file with a decimal comma); otherwise as it is.
fn numbers_if_all_are(array: ArrayRef, dialect: &Dialect) -> ArrayRef {
    let Some(strings) = array.as_any().downcast_ref::<StringArray>() else {
        return array;
    };
    let numbers: Option<arrow_array::Float64Array> = strings
        .iter()
        .map(|cell| match cell {
            Some(cell) => dialect.number(cell).ok().map(Some),
            None => Some(None),
        })
        .collect::<Option<Vec<Option<f64>>>>()
        .map(arrow_array::Float64Array::from);
    match numbers {
        Some(numbers) => Arc::new(numbers),
        None => array,
    }
}

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

/// The line ends in `bytes`, counted by `memchr` (vector compares chosen for the processor at
/// run time: 25 GB/s here, where byte-wide lanes of our own came to 2.4 GB/s, the compiler
/// building their vectors a byte at a time, and were 5.6 % of a 100M-row run's CPU).
fn count_newlines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

#[cfg(test)]
mod tests {
    use mittari_sdk::ColumnSpec;

    use super::*;

    fn read_from(
        reader: impl Read,
        source: &str,
        descriptor: &MetricDescriptor,
        group_by: &[String],
    ) -> Result<Table, ReadError> {
        read(reader, source, descriptor, group_by, &CsvOptions::default())
    }

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
    fn line_ends_are_counted_at_every_length() {
        // Around the vector widths (16, 32, 64 bytes) and their multiples, and the tails.
        for len in [
            0_usize, 1, 15, 16, 31, 32, 63, 64, 65, 8159, 8160, 8161, 100_000,
        ] {
            let bytes: Vec<u8> = (0..len)
                .map(|i| if i % 3 == 0 { b'\n' } else { b'a' })
                .collect();
            assert_eq!(
                count_newlines(&bytes),
                len.div_ceil(3) as u64,
                "{len} bytes"
            );
        }
        // Every byte a line end, and none.
        assert_eq!(count_newlines(&[b'\n'; 3 * 8160 + 5]), 3 * 8160 + 5);
        assert_eq!(count_newlines(&[b'\r'; 1000]), 0);
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
        assert!(pieces(csv.as_bytes(), 2, &[]).len() > 1);
        let input = read_from(csv.as_bytes(), "in.csv", &descriptor(), &[]).unwrap();
        check_counting_scores(&input, rows);
        assert!(
            input
                .origins
                .lines()
                .unwrap()
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

    /// The first column holds 0, 1, … `rows - 1`: every row read, in order.
    fn check_counting_scores(input: &Table, rows: usize) {
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
    }

    /// Records cut by block boundaries, quoted cells holding line ends and quotes, all read as
    /// one file: every row, in order, with the right line, and a bad cell's own line.
    #[test]
    fn records_across_blocks_read_as_one() {
        let rows = 5_000;
        let mut csv = String::from("score,note\n");
        let mut line = 2;
        let mut lines = Vec::new();
        for i in 0..rows {
            lines.push(line);
            if i % 7 == 0 {
                csv.push_str(&format!("{i},\"two\nlines, \"\"quoted\"\"\"\n"));
                line += 2;
            } else {
                csv.push_str(&format!("{i},plain {i}\n"));
                line += 1;
            }
        }
        assert!(csv.len() > 10 * BLOCK_BYTES);
        let input = read_from(csv.as_bytes(), "in.csv", &descriptor(), &[]).unwrap();
        check_counting_scores(&input, rows);
        assert_eq!(input.origins.lines().unwrap(), lines);
        let bad = csv.replace("4321,plain 4321", "x4321,plain 4321");
        let error = read_from(bad.as_bytes(), "in.csv", &descriptor(), &[]).unwrap_err();
        let line = lines[4321];
        assert!(
            error
                .to_string()
                .contains(&format!("in.csv: line {line}: column score")),
            "{error}"
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Text that looks like the CSV users have: the descriptor's column names, other
        /// names, separators, quotes, decimal commas, dates and line ends in any order.
        fn csv_like() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just("score".to_owned()),
                Just("at".to_owned()),
                Just(",".to_owned()),
                Just(";".to_owned()),
                Just("\t".to_owned()),
                Just("\"".to_owned()),
                Just("\n".to_owned()),
                Just("\r\n".to_owned()),
                Just("31.12.2024".to_owned()),
                Just("2024-01-02T03:04:05Z".to_owned()),
                Just("1,5".to_owned()),
                "-?[0-9]{1,20}",
                ".{0,3}",
            ];
            proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat().into_bytes())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Arbitrary bytes: a typed table, or an error naming the file; never a panic.
            #[test]
            fn arbitrary_bytes_read_or_fail_clearly(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                if let Err(error) = read_from(bytes.as_slice(), "in.csv", &descriptor(), &[]) {
                    prop_assert!(format!("{error:#}").contains("in.csv"), "{error:#}");
                }
            }

            /// CSV-like text: every row read has the declared types, or the error names the
            /// file (and a line, when one is at fault).
            #[test]
            fn csv_like_text_reads_or_fails_clearly(bytes in csv_like()) {
                match read_from(bytes.as_slice(), "in.csv", &descriptor(), &[]) {
                    Ok(input) => {
                        let schema = input.batch.schema();
                        for field in schema.fields() {
                            let declared = descriptor()
                                .inputs
                                .iter()
                                .find(|c| c.name == *field.name())
                                .map(|c| c.data_type.arrow_type());
                            prop_assert_eq!(declared.as_ref(), Some(field.data_type()));
                        }
                        prop_assert_eq!(input.origins.lines().unwrap().len(), input.batch.num_rows());
                    }
                    Err(error) => {
                        prop_assert!(format!("{error:#}").contains("in.csv"), "{error:#}");
                    }
                }
            }
        }
    }
}
