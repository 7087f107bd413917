//! The Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005, "RFM and CLV:
//! using iso-value curves for customer base analysis", Journal of Marketing Research 42(4);
//! Fader & Hardie 2013, "The Gamma-Gamma model of monetary value").
//!
//! A customer's transaction values are Gamma(p, ν) around their own mean p/ν, and ν varies
//! across customers as Gamma(q, γ). Given x transactions with mean value z̄, the expected mean
//! value is a weighted average of the population mean and the customer's own mean. The model
//! assumes spend is independent of purchase frequency: check the correlation.

use std::sync::atomic::AtomicBool;

use crate::ad::Real;
use crate::optimize::{Fit, FitError, LogLikelihood, fit};

/// Customers with at least one repeat purchase: (x, z̄), each row standing for `weight`
/// identical customers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Spend {
    pub x: Vec<f64>,
    pub mean_value: Vec<f64>,
    pub weight: Vec<f64>,
}

impl Spend {
    fn observations(&self) -> f64 {
        self.weight.iter().sum()
    }
}

/// The likelihood of a [`Spend`], arranged for speed: every term that depends on a customer
/// only through x (the ln Γ terms, px ln x, and (px−1) ln z̄ summed per x) is computed once per
/// distinct x — a few hundred values however many customers — leaving one logarithm per
/// customer.
struct Likelihood<'a> {
    spend: &'a Spend,
    /// (x, Σ weight, Σ weight · ln z̄) per distinct x.
    by_frequency: Vec<(f64, f64, f64)>,
    /// Σ weight.
    customers: f64,
}

impl<'a> Likelihood<'a> {
    fn new(spend: &'a Spend) -> Self {
        let (values, slot_of) = crate::purchase::distinct_values(&spend.x);
        let mut by_frequency: Vec<(f64, f64, f64)> =
            values.iter().map(|&x| (x, 0.0, 0.0)).collect();
        for ((&slot, &z), &w) in slot_of.iter().zip(&spend.mean_value).zip(&spend.weight) {
            let group = &mut by_frequency[slot as usize];
            group.1 += w;
            group.2 += w * z.ln();
        }
        by_frequency.sort_by(|a, b| a.0.total_cmp(&b.0));
        Likelihood {
            spend,
            by_frequency,
            customers: spend.observations(),
        }
    }
}

impl LogLikelihood<3> for Likelihood<'_> {
    /// ln f(z̄ | x) = ln Γ(px+q) − ln Γ(px) − ln Γ(q) + q ln γ + (px−1) ln z̄ + px ln x
    ///               − (px+q) ln(γ + x z̄).
    fn log_likelihood<R: Real>(&self, params: &[R; 3]) -> R {
        let [p, q, gamma] = *params;
        let s = self.spend;
        let mut per_frequency = R::constant(0.0);
        for &(x, weight, weighted_ln_z) in &self.by_frequency {
            let px = p * x;
            per_frequency = per_frequency
                + ((px + q).ln_gamma() - px.ln_gamma() + px * x.ln()) * weight
                + (px - 1.0) * weighted_ln_z;
        }
        // −Σ w (px+q) ln(γ + x z̄) = −(p·S₁ + q·S₂), with S₁ = Σ w x ln(γ+xz̄) and
        // S₂ = Σ w ln(γ+xz̄) depending on γ alone: they are summed in plain f64 along with
        // their γ-derivatives S₃ = Σ w x/(γ+xz̄) and S₄ = Σ w/(γ+xz̄), and the γ-dependence
        // re-enters as the first-order term (γ − γ₀)·(−(p S₃ + q S₄)): zero in value, exact
        // in gradient. One f64 logarithm per customer instead of a dual-number one.
        let g = gamma.value();
        let [s1, s2, s3, s4] = crate::purchase::par_sums(s.x.len(), |range| {
            customer_sums(
                [
                    &s.x[range.clone()],
                    &s.mean_value[range.clone()],
                    &s.weight[range],
                ],
                g,
            )
        });
        let per_customer = -(p * s1 + q * s2) + (gamma - g) * -(p.value() * s3 + q.value() * s4);
        per_frequency + per_customer + (q * gamma.ln() - q.ln_gamma()) * self.customers
    }

    fn observations(&self) -> f64 {
        self.customers
    }
}

/// [S₁, S₂, S₃, S₄] of [`Likelihood::log_likelihood`] over some customers: one logarithm and
/// one division each, in SIMD lanes (a vectorized `ln`, compiled for AVX2 where the CPU has
/// it).
#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn customer_sums(columns: [&[f64]; 3], gamma: f64) -> [f64; 4] {
    crate::purchase::lane_sums(
        columns,
        #[inline(always)]
        |[x, mean_value, w]| {
            let base = gamma + x * mean_value;
            let (ln, inverse) = (crate::vmath::ln(base) * w, w / base);
            [x * ln, ln, x * inverse, inverse]
        },
    )
}

/// Fitted Gamma-Gamma parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

impl GammaGamma {
    /// E[mean transaction value | x, z̄] = (pγ + p x z̄) / (p x + q − 1); the population mean
    /// pγ / (q − 1) for x = 0. `None` when q ≤ 1 (the population mean does not exist).
    pub fn expected_mean_value(&self, x: f64, mean_value: f64) -> Option<f64> {
        let GammaGamma { p, q, gamma } = *self;
        (q > 1.0).then(|| (p * gamma + p * x * mean_value) / (p * x + q - 1.0))
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpendError {
    #[error("no customer has a repeat purchase with a positive value, so spend cannot be modelled")]
    NoRepeatBuyers,
    #[error(transparent)]
    Fit(#[from] FitError),
}

/// The log-likelihood of `spend` in (p, q, γ): what [`crate::covariates`] evaluates once per
/// covariate profile.
pub(crate) fn likelihood(spend: &Spend) -> impl LogLikelihood<3> + Sync + '_ {
    Likelihood::new(spend)
}

/// Fits the model to the customers with x ≥ 1 and a positive mean value, from
/// `(x, z̄, weight)` rows.
pub fn fit_spend(
    rows: impl Iterator<Item = (f64, f64, f64)>,
    cancel: &AtomicBool,
) -> Result<(GammaGamma, Fit<3>, Spend), SpendError> {
    let mut spend = Spend::default();
    for (x, z, w) in rows.filter(|&(x, z, w)| x >= 1.0 && z > 0.0 && w > 0.0) {
        spend.x.push(x);
        spend.mean_value.push(z);
        spend.weight.push(w);
    }
    if spend.x.is_empty() {
        return Err(SpendError::NoRepeatBuyers);
    }
    let mean = spend
        .mean_value
        .iter()
        .zip(&spend.weight)
        .map(|(z, w)| z * w)
        .sum::<f64>()
        / spend.observations();
    let fit = fit(&Likelihood::new(&spend), [1.0, 2.0, mean.max(1e-6)], cancel)?;
    let [p, q, gamma] = fit.params;
    Ok((GammaGamma { p, q, gamma }, fit, spend))
}

/// Weighted Pearson correlation of frequency and mean value among repeat buyers: the model
/// assumes 0.
pub fn frequency_value_correlation(spend: &Spend) -> Option<f64> {
    let n = spend.observations();
    if n < 3.0 {
        return None;
    }
    let rows = || {
        spend
            .x
            .iter()
            .zip(&spend.mean_value)
            .zip(&spend.weight)
            .map(|((x, z), w)| (*x, *z, *w))
    };
    let mx = rows().map(|(x, _, w)| x * w).sum::<f64>() / n;
    let mz = rows().map(|(_, z, w)| z * w).sum::<f64>() / n;
    let (mut sxz, mut sxx, mut szz) = (0.0, 0.0, 0.0);
    for (x, z, w) in rows() {
        sxz += w * (x - mx) * (z - mz);
        sxx += w * (x - mx) * (x - mx);
        szz += w * (z - mz) * (z - mz);
    }
    (sxx > 0.0 && szz > 0.0).then(|| sxz / (sxx * szz).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdnow() -> Vec<(f64, f64, f64)> {
        include_str!("../../../tests/data/cdnow_summary.csv")
            .lines()
            .skip(1)
            .map(|line| {
                let f: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
                (f[1], f[4], 1.0)
            })
            .collect()
    }

    /// FHL (2005) and Fader & Hardie (2013) report p = 6.25, q = 3.74, γ = 15.44 for the 946
    /// CDNOW customers with repeat purchases.
    #[test]
    fn reproduces_the_published_cdnow_estimates() {
        let (gg, fit, spend) = fit_spend(cdnow().into_iter(), &AtomicBool::new(false)).unwrap();
        assert_eq!(spend.x.len(), 946);
        assert!(fit.converged, "{}", fit.status);
        // p and q to the published precision (half a unit of the last digit).
        assert!(
            (gg.p - 6.25).abs() <= 0.005 && (gg.q - 3.74).abs() <= 0.005,
            "{gg:?}"
        );
        // γ: the maximum is at 15.4477, where `lifetimes` 0.11.3 also lands (p 6.2488025,
        // q 3.7445885, ν 15.4477481); the published 15.44 has a lower likelihood (−4055.9247
        // against −4055.9232), so the paper's optimizer stopped short of the maximum.
        for (got, lifetimes) in [
            (gg.p, 6.248_802_5),
            (gg.q, 3.744_588_5),
            (gg.gamma, 15.447_748),
        ] {
            assert!(
                (got - lifetimes).abs() < 1e-5 * lifetimes,
                "{got} vs lifetimes {lifetimes}"
            );
        }
        assert!((gg.gamma - 15.44).abs() < 0.01);
        let published = Likelihood::new(&spend).log_likelihood(&[6.25, 3.74, 15.44]);
        // The grouped likelihood is the textbook one, summed row by row.
        let (p, q, g) = (6.25f64, 3.74f64, 15.44f64);
        let direct: f64 = spend
            .x
            .iter()
            .zip(&spend.mean_value)
            .map(|(&x, &z)| {
                let lg = crate::special::ln_gamma;
                lg(p * x + q) - lg(p * x) - lg(q)
                    + q * g.ln()
                    + (p * x - 1.0) * z.ln()
                    + p * x * x.ln()
                    - (p * x + q) * (g + x * z).ln()
            })
            .sum();
        assert!(
            (published - direct).abs() < 1e-9 * direct.abs(),
            "{published} vs {direct}"
        );
        assert!(
            fit.log_likelihood > published,
            "{} <= {published}",
            fit.log_likelihood
        );
        // The weighted average lies between the population mean and the customer's own mean.
        let population = gg.expected_mean_value(0.0, 0.0).unwrap();
        let own = gg.expected_mean_value(2.0, 22.35).unwrap();
        assert!((own - 22.35).abs() < (population - 22.35).abs());
        // Fader & Hardie (2013) note the CDNOW correlation is weak (0.11).
        let rho = frequency_value_correlation(&spend).unwrap();
        assert!(rho.abs() < 0.2, "{rho}");
    }

    /// The rearranged likelihood has the value and exact gradient of the textbook one written
    /// per row in dual numbers.
    #[test]
    fn rearranged_likelihood_has_the_exact_gradient() {
        use crate::ad::Dual;
        let spend = Spend {
            x: vec![1.0, 2.0, 2.0, 7.0, 30.0],
            mean_value: vec![12.5, 40.0, 3.2, 25.0, 18.75],
            weight: vec![1.0, 2.0, 1.0, 3.0, 1.0],
        };
        let point = [4.1, 2.7, 11.0];
        let d: [Dual<3>; 3] = std::array::from_fn(|i| Dual::variable(point[i], i));
        let fast = Likelihood::new(&spend).log_likelihood(&d);
        let [p, q, g] = d;
        let mut direct = Dual::<3>::constant(0.0);
        for i in 0..spend.x.len() {
            let (x, z, w) = (spend.x[i], spend.mean_value[i], spend.weight[i]);
            let px = p * x;
            let ll = (px + q).ln_gamma() - px.ln_gamma() - q.ln_gamma()
                + q * g.ln()
                + (px - 1.0) * z.ln()
                + px * x.ln()
                - (px + q) * (g + x * z).ln();
            direct = direct + ll * w;
        }
        assert!(
            (fast.value - direct.value).abs() < 1e-10,
            "{fast:?} vs {direct:?}"
        );
        for k in 0..3 {
            assert!(
                (fast.gradient[k] - direct.gradient[k]).abs() < 1e-10,
                "{fast:?} vs {direct:?}"
            );
        }
    }

    /// A row of weight 2 is the same evidence as two identical rows.
    #[test]
    fn weights_count_as_repeated_rows() {
        let rows = cdnow();
        let doubled = rows
            .iter()
            .flat_map(|&(x, z, _)| [(x, z, 1.0), (x, z, 1.0)]);
        let weighted = rows.iter().map(|&(x, z, _)| (x, z, 2.0));
        let (a, fa, sa) = fit_spend(doubled, &AtomicBool::new(false)).unwrap();
        let (b, fb, sb) = fit_spend(weighted, &AtomicBool::new(false)).unwrap();
        assert!(
            (a.p - b.p).abs() < 1e-6 * a.p && (a.gamma - b.gamma).abs() < 1e-6 * a.gamma,
            "{a:?} vs {b:?}"
        );
        assert!((fa.log_likelihood - fb.log_likelihood).abs() < 1e-6 * fa.log_likelihood.abs());
        let (ra, rb) = (
            frequency_value_correlation(&sa).unwrap(),
            frequency_value_correlation(&sb).unwrap(),
        );
        assert!((ra - rb).abs() < 1e-12, "{ra} vs {rb}");
    }

    #[test]
    fn expected_value_formula() {
        let gg = GammaGamma {
            p: 2.0,
            q: 3.0,
            gamma: 10.0,
        };
        // x = 0: pγ / (q − 1) = 10; x = 4, z̄ = 20: (20 + 160) / (8 + 2) = 18.
        assert_eq!(gg.expected_mean_value(0.0, 0.0), Some(10.0));
        assert_eq!(gg.expected_mean_value(4.0, 20.0), Some(18.0));
        assert_eq!(
            GammaGamma {
                p: 2.0,
                q: 0.9,
                gamma: 10.0
            }
            .expected_mean_value(1.0, 5.0),
            None
        );
    }
}
