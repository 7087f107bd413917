//! What the continuous-time purchase models (BG/NBD, MBG/NBD, Pareto/NBD) share: customer
//! histories (x repeat purchases, the last at t_x, observed for T), the parallel sum their
//! likelihoods use, and the predictions every one of them makes.

use std::collections::HashMap;
use std::ops::Range;

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
        let (keys, weight) = merge_identical(rows.map(|(x, t_x, t, w)| ([x, t_x, t], w)));
        Histories {
            x: keys.iter().map(|k| k[0]).collect(),
            t_x: keys.iter().map(|k| k[1]).collect(),
            t: keys.iter().map(|k| k[2]).collect(),
            weight,
        }
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
) -> (Vec<[f64; K]>, Vec<f64>) {
    let mut index: HashMap<[u64; K], usize> = HashMap::new();
    let (mut keys, mut weights) = (Vec::new(), Vec::new());
    for (key, w) in rows {
        match index.entry(key.map(f64::to_bits)) {
            std::collections::hash_map::Entry::Occupied(i) => weights[*i.get()] += w,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(keys.len());
                keys.push(key);
                weights.push(w);
            }
        }
    }
    (keys, weights)
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
