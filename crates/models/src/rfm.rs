//! Recency-frequency-monetary summaries of a transaction log, the input of the
//! non-contractual models. The definitions follow `lifetimes.utils.summary_data_from_transaction_data`,
//! so users moving over get the same numbers:
//!
//! - time is counted in whole periods of the chosen unit (days, or Monday-to-Sunday weeks);
//!   transactions in the same period count once (their amounts summed);
//! - `frequency`: periods with a purchase after the first one (repeat purchases);
//! - `recency`: periods from the first to the last purchase;
//! - `T`: periods from the first purchase to the end of observation;
//! - `monetary_value`: the mean amount of the repeat periods (0 without repeats).

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use rayon::prelude::*;

use crate::hash::{SEED_A, SEED_B, fold_mul, word};

/// A customer id as the partition tables see it, without a pointer into the input: ids of
/// up to 16 bytes are held whole, so finding a customer never reads the input's strings
/// again; longer ids keep their first 8 bytes and their hash, and are compared in full (by
/// row) only when those agree.
#[derive(Clone, Copy, PartialEq, Eq)]
struct IdKey {
    words: [u64; 2],
    /// The id's length, or [`LONG`] for ids longer than 16 bytes.
    len: u8,
}

/// [`IdKey::len`] of an id longer than 16 bytes.
const LONG: u8 = 17;

impl IdKey {
    fn new(id: &str) -> IdKey {
        let bytes = id.as_bytes();
        let len = bytes.len();
        // For up to 16 bytes, two words that with the length determine the id: its first and
        // last 8 (or 4) bytes, overlapping for shorter ids, loaded without a byte loop.
        let words = if len > 16 {
            [word(&bytes[..8]), hash_long(bytes)]
        } else if len >= 8 {
            [word(&bytes[..8]), word(&bytes[len - 8..])]
        } else if len >= 4 {
            [word(&bytes[..4]), word(&bytes[len - 4..])]
        } else if len > 0 {
            let spread = u64::from(bytes[0])
                | u64::from(bytes[len / 2]) << 8
                | u64::from(bytes[len - 1]) << 16;
            [spread, 0]
        } else {
            [0, 0]
        };
        IdKey {
            words,
            len: len.min(usize::from(LONG)) as u8,
        }
    }

    /// Customer ids are not attacker-chosen keys of a long-lived table, so speed matters
    /// more than resistance to flooding. The high bits pick the partition and hashbrown's
    /// tag, the low ones the bucket.
    fn hash(self) -> u64 {
        fold_mul(
            self.words[0] ^ SEED_A ^ u64::from(self.len),
            self.words[1] ^ SEED_B,
        )
    }
}

/// A hash of an id longer than 16 bytes, 16 bytes a step.
fn hash_long(bytes: &[u8]) -> u64 {
    let len = bytes.len();
    let mut hash = len as u64;
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        hash = fold_mul(
            word(&block[..8]) ^ SEED_A ^ hash,
            word(&block[8..]) ^ SEED_B,
        );
    }
    // The last 16 bytes, overlapping the blocks when the length is not a multiple of 16.
    let tail = &bytes[len.saturating_sub(16)..];
    let last = tail.len().saturating_sub(8);
    fold_mul(
        word(&tail[..8.min(tail.len())]) ^ SEED_B ^ hash,
        word(&tail[last..]) ^ SEED_A,
    )
}

/// Microseconds in a day.
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days in a mean (Julian) year: the length of a year, a quarter and a month where a rate is
/// converted between time units.
pub const DAYS_PER_YEAR: f64 = 365.25;

/// The grain at which purchases are counted: repeat purchases are distinct periods with a
/// purchase, and times are whole periods. All periods are UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Hour,
    Day,
    /// Monday to Sunday, as pandas' `W` periods.
    Week,
    /// Calendar months: January is one period, February the next, whatever their lengths.
    Month,
    /// Calendar quarters: January–March, April–June, July–September, October–December.
    Quarter,
    /// Calendar years.
    Year,
}

impl TimeUnit {
    /// Every unit, finest first.
    pub const ALL: [TimeUnit; 6] = [
        TimeUnit::Hour,
        TimeUnit::Day,
        TimeUnit::Week,
        TimeUnit::Month,
        TimeUnit::Quarter,
        TimeUnit::Year,
    ];

    /// The unit's name as the `time_unit` parameter spells it.
    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Hour => "hour",
            TimeUnit::Day => "day",
            TimeUnit::Week => "week",
            TimeUnit::Month => "month",
            TimeUnit::Quarter => "quarter",
            TimeUnit::Year => "year",
        }
    }

    /// The unit named `name`, as [`Self::name`] spells it.
    pub fn from_name(name: &str) -> Option<TimeUnit> {
        TimeUnit::ALL.into_iter().find(|u| u.name() == name)
    }

    /// The mean length of a period in days (a month is a twelfth of a mean year): for
    /// converting rates, such as an annual discount rate, to the unit.
    pub fn days(self) -> f64 {
        match self {
            TimeUnit::Hour => 1.0 / 24.0,
            TimeUnit::Day => 1.0,
            TimeUnit::Week => 7.0,
            TimeUnit::Month => DAYS_PER_YEAR / 12.0,
            TimeUnit::Quarter => DAYS_PER_YEAR / 4.0,
            TimeUnit::Year => DAYS_PER_YEAR,
        }
    }

    /// The index of the period containing `micros` (UTC).
    pub fn period(self, micros: i64) -> i64 {
        let day = micros.div_euclid(MICROS_PER_DAY);
        match self {
            TimeUnit::Hour => micros.div_euclid(MICROS_PER_HOUR),
            TimeUnit::Day => day,
            // 1970-01-01 was a Thursday: day + 3 puts Mondays at multiples of 7.
            TimeUnit::Week => (day + 3).div_euclid(7),
            TimeUnit::Month => month_of_day(day),
            TimeUnit::Quarter => month_of_day(day).div_euclid(3),
            TimeUnit::Year => month_of_day(day).div_euclid(12),
        }
    }
}

impl std::str::FromStr for TimeUnit {
    type Err = String;

    fn from_str(name: &str) -> Result<TimeUnit, String> {
        TimeUnit::from_name(name).ok_or_else(|| {
            format!(
                "{name:?} is not a time unit; use one of {}",
                TimeUnit::ALL.map(TimeUnit::name).join(", ")
            )
        })
    }
}

/// Microseconds in an hour.
const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// The calendar month of a day (days since 1970-01-01), counted from January 1970: the
/// proleptic Gregorian calendar by Hinnant's `civil_from_days` (eras of 400 years, years
/// counted from March so the leap day ends them), in whole-number arithmetic that SQL can
/// repeat exactly (`mittari sql rfm` does).
pub fn month_of_day(day: i64) -> i64 {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March: 0 is March, 11 February.
    let month_from_march = (5 * day_of_year + 2) / 153;
    // A March-based year y and month mp is the calendar month 12 y + mp + 2 (March = 2).
    12 * (year_of_era + 400 * era) + month_from_march + 2 - 12 * 1970
}

/// One customer's summary; times are whole periods of the chosen unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomerSummary {
    /// Index of the customer's first row in the input.
    pub first_row: u32,
    pub frequency: u32,
    pub recency: u32,
    pub t: u32,
    pub monetary_value: f64,
    /// With a holdout split: periods with a purchase in the holdout.
    pub holdout_frequency: Option<u32>,
}

/// Why a transaction log cannot be summarized.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SummaryError {
    /// Rows are numbered with 32 bits, which halves the memory the summary moves around.
    #[error("the transaction log has {rows} rows; at most 4294967295 can be summarized at once")]
    TooManyRows { rows: usize },
}

/// One transaction on its way to its customer's summary: (customer index within its
/// partition, period, amount, in the holdout).
type Row = (u32, i32, f64, bool);

/// A transaction as read, in order, from the input: everything its partition needs, so
/// summarizing a partition reads its own list and, for ids longer than 16 bytes, the ids.
struct Transaction {
    key: IdKey,
    in_holdout: bool,
    row: u32,
    period: i32,
    amount: f64,
}

/// A partition's customer: its key, hash and first row.
struct Seen {
    key: IdKey,
    hash: u64,
    first_row: u32,
}

/// Summarizes a transaction log given as columns: row `i` is customer `customer(i)`, at
/// `timestamps[i]` (µs since the epoch, UTC), for `amounts[i]`; both slices have one entry per
/// row. Transactions after `observation_end` are ignored. With `holdout_start`, the summary
/// covers the calibration period (transactions before `holdout_start`, with T measured to it)
/// and counts each customer's purchase periods in the holdout; customers whose first purchase
/// is in the holdout are left out. Customers come back in order of first appearance.
///
/// The work runs on all cores: rows are read in parallel chunks and scattered into partitions
/// by the hash of their id, so each partition's customers are found in a table small enough
/// for the cache, and partitions are summarized independently.
pub fn summarize<'a, C>(
    customer: C,
    timestamps: &[i64],
    amounts: &[f64],
    unit: TimeUnit,
    observation_end: i64,
    holdout_start: Option<i64>,
) -> Result<Vec<CustomerSummary>, SummaryError>
where
    C: Fn(usize) -> &'a str + Sync,
{
    debug_assert_eq!(timestamps.len(), amounts.len());
    let rows = timestamps.len().min(amounts.len());
    if u32::try_from(rows).is_err() {
        return Err(SummaryError::TooManyRows { rows });
    }
    // About 4 000 rows a partition keeps a partition's table in the cache; the cap bounds the
    // per-chunk partition lists.
    let partition_bits = (rows / 4096).max(1).ilog2().min(12);
    let partitions = 1usize << partition_bits;
    let partition_of = |hash: u64| ((hash >> 32) as usize) & (partitions - 1);
    let calibration_end = holdout_start.unwrap_or(i64::MAX);

    let chunks = route(
        &customer,
        timestamps,
        amounts,
        (unit, observation_end, calibration_end),
        partitions,
        partition_of,
    );

    let end_period = unit.period(holdout_start.unwrap_or(observation_end));
    let holdout = holdout_start.is_some();
    let same_customer = |seen: &Seen, t: &Transaction| {
        seen.key == t.key
            && (seen.key.len < LONG
                || customer(seen.first_row as usize) == customer(t.row as usize))
    };
    let summarized: Vec<Vec<CustomerSummary>> = (0..partitions)
        .into_par_iter()
        .map_init(
            || {
                (
                    HashTable::new(),
                    Vec::new(),
                    Vec::new(),
                    Vec::new(),
                    (Vec::new(), Vec::new()),
                )
            },
            |(table, seen, partition_rows, grouped, scratch), partition| {
                table.clear();
                seen.clear();
                partition_rows.clear();
                for t in chunks.iter().flat_map(|lists| &lists[partition]) {
                    let hash = t.key.hash();
                    let id = match table.entry(
                        hash,
                        |&id: &u32| same_customer(&seen[id as usize], t),
                        |&id| seen[id as usize].hash,
                    ) {
                        Entry::Occupied(entry) => *entry.get(),
                        Entry::Vacant(entry) => {
                            let id = seen.len() as u32;
                            seen.push(Seen {
                                key: t.key,
                                hash,
                                first_row: t.row,
                            });
                            entry.insert(id);
                            id
                        }
                    };
                    partition_rows.push((id, t.period, t.amount, t.in_holdout));
                }
                group_by_customer(partition_rows, seen.len(), grouped)
                    .zip(seen.iter())
                    .filter_map(|(rows, seen)| {
                        // Stable: a period's amounts are summed in input order, as a log read in
                        // chunks sums them ([`ChunkedSummary`] gives the same bits).
                        rows.sort_by_key(|r| r.1);
                        summarize_customer(rows, end_period, holdout, seen.first_row, scratch)
                    })
                    .collect()
            },
        )
        .collect();
    drop(chunks);

    // Back to the order of first appearance. Each partition's customers are already in that
    // order, so marking each first row with its partition says which partition the next
    // customer comes from. Blocks of rows are put in order in parallel, each starting from
    // the partitions' positions after the blocks before it.
    let mut partition_at = vec![u16::MAX; rows];
    for (partition, summaries) in summarized.iter().enumerate() {
        for summary in summaries {
            partition_at[summary.first_row as usize] = partition as u16;
        }
    }
    let block_rows = (rows / (4 * rayon::current_num_threads())).max(65_536);
    let counts: Vec<Vec<usize>> = partition_at
        .par_chunks(block_rows)
        .map(|block| {
            let mut counts = vec![0; partitions];
            for &partition in block.iter().filter(|&&p| p != u16::MAX) {
                counts[usize::from(partition)] += 1;
            }
            counts
        })
        .collect();
    let mut starts = Vec::with_capacity(counts.len());
    let mut next = vec![0; partitions];
    for block in &counts {
        starts.push(next.clone());
        for (next, count) in next.iter_mut().zip(block) {
            *next += count;
        }
    }
    Ok(partition_at
        .par_chunks(block_rows)
        .zip(starts)
        .flat_map_iter(|(block, mut next)| {
            let summarized = &summarized;
            block
                .iter()
                .filter(|&&p| p != u16::MAX)
                .map(move |&partition| {
                    let partition = usize::from(partition);
                    next[partition] += 1;
                    summarized[partition][next[partition] - 1]
                })
        })
        .collect::<Vec<_>>())
}

/// Lists the rows of a log by partition (`partition_of` an id's hash), in parallel parts of
/// the rows, each part's lists in row order: a partition reads its rows in input order by going
/// through the parts in order. Rows after `observation_end` are left out; a row at or after
/// `calibration_end` is in the holdout.
fn route<'a, C>(
    customer: &C,
    timestamps: &[i64],
    amounts: &[f64],
    (unit, observation_end, calibration_end): (TimeUnit, i64, i64),
    partitions: usize,
    partition_of: impl Fn(u64) -> usize + Sync,
) -> Vec<Vec<Vec<Transaction>>>
where
    C: Fn(usize) -> &'a str + Sync,
{
    let rows = timestamps.len().min(amounts.len());
    let part_rows = (rows / (4 * rayon::current_num_threads())).max(16_384);
    (0..rows)
        .into_par_iter()
        .step_by(part_rows)
        .map(|start| {
            let expected = part_rows / partitions + part_rows / partitions / 8;
            let mut lists: Vec<Vec<Transaction>> = (0..partitions)
                .map(|_| Vec::with_capacity(expected))
                .collect();
            for row in start..(start + part_rows).min(rows) {
                let timestamp = timestamps[row];
                if timestamp > observation_end {
                    continue;
                }
                let key = IdKey::new(customer(row));
                lists[partition_of(key.hash())].push(Transaction {
                    key,
                    in_holdout: timestamp >= calibration_end,
                    row: row as u32,
                    // Days since 1970 fit an i32 for any i64 of microseconds.
                    period: unit.period(timestamp) as i32,
                    amount: amounts[row],
                });
            }
            lists
        })
        .collect()
}

/// Groups `rows` by customer index (dense, `0..customers`) with a counting sort into
/// `grouped`, keeping each customer's rows in input order; yields each customer's rows.
fn group_by_customer<'g>(
    rows: &[Row],
    customers: usize,
    grouped: &'g mut Vec<Row>,
) -> impl Iterator<Item = &'g mut [Row]> {
    let mut offsets = vec![0usize; customers + 1];
    for &(id, ..) in rows {
        offsets[id as usize + 1] += 1;
    }
    for i in 0..customers {
        offsets[i + 1] += offsets[i];
    }
    grouped.clear();
    grouped.resize(rows.len(), (0, 0, 0.0, false));
    let mut next = offsets.clone();
    for &row in rows {
        let slot = &mut next[row.0 as usize];
        grouped[*slot] = row;
        *slot += 1;
    }
    let mut rest = grouped.as_mut_slice();
    (0..customers).map(move |i| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(offsets[i + 1] - offsets[i]);
        rest = tail;
        head
    })
}

/// A sum in the order given, from −0.0 (the sum's identity: adding it changes no value), so
/// that the whole and the chunked summary add the same numbers in the same order.
fn sum_in_order(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(-0.0, |sum, value| sum + value)
}

/// One customer's summary from their rows sorted by period; `scratch` is reused between
/// customers to save allocations.
fn summarize_customer(
    rows: &[Row],
    end_period: i64,
    holdout: bool,
    first_row: u32,
    scratch: &mut (Vec<(i32, f64)>, Vec<i32>),
) -> Option<CustomerSummary> {
    // Per-period amounts of the calibration part.
    let (periods, holdout_periods) = scratch;
    periods.clear();
    holdout_periods.clear();
    for &(_, period, amount, in_holdout) in rows {
        if in_holdout {
            if holdout_periods.last() != Some(&period) {
                holdout_periods.push(period);
            }
        } else {
            match periods.last_mut() {
                Some((p, total)) if *p == period => *total += amount,
                _ => periods.push((period, amount)),
            }
        }
    }
    let &(first, _) = periods.first()?;
    let &(last, _) = periods.last()?;
    let repeats = &periods[1..];
    let monetary_value = if repeats.is_empty() {
        0.0
    } else {
        sum_in_order(repeats.iter().map(|(_, a)| *a)) / repeats.len() as f64
    };
    // Periods are days or weeks since 1970 in an i32 and `first` ≤ `last` ≤ `end_period`,
    // so the differences fit a u32.
    Some(CustomerSummary {
        first_row,
        frequency: repeats.len() as u32,
        recency: (last - first) as u32,
        t: (end_period - i64::from(first)) as u32,
        monetary_value,
        holdout_frequency: holdout.then_some(holdout_periods.len() as u32),
    })
}

/// An RFM summary built a chunk of rows at a time, for logs larger than memory: it keeps each
/// customer's running state (first and last purchase period, the last period's total, the sum
/// of the repeat periods before it, the holdout's periods), never their rows, so memory grows
/// with the customers, not the transactions.
///
/// Each customer's rows must come in time order (by period of the time unit), as in a log
/// sorted by time or grouped by customer and sorted within; a row earlier than its customer's
/// last period is refused with [`ChunkError::OutOfOrder`], since counting distinct periods
/// would otherwise need every period kept. With that order the result equals [`summarize`]'s
/// to the bit: the same customers in the same order (of first appearance), each period's
/// amounts summed in input order and the repeat periods' totals in period order.
///
/// A chunk is spread over partitions by the hash of its ids, and the partitions are updated
/// on all cores, each in input order.
pub struct ChunkedSummary {
    unit: TimeUnit,
    observation_end: Option<i64>,
    holdout_start: Option<i64>,
    /// The latest transaction read (of those up to `observation_end`).
    latest: Option<i64>,
    partitions: Vec<Partition>,
    /// The partition of each customer, in order of first appearance: each partition holds its
    /// own customers in that order, so this interleaves them.
    order: Vec<u16>,
    rows: u64,
}

impl std::fmt::Debug for ChunkedSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkedSummary")
            .field("customers", &self.order.len())
            .field("rows", &self.rows)
            .finish()
    }
}

/// Partitions of a chunked summary: enough for both cores to share the work evenly, few
/// enough that a chunk of a million rows gives each thousands of rows.
const CHUNK_PARTITIONS: usize = 64;
/// A customer without a calibration purchase yet (their first rows are in the holdout).
const NO_PERIOD: i32 = i32::MIN;

/// One partition's customers, each one's running summary in the table's own slot (48 bytes):
/// a row's update finds and changes it with one miss of a table far larger than the cache,
/// where a table of indices into a list of summaries took two.
#[derive(Default)]
struct Partition {
    table: HashTable<Running>,
    /// Ids longer than 16 bytes, whole, by customer index: their key holds only a prefix and a
    /// hash.
    long_ids: std::collections::HashMap<u32, Box<str>>,
    /// With a holdout: each customer's distinct holdout periods and the latest of them.
    holdout: Vec<(u32, i32)>,
    /// Rows of the chunk being added that brought a new customer to this partition.
    new_rows: Vec<u32>,
}

/// A customer's running summary.
#[derive(Clone, Copy)]
struct Running {
    words: [u64; 2],
    /// The amounts of the last period so far.
    last_total: f64,
    /// The totals of the repeat periods before the last one, in period order.
    repeat_sum: f64,
    /// [`NO_PERIOD`] until the first calibration purchase.
    first_period: i32,
    last_period: i32,
    /// The customer's place among its partition's, in order of first appearance.
    index: u32,
    /// The repeat periods (the low [`REPEAT_BITS`]) and the id's length, [`IdKey::len`] (the
    /// high bits), sharing a word to keep the summary at 48 bytes.
    repeats_and_len: u32,
}

/// Bits of [`Running::repeats_and_len`] counting repeat periods: periods are distinct and
/// ordered, and years 1–9999 hold fewer than 88 M hours, the finest unit.
const REPEAT_BITS: u32 = 27;

/// A partition's customers once no more rows come: their summaries in order of first
/// appearance.
struct Finished {
    customers: Vec<Running>,
    long_ids: std::collections::HashMap<u32, Box<str>>,
    holdout: Vec<(u32, i32)>,
}

impl Running {
    /// A placeholder, overwritten before it is read.
    const EMPTY: Running = Running {
        words: [0; 2],
        last_total: 0.0,
        repeat_sum: 0.0,
        first_period: NO_PERIOD,
        last_period: NO_PERIOD,
        index: 0,
        repeats_and_len: 0,
    };

    fn key(&self) -> IdKey {
        IdKey {
            words: self.words,
            len: (self.repeats_and_len >> REPEAT_BITS) as u8,
        }
    }

    fn repeats(&self) -> u32 {
        self.repeats_and_len & ((1 << REPEAT_BITS) - 1)
    }
}

/// Why a chunk cannot be added, or the summary not finished.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChunkError {
    /// `row` counts from 0 over the whole log; `chunk_row` within the chunk that held it.
    #[error(
        "row {row}: customer {customer} has a purchase in an earlier period than one already read; a log read in chunks must be in time order for each customer"
    )]
    OutOfOrder {
        row: u64,
        chunk_row: usize,
        customer: String,
    },
    #[error("a chunk holds at most 4294967295 rows")]
    ChunkTooLarge,
    #[error(
        "holdout_start must be before the end of observation (observation_end, or the last transaction)"
    )]
    HoldoutAfterEnd,
    #[error("the customer ids add up to more than 2 GiB of text")]
    IdsTooLong,
}

/// A finished summary as columns, customer `i` in entry `i` of each, in order of first
/// appearance: the columns of the summary input the clv metric reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SummaryColumns {
    /// The ids' text, concatenated; customer `i`'s is `id_bytes[id_offsets[i]..id_offsets[i + 1]]`
    /// (offsets as Arrow's `Utf8` holds them).
    pub id_bytes: Vec<u8>,
    pub id_offsets: Vec<i32>,
    pub frequency: Vec<f64>,
    pub recency: Vec<f64>,
    pub t: Vec<f64>,
    pub monetary_value: Vec<f64>,
    /// With a holdout: each customer's purchase periods in it, and its length in periods.
    pub holdout_frequency: Option<Vec<f64>>,
    pub holdout_length: Option<f64>,
    /// Rows read, including those after the end of observation.
    pub rows: u64,
}

impl SummaryColumns {
    /// Customer `i`'s id.
    pub fn id(&self, i: usize) -> &str {
        let (start, end) = (self.id_offsets[i] as usize, self.id_offsets[i + 1] as usize);
        std::str::from_utf8(&self.id_bytes[start..end]).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.frequency.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frequency.is_empty()
    }
}

impl IdKey {
    /// The id of a key of at most 16 bytes, which holds it whole.
    fn write_short(self, out: &mut Vec<u8>) {
        let len = usize::from(self.len);
        let [first, second] = self.words.map(u64::to_le_bytes);
        match len {
            0 => {}
            1..=3 => {
                let spread = self.words[0];
                let byte = |shift: u32| (spread >> shift) as u8;
                // Bytes 0, len / 2 and len − 1: every byte of an id of up to 3.
                let bytes = [byte(0), byte(8), byte(16)];
                match len {
                    1 => out.push(bytes[0]),
                    2 => out.extend_from_slice(&[bytes[0], bytes[2]]),
                    _ => out.extend_from_slice(&bytes),
                }
            }
            4..=7 => {
                out.extend_from_slice(&first[..4]);
                out.extend_from_slice(&second[8 - len..4]);
            }
            _ => {
                out.extend_from_slice(&first);
                out.extend_from_slice(&second[16 - len..]);
            }
        }
    }
}

impl Partition {
    fn add<'a>(
        &mut self,
        routed: &Transaction,
        customer: &impl Fn(usize) -> &'a str,
        holdout: bool,
    ) -> Result<(), u32> {
        let key = routed.key;
        let long_ids = &self.long_ids;
        let same = |known: &Running| {
            known.key() == key
                && (key.len != LONG
                    || long_ids
                        .get(&known.index)
                        .is_some_and(|id| **id == *customer(routed.row as usize)))
        };
        let count = self.table.len();
        let running = match self
            .table
            .entry(key.hash(), same, |known| known.key().hash())
        {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let index = count as u32;
                if key.len == LONG {
                    self.long_ids
                        .insert(index, customer(routed.row as usize).into());
                }
                if holdout {
                    self.holdout.push((0, NO_PERIOD));
                }
                self.new_rows.push(routed.row);
                entry
                    .insert(Running {
                        words: key.words,
                        last_total: 0.0,
                        repeat_sum: -0.0,
                        first_period: NO_PERIOD,
                        last_period: NO_PERIOD,
                        index,
                        repeats_and_len: u32::from(key.len) << REPEAT_BITS,
                    })
                    .into_mut()
            }
        };
        let period = routed.period;
        if routed.in_holdout {
            let (periods, last) = &mut self.holdout[running.index as usize];
            if period < *last {
                return Err(routed.row);
            }
            if period > *last {
                *last = period;
                *periods += 1;
            }
            return Ok(());
        }
        let last = running.last_period;
        if last == NO_PERIOD {
            running.first_period = period;
            running.last_period = period;
            running.last_total = routed.amount;
        } else if period == last {
            running.last_total += routed.amount;
        } else if period > last {
            if last != running.first_period {
                running.repeat_sum += running.last_total;
            }
            // Below 2^REPEAT_BITS (see there): the length's bits are left alone.
            running.repeats_and_len += 1;
            running.last_period = period;
            running.last_total = routed.amount;
        } else {
            return Err(routed.row);
        }
        Ok(())
    }
}

impl ChunkedSummary {
    /// A summary counting periods of `unit`, ignoring transactions after `observation_end`
    /// (µs since the epoch, UTC), to which T is measured; without one, T is measured to the
    /// latest transaction of the log. With `holdout_start`, as [`summarize`] splits.
    pub fn new(
        unit: TimeUnit,
        observation_end: Option<i64>,
        holdout_start: Option<i64>,
    ) -> ChunkedSummary {
        ChunkedSummary {
            unit,
            observation_end,
            holdout_start,
            latest: None,
            partitions: (0..CHUNK_PARTITIONS)
                .map(|_| Partition::default())
                .collect(),
            order: Vec::new(),
            rows: 0,
        }
    }

    /// Adds the next rows of the log: row `i` of the chunk is customer `customer(i)`, at
    /// `timestamps[i]`, for `amounts[i]`. After an error the summary is unusable.
    pub fn push<'a, C>(
        &mut self,
        customer: C,
        timestamps: &[i64],
        amounts: &[f64],
    ) -> Result<(), ChunkError>
    where
        C: Fn(usize) -> &'a str + Sync,
    {
        let rows = timestamps.len().min(amounts.len());
        u32::try_from(rows).map_err(|_| ChunkError::ChunkTooLarge)?;
        let end = self.observation_end.unwrap_or(i64::MAX);
        let calibration_end = self.holdout_start.unwrap_or(i64::MAX);
        let holdout = self.holdout_start.is_some();
        let routed = route(
            &customer,
            timestamps,
            amounts,
            (self.unit, end, calibration_end),
            CHUNK_PARTITIONS,
            |hash| ((hash >> 32) as usize) % CHUNK_PARTITIONS,
        );
        if let Some(latest) = timestamps[..rows]
            .iter()
            .copied()
            .filter(|&at| at <= end)
            .max()
        {
            self.latest = Some(self.latest.map_or(latest, |l| l.max(latest)));
        }
        let customer = &customer;
        let refused: Option<u32> = self
            .partitions
            .par_iter_mut()
            .enumerate()
            .filter_map(|(index, partition)| {
                partition.new_rows.clear();
                routed
                    .iter()
                    .flat_map(|lists| &lists[index])
                    .try_for_each(|r| partition.add(r, customer, holdout))
                    .err()
            })
            .min();
        if let Some(row) = refused {
            return Err(ChunkError::OutOfOrder {
                row: self.rows + u64::from(row),
                chunk_row: row as usize,
                customer: customer(row as usize).to_owned(),
            });
        }
        // New customers in the order of their first rows, whichever partition took them.
        let mut new_at = vec![u16::MAX; rows];
        for (index, partition) in self.partitions.iter().enumerate() {
            for &row in &partition.new_rows {
                new_at[row as usize] = index as u16;
            }
        }
        self.order
            .extend(new_at.into_iter().filter(|&index| index != u16::MAX));
        self.rows += rows as u64;
        Ok(())
    }

    /// The customers read so far (with those seen only in the holdout).
    pub fn customers(&self) -> usize {
        self.order.len()
    }

    /// The rows read so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The summary, customers in order of first appearance; those whose first purchase is in
    /// the holdout are left out, as [`summarize`] leaves them.
    pub fn finish(self) -> Result<SummaryColumns, ChunkError> {
        let unit = self.unit;
        let Some(end) = self.observation_end.or(self.latest) else {
            return Ok(SummaryColumns {
                id_offsets: vec![0],
                holdout_frequency: self.holdout_start.map(|_| Vec::new()),
                rows: self.rows,
                ..SummaryColumns::default()
            });
        };
        if self.holdout_start.is_some_and(|start| start >= end) {
            return Err(ChunkError::HoldoutAfterEnd);
        }
        let end_period = unit.period(self.holdout_start.unwrap_or(end));
        let customers = self.order.len();
        let mut columns = SummaryColumns {
            id_bytes: Vec::new(),
            id_offsets: Vec::with_capacity(customers + 1),
            frequency: Vec::with_capacity(customers),
            recency: Vec::with_capacity(customers),
            t: Vec::with_capacity(customers),
            monetary_value: Vec::with_capacity(customers),
            holdout_frequency: self.holdout_start.map(|_| Vec::with_capacity(customers)),
            holdout_length: self
                .holdout_start
                .map(|start| (unit.period(end) - unit.period(start)) as f64),
            rows: self.rows,
        };
        columns.id_offsets.push(0);
        // Each partition's summaries back in a list in order of first appearance, its table
        // read in slot order and freed (reading the tables' random slots in the order below
        // took twice as long as this and the list together).
        let partitions: Vec<Finished> = self
            .partitions
            .into_par_iter()
            .map(|p| {
                let mut customers = vec![Running::EMPTY; p.table.len()];
                // Indices are 0..len, each given once when its customer was inserted.
                for c in p.table {
                    customers[c.index as usize] = c;
                }
                Finished {
                    customers,
                    long_ids: p.long_ids,
                    holdout: p.holdout,
                }
            })
            .collect();
        let mut next = vec![0usize; partitions.len()];
        for &index in &self.order {
            let p = &partitions[usize::from(index)];
            let at = next[usize::from(index)];
            next[usize::from(index)] += 1;
            let c = &p.customers[at];
            let first = c.first_period;
            if first == NO_PERIOD {
                continue;
            }
            let key = c.key();
            match p.long_ids.get(&(at as u32)) {
                Some(id) => columns.id_bytes.extend_from_slice(id.as_bytes()),
                None => key.write_short(&mut columns.id_bytes),
            }
            let offset =
                i32::try_from(columns.id_bytes.len()).map_err(|_| ChunkError::IdsTooLong)?;
            columns.id_offsets.push(offset);
            let repeats = c.repeats();
            let monetary_value = if repeats == 0 {
                0.0
            } else {
                (c.repeat_sum + c.last_total) / f64::from(repeats)
            };
            columns.frequency.push(f64::from(repeats));
            columns.recency.push(f64::from(c.last_period - first));
            columns.t.push((end_period - i64::from(first)) as f64);
            columns.monetary_value.push(monetary_value);
            if let Some(holdout) = &mut columns.holdout_frequency {
                holdout.push(f64::from(p.holdout[at].0));
            }
        }
        Ok(columns)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn day(n: i64) -> i64 {
        n * MICROS_PER_DAY
    }

    fn summarize_rows(
        rows: &[(&str, i64, f64)],
        unit: TimeUnit,
        observation_end: i64,
        holdout_start: Option<i64>,
    ) -> Vec<CustomerSummary> {
        let timestamps: Vec<i64> = rows.iter().map(|r| r.1).collect();
        let amounts: Vec<f64> = rows.iter().map(|r| r.2).collect();
        summarize(
            |i| rows[i].0,
            &timestamps,
            &amounts,
            unit,
            observation_end,
            holdout_start,
        )
        .unwrap()
    }

    /// The definitions applied literally, one customer at a time: the reference for the
    /// partitioned, parallel summary.
    fn summarize_naively(
        rows: &[(&str, i64, f64)],
        unit: TimeUnit,
        observation_end: i64,
        holdout_start: Option<i64>,
    ) -> Vec<CustomerSummary> {
        let mut order: Vec<&str> = Vec::new();
        let mut rows_of: HashMap<&str, Vec<usize>> = HashMap::new();
        for (row, &(id, at, _)) in rows.iter().enumerate() {
            if at <= observation_end {
                rows_of
                    .entry(id)
                    .or_insert_with(|| {
                        order.push(id);
                        Vec::new()
                    })
                    .push(row);
            }
        }
        let calibration_end = holdout_start.unwrap_or(i64::MAX);
        let end = unit.period(holdout_start.unwrap_or(observation_end));
        order
            .into_iter()
            .filter_map(|id| {
                let mine = &rows_of[id];
                let first_row = mine[0];
                let mut periods = std::collections::BTreeMap::new();
                let mut holdout_periods = std::collections::BTreeSet::new();
                for &(_, at, amount) in mine.iter().map(|&row| &rows[row]) {
                    if at >= calibration_end {
                        holdout_periods.insert(unit.period(at));
                    } else {
                        *periods.entry(unit.period(at)).or_insert(0.0) += amount;
                    }
                }
                let (&first, _) = periods.first_key_value()?;
                let (&last, _) = periods.last_key_value()?;
                let repeats: Vec<f64> = periods.values().skip(1).copied().collect();
                Some(CustomerSummary {
                    first_row: first_row as u32,
                    frequency: repeats.len() as u32,
                    recency: (last - first) as u32,
                    t: (end - first) as u32,
                    monetary_value: if repeats.is_empty() {
                        0.0
                    } else {
                        repeats.iter().sum::<f64>() / repeats.len() as f64
                    },
                    holdout_frequency: holdout_start.map(|_| holdout_periods.len() as u32),
                })
            })
            .collect()
    }

    /// Enough rows for many partitions and chunks, with customers spread over the whole log,
    /// several transactions in one period, transactions after the end and in the holdout.
    #[test]
    fn partitioned_summary_equals_the_definitions() {
        let mut rng = crate::testing::Rng::new(7);
        // Ids of every length class the partition tables tell apart: 0 to 3 bytes, 4 to 7,
        // 8 to 16, and longer ids that share their length and first 8 bytes.
        let ids: Vec<String> = (0..3000)
            .map(|i| match i % 5 {
                0 => format!("{}", i % 1000),
                1 => format!("c{}", i * 7919 % 3001),
                2 => format!("customer-{}", i * 7919 % 3001),
                3 => format!("customer-{:0>20}", i),
                _ => format!("customer-{:0>20}-{}", i % 7, i),
            })
            .chain([String::new()])
            .collect();
        let rows: Vec<(&str, i64, f64)> = (0..60_000)
            .map(|_| {
                let id = &ids[(rng.uniform() * ids.len() as f64) as usize];
                let at = (rng.uniform() * 400.0 * MICROS_PER_DAY as f64) as i64;
                (id.as_str(), at, (rng.uniform() * 100.0).round() / 4.0)
            })
            .collect();
        for (unit, end, holdout) in [
            (TimeUnit::Day, day(380), None),
            (TimeUnit::Week, day(400), None),
            (TimeUnit::Week, day(390), Some(day(300))),
            (TimeUnit::Hour, day(390), Some(day(300))),
            (TimeUnit::Month, day(390), Some(day(300))),
            (TimeUnit::Quarter, day(400), None),
            (TimeUnit::Year, day(400), None),
        ] {
            let fast = summarize_rows(&rows, unit, end, holdout);
            assert_eq!(
                fast.len(),
                summarize_naively(&rows, unit, end, holdout).len()
            );
            assert_eq!(fast, summarize_naively(&rows, unit, end, holdout));
        }
    }

    /// A log in time order, read in chunks of every size, gives the summary of the whole to
    /// the bit, with and without a holdout and an end of observation; a row out of time order
    /// for its customer is refused, naming it.
    #[test]
    fn chunked_summary_equals_the_whole_one() {
        let mut rng = crate::testing::Rng::new(11);
        let ids: Vec<String> = (0..800)
            .map(|i| match i % 5 {
                0 => format!("c{i}"),
                1 => format!("customer-{i:0>12}"),
                2 => format!("{}", i % 97),
                3 => format!("k{}", i % 9),
                _ => format!("customer-{:0>20}-{}", i % 5, i),
            })
            .chain([String::new()])
            .collect();
        let mut rows: Vec<(&str, i64, f64)> = (0..20_000)
            .map(|_| {
                let id = &ids[(rng.uniform() * ids.len() as f64) as usize];
                let at = (rng.uniform() * 200.0 * MICROS_PER_DAY as f64) as i64;
                // Amounts whose sums depend on their order, so the order is checked too.
                (id.as_str(), at, rng.uniform() * 100.0)
            })
            .collect();
        rows.sort_by_key(|r| r.1);
        let latest = rows.iter().map(|r| r.1).max().unwrap();
        for (unit, end, holdout) in [
            (TimeUnit::Day, Some(day(190)), None),
            (TimeUnit::Week, None, None),
            (TimeUnit::Week, Some(day(200)), Some(day(150))),
            (TimeUnit::Month, None, Some(day(120))),
            (TimeUnit::Hour, Some(day(150)), None),
        ] {
            let whole = summarize_rows(&rows, unit, end.unwrap_or(latest), holdout);
            for chunk in [1, 7, 4096, rows.len()] {
                let mut chunked = ChunkedSummary::new(unit, end, holdout);
                for part in rows.chunks(chunk) {
                    let timestamps: Vec<i64> = part.iter().map(|r| r.1).collect();
                    let amounts: Vec<f64> = part.iter().map(|r| r.2).collect();
                    chunked.push(|i| part[i].0, &timestamps, &amounts).unwrap();
                }
                let columns = chunked.finish().unwrap();
                assert_eq!(columns.len(), whole.len(), "chunks of {chunk}");
                assert_eq!(columns.rows, rows.len() as u64);
                for (i, s) in whole.iter().enumerate() {
                    assert_eq!(columns.id(i), rows[s.first_row as usize].0);
                    assert_eq!(
                        (
                            columns.frequency[i],
                            columns.recency[i],
                            columns.t[i],
                            columns.monetary_value[i].to_bits(),
                            columns.holdout_frequency.as_ref().map(|h| h[i]),
                        ),
                        (
                            f64::from(s.frequency),
                            f64::from(s.recency),
                            f64::from(s.t),
                            s.monetary_value.to_bits(),
                            s.holdout_frequency.map(f64::from),
                        ),
                        "customer {i}, chunks of {chunk}, {unit:?}"
                    );
                }
                assert_eq!(
                    columns.holdout_length,
                    holdout.map(|h| (unit.period(end.unwrap_or(latest)) - unit.period(h)) as f64)
                );
            }
        }
        // Enough customers that each partition's table grows several times.
        let many: Vec<String> = (0..150_000).map(|i| format!("customer-{i}")).collect();
        let rows: Vec<(&str, i64, f64)> = (0..300_000)
            .map(|i| {
                let id = &many[(rng.uniform() * many.len() as f64) as usize];
                (id.as_str(), i * 60_000_000, rng.uniform() * 10.0)
            })
            .collect();
        let latest = rows.last().unwrap().1;
        let whole = summarize_rows(&rows, TimeUnit::Day, latest, None);
        let mut chunked = ChunkedSummary::new(TimeUnit::Day, None, None);
        for part in rows.chunks(70_000) {
            let timestamps: Vec<i64> = part.iter().map(|r| r.1).collect();
            let amounts: Vec<f64> = part.iter().map(|r| r.2).collect();
            chunked.push(|i| part[i].0, &timestamps, &amounts).unwrap();
        }
        let columns = chunked.finish().unwrap();
        assert_eq!(columns.len(), whole.len());
        for (i, s) in whole.iter().enumerate() {
            assert_eq!(columns.id(i), rows[s.first_row as usize].0);
            assert_eq!(columns.frequency[i], f64::from(s.frequency));
            assert_eq!(
                columns.monetary_value[i].to_bits(),
                s.monetary_value.to_bits()
            );
        }

        let mut chunked = ChunkedSummary::new(TimeUnit::Day, None, None);
        chunked.push(|_| "a", &[day(5)], &[1.0]).unwrap();
        chunked.push(|_| "b", &[day(1)], &[1.0]).unwrap();
        assert_eq!(
            chunked.push(|i| ["b", "a"][i], &[day(2), day(4)], &[1.0, 1.0]),
            Err(ChunkError::OutOfOrder {
                row: 3,
                chunk_row: 1,
                customer: "a".to_owned()
            })
        );
        let mut chunked = ChunkedSummary::new(TimeUnit::Day, None, Some(day(9)));
        chunked.push(|_| "a", &[day(5)], &[1.0]).unwrap();
        assert_eq!(chunked.finish(), Err(ChunkError::HoldoutAfterEnd));
    }

    /// Calendar periods against dates counted by hand: months of 28 to 31 days, leap years
    /// (2000 was one, 1900 and 2100 are not), days before 1970, and hours.
    #[test]
    fn calendar_periods() {
        // Days since 1970-01-01 of some dates, and their month since January 1970.
        let check = |unit: TimeUnit, days: i64, want: i64| {
            assert_eq!(unit.period(day(days)), want, "{unit:?} of day {days}");
            assert_eq!(
                unit.period(day(days) + MICROS_PER_DAY - 1),
                want,
                "{unit:?} of the end of day {days}"
            );
        };
        check(TimeUnit::Month, 0, 0); // 1970-01-01
        check(TimeUnit::Month, 30, 0); // 1970-01-31
        check(TimeUnit::Month, 31, 1); // 1970-02-01
        check(TimeUnit::Month, 58, 1); // 1970-02-28
        check(TimeUnit::Month, 59, 2); // 1970-03-01
        check(TimeUnit::Month, -1, -1); // 1969-12-31
        check(TimeUnit::Month, 11_016, 361); // 2000-02-29: (2000 − 1970)·12 + 1
        check(TimeUnit::Month, 11_017, 362); // 2000-03-01
        check(TimeUnit::Month, -25_508, -838); // 1900-03-01: 1900 was no leap year
        check(TimeUnit::Month, -25_509, -839); // 1900-02-28
        check(TimeUnit::Month, 47_541, 1562); // 2100-03-01
        check(TimeUnit::Month, 47_540, 1561); // 2100-02-28
        check(TimeUnit::Month, 20_454, 672); // 2026-01-01
        check(TimeUnit::Quarter, 20_454, 224); // 2026 Q1
        check(TimeUnit::Quarter, 20_453, 223); // 2025-12-31, Q4
        check(TimeUnit::Quarter, 20_544, 225); // 2026-04-01
        check(TimeUnit::Year, 20_453, 55);
        check(TimeUnit::Year, 20_454, 56);
        check(TimeUnit::Year, -1, -1);
        assert_eq!(TimeUnit::Hour.period(day(1) - 1), 23);
        assert_eq!(TimeUnit::Hour.period(day(1)), 24);
        assert_eq!(TimeUnit::Hour.period(-1), -1);
        for unit in TimeUnit::ALL {
            assert_eq!(TimeUnit::from_name(unit.name()), Some(unit));
        }
    }

    #[test]
    fn weeks_start_on_monday() {
        // 1970-01-04 was a Sunday, 1970-01-05 a Monday.
        assert_eq!(TimeUnit::Week.period(day(3)), TimeUnit::Week.period(day(0)));
        assert_eq!(
            TimeUnit::Week.period(day(4)),
            TimeUnit::Week.period(day(3)) + 1
        );
        assert_eq!(
            TimeUnit::Week.period(day(-4)),
            TimeUnit::Week.period(day(0)) - 1
        );
    }

    /// The example of `lifetimes`' documentation, by hand: customer a buys on days 0, 0, 3 and
    /// 10 (amounts 10, 20, 5, 7), b once on day 4; observation ends on day 12.
    #[test]
    fn daily_summary() {
        let rows = [
            ("a", day(0), 10.0),
            ("a", day(0), 20.0),
            ("b", day(4), 3.0),
            ("a", day(3), 5.0),
            ("a", day(10), 7.0),
        ];
        let s = summarize_rows(&rows, TimeUnit::Day, day(12), None);
        assert_eq!(s.len(), 2);
        // a: periods 0 (30), 3 (5), 10 (7): 2 repeats, recency 10, T 12, mean repeat 6.
        assert_eq!(
            (s[0].frequency, s[0].recency, s[0].t, s[0].monetary_value),
            (2, 10, 12, 6.0)
        );
        assert_eq!(
            (s[1].frequency, s[1].recency, s[1].t, s[1].monetary_value),
            (0, 0, 8, 0.0)
        );
        assert_eq!(s[0].holdout_frequency, None);
    }

    #[test]
    fn holdout_split_and_observation_end() {
        let rows = [
            ("a", day(0), 1.0),
            ("a", day(5), 1.0),
            ("a", day(21), 1.0), // holdout
            ("a", day(22), 1.0), // holdout, another period
            ("b", day(25), 1.0), // first purchase in the holdout: left out
            ("a", day(40), 1.0), // after observation end: ignored
        ];
        let s = summarize_rows(&rows, TimeUnit::Day, day(30), Some(day(20)));
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].frequency, s[0].recency, s[0].t, s[0].holdout_frequency),
            (1, 5, 20, Some(2))
        );
    }
}
