//! What the continuous-time purchase models (BG/NBD, MBG/NBD, Pareto/NBD) share: customer
//! histories (x repeat purchases, the last at t_x, observed for T), the parallel sum their
//! likelihoods use, and the predictions every one of them makes.

use std::ops::Range;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use rayon::prelude::*;

use crate::ad::Real;

/// Customer histories (x, t_x, T), identical ones merged with a weight.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histories {
    pub x: Vec<f64>,
    pub t_x: Vec<f64>,
    pub t: Vec<f64>,
    pub weight: Vec<f64>,
}

impl Histories {
    /// Merges identical (x, t_x, T) into one row with the summed weight: fitting cost then
    /// grows with the number of distinct histories, not customers.
    pub fn compress(rows: impl Iterator<Item = (f64, f64, f64, f64)>) -> Histories {
        Histories::compress_indexed(rows).0
    }

    /// [`Histories::compress`], also giving for each input row the index of its merged
    /// history, so per-customer predictions can be computed once per distinct history.
    pub fn compress_indexed(
        rows: impl Iterator<Item = (f64, f64, f64, f64)>,
    ) -> (Histories, Vec<u32>) {
        let merged = merge_identical(rows.map(|(x, t_x, t, w)| ([x, t_x, t], w)));
        let histories = Histories {
            x: merged.keys.iter().map(|k| k[0]).collect(),
            t_x: merged.keys.iter().map(|k| k[1]).collect(),
            t: merged.keys.iter().map(|k| k[2]).collect(),
            weight: merged.weights,
        };
        (histories, merged.index)
    }

    pub fn len(&self) -> usize {
        self.x.len()
    }

    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// Σ weights: the number of customers.
    pub fn customers(&self) -> f64 {
        self.weight.iter().sum()
    }

    /// Weighted mean of T, a natural time scale for starting values.
    pub fn mean_t(&self) -> f64 {
        let total = self.customers();
        self.t
            .iter()
            .zip(&self.weight)
            .map(|(t, w)| t * w)
            .sum::<f64>()
            / total.max(1.0)
    }
}

/// Rows per distinct value below which a per-value table is not worth building.
const ROWS_PER_TABLE_ENTRY: usize = 4;

/// The distinct values of a column and each row's index into them: a likelihood term that
/// depends on one value alone is computed once per distinct value (customer bases have a few
/// hundred distinct frequencies or observation times, and hundreds of thousands of histories).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Distinct {
    pub(crate) values: Vec<f64>,
    pub(crate) index: Vec<u32>,
}

impl Distinct {
    /// The distinct values of `column` if they repeat enough for a table to pay: on average
    /// at least [`ROWS_PER_TABLE_ENTRY`] rows per value. Otherwise `None`, and the term is
    /// computed per row: a lookup into a table larger than the caches costs as much as the
    /// logarithm it saves (timestamps to the second make nearly every value distinct).
    pub(crate) fn if_repeated(column: &[f64]) -> Option<Distinct> {
        let distinct = Distinct::of(column);
        (distinct.values.len() * ROWS_PER_TABLE_ENTRY <= column.len()).then_some(distinct)
    }

    pub(crate) fn of(column: &[f64]) -> Distinct {
        let mut values = column.to_vec();
        values.sort_unstable_by(f64::total_cmp);
        values.dedup_by(|a, b| a.to_bits() == b.to_bits());
        let index = column
            .iter()
            .map(|v| {
                values
                    .binary_search_by(|probe| probe.total_cmp(v))
                    .map_or(0, |i| i as u32)
            })
            .collect();
        Distinct { values, index }
    }
}

/// P(alive) = 1 / (1 + e^L) from the log-odds L of having dropped out, without overflow for
/// large L.
pub(crate) fn alive_given_ln_odds(l: f64) -> f64 {
    if l > 0.0 {
        (-l).exp() / (1.0 + (-l).exp())
    } else {
        1.0 / (1.0 + l.exp())
    }
}

/// Merges rows with identical keys, summing their weights; keys keep their first order.
pub(crate) fn merge_identical<const K: usize>(
    rows: impl Iterator<Item = ([f64; K], f64)>,
) -> Merged<K> {
    let mut table: HashTable<u32> = HashTable::new();
    let mut merged = Merged {
        keys: Vec::new(),
        weights: Vec::new(),
        index: Vec::with_capacity(rows.size_hint().0),
    };
    let hash = |key: &[f64; K]| crate::hash::hash_words(&key.map(f64::to_bits));
    let same =
        |a: &[f64; K], b: &[f64; K]| a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
    for (key, w) in rows {
        let keys = &merged.keys;
        let slot = match table.entry(
            hash(&key),
            |&i| same(&keys[i as usize], &key),
            |&i| hash(&keys[i as usize]),
        ) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                let slot = keys.len() as u32;
                entry.insert(slot);
                merged.keys.push(key);
                merged.weights.push(0.0);
                slot
            }
        };
        merged.weights[slot as usize] += w;
        merged.index.push(slot);
    }
    merged
}

/// Distinct keys in order of first appearance, their summed weights, and each input row's key.
pub(crate) struct Merged<const K: usize> {
    pub(crate) keys: Vec<[f64; K]>,
    pub(crate) weights: Vec<f64>,
    pub(crate) index: Vec<u32>,
}

/// Rows per parallel task: large enough that scheduling costs nothing next to the work.
const CHUNK: usize = 4096;

/// Σ of `part(range)` over 0..rows, split into chunks computed in parallel on all cores. The
/// chunk sums are added in chunk order, so the result is the same bits on every run, however
/// the work was scheduled.
pub(crate) fn par_sum<R: Real>(rows: usize, part: impl Fn(Range<usize>) -> R + Sync) -> R {
    if rows <= CHUNK {
        return part(0..rows);
    }
    let sums: Vec<R> = (0..rows.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| part(c * CHUNK..((c + 1) * CHUNK).min(rows)))
        .collect();
    sums.into_iter().fold(R::constant(0.0), |p, q| p + q)
}

/// The predictions of a fitted purchase model. Times are in the model's time units.
pub trait PurchaseModel: Sync {
    /// P(the customer is still active at T | x, t_x, T).
    fn p_alive(&self, x: f64, t_x: f64, t: f64) -> f64;
    /// E[purchases in (T, T + horizon] | x, t_x, T]; `None` if a series did not converge.
    fn expected_purchases(&self, horizon: f64, x: f64, t_x: f64, t: f64) -> Option<f64>;
    /// E[X(t)]: expected repeat purchases of a new customer in (0, t].
    fn population_expected_purchases(&self, t: f64) -> Option<f64>;
    /// P(X(t) = n) for a new customer, n = 0..=max_n.
    fn purchase_distribution(&self, t: f64, max_n: usize) -> Vec<f64>;
}

/// [`par_sum`] for several plain sums at once, in the same deterministic order.
pub(crate) fn par_sums<const K: usize>(
    rows: usize,
    part: impl Fn(Range<usize>) -> [f64; K] + Sync,
) -> [f64; K] {
    let chunks: Vec<[f64; K]> = (0..rows.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| part(c * CHUNK..((c + 1) * CHUNK).min(rows)))
        .collect();
    chunks.into_iter().fold([0.0; K], |mut total, chunk| {
        total.iter_mut().zip(chunk).for_each(|(t, c)| *t += c);
        total
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_histories_merge_in_order_of_first_appearance() {
        let rows = [
            (2.0, 5.0, 9.0, 1.0),
            (0.0, 0.0, 9.0, 1.0),
            (2.0, 5.0, 9.0, 3.0),
            (0.0, 0.0, 8.0, 1.0),
            (0.0, 0.0, 9.0, 0.5),
        ];
        let (h, index) = Histories::compress_indexed(rows.into_iter());
        assert_eq!(h.x, [2.0, 0.0, 0.0]);
        assert_eq!(h.t, [9.0, 9.0, 8.0]);
        assert_eq!(h.weight, [4.0, 1.5, 1.0]);
        assert_eq!(index, [0, 1, 0, 2, 1]);
    }
}
