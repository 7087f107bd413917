//! How well a fitted purchase model reproduces the data it was fitted to: the customers by
//! number of repeat purchases, observed against expected (lifetimes' `plot_period_transactions`
//! and CLVTools' `plot(pmf)` draw the same), with Pearson's χ² test.
//!
//! The expected number of customers with n repeat purchases is Σᵢ wᵢ P(X(Tᵢ) = n): each
//! customer observed for their own Tᵢ (Fader, Hardie & Lee 2005, fig. 3). Customers are
//! grouped by Tᵢ rounded to a 10 000th of the longest T (at most a thousandth of a time unit
//! finer), so a log with timestamps to the second, where every Tᵢ differs, costs at most about
//! 10 000 distributions rather than one per customer; the rounding moves each probability by far
//! less than the counts' own noise.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::special::gamma_q;
use crate::{Histories, PurchaseModel};

/// Customers by number of repeat purchases, n = 0, 1, …, the last bin "that many or more".
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatHistogram {
    pub observed: Vec<f64>,
    pub expected: Vec<f64>,
}

/// Pearson's χ² of a histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquare {
    pub statistic: f64,
    pub degrees_of_freedom: usize,
    /// P(χ² ≥ statistic) under the model.
    pub p_value: f64,
}

/// Distinct T values at most in the expected histogram, over the range of T.
const T_STEPS: f64 = 10_000.0;
/// The finest resolution of T, in time units.
const T_RESOLUTION: f64 = 1e-3;
/// The smallest expected count a χ² cell keeps (Cochran's rule); smaller ones are pooled with
/// their neighbour toward the open end.
const MIN_EXPECTED: f64 = 5.0;

/// The histogram with `bins` bins (the last open): observed from the histories, expected from
/// the model.
pub fn repeat_purchase_histogram(
    model: &dyn PurchaseModel,
    histories: &Histories,
    bins: usize,
) -> RepeatHistogram {
    let bins = bins.max(2);
    let longest = histories.t.iter().copied().fold(0.0, f64::max);
    let step = (longest / T_STEPS).max(T_RESOLUTION);
    let mut observed = vec![0.0; bins];
    let mut by_t: HashMap<i64, f64> = HashMap::new();
    for i in 0..histories.len() {
        let n = (histories.x[i].max(0.0) as usize).min(bins - 1);
        observed[n] += histories.weight[i];
        *by_t
            .entry((histories.t[i] / step).round() as i64)
            .or_insert(0.0) += histories.weight[i];
    }
    let mut groups: Vec<(i64, f64)> = by_t.into_iter().collect();
    // A fixed order, so the sums are the same bits on every run.
    groups.sort_unstable_by_key(|&(t, _)| t);
    let parts: Vec<Vec<f64>> = groups
        .par_iter()
        .map(|&(t, weight)| {
            let distribution = model.purchase_distribution(t as f64 * step, bins - 2);
            let below: f64 = distribution.iter().sum();
            distribution
                .into_iter()
                .chain([(1.0 - below).max(0.0)])
                .map(|p| weight * p)
                .collect()
        })
        .collect();
    let mut expected = vec![0.0; bins];
    for part in parts {
        for (e, p) in expected.iter_mut().zip(part) {
            *e += p;
        }
    }
    RepeatHistogram { observed, expected }
}

/// Pearson's χ² = Σ (O − E)²/E over the bins, pooled from the open end down until each
/// expected count is at least 5, with bins − 1 − `parameters` degrees of freedom; `None` when
/// fewer than one degree of freedom is left.
pub fn chi_square(histogram: &RepeatHistogram, parameters: usize) -> Option<ChiSquare> {
    let mut cells: Vec<(f64, f64)> = Vec::new();
    // From the open end: pool a cell into the next lower one while its expectation is small.
    let (mut o, mut e) = (0.0, 0.0);
    for (observed, expected) in histogram.observed.iter().zip(&histogram.expected).rev() {
        o += observed;
        e += expected;
        if e >= MIN_EXPECTED {
            cells.push((o, e));
            (o, e) = (0.0, 0.0);
        }
    }
    if e > 0.0 || o > 0.0 {
        match cells.last_mut() {
            Some(last) => {
                last.0 += o;
                last.1 += e;
            }
            None => cells.push((o, e)),
        }
    }
    let degrees_of_freedom = cells.len().checked_sub(1 + parameters).filter(|&d| d > 0)?;
    let statistic: f64 = cells.iter().map(|&(o, e)| (o - e) * (o - e) / e).sum();
    Some(ChiSquare {
        statistic,
        degrees_of_freedom,
        p_value: gamma_q(degrees_of_freedom as f64 / 2.0, statistic / 2.0),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::bgnbd::{self, BgNbd, Variant};
    use crate::testing::{Rng, cdnow};

    /// CDNOW under its BG/NBD fit: the expected histogram sums to the 2 357 customers, and
    /// follows FHL (2005, fig. 3) closely: 1 411 customers with no repeat purchase observed,
    /// about 1 400 expected.
    #[test]
    fn cdnow_histogram() {
        let data = cdnow();
        let (model, _) = bgnbd::fit_histories(&data, Variant::Bg, &AtomicBool::new(false)).unwrap();
        let histogram = repeat_purchase_histogram(&model, &data, 8);
        assert_eq!(histogram.observed.iter().sum::<f64>(), 2357.0);
        assert_eq!(histogram.observed[0], 1411.0);
        assert!((histogram.expected.iter().sum::<f64>() - 2357.0).abs() < 1e-6);
        assert!(
            (histogram.expected[0] - 1411.0).abs() < 40.0,
            "{histogram:?}"
        );
        let test = chi_square(&histogram, 4).unwrap();
        eprintln!("CDNOW: {histogram:?}, {test:?}");
        assert_eq!(test.degrees_of_freedom, 3);
        assert!(test.statistic > 0.0 && (0.0..=1.0).contains(&test.p_value));
        // A customer observed for no time at all (first purchase at the end) expects none.
        let fresh = Histories::compress([(0.0, 0.0, 0.0, 1.0)].into_iter());
        let histogram = repeat_purchase_histogram(&model, &fresh, 8);
        assert_eq!(histogram.expected[0], 1.0);
        assert!(histogram.expected.iter().all(|e| e.is_finite()));
    }

    /// Data simulated from the model pass the test about as often as they should: over 200
    /// bases, the share of p-values below 0.05 is near 5 % (at most 12 %), and the p-values
    /// of data from a different model are small.
    #[test]
    fn the_test_holds_its_level_and_rejects_a_wrong_model() {
        let truth = BgNbd {
            r: 0.6,
            alpha: 5.0,
            a: 0.9,
            b: 3.0,
            variant: Variant::Bg,
        };
        let rejected = (0..200u64)
            .into_par_iter()
            .filter(|&seed| {
                let mut rng = Rng::new(50 + seed);
                let data = Histories::compress((0..2000).map(|_| {
                    let (x, t_x) = truth.simulate(&mut rng, 39.0);
                    (x, t_x, 39.0, 1.0)
                }));
                let histogram = repeat_purchase_histogram(&truth, &data, 8);
                // The true parameters: no degrees of freedom spent on a fit.
                chi_square(&histogram, 0).unwrap().p_value < 0.05
            })
            .count();
        eprintln!("{rejected} of 200 simulated bases rejected at 5 %");
        assert!(rejected <= 24, "{rejected} of 200 rejected at 5 %");
        // Customers who all buy at one rate with no dropout are no BG/NBD base of these
        // parameters.
        let mut rng = Rng::new(3);
        let other = Histories::compress((0..2000).map(|_| {
            let mut x = 0.0;
            let mut now = 0.0;
            let mut last = 0.0;
            loop {
                now += -rng.uniform().ln() / 0.1;
                if now > 39.0 {
                    break;
                }
                x += 1.0;
                last = now;
            }
            (x, last, 39.0, 1.0)
        }));
        let histogram = repeat_purchase_histogram(&truth, &other, 8);
        assert!(chi_square(&histogram, 0).unwrap().p_value < 1e-6);
    }
}
