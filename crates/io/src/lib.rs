//! Mittari's data formats: inputs read into Arrow batches typed for a metric, and result
//! tables written back.
//!
//! Data stays where users have it. A CSV file from a spreadsheet in a comma locale
//! (`customer_id;timestamp;amount` with `12,50` and `31.12.2024`), a Parquet file from a data
//! lake, an Arrow IPC file or stream from a pyarrow or polars service, and JSON Lines from a
//! log all read into the same typed batch, with the columns renamed to the metric's inputs
//! (`--column customer_id=asiakasnro`). Only the columns the metric declares (and the group-by
//! ones) are read, and they are converted to the declared types as they are read, so a wrong
//! cell is reported with its file, line or row, and column — never passed on as a null or NaN.
//!
//! The CLI and the server share these readers, so a file reads the same wherever it is sent.

mod cells;
mod chunked;
mod columnar;
mod columns;
mod csv;
mod error;
mod pg;
mod sql;
mod write;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use mittari_sdk::MetricDescriptor;

pub use cells::{DateFormat, DecimalSeparator};
pub use chunked::{ChunkedRead, KEEP_BYTES, LOG_COLUMNS, summarize_in_chunks};
pub use columns::ColumnMapping;
pub use error::{Location, ReadError};
pub use mittari_models::rfm::TimeUnit;
pub use pg::{
    PostgresQuery, is_local_database, is_pattern, is_postgres_url, postgres_client, redact_url,
};
pub use sql::{Relation, RfmPeriods, RfmQuery, SqlDialect, rfm_query};
pub use write::{OutputFormat, WriteError, write_batch};

/// The input formats, each known by its extension or named with `--input-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.csv`, `.tsv`, `.txt`: delimiter and decimal separator from the header line.
    Csv,
    /// `.parquet`, `.pq`.
    Parquet,
    /// `.arrow`, `.feather`, `.ipc`: an Arrow IPC file, or a stream under the same names.
    Arrow,
    /// `.arrows`: an Arrow IPC stream.
    ArrowStream,
    /// `.jsonl`, `.ndjson`, `.json`: one JSON object per line.
    JsonLines,
}

impl Format {
    /// The names `--input-format` takes.
    pub const NAMES: &'static str = "csv, parquet, arrow, arrows, jsonl";

    /// The format a path's extension names.
    pub fn from_path(path: &Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match extension.as_str() {
            "csv" | "tsv" | "txt" => Format::Csv,
            "parquet" | "pq" => Format::Parquet,
            "arrow" | "feather" | "ipc" => Format::Arrow,
            "arrows" => Format::ArrowStream,
            "jsonl" | "ndjson" | "json" => Format::JsonLines,
            _ => return None,
        })
    }

    /// The format of data that starts with `head`: Parquet, Arrow IPC file and stream have
    /// magic bytes, JSON Lines starts with `{`; anything else is taken for CSV.
    pub fn sniff(head: &[u8]) -> Format {
        let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
        if head.starts_with(b"PAR1") {
            Format::Parquet
        } else if head.starts_with(b"ARROW1") {
            Format::Arrow
        } else if head.starts_with(&[0xFF, 0xFF, 0xFF, 0xFF]) {
            Format::ArrowStream
        } else if head.trim_ascii_start().starts_with(b"{") {
            Format::JsonLines
        } else {
            Format::Csv
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(name: &str) -> Result<Format, String> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "csv" | "tsv" => Format::Csv,
            "parquet" => Format::Parquet,
            "arrow" | "ipc" | "feather" => Format::Arrow,
            "arrows" | "arrow-stream" => Format::ArrowStream,
            "jsonl" | "ndjson" | "json" => Format::JsonLines,
            _ => {
                return Err(format!(
                    "{name:?} is not an input format; use one of {}",
                    Format::NAMES
                ));
            }
        })
    }
}

/// How an input is read. `None` (and empty) means "from the input itself".
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// The format; by default from the extension, or from the first bytes.
    pub format: Option<Format>,
    /// The CSV delimiter; by default the one the header line uses most of `,` `;` tab `|`.
    pub delimiter: Option<u8>,
    /// The decimal separator of CSV and text numbers; by default a comma when the delimiter
    /// is `;`, else a point.
    pub decimal: Option<DecimalSeparator>,
    /// The format of dates and timestamps held as text; by default ISO 8601.
    pub date_format: Option<DateFormat>,
    /// Input columns under the metric's names.
    pub columns: Vec<ColumnMapping>,
    /// Columns the request's parameters name (`--param covariates=gender,channel`), as
    /// (parameter, column): read in their own type, like `group_by` columns.
    pub named_columns: Vec<(String, String)>,
}

/// Where an input comes from.
#[derive(Debug, Clone)]
pub enum Source<'a> {
    Path(&'a Path),
    Stdin,
    /// A PostgreSQL database (`postgres://…`) and what to read from it.
    Postgres {
        url: &'a str,
        query: PostgresQuery,
    },
}

impl Source<'_> {
    /// The name errors give the input.
    pub fn name(&self) -> String {
        match self {
            Source::Path(path) => path.display().to_string(),
            Source::Stdin => "standard input".to_owned(),
            Source::Postgres { url, .. } => redact_url(url),
        }
    }
}

/// An input read for a metric, with where each row came from.
#[derive(Debug)]
pub struct Table {
    pub batch: RecordBatch,
    pub origins: Origins,
}

/// Where a table's rows came from, for messages about a row.
#[derive(Debug)]
pub enum Origins {
    /// `lines[row]` is the 1-based line of a text file that row came from.
    Lines(Vec<u64>),
    /// Row `i` is row `i + 1` of the input.
    Rows,
    /// `rows[row]` is the 1-based row of the input that row came from (rows were dropped).
    Kept(Vec<u64>),
}

impl Origins {
    /// Where row `row` (0-based) of the table came from.
    pub fn of(&self, row: usize) -> Option<Location> {
        match self {
            Origins::Lines(lines) => lines.get(row).map(|&line| Location::Line(line)),
            Origins::Rows => Some(Location::Row(row as u64 + 1)),
            Origins::Kept(rows) => rows.get(row).map(|&row| Location::Row(row)),
        }
    }

    /// The lines of a text input.
    pub fn lines(&self) -> Option<&[u64]> {
        match self {
            Origins::Lines(lines) => Some(lines),
            Origins::Rows | Origins::Kept(_) => None,
        }
    }
}

/// Rows [`Table::without_empty_cells`] dropped: how many, and the first one's origin and
/// column.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub rows: usize,
    pub first: Option<(Location, String)>,
}

impl Table {
    /// The table without the rows that have an empty cell in any of `columns` (those it
    /// lacks are ignored), their origins kept in step, and what was dropped: `--on-missing
    /// skip`, for analyses where a row without a value can be left out.
    pub fn without_empty_cells(
        self,
        input: &str,
        columns: &[String],
    ) -> Result<(Table, Skipped), ReadError> {
        let batch = &self.batch;
        let checked: Vec<(&String, &arrow_array::ArrayRef)> = columns
            .iter()
            .filter_map(|name| Some((name, batch.column_by_name(name)?)))
            .filter(|(_, column)| column.null_count() > 0)
            .collect();
        if checked.is_empty() {
            return Ok((
                self,
                Skipped {
                    rows: 0,
                    first: None,
                },
            ));
        }
        let keep: Vec<bool> = (0..batch.num_rows())
            .map(|row| checked.iter().all(|(_, column)| column.is_valid(row)))
            .collect();
        let first = keep.iter().position(|kept| !kept).and_then(|row| {
            let (name, _) = checked.iter().find(|(_, column)| column.is_null(row))?;
            Some((self.origins.of(row)?, (*name).clone()))
        });
        let rows = keep.iter().filter(|kept| !**kept).count();
        let mask = arrow_array::BooleanArray::from(keep.clone());
        let filtered = arrow_select::filter::filter_record_batch(batch, &mask).map_err(|e| {
            ReadError::input(input, format!("cannot drop the rows with empty cells: {e}"))
        })?;
        let origins = match self.origins {
            Origins::Lines(lines) => Origins::Lines(
                lines
                    .into_iter()
                    .zip(&keep)
                    .filter_map(|(line, kept)| kept.then_some(line))
                    .collect(),
            ),
            // Row numbers of the input: kept as lines are, 1-based.
            Origins::Rows => Origins::Kept(
                keep.iter()
                    .enumerate()
                    .filter_map(|(row, kept)| kept.then_some(row as u64 + 1))
                    .collect(),
            ),
            Origins::Kept(rows) => Origins::Kept(
                rows.into_iter()
                    .zip(&keep)
                    .filter_map(|(row, kept)| kept.then_some(row))
                    .collect(),
            ),
        };
        Ok((
            Table {
                batch: filtered,
                origins,
            },
            Skipped { rows, first },
        ))
    }
}

/// Reads the file at `path` as the metric's table input `table` ([`MetricDescriptor::table_as_input`]):
/// its declared columns typed by the descriptor, and the columns the request's text
/// parameters (`params`, name and value) name in it. `main` gives the dialect (decimal
/// separator, date format) the input was read in; `columns` maps the file's names to the
/// table's. `Ok(None)` when the metric declares no such table.
pub fn read_table_input<'a>(
    path: &Path,
    descriptor: &MetricDescriptor,
    table: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    main: &ReadOptions,
    columns: Vec<ColumnMapping>,
) -> Result<Option<Table>, ReadError> {
    let Some(as_input) = descriptor.table_as_input(table) else {
        return Ok(None);
    };
    let mut named_columns: Vec<(String, String)> = Vec::new();
    for (parameter, value) in params {
        for column in descriptor.named_columns_in(Some(table), [(parameter, value)]) {
            if !named_columns.iter().any(|(_, c)| *c == column) {
                named_columns.push((parameter.to_owned(), column));
            }
        }
    }
    let options = ReadOptions {
        decimal: main.decimal,
        date_format: main.date_format.clone(),
        columns,
        named_columns,
        ..ReadOptions::default()
    };
    read(Source::Path(path), &as_input, &[], &options).map(Some)
}

/// Reads `source` into a table of the columns `descriptor` declares (as the declared types)
/// and the `group_by` columns, renamed by `options.columns`.
pub fn read(
    source: Source<'_>,
    descriptor: &MetricDescriptor,
    group_by: &[String],
    options: &ReadOptions,
) -> Result<Table, ReadError> {
    let name = source.name();
    match source {
        Source::Path(path) => {
            let format = path_format(path, options, &name)?;
            if format == Format::Parquet {
                let dialect = dialect(options);
                let wanted = wanted(&name, descriptor, group_by, options, &dialect);
                let batches = columnar::Batches::collect(|sink| {
                    columnar::read_parquet(|| columnar::open(path, &name), wanted, &|_| {}, sink)
                })?;
                return assemble(&name, batches);
            }
            let file = columnar::open(path, &name)?;
            read_stream(file, format, &name, descriptor, group_by, options)
        }
        Source::Stdin => {
            let mut stdin = BufReader::with_capacity(1 << 20, std::io::stdin().lock());
            let format = stdin_format(&mut stdin, options, &name)?;
            if format == Format::Parquet {
                let bytes = read_whole(stdin, &name)?;
                let dialect = dialect(options);
                let wanted = wanted(&name, descriptor, group_by, options, &dialect);
                let batches = columnar::Batches::collect(|sink| {
                    columnar::read_parquet(|| Ok(bytes.clone()), wanted, &|_| {}, sink)
                })?;
                return assemble(&name, batches);
            }
            read_stream(stdin, format, &name, descriptor, group_by, options)
        }
        Source::Postgres { url, query } => {
            let batches = columnar::Batches::collect(|sink| {
                pg::read(url, &query, descriptor, group_by, options, sink)
            })?;
            assemble(&name, batches)
        }
    }
}

/// A part of an input read in chunks ([`read_chunks`]): its rows, typed as [`read`] types
/// them, and where they came from.
#[derive(Debug)]
pub struct Chunk {
    pub batch: RecordBatch,
    /// The input's row (1-based) of the chunk's first row.
    pub first_row: u64,
    /// For a text file, the line of each row.
    pub lines: Option<Vec<u64>>,
}

impl Chunk {
    /// Where row `row` (0-based) of the chunk came from.
    pub fn location(&self, row: usize) -> Location {
        match self.lines.as_ref().and_then(|lines| lines.get(row)) {
            Some(&line) => Location::Line(line),
            None => Location::Row(self.first_row + row as u64),
        }
    }
}

/// How far a chunked read has come, for a progress display on another thread.
#[derive(Debug, Default)]
pub struct ReadProgress {
    /// Bytes of the input read so far (none for a database).
    pub bytes: AtomicU64,
    /// The input's size in bytes; 0 when it is not known (standard input, a database).
    pub total_bytes: AtomicU64,
    /// Rows handed on so far.
    pub rows: AtomicU64,
}

/// Reads `source` a part at a time, handing `sink` each part's rows as a batch of the columns
/// `descriptor` declares (typed and renamed as [`read`] does), in input order: CSV a block of
/// about 32 MiB of text at a time, Parquet a row group, Arrow IPC and JSON Lines their batches,
/// PostgreSQL as COPY streams the rows. Memory holds a part, not the input: the way to read a
/// log larger than memory. An Arrow IPC stream is read as it comes; Parquet from standard
/// input, whose footer is at the end, is read whole first.
pub fn read_chunks(
    source: Source<'_>,
    descriptor: &MetricDescriptor,
    options: &ReadOptions,
    progress: &ReadProgress,
    sink: &mut dyn FnMut(Chunk) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let name = source.name();
    let mut parts = 0u64;
    let mut counted_sink = |chunk: Chunk| {
        parts += 1;
        progress
            .rows
            .fetch_add(chunk.batch.num_rows() as u64, Ordering::Relaxed);
        sink(chunk)
    };
    let mut batch_sink = |batch: RecordBatch, first_row: u64| {
        counted_sink(Chunk {
            batch,
            first_row,
            lines: None,
        })
    };
    let bytes_done = |bytes: u64| {
        progress.bytes.fetch_add(bytes, Ordering::Relaxed);
    };
    let dialect = dialect(options);
    let schema = match source {
        Source::Path(path) => {
            let format = path_format(path, options, &name)?;
            let file = columnar::open(path, &name)?;
            if let Ok(metadata) = file.metadata() {
                progress
                    .total_bytes
                    .store(metadata.len(), Ordering::Relaxed);
            }
            let wanted = wanted(&name, descriptor, &[], options, &dialect);
            match format {
                Format::Parquet => Some(columnar::read_parquet(
                    || columnar::open(path, &name),
                    wanted,
                    &bytes_done,
                    &mut batch_sink,
                )?),
                Format::Arrow if columnar::is_ipc_file(&file) => Some(columnar::read_ipc_file(
                    file,
                    wanted,
                    &bytes_done,
                    &mut batch_sink,
                )?),
                _ => stream_chunks(
                    Counted {
                        inner: file,
                        progress,
                    },
                    format,
                    wanted,
                    options,
                    &mut counted_sink,
                )?,
            }
        }
        Source::Stdin => {
            let mut stdin = BufReader::with_capacity(
                1 << 20,
                Counted {
                    inner: std::io::stdin().lock(),
                    progress,
                },
            );
            let format = stdin_format(&mut stdin, options, &name)?;
            let wanted = wanted(&name, descriptor, &[], options, &dialect);
            match format {
                Format::Parquet => {
                    let bytes = read_whole(stdin, &name)?;
                    Some(columnar::read_parquet(
                        || Ok(bytes.clone()),
                        wanted,
                        &|_| {},
                        &mut batch_sink,
                    )?)
                }
                _ => stream_chunks(stdin, format, wanted, options, &mut counted_sink)?,
            }
        }
        Source::Postgres { url, query } => Some(pg::read(
            url,
            &query,
            descriptor,
            &[],
            options,
            &mut batch_sink,
        )?),
    };
    // No rows: one empty part, so that what reads it still sees the columns (CSV's reader
    // hands its own).
    if parts == 0
        && let Some(schema) = schema
    {
        sink(Chunk {
            batch: RecordBatch::new_empty(schema),
            first_row: 1,
            lines: None,
        })?;
    }
    Ok(())
}

/// A format read as it comes (CSV, Arrow IPC, JSON Lines), a part at a time; the schema of
/// a columnar one.
fn stream_chunks(
    reader: impl Read,
    format: Format,
    wanted: columnar::Wanted<'_>,
    options: &ReadOptions,
    sink: &mut dyn FnMut(Chunk) -> Result<(), ReadError>,
) -> Result<Option<arrow_schema::SchemaRef>, ReadError> {
    match format {
        Format::Csv => csv::read_chunks(
            reader,
            wanted.source,
            wanted.descriptor,
            &csv_options(options),
            sink,
        )
        .map(|()| None),
        _ => read_columnar_stream(reader, format, wanted, &mut |batch, first_row| {
            sink(Chunk {
                batch,
                first_row,
                lines: None,
            })
        })
        .map(Some),
    }
}

/// A reader that counts the bytes read into a [`ReadProgress`].
struct Counted<'p, R> {
    inner: R,
    progress: &'p ReadProgress,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.progress
            .bytes
            .fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

/// A file's format: the one given, else its extension's, else its first bytes'.
fn path_format(path: &Path, options: &ReadOptions, name: &str) -> Result<Format, ReadError> {
    if let Some(format) = options.format.or_else(|| Format::from_path(path)) {
        return Ok(format);
    }
    let mut head = [0u8; 8];
    let read = columnar::open(path, name)?
        .read(&mut head)
        .map_err(|e| ReadError::io(name, "cannot read the file", e))?;
    Ok(Format::sniff(&head[..read]))
}

/// Standard input's format: the one given, else its first bytes'.
fn stdin_format(
    stdin: &mut impl BufRead,
    options: &ReadOptions,
    name: &str,
) -> Result<Format, ReadError> {
    match options.format {
        Some(format) => Ok(format),
        None => Ok(Format::sniff(
            stdin
                .fill_buf()
                .map_err(|e| ReadError::io(name, "cannot read", e))?,
        )),
    }
}

/// The rest of a reader, for Parquet from standard input (its footer is at the end).
fn read_whole(mut reader: impl Read, name: &str) -> Result<bytes::Bytes, ReadError> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::io(name, "cannot read", e))?;
    Ok(bytes::Bytes::from(bytes))
}

fn csv_options(options: &ReadOptions) -> csv::CsvOptions<'_> {
    csv::CsvOptions {
        delimiter: options.delimiter,
        decimal: options.decimal,
        date_format: options.date_format.as_ref(),
        mappings: &options.columns,
        named: &options.named_columns,
    }
}

/// The names of a file's columns, under the names `options.columns` gives them: the header
/// of a CSV file, the schema of Parquet and Arrow IPC, the keys of JSON Lines' first object.
/// For a caller that picks what to compute from what an input has (`mittari report`).
pub fn column_names(path: &Path, options: &ReadOptions) -> Result<Vec<String>, ReadError> {
    Ok(column_types(path, options)?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// [`column_names`], each with its type where the file declares one (Parquet, Arrow IPC);
/// `None` for CSV and JSON Lines, whose cells are typed by the metric that reads them.
pub fn column_types(
    path: &Path,
    options: &ReadOptions,
) -> Result<Vec<(String, Option<arrow_schema::DataType>)>, ReadError> {
    let name = path.display().to_string();
    let mut file = columnar::open(path, &name)?;
    let format = match options.format.or_else(|| Format::from_path(path)) {
        Some(format) => format,
        None => {
            let mut head = [0u8; 8];
            let read = file
                .read(&mut head)
                .map_err(|e| ReadError::io(&name, "cannot read the file", e))?;
            file = columnar::open(path, &name)?;
            Format::sniff(&head[..read])
        }
    };
    let untyped = |names: Vec<String>| names.into_iter().map(|n| (n, None)).collect();
    let names: Vec<(String, Option<arrow_schema::DataType>)> = match format {
        Format::Csv => untyped(csv::header_names(file, &name, options.delimiter)?),
        Format::Parquet => {
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| {
                        ReadError::input(&name, format!("cannot read the file as Parquet: {e}"))
                    })?;
            field_names(builder.schema())
        }
        Format::Arrow | Format::ArrowStream => {
            let fail = |e: arrow_schema::ArrowError| {
                ReadError::input(&name, format!("cannot read the input as Arrow IPC: {e}"))
            };
            match arrow_ipc::reader::FileReader::try_new(BufReader::new(file), None) {
                Ok(reader) => field_names(&reader.schema()),
                Err(_) => {
                    let file = columnar::open(path, &name)?;
                    let reader =
                        arrow_ipc::reader::StreamReader::try_new(BufReader::new(file), None)
                            .map_err(fail)?;
                    field_names(&reader.schema())
                }
            }
        }
        Format::JsonLines => {
            let mut first = String::new();
            BufReader::new(file)
                .read_line(&mut first)
                .map_err(|e| ReadError::io(&name, "cannot read the file", e))?;
            match serde_json::from_str::<serde_json::Value>(&first) {
                Ok(serde_json::Value::Object(object)) => untyped(object.keys().cloned().collect()),
                _ => {
                    return Err(ReadError::at(
                        &name,
                        Location::Line(1),
                        "the first line is not a JSON object",
                    ));
                }
            }
        }
    };
    Ok(names
        .into_iter()
        .map(|(column, data_type)| {
            let column = options
                .columns
                .iter()
                .find(|mapping| mapping.source == column)
                .map_or(column, |mapping| mapping.name.clone());
            (column, data_type)
        })
        .collect())
}

fn field_names(schema: &arrow_schema::Schema) -> Vec<(String, Option<arrow_schema::DataType>)> {
    schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), Some(f.data_type().clone())))
        .collect()
}

/// Reads the RFM summary of the transaction log `source` holds, computed where the log is
/// stored, as the columns of `descriptor`'s summary input (see
/// [`mittari_sdk::RfmSummaryInput`]): only one row per customer travels. `None` when the
/// source cannot summarize (a file is read and summarized here) or its columns are not a log.
pub fn read_rfm_summary(
    source: &Source<'_>,
    descriptor: &MetricDescriptor,
    options: &ReadOptions,
    periods: RfmPeriods,
) -> Result<Option<Table>, ReadError> {
    match source {
        Source::Path(_) | Source::Stdin => Ok(None),
        Source::Postgres { url, query } => {
            match pg::read_rfm_summary(url, query, descriptor, options, periods)? {
                Some(batches) => assemble(&source.name(), batches).map(Some),
                None => Ok(None),
            }
        }
    }
}

/// Conforms a batch a client sent (a gRPC `Table.arrow_ipc`) to the columns `descriptor`
/// declares, `group_by` names and parameters name (`named`: (parameter, column), clv's
/// covariates), as a file's batches are; `first_row` (1-based) is the
/// batch's first row in the client's table, for errors. Text cells are read in ISO 8601 with a
/// decimal point.
pub fn conform(
    batch: &RecordBatch,
    input_name: &str,
    descriptor: &MetricDescriptor,
    (group_by, named): (&[String], &[(String, String)]),
    first_row: u64,
) -> Result<RecordBatch, ReadError> {
    let dialect = dialect(&ReadOptions::default());
    let wanted = columnar::Wanted {
        source: input_name,
        descriptor,
        group_by,
        mappings: &[],
        named,
        dialect: &dialect,
    };
    columnar::Conformer::new(wanted, &batch.schema())?.conform(batch, first_row)
}

/// Reads the batches another reader produced (a query engine over a data lake) as a file's:
/// the columns `descriptor` declares and `group_by` names, renamed by `options.columns`,
/// converted to the declared types; rows are numbered across the batches for errors.
pub fn read_batches(
    name: &str,
    schema: &arrow_schema::Schema,
    batches: impl IntoIterator<Item = RecordBatch>,
    descriptor: &MetricDescriptor,
    group_by: &[String],
    options: &ReadOptions,
) -> Result<Table, ReadError> {
    let dialect = dialect(options);
    let conformer = columnar::Conformer::new(
        wanted(name, descriptor, group_by, options, &dialect),
        schema,
    )?;
    let mut first_row = 1;
    let mut conformed = Vec::new();
    for batch in batches {
        conformed.push(conformer.conform(&batch, first_row)?);
        first_row += batch.num_rows() as u64;
    }
    assemble(
        name,
        columnar::Batches {
            schema: conformer.schema(),
            batches: conformed,
        },
    )
}

/// Reads a format that streams: CSV, Arrow IPC, JSON Lines.
fn read_stream(
    reader: impl Read,
    format: Format,
    name: &str,
    descriptor: &MetricDescriptor,
    group_by: &[String],
    options: &ReadOptions,
) -> Result<Table, ReadError> {
    if format == Format::Csv {
        return csv::read(reader, name, descriptor, group_by, &csv_options(options));
    }
    let dialect = dialect(options);
    let wanted = wanted(name, descriptor, group_by, options, &dialect);
    let batches =
        columnar::Batches::collect(|sink| read_columnar_stream(reader, format, wanted, sink))?;
    assemble(name, batches)
}

/// Reads Arrow IPC (either form) or JSON Lines as it comes, handing `sink` each batch.
fn read_columnar_stream(
    mut reader: impl Read,
    format: Format,
    wanted: columnar::Wanted<'_>,
    sink: &mut columnar::BatchSink<'_>,
) -> Result<arrow_schema::SchemaRef, ReadError> {
    let name = wanted.source;
    match format {
        Format::Arrow | Format::ArrowStream => {
            // `.arrow` names both IPC forms: the file form starts with its magic.
            let mut head = [0u8; 6];
            let mut filled = 0;
            while filled < head.len() {
                match reader.read(&mut head[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ReadError::io(name, "cannot read", e)),
                }
            }
            let file = &head[..filled] == b"ARROW1";
            columnar::read_ipc(
                std::io::Cursor::new(head[..filled].to_vec()).chain(reader),
                file,
                wanted,
                sink,
            )
        }
        Format::JsonLines => columnar::read_json_lines(reader, wanted, sink),
        Format::Csv | Format::Parquet => Err(ReadError::input(
            name,
            "only Arrow IPC and JSON Lines are read here",
        )),
    }
}

/// The dialect of text cells in a columnar input: a decimal comma only when asked for.
fn dialect(options: &ReadOptions) -> cells::Dialect {
    cells::Dialect {
        decimal: options.decimal.unwrap_or(DecimalSeparator::Point),
        date_format: options.date_format.clone(),
    }
}

fn wanted<'a>(
    source: &'a str,
    descriptor: &'a MetricDescriptor,
    group_by: &'a [String],
    options: &'a ReadOptions,
    dialect: &'a cells::Dialect,
) -> columnar::Wanted<'a> {
    columnar::Wanted {
        source,
        descriptor,
        group_by,
        mappings: &options.columns,
        named: &options.named_columns,
        dialect,
    }
}

fn assemble(name: &str, batches: columnar::Batches) -> Result<Table, ReadError> {
    let batch = arrow_select::concat::concat_batches(&batches.schema, &batches.batches)
        .map_err(|e| ReadError::input(name, format!("cannot assemble the table: {e}")))?;
    Ok(Table {
        batch,
        origins: Origins::Rows,
    })
}

#[cfg(test)]
mod tests;
