//! What the continuous-time purchase models (BG/NBD, MBG/NBD, Pareto/NBD) share: customer
//! histories (x repeat purchases, the last at t_x, observed for T), the parallel sum their
//! likelihoods use, and the predictions every one of them makes.

use std::ops::Range;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use rayon::prelude::*;

use crate::ad::Real;
use crate::discount::Discounting;

/// Customer histories (x, t_x, T), identical ones merged with a weight.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histories {
    pub x: Vec<f64>,
    pub t_x: Vec<f64>,
    pub t: Vec<f64>,
    pub weight: Vec<f64>,
}

impl Histories {
    /// Merges identical (x, t_x, T) into one row with the summed weight, where that removes at
    /// least half the rows: fitting cost then grows with the number of distinct histories, not
    /// customers. (Where nearly every history is distinct, merging would cost more than it
    /// saves; see `merge_identical`.)
    pub fn compress(rows: impl Iterator<Item = (f64, f64, f64, f64)>) -> Histories {
        Histories::compress_indexed(rows).0
    }

    /// [`Histories::compress`], also giving for each input row the index of its merged
    /// history, so per-customer predictions can be computed once per distinct history.
    pub fn compress_indexed(
        rows: impl Iterator<Item = (f64, f64, f64, f64)>,
    ) -> (Histories, Vec<u32>) {
        let Merged {
            keys: [x, t_x, t],
            weights,
            index,
        } = merge_identical(rows);
        let histories = Histories {
            x,
            t_x,
            t,
            weight: weights,
        };
        (histories, index)
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

/// ln(1 + e^l), without overflow for large l; 0 for odds of exactly 0 (`None`).
pub(crate) fn ln_one_plus_odds(l: Option<f64>) -> f64 {
    match l {
        None => 0.0,
        Some(l) if l > 0.0 => l + (-l).exp().ln_1p(),
        Some(l) => l.exp().ln_1p(),
    }
}

/// Inputs smaller than this are always merged: the table then fits in the caches and costs
/// little whatever the data.
const ALWAYS_MERGE_BELOW: usize = 1 << 16;
/// Merge only if it would remove at least this share of the rows.
const MERGE_WHEN_REMOVING: f64 = 0.5;

/// Merges rows with identical keys, summing their weights; keys keep their first order.
///
/// Merging pays on coarse data (purchases on days, a few hundred distinct frequencies and
/// observation times: a million customers have about 100 000 distinct histories) and costs on
/// fine data (timestamps to the second make nearly every history distinct), where its
/// hash-table insert per row, the table outgrowing the caches, costs more than the per-row
/// work of a whole fit. So it is decided from the data: the distinct keys are counted first by
/// a pass of linear counting (a bitmap of hashes, Whang et al. 1990, within about 1 % at this
/// load), and if merging would remove less than half the rows, every row is kept as it is.
pub(crate) fn merge_identical(rows: impl Iterator<Item = (f64, f64, f64, f64)>) -> Merged {
    let mut columns = Merged::with_capacity(rows.size_hint().0);
    for (a, b, c, w) in rows {
        columns.keys[0].push(a);
        columns.keys[1].push(b);
        columns.keys[2].push(c);
        columns.weights.push(w);
    }
    let n = columns.weights.len();
    let key = |i: usize| columns.keys.each_ref().map(|k| k[i].to_bits());
    let hash = |i: usize| crate::hash::hash_words(&key(i));
    if n >= ALWAYS_MERGE_BELOW
        && estimate_distinct(n, hash) > (1.0 - MERGE_WHEN_REMOVING) * n as f64
    {
        columns.index = (0..n as u32).collect();
        return columns;
    }
    // The distinct keys side by side while merging: comparing with one is one cache line.
    let mut table: HashTable<u32> = HashTable::new();
    let mut distinct: Vec<[u64; 3]> = Vec::new();
    let mut weights: Vec<f64> = Vec::new();
    let mut index = Vec::with_capacity(n);
    for row in 0..n {
        let row_key = key(row);
        let slot = match table.entry(
            hash(row),
            |&i| distinct[i as usize] == row_key,
            |&i| crate::hash::hash_words(&distinct[i as usize]),
        ) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                let slot = distinct.len() as u32;
                entry.insert(slot);
                distinct.push(row_key);
                weights.push(0.0);
                slot
            }
        };
        weights[slot as usize] += columns.weights[row];
        index.push(slot);
    }
    Merged {
        keys: std::array::from_fn(|k| distinct.iter().map(|d| f64::from_bits(d[k])).collect()),
        weights,
        index,
    }
}

/// The number of distinct keys by linear counting: hash each into a bitmap of m ≥ 2n bits;
/// with a share V of bits still clear, about −m ln V distinct keys were set.
fn estimate_distinct(n: usize, hash: impl Fn(usize) -> u64 + Sync) -> f64 {
    let bits = (2 * n).next_power_of_two().max(64);
    let shift = 64 - bits.trailing_zeros();
    let words = bits / 64;
    // A bitmap per worker, or-ed together: setting bits commutes, so the estimate does not
    // depend on the scheduling.
    // At most about four pieces a core, so at most that many bitmaps exist at once.
    let piece = (n / (4 * rayon::current_num_threads())).max(1 << 16);
    let bitmap = (0..n)
        .into_par_iter()
        .with_min_len(piece)
        .fold(
            || vec![0u64; words],
            |mut bitmap, row| {
                let bit = (hash(row) >> shift) as usize;
                bitmap[bit / 64] |= 1 << (bit % 64);
                bitmap
            },
        )
        .reduce(
            || vec![0u64; words],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a |= b);
                a
            },
        );
    let set: u32 = bitmap.iter().map(|w| w.count_ones()).sum();
    let clear = (bits as f64 - f64::from(set)).max(1.0) / bits as f64;
    -(bits as f64) * clear.ln()
}

/// Distinct keys (three columns) in order of first appearance, their summed weights, and each
/// input row's key.
pub(crate) struct Merged {
    pub(crate) keys: [Vec<f64>; 3],
    pub(crate) weights: Vec<f64>,
    pub(crate) index: Vec<u32>,
}

impl Merged {
    fn with_capacity(rows: usize) -> Merged {
        Merged {
            keys: std::array::from_fn(|_| Vec::with_capacity(rows)),
            weights: Vec::with_capacity(rows),
            index: Vec::new(),
        }
    }
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

/// Histories reordered so that equal purchase counts x are contiguous: a likelihood pass then
/// hoists every term that depends on x alone out of its loop over rows, and reads each column
/// in memory order (the tables of distinct values this replaced cost a cache miss per row
/// once timestamps to the second made nearly every value distinct).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ByFrequency {
    /// Each distinct x, ascending.
    pub(crate) groups: Vec<FrequencyGroup>,
    pub(crate) t_x: Vec<f64>,
    pub(crate) t: Vec<f64>,
    pub(crate) weight: Vec<f64>,
    /// Pieces of at most [`CHUNK`] rows of one group each: the parallel tasks of a pass.
    pieces: Vec<(usize, Range<usize>)>,
}

/// Largest purchase count looked up in a direct table rather than hashed.
const DIRECT_VALUES: usize = 1 << 16;

/// The distinct values of `column` (in order of first appearance) and each row's index into
/// them. Purchase counts are small whole numbers, indexed directly; anything else is hashed.
pub(crate) fn distinct_values(column: &[f64]) -> (Vec<f64>, Vec<u32>) {
    let small_whole = |v: f64| v >= 0.0 && v < DIRECT_VALUES as f64 && v.fract() == 0.0;
    let mut values: Vec<f64> = Vec::new();
    if column.iter().all(|&v| small_whole(v)) {
        let mut slot_of_value = vec![u32::MAX; DIRECT_VALUES];
        let slots = column
            .iter()
            .map(|&v| {
                let slot = &mut slot_of_value[v as usize];
                if *slot == u32::MAX {
                    *slot = values.len() as u32;
                    values.push(v);
                }
                *slot
            })
            .collect();
        return (values, slots);
    }
    let mut table: HashTable<u32> = HashTable::new();
    let hash = |v: f64| crate::hash::hash_words(&[v.to_bits()]);
    let slots = column
        .iter()
        .map(|&v| {
            let found = table.entry(
                hash(v),
                |&s| values[s as usize].to_bits() == v.to_bits(),
                |&s| hash(values[s as usize]),
            );
            match found {
                Entry::Occupied(entry) => *entry.get(),
                Entry::Vacant(entry) => {
                    values.push(v);
                    *entry.insert(values.len() as u32 - 1).get()
                }
            }
        })
        .collect();
    (values, slots)
}

/// The histories of one purchase count.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FrequencyGroup {
    pub(crate) x: f64,
    /// Its rows in [`ByFrequency`]'s columns.
    pub(crate) rows: Range<usize>,
    /// Σ weight: the customers with this x.
    pub(crate) weight: f64,
}

impl ByFrequency {
    /// A counting sort by x: linear in the rows, stable within a group.
    pub(crate) fn new(h: &Histories) -> ByFrequency {
        let (values, slot_of) = distinct_values(&h.x);
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_unstable_by(|&i, &j| values[i].total_cmp(&values[j]));
        let mut counts = vec![0usize; values.len()];
        let mut weights = vec![0.0; values.len()];
        for (&slot, &w) in slot_of.iter().zip(&h.weight) {
            counts[slot as usize] += 1;
            weights[slot as usize] += w;
        }
        let mut next = vec![0usize; values.len()];
        let mut start = 0;
        let mut groups = Vec::with_capacity(values.len());
        for &slot in &order {
            next[slot] = start;
            groups.push(FrequencyGroup {
                x: values[slot],
                rows: start..start + counts[slot],
                weight: weights[slot],
            });
            start += counts[slot];
        }
        // One scattering pass per column (in parallel), each row to the next place of its group.
        let permute = |column: &[f64]| {
            let mut out = vec![0.0; column.len()];
            let mut next = next.clone();
            for (&slot, &v) in slot_of.iter().zip(column) {
                out[next[slot as usize]] = v;
                next[slot as usize] += 1;
            }
            out
        };
        let ((t_x, t), weight) = rayon::join(
            || rayon::join(|| permute(&h.t_x), || permute(&h.t)),
            || permute(&h.weight),
        );
        let pieces = groups
            .iter()
            .enumerate()
            .flat_map(|(g, group)| {
                group
                    .rows
                    .clone()
                    .step_by(CHUNK)
                    .map(move |s| (g, s..(s + CHUNK).min(group.rows.end)))
            })
            .collect();
        ByFrequency {
            t_x,
            t,
            weight,
            groups,
            pieces,
        }
    }

    /// Sorts the rows of each parallel piece by t_x, for a pass whose per-row work grows with
    /// t_x's distance from T (the Pareto/NBD series: a block of rows then needs about as many
    /// terms as each of its rows, not as its worst). Sums over the rows do not depend on their
    /// order beyond rounding, and the order is fixed, so results stay the same on every run.
    pub(crate) fn sort_pieces_by_t_x(&mut self) {
        let sorted: Vec<[Vec<f64>; 3]> = self
            .pieces
            .par_iter()
            .map(|(_, rows)| {
                let mut order: Vec<usize> = rows.clone().collect();
                order.sort_by(|&i, &j| self.t_x[i].total_cmp(&self.t_x[j]));
                [&self.t_x, &self.t, &self.weight].map(|c| order.iter().map(|&i| c[i]).collect())
            })
            .collect();
        for ((_, rows), [t_x, t, weight]) in self.pieces.iter().zip(sorted) {
            self.t_x[rows.clone()].copy_from_slice(&t_x);
            self.t[rows.clone()].copy_from_slice(&t);
            self.weight[rows.clone()].copy_from_slice(&weight);
        }
    }

    /// `piece(group, rows)` for pieces of every group, computed in parallel, in a fixed order
    /// (adding them in that order gives the same bits on every run).
    pub(crate) fn par_pieces<T: Send>(
        &self,
        piece: impl Fn(&FrequencyGroup, Range<usize>) -> T + Sync,
    ) -> Vec<T> {
        self.pieces
            .par_iter()
            .map(|(g, rows)| piece(&self.groups[*g], rows.clone()))
            .collect()
    }
}

/// Σ `row(values)` over the rows of `columns` (all of one length), K sums at once. Rows are
/// computed a block at a time into buffers, a loop without dependencies between iterations
/// that the compiler vectorizes (inlined into a caller compiled for AVX2 by `multiversion`,
/// four rows per instruction), then summed into four running sums per output. The order of
/// additions is fixed by the code, so every instruction set gives the same bits.
/// Rows per block of a vectorized pass: its buffers stay in L1.
pub(crate) const BLOCK: usize = 64;

/// out[i] = f(columns[..][i]) for the rows of `columns` (at most `out.len()`): a loop the
/// compiler vectorizes when `f` is branch-free.
#[inline(always)]
pub(crate) fn map_into<const C: usize>(
    out: &mut [f64],
    columns: [&[f64]; C],
    f: impl Fn([f64; C]) -> f64,
) {
    let n = columns.first().map_or(0, |c| c.len()).min(out.len());
    let columns = columns.map(|c| &c[..n]);
    for (i, o) in out[..n].iter_mut().enumerate() {
        let mut values = [0.0; C];
        for (value, column) in values.iter_mut().zip(&columns) {
            *value = column[i];
        }
        *o = f(values);
    }
}

#[inline(always)]
pub(crate) fn lane_sums<const C: usize, const K: usize>(
    columns: [&[f64]; C],
    row: impl Fn([f64; C]) -> [f64; K],
) -> [f64; K] {
    const LANES: usize = 4;
    let n = columns.first().map_or(0, |c| c.len());
    let mut sums = [[0.0; LANES]; K];
    let mut out = [[0.0; BLOCK]; K];
    let mut start = 0;
    while start < n {
        let len = BLOCK.min(n - start);
        let block = columns.map(|c| &c[start..start + len]);
        for j in 0..len {
            let mut values = [0.0; C];
            for (value, column) in values.iter_mut().zip(&block) {
                *value = column[j];
            }
            let results = row(values);
            for (o, result) in out.iter_mut().zip(results) {
                o[j] = result;
            }
        }
        for (sum, o) in sums.iter_mut().zip(&out) {
            let mut chunks = o[..len].chunks_exact(LANES);
            for chunk in &mut chunks {
                for l in 0..LANES {
                    sum[l] += chunk[l];
                }
            }
            for (l, value) in chunks.remainder().iter().enumerate() {
                sum[l] += value;
            }
        }
        start += len;
    }
    sums.map(|lanes| (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
}

/// The predictions of a fitted purchase model. Times are in the model's time units.
pub trait PurchaseModel: Sync {
    /// P(the customer is still active at T | x, t_x, T).
    fn p_alive(&self, x: f64, t_x: f64, t: f64) -> f64;
    /// E[purchases in (T, T + horizon] | x, t_x, T]; `None` if a series did not converge.
    fn expected_purchases(&self, horizon: f64, x: f64, t_x: f64, t: f64) -> Option<f64> {
        self.expected_purchases_with_p_alive(self.p_alive(x, t_x, t), horizon, x, t_x, t)
    }
    /// [`Self::expected_purchases`] where the history's P(alive), `p_alive` (from
    /// [`Self::p_alive`] of the same history), is known: a history's predictions share it, and
    /// it costs as much as some of them.
    fn expected_purchases_with_p_alive(
        &self,
        p_alive: f64,
        horizon: f64,
        x: f64,
        t_x: f64,
        t: f64,
    ) -> Option<f64>;
    /// [`Self::expected_purchases`] at several horizons of one customer (a CLV discounted
    /// month by month asks for a dozen). A model whose series share their coefficients across
    /// horizons computes them once; the results are the same bits either way.
    fn expected_purchases_at(
        &self,
        horizons: &[f64],
        x: f64,
        t_x: f64,
        t: f64,
    ) -> Option<Vec<f64>> {
        self.expected_purchases_at_with_p_alive(self.p_alive(x, t_x, t), horizons, x, t_x, t)
    }
    /// [`Self::expected_purchases_at`] with the history's P(alive) known, as in
    /// [`Self::expected_purchases_with_p_alive`]: one P(alive) for all the horizons.
    fn expected_purchases_at_with_p_alive(
        &self,
        p_alive: f64,
        horizons: &[f64],
        x: f64,
        t_x: f64,
        t: f64,
    ) -> Option<Vec<f64>> {
        horizons
            .iter()
            .map(|&h| self.expected_purchases_with_p_alive(p_alive, h, x, t_x, t))
            .collect()
    }
    /// E[purchases in (T, T + horizon] | alive at T, x, T] at each horizon: the conditional
    /// expectation without its P(alive) factor. It depends on x and T alone (t_x enters only
    /// through P(alive)), so customers sharing them share it.
    fn expected_purchases_if_alive_at(&self, horizons: &[f64], x: f64, t: f64) -> Option<Vec<f64>>;
    /// E[λ | alive at T, x, T]: the purchase rate per time unit of a customer known to be
    /// alive, (r+x)/(α+T) in BG/NBD, MBG/NBD and Pareto/NBD (given alive, λ ~ Gamma(r+x, α+T)).
    /// P(alive) × this × h is what the customer would buy over h if they never left.
    fn purchase_rate_if_alive(&self, x: f64, t: f64) -> f64;
    /// P(no purchase in (T, T + window] | x, t_x, T): the usual definition of a lapsed
    /// customer where no contract says when one leaves.
    fn p_no_purchase(&self, window: f64, x: f64, t_x: f64, t: f64) -> Option<f64> {
        self.p_no_purchase_with_p_alive(self.p_alive(x, t_x, t), window, x, t_x, t)
    }
    /// [`Self::p_no_purchase`] with the history's P(alive) known, as in
    /// [`Self::expected_purchases_with_p_alive`].
    fn p_no_purchase_with_p_alive(
        &self,
        p_alive: f64,
        window: f64,
        x: f64,
        t_x: f64,
        t: f64,
    ) -> Option<f64>;
    /// P(still active at T + window | x, t_x, T).
    fn p_alive_at(&self, window: f64, x: f64, t_x: f64, t: f64) -> Option<f64> {
        self.p_alive_at_with_p_alive(self.p_alive(x, t_x, t), window, x, t_x, t)
    }
    /// [`Self::p_alive_at`] with the history's P(alive) known, as in
    /// [`Self::expected_purchases_with_p_alive`].
    fn p_alive_at_with_p_alive(
        &self,
        p_alive: f64,
        window: f64,
        x: f64,
        t_x: f64,
        t: f64,
    ) -> Option<f64>;
    /// P(still active at an earlier time `at`, 0 ≤ at ≤ T | x, t_x, T): looking back, given
    /// everything seen up to T. 1 before the last purchase (a later purchase proves the
    /// customer was there); from t_x on, the share of the likelihood in which the dropout
    /// comes after `at`. What a past period's churn is counted with where no contract says
    /// who left; NaN where a series did not converge.
    fn p_alive_back_at(&self, at: f64, x: f64, t_x: f64, t: f64) -> f64;
    /// Discounted expected residual transactions of a customer alive at T: E[Σ over purchases
    /// after T of e^{−δ(τ−T)} | alive at T, x, T], so that DERT = P(alive) × this. By default
    /// δ ∫₀^∞ e^{−δu} E[X(T, T+u) | alive] du (integrating ∫ e^{−δu} dE[X] by parts), taken
    /// numerically ([`Discounting`]); a model with a closed form overrides it.
    fn dert_if_alive(&self, discounting: &Discounting, x: f64, t: f64) -> Option<f64> {
        let expected = self.expected_purchases_if_alive_at(discounting.times_vanishing(), x, t)?;
        let value = discounting.rate() * discounting.integral_vanishing(&expected);
        value.is_finite().then_some(value)
    }
    /// P(X(T, T+t) = n | alive at T, x, T), n = 0..=max_n: what a customer known to be
    /// alive will buy, which is what a new customer buys under the posterior parameters (the
    /// future of these models forgets the past but through them). With P(alive) the whole
    /// distribution is (1 − P(alive))·1{n = 0} + P(alive)·this.
    fn purchase_distribution_if_alive(&self, t: f64, x: f64, t_cal: f64, max_n: usize) -> Vec<f64>;
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

    /// Large inputs are merged when that removes at least half the rows, and kept as they are
    /// otherwise; the estimate of distinct keys is within a few percent either way.
    #[test]
    fn merging_is_decided_from_the_share_of_distinct_histories() {
        let check = |distinct: usize, rows: usize, merged: bool| {
            let keys: Vec<[f64; 3]> = (0..rows)
                .map(|i| [(i % distinct) as f64, 0.5, 39.0])
                .collect();
            let estimate = estimate_distinct(rows, |i| {
                crate::hash::hash_words(&keys[i].map(f64::to_bits))
            });
            assert!(
                (estimate - distinct as f64).abs() < 0.03 * distinct as f64,
                "{estimate} vs {distinct}"
            );
            let (h, index) =
                Histories::compress_indexed(keys.iter().map(|k| (k[0], k[1], k[2], 1.0)));
            assert_eq!(h.len(), if merged { distinct } else { rows });
            assert_eq!(h.customers(), rows as f64);
            assert_eq!(
                index[rows - 1] as usize,
                if merged {
                    (rows - 1) % distinct
                } else {
                    rows - 1
                }
            );
        };
        check(40_000, 200_000, true);
        check(90_000, 200_000, true);
        check(110_000, 200_000, false);
        check(200_000, 200_000, false);
    }

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

    /// The purchase rate of a customer known to be alive is the slope of their expected
    /// purchases if alive at the start: E[X(T, T+ε) | alive]/ε → E[λ | alive] (BG/NBD, MBG/NBD,
    /// Pareto/NBD, several histories).
    #[test]
    fn the_rate_if_alive_is_the_slope_of_expected_purchases_if_alive() {
        use crate::bgnbd::{BgNbd, Variant};
        use crate::pareto_nbd::ParetoNbd;
        let models: [Box<dyn PurchaseModel>; 3] = [
            Box::new(BgNbd {
                r: 0.24,
                alpha: 4.41,
                a: 0.79,
                b: 2.43,
                variant: Variant::Bg,
            }),
            Box::new(BgNbd {
                r: 0.52,
                alpha: 6.2,
                a: 0.9,
                b: 3.1,
                variant: Variant::Modified,
            }),
            Box::new(ParetoNbd {
                r: 0.55,
                alpha: 10.58,
                s: 0.61,
                beta: 11.67,
            }),
        ];
        for model in &models {
            for (x, t) in [(0.0, 5.0), (2.0, 30.0), (12.0, 38.5)] {
                let eps = 1e-6;
                let slope = model.expected_purchases_if_alive_at(&[eps], x, t).unwrap()[0] / eps;
                let rate = model.purchase_rate_if_alive(x, t);
                assert!(
                    (slope - rate).abs() < 1e-5 * rate,
                    "{x} {t}: {slope} vs {rate}"
                );
            }
        }
    }
}
