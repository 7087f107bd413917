//! Small statistical helpers shared by metrics.

/// The quantile function (inverse CDF) of the standard normal distribution, by Acklam's
/// rational approximation: relative error below 1.15e-9 on (0, 1), far below what any
/// interval built on it needs. Returns `None` outside the open interval (0, 1).
pub fn normal_quantile(p: f64) -> Option<f64> {
    if !(p > 0.0 && p < 1.0) {
        return None;
    }
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.383_577_518_672_69e2,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e+00,
        3.754408661907416e+00,
    ];
    const P_LOW: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    };
    Some(x)
}

/// The two-sided critical value of the standard normal for a confidence `level`, for example
/// 1.959963984540054 for 0.95.
pub fn two_sided_z(level: f64) -> Option<f64> {
    normal_quantile(0.5 + level / 2.0)
}

/// The `q` quantile (0..=1) of sorted values by linear interpolation between order statistics
/// (Hyndman & Fan type 7, the default of R's `quantile` and NumPy's `percentile`). `None` for
/// no values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let position = q.clamp(0.0, 1.0) * last as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(last);
    let fraction = position - below as f64;
    Some(sorted[below] + fraction * (sorted[above] - sorted[below]))
}

/// The Wilson score interval for a proportion of `successes` in `n` trials, at critical value
/// `z` (Wilson 1927; recommended over the normal interval by Brown, Cai & DasGupta 2001).
/// `None` when `n` is zero.
pub fn wilson_interval(successes: u64, n: u64, z: f64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    Some(wilson_interval_of(successes as f64 / n as f64, n as f64, z))
}

/// The Wilson interval of a proportion `p` estimated from an effective sample of `n`
/// (weighted responses: Kish's effective size, see [`effective_sample_size`]; `n` infinite for
/// a census, where the interval is `p` itself).
pub fn wilson_interval_of(p: f64, n: f64, z: f64) -> (f64, f64) {
    if n.is_infinite() {
        return (p, p);
    }
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = z / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// The number of simple random draws a survey's `n` responses are worth for a proportion's
/// variance: with weights, Kish's effective sample size (Σw)² / Σw² (Kish 1965, §11.7), which is
/// `n` for equal weights; with the `population` the responses were drawn from (without
/// replacement), divided by the finite population correction (N − n) / (N − 1) (Cochran 1977,
/// §2.6): infinite when everyone answered. `None` for no responses, a weight sum that is not
/// positive, or a population smaller than the responses.
pub fn effective_sample_size(
    n: u64,
    weight_sum: f64,
    weight_squares: f64,
    population: Option<u64>,
) -> Option<f64> {
    if n == 0 || !(weight_sum > 0.0 && weight_squares > 0.0) {
        return None;
    }
    let kish = weight_sum * weight_sum / weight_squares;
    match population {
        None => Some(kish),
        Some(population) if population < n => None,
        Some(population) if population == n => Some(f64::INFINITY),
        Some(population) => Some(kish * (population - 1) as f64 / (population - n) as f64),
    }
}

/// The ranks of the order statistics that bound the `q` quantile of a population (0 < q < 1)
/// at confidence `level`, from `n` draws sorted ascending: 0-based indices `(lower, upper)`
/// such that the population quantile lies between the `lower`-th and `upper`-th sorted draw
/// with probability at least `level`, each side missing with probability at most
/// (1 − level) / 2. This is the distribution-free interval of Conover (1999, §3.2) and Hahn &
/// Meeker (1991, §5.2): the number of draws below the quantile is Binomial(n, q), whatever the
/// distribution, so its exact binomial tails set the ranks. `None` when `n` draws are too few
/// for such a pair (the median of 5 draws at 95 %, say) or `q` or `level` is outside (0, 1).
pub fn quantile_interval_ranks(n: usize, q: f64, level: f64) -> Option<(usize, usize)> {
    if n == 0 || !(q > 0.0 && q < 1.0) || !(level > 0.0 && level < 1.0) {
        return None;
    }
    let tail = (1.0 - level) / 2.0;
    // 1-based rank l: the largest with P(B ≤ l − 1) ≤ tail for B ~ Binomial(n, q). The upper
    // rank comes from the same lower-tail sum of n − B ~ Binomial(n, 1 − q), so neither side
    // subtracts a sum from one.
    let lower = first_rank_past(n, q, tail)?;
    let upper_mirror = first_rank_past(n, 1.0 - q, tail)?;
    let (lower, upper) = (lower - 1, n - upper_mirror);
    (lower <= upper).then_some((lower, upper))
}

/// The smallest k ≥ 1 with P(B ≤ k) > `tail` for B ~ Binomial(n, p), `None` when already
/// P(B = 0) > `tail` (too few draws) or no k ≤ n − 1 gets there. The probabilities are
/// walked up from k = 0 in log space (ln P(B = 0) = n ln(1 − p) underflows nothing), so only
/// the tail is summed.
fn first_rank_past(n: usize, p: f64, tail: f64) -> Option<usize> {
    let ln_odds = p.ln() - (-p).ln_1p();
    let mut ln_pmf = n as f64 * (-p).ln_1p();
    let mut cdf = ln_pmf.exp();
    if cdf > tail {
        return None;
    }
    for k in 0..n.saturating_sub(1) {
        ln_pmf += ((n - k) as f64 / (k + 1) as f64).ln() + ln_odds;
        cdf += ln_pmf.exp();
        if cdf > tail {
            return Some(k + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_quantiles() {
        // Reference values from R's qnorm.
        for (p, expect) in [
            (0.975, 1.959963984540054),
            (0.95, 1.6448536269514722),
            (0.5, 0.0),
            (0.995, 2.5758293035489004),
            (0.01, -2.3263478740408408),
            (1e-6, -4.753424308822899),
        ] {
            let got = normal_quantile(p).unwrap();
            assert!(
                (got - expect).abs() <= 2e-9 * expect.abs().max(1.0),
                "p={p}: {got} vs {expect}"
            );
        }
        assert_eq!(normal_quantile(0.0), None);
        assert_eq!(normal_quantile(1.0), None);
        assert_eq!(normal_quantile(f64::NAN), None);
    }

    #[test]
    fn quantiles_match_type_7() {
        // numpy.percentile([1, 2, 3, 4, 10], [50, 90]) = [3.0, 7.6]
        let values = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(quantile_sorted(&values, 0.5), Some(3.0));
        assert!((quantile_sorted(&values, 0.9).unwrap() - 7.6).abs() < 1e-12);
        assert_eq!(quantile_sorted(&[5.0], 0.9), Some(5.0));
        assert_eq!(quantile_sorted(&[], 0.5), None);
    }

    #[test]
    fn wilson_matches_published_values() {
        // 8 of 10 at z = 1.96: (0.4902, 0.9433) as tabulated by Newcombe (1998), method 3.
        let (lo, hi) = wilson_interval(8, 10, 1.96).unwrap();
        assert!(
            (lo - 0.4902).abs() < 5e-5 && (hi - 0.9433).abs() < 5e-5,
            "{lo} {hi}"
        );
        // 0 of 10: lower bound 0, upper 0.2775 (Newcombe 1998).
        let (lo, hi) = wilson_interval(0, 10, 1.96).unwrap();
        assert_eq!(lo, 0.0);
        assert!((hi - 0.2775).abs() < 5e-5, "{hi}");
        assert_eq!(wilson_interval(0, 0, 1.96), None);
    }

    #[test]
    fn quantile_ranks_match_conover_table() {
        // Median of 10 at 95 %: the 2nd and 9th draws, covering 1 - 2 * 11/1024 = 97.85 %
        // (Conover 1999, Table A3; by hand: P(B <= 1) = 11/1024 <= 0.025 < P(B <= 2) = 56/1024).
        assert_eq!(quantile_interval_ranks(10, 0.5, 0.95), Some((1, 8)));
        // Median of 20 at 95 %: the 6th and 15th (P(B <= 5) = 0.0207, P(B <= 6) = 0.0577).
        assert_eq!(quantile_interval_ranks(20, 0.5, 0.95), Some((5, 14)));
        // 5 draws cannot bound a median at 95 %: all five fall above it with probability 1/32.
        assert_eq!(quantile_interval_ranks(5, 0.5, 0.95), None);
        assert_eq!(quantile_interval_ranks(6, 0.5, 0.95), Some((0, 5)));
        // The 90th percentile of 100 at 95 %: B ~ Bin(100, 0.9); P(B <= 83) = 0.0206,
        // P(B <= 84) = 0.0399, so the lower rank is 84; mirrored, P(B' <= 4) = 0.0237 and
        // P(B' <= 5) = 0.0576 give the upper rank 100 + 1 - 5 = 96 (1-based).
        assert_eq!(quantile_interval_ranks(100, 0.9, 0.95), Some((83, 95)));
        // 10 draws cannot bound a 90th percentile: all ten fall below it with p = 0.35.
        assert_eq!(quantile_interval_ranks(10, 0.9, 0.95), None);
        assert_eq!(quantile_interval_ranks(0, 0.5, 0.95), None);
        assert_eq!(quantile_interval_ranks(10, 1.0, 0.95), None);
    }

    #[test]
    fn quantile_intervals_cover_at_their_level() {
        // Medians and 90th percentiles of exponential samples: the interval from the ranks
        // must hold the true quantile at least 95 % of the time (it is conservative), less
        // the Monte Carlo error of 4 000 draws (sd 0.0035).
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for (n, q) in [(15, 0.5), (40, 0.5), (60, 0.9), (400, 0.9)] {
            let truth = -(1.0f64 - q).ln();
            let (lower, upper) = quantile_interval_ranks(n, q, 0.95).unwrap();
            let trials = 4000;
            let mut covered = 0;
            for _ in 0..trials {
                let mut draws: Vec<f64> = (0..n).map(|_| -(1.0 - uniform()).ln()).collect();
                draws.sort_by(f64::total_cmp);
                covered += usize::from(draws[lower] <= truth && truth <= draws[upper]);
            }
            let coverage = covered as f64 / trials as f64;
            assert!((0.94..0.995).contains(&coverage), "n={n} q={q}: {coverage}");
        }
    }

    #[test]
    fn effective_sizes_follow_kish_and_the_population() {
        // Equal weights: n itself.
        assert_eq!(effective_sample_size(4, 8.0, 16.0, None), Some(4.0));
        // Weights 1, 1, 1, 3: (6)^2 / 12 = 3.
        assert_eq!(effective_sample_size(4, 6.0, 12.0, None), Some(3.0));
        // 4 of a population of 10: 4 * 9 / 6 = 6.
        assert_eq!(effective_sample_size(4, 4.0, 4.0, Some(10)), Some(6.0));
        assert_eq!(
            effective_sample_size(4, 4.0, 4.0, Some(4)),
            Some(f64::INFINITY)
        );
        assert_eq!(effective_sample_size(4, 4.0, 4.0, Some(3)), None);
        assert_eq!(effective_sample_size(4, 0.0, 0.0, None), None);
        assert_eq!(wilson_interval_of(0.7, f64::INFINITY, 1.96), (0.7, 0.7));
    }
}
