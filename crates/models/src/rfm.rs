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

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use rayon::prelude::*;

/// FxHash (rustc's hasher): customer ids are not attacker-chosen keys of a long-lived table,
/// and SipHash costs more than the rest of the summary.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for &byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Microseconds in a day.
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The grain at which purchases are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Day,
    /// Monday to Sunday, as pandas' `W` periods.
    Week,
}

impl TimeUnit {
    /// The index of the period containing `micros` (UTC).
    pub fn period(self, micros: i64) -> i64 {
        let day = micros.div_euclid(MICROS_PER_DAY);
        match self {
            TimeUnit::Day => day,
            // 1970-01-01 was a Thursday: day + 3 puts Mondays at multiples of 7.
            TimeUnit::Week => (day + 3).div_euclid(7),
        }
    }
}

/// One customer's summary.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerSummary {
    /// Index of the customer's first row in the input.
    pub first_row: usize,
    pub frequency: f64,
    pub recency: f64,
    pub t: f64,
    pub monetary_value: f64,
    /// With a holdout split: periods with a purchase in the holdout.
    pub holdout_frequency: Option<f64>,
}

/// Summarizes transactions `(customer key, timestamp in µs, amount)`, observed up to and
/// including `observation_end`. With `holdout_start`, the summary covers the calibration
/// period (transactions before `holdout_start`, with T measured to it) and counts each
/// customer's purchase periods in the holdout; customers whose first purchase is in the
/// holdout are left out. Transactions after `observation_end` are ignored. Customers come
/// back in order of first appearance in the input.
pub fn summarize<'a>(
    transactions: impl Iterator<Item = (&'a str, i64, f64)>,
    unit: TimeUnit,
    observation_end: i64,
    holdout_start: Option<i64>,
) -> Vec<CustomerSummary> {
    let calibration_end = holdout_start.unwrap_or(i64::MAX);
    // (customer index, period, amount, in holdout)
    let mut ids: HashMap<&str, u32, BuildHasherDefault<FxHasher>> = HashMap::default();
    let mut first_rows = Vec::new();
    let mut rows: Vec<(u32, i64, f64, bool)> = Vec::with_capacity(transactions.size_hint().0);
    for (row, (customer, timestamp, amount)) in transactions.enumerate() {
        if timestamp > observation_end {
            continue;
        }
        let next = ids.len() as u32;
        let id = *ids.entry(customer).or_insert_with(|| {
            first_rows.push(row);
            next
        });
        rows.push((
            id,
            unit.period(timestamp),
            amount,
            timestamp >= calibration_end,
        ));
    }
    // Group rows by customer with a counting sort (ids are dense, 0..customers), then
    // summarize customers in parallel, each sorting its own few rows by period.
    let customers = first_rows.len();
    let mut offsets = vec![0usize; customers + 1];
    for &(id, ..) in &rows {
        offsets[id as usize + 1] += 1;
    }
    for i in 0..customers {
        offsets[i + 1] += offsets[i];
    }
    let mut next = offsets.clone();
    let mut grouped = vec![(0u32, 0i64, 0.0f64, false); rows.len()];
    for row in rows {
        let slot = &mut next[row.0 as usize];
        grouped[*slot] = row;
        *slot += 1;
    }
    let mut slices: Vec<&mut [(u32, i64, f64, bool)]> = Vec::with_capacity(customers);
    let mut rest = grouped.as_mut_slice();
    for i in 0..customers {
        let (head, tail) = rest.split_at_mut(offsets[i + 1] - offsets[i]);
        slices.push(head);
        rest = tail;
    }
    let end_period = unit.period(holdout_start.unwrap_or(observation_end));
    let holdout = holdout_start.is_some();
    // Ids were given in order of first appearance, so customers come out in that order.
    slices
        .into_par_iter()
        .enumerate()
        .map_init(
            || (Vec::new(), Vec::new()),
            |scratch, (id, rows)| {
                rows.sort_unstable_by_key(|r| r.1);
                summarize_customer(rows, end_period, holdout, first_rows[id], scratch)
            },
        )
        .collect::<Vec<_>>()
        .into_iter()
        // Customers whose first purchase falls in the holdout have no calibration history.
        .flatten()
        .collect()
}

/// One customer's summary from their rows sorted by period; `scratch` is reused between
/// customers to save allocations.
fn summarize_customer(
    rows: &[(u32, i64, f64, bool)],
    end_period: i64,
    holdout: bool,
    first_row: usize,
    scratch: &mut (Vec<(i64, f64)>, Vec<i64>),
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
        repeats.iter().map(|(_, a)| a).sum::<f64>() / repeats.len() as f64
    };
    Some(CustomerSummary {
        first_row,
        frequency: repeats.len() as f64,
        recency: (last - first) as f64,
        t: (end_period - first) as f64,
        monetary_value,
        holdout_frequency: holdout.then_some(holdout_periods.len() as f64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: i64) -> i64 {
        n * MICROS_PER_DAY
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
        let s = summarize(rows.into_iter(), TimeUnit::Day, day(12), None);
        assert_eq!(s.len(), 2);
        // a: periods 0 (30), 3 (5), 10 (7): 2 repeats, recency 10, T 12, mean repeat 6.
        assert_eq!(
            (s[0].frequency, s[0].recency, s[0].t, s[0].monetary_value),
            (2.0, 10.0, 12.0, 6.0)
        );
        assert_eq!(
            (s[1].frequency, s[1].recency, s[1].t, s[1].monetary_value),
            (0.0, 0.0, 8.0, 0.0)
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
        let s = summarize(rows.into_iter(), TimeUnit::Day, day(30), Some(day(20)));
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].frequency, s[0].recency, s[0].t, s[0].holdout_frequency),
            (1.0, 5.0, 20.0, Some(2.0))
        );
    }
}
