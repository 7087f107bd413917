//! A transaction log read a part at a time into its RFM summary, for metrics that read a
//! summary in place of the log (clv's predictive models): memory holds each customer's
//! running summary ([`ChunkedSummary`]) and one part of the input, never the whole log, so a
//! log larger than memory can be summarized from any source [`read_chunks`] reads.
//!
//! The summary equals the one the metric makes of the whole log, to the bit and in the same
//! customer order, when each customer's rows come in time order (a log sorted by time, or
//! grouped by customer and sorted within). A log that is not is found out at its first row
//! out of order; the parts read so far are kept (up to [`KEEP_BYTES`]) so that such a log is
//! then read whole instead, as it would have been without chunks. Past that a file or a
//! database is read again, whole; standard input cannot be, and the error says to sort it.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{Field, Schema};
use mittari_models::rfm::{ChunkError, ChunkedSummary, SummaryColumns};
use mittari_sdk::MetricDescriptor;

use crate::{
    Chunk, Origins, ReadError, ReadOptions, ReadProgress, RfmPeriods, Source, Table, read,
    read_chunks,
};

/// Parts of the log kept while it is not known to be in time order: about 14 million rows of
/// a typical log.
pub const KEEP_BYTES: usize = 512 << 20;

/// The log's columns the summary reads.
pub const LOG_COLUMNS: [&str; 3] = ["customer_id", "timestamp", "amount"];

/// What [`summarize_in_chunks`] read.
#[derive(Debug)]
pub enum ChunkedRead {
    /// The log's summary, one row per customer in order of first purchase, and the rows of
    /// the log read.
    Summary { table: Table, rows: u64 },
    /// The input read whole: not a transaction log (a summary already), or a log not in time
    /// order; why, for the log.
    Whole { table: Table, why: &'static str },
    /// A parameter the log turned out not to allow (`holdout_start` at or after its last
    /// transaction), as the metric would refuse it.
    BadParameter {
        parameter: &'static str,
        message: String,
    },
}

enum State {
    /// No rows seen yet.
    Undecided,
    Summarizing {
        summary: ChunkedSummary,
        /// The parts read so far, while they fit in `keep_bytes`.
        kept: Option<Vec<Chunk>>,
        kept_bytes: usize,
    },
    /// The parts, to be read whole, and why.
    Collecting(Vec<Chunk>, &'static str),
}

/// Why the parts stopped being taken.
enum Stop {
    /// A fault of the input, or of reading it.
    Read(ReadError),
    /// A row out of time order after the kept parts: the log must be read again, whole.
    OutOfOrder(ReadError),
}

/// How the parts are taken: what the summary counts in, what is kept, and the cells' check.
struct Taking<'a> {
    name: &'a str,
    periods: RfmPeriods,
    keep_bytes: usize,
    check: &'a dyn Fn(&Chunk) -> Result<(), ReadError>,
}

impl State {
    /// The state after one more part: summarized, kept, or collected to be read whole.
    fn take(self, chunk: Chunk, taking: &Taking<'_>) -> Result<State, Stop> {
        let (mut summary, mut kept, mut kept_bytes) = match self {
            State::Collecting(mut chunks, why) => {
                chunks.push(chunk);
                return Ok(State::Collecting(chunks, why));
            }
            State::Undecided if log_columns(&chunk.batch).is_none() => {
                return Ok(State::Collecting(
                    vec![chunk],
                    "the input is not a transaction log",
                ));
            }
            State::Undecided => {
                let RfmPeriods {
                    unit,
                    observation_end,
                    holdout_start,
                } = taking.periods;
                (
                    ChunkedSummary::new(unit, observation_end, holdout_start),
                    Some(Vec::new()),
                    0,
                )
            }
            State::Summarizing {
                summary,
                kept,
                kept_bytes,
            } => (summary, kept, kept_bytes),
        };
        let name = taking.name;
        let Some((ids, timestamps, amounts)) = log_columns(&chunk.batch) else {
            return Err(Stop::Read(ReadError::input(
                name,
                "a part of the log lacks the log's columns",
            )));
        };
        (taking.check)(&chunk).map_err(Stop::Read)?;
        match summary.push(|i| ids.value(i), timestamps.values(), amounts.values()) {
            Ok(()) => {
                if let Some(chunks) = &mut kept {
                    kept_bytes += chunk.batch.get_array_memory_size();
                    if kept_bytes > taking.keep_bytes {
                        kept = None;
                    } else {
                        chunks.push(chunk);
                    }
                }
                Ok(State::Summarizing {
                    summary,
                    kept,
                    kept_bytes,
                })
            }
            Err(ChunkError::OutOfOrder {
                chunk_row,
                customer,
                ..
            }) => match kept {
                Some(mut chunks) => {
                    tracing::info!(input = %name, "the log is not in time order for each customer: reading it whole");
                    chunks.push(chunk);
                    Ok(State::Collecting(chunks, OUT_OF_ORDER))
                }
                None => Err(Stop::OutOfOrder(ReadError::at(
                    name,
                    chunk.location(chunk_row),
                    format!(
                        "customer {customer:?} has a purchase in an earlier {} than one read before: the log is summarized as it is read, which needs each customer's rows in time order; sort it by timestamp, or give --in-chunks never to read it whole",
                        taking.periods.unit.name()
                    ),
                ))),
            },
            Err(other) => Err(Stop::Read(ReadError::input(name, other.to_string()))),
        }
    }
}

/// Why a log read in chunks is read whole after all.
const OUT_OF_ORDER: &str = "not in time order for each customer";

/// Reads the transaction log `source` a part at a time into its RFM summary by `periods`,
/// keeping the parts read while they take at most `keep_bytes` ([`KEEP_BYTES`]) in case the
/// log turns out not to be in time order; `check` sees each part's rows first (the metric's
/// checks of the log's cells, which the metric never sees), and its error ends the read.
pub fn summarize_in_chunks(
    source: &Source<'_>,
    descriptor: &MetricDescriptor,
    options: &ReadOptions,
    periods: RfmPeriods,
    keep_bytes: usize,
    progress: &ReadProgress,
    check: &dyn Fn(&Chunk) -> Result<(), ReadError>,
) -> Result<ChunkedRead, ReadError> {
    let name = source.name();
    let taking = Taking {
        name: &name,
        periods,
        keep_bytes,
        check,
    };
    // The next part is read and parsed while this one is summarized: each side has steps
    // that run on one thread (reading the file, checking the cells, putting new customers
    // in order), which the other side's parallel work fills.
    let (parts, received) = std::sync::mpsc::sync_channel::<Chunk>(1);
    let (state, reading) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let parts = parts;
            read_chunks(
                source.clone(),
                descriptor,
                options,
                progress,
                &mut |chunk| {
                    // The summary has stopped (on an error of its own, which it reports).
                    parts
                        .send(chunk)
                        .map_err(|_| ReadError::input(&name, "the summary stopped"))
                },
            )
        });
        let mut state = Ok(State::Undecided);
        for chunk in received.iter() {
            state = match state {
                Ok(taken) => taken.take(chunk, &taking),
                stopped => stopped,
            };
            if state.is_err() {
                break;
            }
        }
        drop(received);
        let reading = reader
            .join()
            .unwrap_or_else(|_| Err(ReadError::input(&name, "the reader failed")));
        (state, reading)
    });
    let state = match state {
        Ok(state) => state,
        // Too late to read whole from the kept parts: read again, where that can be done.
        Err(Stop::OutOfOrder(error)) if matches!(source, Source::Stdin) => return Err(error),
        Err(Stop::OutOfOrder(_)) => {
            tracing::info!(input = %name, "the log is not in time order for each customer: reading it whole");
            return Ok(ChunkedRead::Whole {
                table: read(source.clone(), descriptor, &[], options)?,
                why: OUT_OF_ORDER,
            });
        }
        Err(Stop::Read(error)) => return Err(error),
    };
    reading?;
    match state {
        // `read_chunks` hands on at least one part, empty for an input without rows.
        State::Undecided => Err(ReadError::input(&name, "no part of the input was read")),
        State::Collecting(chunks, why) => Ok(ChunkedRead::Whole {
            table: assemble(&name, chunks)?,
            why,
        }),
        State::Summarizing { summary, .. } => {
            let started = std::time::Instant::now();
            let columns = match summary.finish() {
                Ok(columns) => columns,
                Err(ChunkError::HoldoutAfterEnd) => {
                    return Ok(ChunkedRead::BadParameter {
                        parameter: "holdout_start",
                        message: ChunkError::HoldoutAfterEnd.to_string(),
                    });
                }
                Err(other) => return Err(ReadError::input(&name, other.to_string())),
            };
            let rows = columns.rows;
            let table = summary_table(&name, columns)?;
            tracing::debug!(
                customers = table.batch.num_rows(),
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "assembled the summary"
            );
            Ok(ChunkedRead::Summary { table, rows })
        }
    }
}

/// The log's three columns in the types the summary reads; `None` when the input is not a
/// log (it lacks one, or it is a summary already: frequency, recency and T).
fn log_columns(
    batch: &RecordBatch,
) -> Option<(&StringArray, &TimestampMicrosecondArray, &Float64Array)> {
    if ["frequency", "recency", "T"]
        .iter()
        .all(|c| batch.column_by_name(c).is_some())
    {
        return None;
    }
    Some((
        batch
            .column_by_name("customer_id")?
            .as_any()
            .downcast_ref()?,
        batch.column_by_name("timestamp")?.as_any().downcast_ref()?,
        batch.column_by_name("amount")?.as_any().downcast_ref()?,
    ))
}

/// The summary as the table the metric reads: `customer_id`, `frequency`, `recency`, `T`,
/// `monetary_value` and with a holdout `frequency_holdout` and `duration_holdout`, as
/// Python's lifetimes names them (and the database summary writes them).
fn summary_table(name: &str, columns: SummaryColumns) -> Result<Table, ReadError> {
    let SummaryColumns {
        id_bytes,
        id_offsets,
        frequency,
        recency,
        t,
        monetary_value,
        holdout_frequency,
        holdout_length,
        ..
    } = columns;
    let customers = frequency.len();
    let ids = StringArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(id_offsets)),
        Buffer::from_vec(id_bytes),
        None,
    )
    .map_err(|e| ReadError::input(name, format!("cannot assemble the customer ids: {e}")))?;
    let mut named: Vec<(&str, ArrayRef)> = vec![
        ("customer_id", Arc::new(ids)),
        ("frequency", Arc::new(Float64Array::from(frequency))),
        ("recency", Arc::new(Float64Array::from(recency))),
        ("T", Arc::new(Float64Array::from(t))),
        (
            "monetary_value",
            Arc::new(Float64Array::from(monetary_value)),
        ),
    ];
    if let (Some(holdout), Some(length)) = (holdout_frequency, holdout_length) {
        named.push(("frequency_holdout", Arc::new(Float64Array::from(holdout))));
        named.push((
            "duration_holdout",
            Arc::new(Float64Array::from(vec![length; customers])),
        ));
    }
    let schema = Schema::new(
        named
            .iter()
            .map(|(column, array)| {
                Field::new(*column, array.data_type().clone(), *column == "customer_id")
            })
            .collect::<Vec<_>>(),
    );
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        named.into_iter().map(|(_, array)| array).collect(),
    )
    .map_err(|e| ReadError::input(name, format!("cannot assemble the summary: {e}")))?;
    Ok(Table {
        batch,
        origins: Origins::Rows,
    })
}

/// Parts read whole, as one table with each row's line or row.
fn assemble(name: &str, chunks: Vec<Chunk>) -> Result<Table, ReadError> {
    let Some(first) = chunks.first() else {
        return Err(ReadError::input(name, "no rows were read"));
    };
    let schema = first.batch.schema();
    let lines: Option<Vec<u64>> = chunks
        .iter()
        .map(|c| c.lines.as_deref())
        .collect::<Option<Vec<&[u64]>>>()
        .map(|parts| parts.concat());
    let batches: Vec<&RecordBatch> = chunks.iter().map(|c| &c.batch).collect();
    let batch = arrow_select::concat::concat_batches(&schema, batches)
        .map_err(|e| ReadError::input(name, format!("cannot assemble the table: {e}")))?;
    Ok(Table {
        batch,
        origins: match lines {
            Some(lines) => Origins::Lines(lines),
            None => Origins::Rows,
        },
    })
}
