//! The Pareto/NBD model of repeat buying (Schmittlein, Morrison & Colombo 1987, "Counting your
//! customers: who are they and what will they do next?", Management Science 33(1)), in the
//! likelihood form of Fader, Hardie & Lee (2005), "A note on deriving the Pareto/NBD model
//! and related expressions".
//!
//! While active, a customer buys at Poisson rate λ, λ ~ Gamma(r, α); their unobserved lifetime
//! is exponential with rate μ, μ ~ Gamma(s, β). Unlike BG/NBD, a customer can drop out at any
//! time, not only right after a purchase.

use std::sync::atomic::AtomicBool;

use std::ops::Range;

use crate::ad::Real;
use crate::discount::Discounting;
use crate::hyp2f1::{hyp2f1_short, ln_hyp2f1_c_is_a_plus_1};
use crate::optimize::{Fit, FitError, LogLikelihood, fit};
use crate::purchase::{
    BLOCK, ByFrequency, FrequencyGroup, Histories, PurchaseModel, alive_given_ln_odds, lane_sums,
    map_into, par_sum,
};
use crate::special::{digamma, ln_gamma};
use crate::vmath;

/// Fitted Pareto/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParetoNbd {
    pub r: f64,
    pub alpha: f64,
    pub s: f64,
    pub beta: f64,
}

/// ln A₀ (FHL 2005 note, eq. 19–20): A₀ = ∫ over the possible dropout times between t_x and
/// T, written with ₂F₁(r+s+x, b; r+s+x+1; ·), b = s+1 when α ≥ β and r+x otherwise, as
/// ₂F₁(…; |α−β|/(max+t_x)) / (max+t_x)^(r+s+x) − ₂F₁(…; |α−β|/(max+T)) / (max+T)^(r+s+x).
/// Both terms are taken in log space and subtracted by log-sub-exp. `Some(None)` when A₀ is
/// zero (t_x = T: no time to drop out unseen) or negligible (rounding leaves the two terms
/// equal); `None` when a series did not converge.
#[allow(clippy::option_option)]
fn ln_a0<R: Real>(r: R, alpha: R, s: R, beta: R, x: f64, t_x: f64, t: f64) -> Option<Option<R>> {
    if t_x >= t {
        return Some(None);
    }
    let (max, gap, b) = if alpha.value() >= beta.value() {
        (alpha, alpha - beta, s + 1.0)
    } else {
        (beta, beta - alpha, r + x)
    };
    let k = r + s + x;
    let term = |time: f64| -> Option<R> {
        let base = max + time;
        Some(ln_hyp2f1_c_is_a_plus_1(k, b, gap / base)? - k * base.ln())
    };
    let (early, late) = (term(t_x)?, term(t)?);
    Some((early.value() > late.value()).then(|| early.log_sub_exp(late)))
}

/// The likelihood of histories, and the same histories grouped by x for its written-out
/// gradient.
struct Likelihood<'a> {
    histories: &'a Histories,
    by_x: ByFrequency,
}

impl<'a> Likelihood<'a> {
    fn new(histories: &'a Histories) -> Likelihood<'a> {
        let mut by_x = ByFrequency::new(histories);
        by_x.sort_pieces_by_t_x();
        Likelihood { histories, by_x }
    }
}

impl LogLikelihood<4> for Likelihood<'_> {
    /// ln L = ln Γ(r+x) − ln Γ(r) + r ln α + s ln β
    ///        + ln[(α+T)^−(r+x) (β+T)^−s + s/(r+s+x) A₀] (FHL 2005 note, eq. 22).
    fn log_likelihood<R: Real>(&self, params: &[R; 4]) -> R {
        let [r, alpha, s, beta] = *params;
        let h = self.histories;
        let shared = r.ln_gamma() * -1.0 + r * alpha.ln() + s * beta.ln();
        let ln_s = s.ln();
        let body = par_sum(h.len(), |range| {
            let mut total = R::constant(0.0);
            for i in range {
                let (x, t_x, t, w) = (h.x[i], h.t_x[i], h.t[i], h.weight[i]);
                let rx = r + x;
                let alive = -(rx * (alpha + t).ln()) - s * (beta + t).ln();
                let tail = match ln_a0(r, alpha, s, beta, x, t_x, t) {
                    Some(Some(a0)) => alive.log_add_exp(ln_s - (rx + s).ln() + a0),
                    Some(None) => alive,
                    // A series that does not converge makes the point unacceptable to the
                    // line search, never a wrong number.
                    None => R::constant(f64::NAN),
                };
                total = total + (rx.ln_gamma() + tail) * w;
            }
            total
        });
        body + shared * h.customers()
    }

    fn value_and_gradient(&self, params: &[f64; 4]) -> (f64, [f64; 4]) {
        self.gradient(params).unwrap_or((f64::NAN, [f64::NAN; 4]))
    }

    fn observations(&self) -> f64 {
        self.histories.customers()
    }
}

/// What one evaluation of the written-out gradient shares across rows: the parameters, and
/// which of α and β is the larger (`max`) in A₀'s series, whose variable is
/// z = |α−β|/(max+t).
#[derive(Clone, Copy)]
struct Evaluation {
    r: f64,
    alpha: f64,
    s: f64,
    beta: f64,
    /// α ≥ β: the series' b is s+1 and max = α; otherwise b = r+x and max = β.
    alpha_is_max: bool,
}

impl Evaluation {
    fn max(&self) -> f64 {
        self.alpha.max(self.beta)
    }

    fn gap(&self) -> f64 {
        (self.alpha - self.beta).abs()
    }

    /// The series' a = r+s+x and b for customers with x repeat purchases.
    fn series_shape(&self, x: f64) -> (f64, f64) {
        let b = if self.alpha_is_max {
            self.s + 1.0
        } else {
            self.r + x
        };
        (self.r + self.s + x, b)
    }
}

/// Series terms are summed until (j+1)·|term| falls below this, relative to the sum (≥ 1).
const SERIES_TOLERANCE: f64 = 1e-17;
/// Beyond this many terms a series counts as not converging (z within about 4e-4 of one: α and
/// β apart by a factor of about 2 700). A fit the data do not pin down walks β (or α) off
/// toward infinity, and each step there summed up to millions of terms per purchase count
/// before the line search gave up: 26 s to fail on 130 customers of the example data (the
/// report's retention by channel, 50 s of a 52 s report). The evaluation now refuses such a
/// point and the search backs off: 2.7 s to the same failure, the report in 4.8 s.
const MAX_SERIES_TERMS: usize = 100_000;

/// The coefficients of S(z) = ₂F₁(1, n; d; z) = Σⱼ cⱼ zʲ with cⱼ = (n)ⱼ/(d)ⱼ, and of its
/// derivatives: ln ₂F₁(a, b; a+1; z) = (1−b) ln(1−z) + ln S(z) with n = a+1−b, d = a+1 (the
/// Euler transformation of [`ln_hyp2f1_c_is_a_plus_1`], whose terms are all positive and at
/// most the first). Per term [cⱼ, ∂cⱼ/∂a, ∂cⱼ/∂b, j·cⱼ], with ∂cⱼ/∂n = cⱼ Σᵢ₍ᵢ<ⱼ₎ 1/(n+i) and
/// ∂cⱼ/∂d = −cⱼ Σᵢ₍ᵢ<ⱼ₎ 1/(d+i). They depend on x alone, so one table serves every row of an
/// x, whose series then cost a multiply-add per coefficient and row, in SIMD lanes.
/// `None` when the series would not converge at `z_top`, the largest z it is used for.
fn series_coefficients(a: f64, b: f64, z_top: f64) -> Option<Vec<[f64; 4]>> {
    let (n, d) = (a + 1.0 - b, a + 1.0);
    let mut terms = vec![[1.0, 0.0, 0.0, 0.0]];
    let (mut c, mut harmonic_n, mut harmonic_d, mut z_power) = (1.0, 0.0, 0.0, 1.0);
    // At least c₁: ∂S/∂z at z = 0 is c₁.
    loop {
        let j = (terms.len() - 1) as f64;
        c *= (n + j) / (d + j);
        harmonic_n += 1.0 / (n + j);
        harmonic_d += 1.0 / (d + j);
        z_power *= z_top;
        let term = [
            c,
            c * (harmonic_n - harmonic_d),
            -c * harmonic_n,
            (j + 1.0) * c,
        ];
        terms.push(term);
        if significance(&term) * z_power * (j + 2.0) <= SERIES_TOLERANCE {
            break;
        }
        if terms.len() > MAX_SERIES_TERMS || !c.is_finite() {
            return None;
        }
    }
    Some(terms)
}

/// The largest of a term's value and its a- and b-derivatives: what the stopping rule bounds.
fn significance(term: &[f64; 4]) -> f64 {
    term[0].max(term[1].abs()).max(term[2].abs())
}

/// S, ∂S/∂a, ∂S/∂b and ∂S/∂z at each z of a block (`out[k][i]`), from `coefficients`: as many
/// terms as the block's largest z needs (a smaller z gets more terms than it needs, never
/// fewer). A block of equal z (customers who never came back all have t_x = 0) is summed once.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn series_block(coefficients: &[[f64; 4]], z: &[f64; BLOCK], out: &mut [[f64; BLOCK]; 4]) {
    let z_max = z.iter().fold(0.0f64, |m, &v| m.max(v));
    let mut needed = coefficients.len();
    let mut z_power = 1.0;
    for (j, term) in coefficients.iter().enumerate().skip(1) {
        z_power *= z_max;
        if significance(term) * z_power * (j as f64 + 1.0) <= SERIES_TOLERANCE {
            needed = j + 1;
            break;
        }
    }
    let terms = &coefficients[1..needed];
    let lanes = if z.iter().all(|&v| v == z[0]) {
        1
    } else {
        BLOCK
    };
    // Horner's scheme from the last term down, eight lanes at a time: the four sums of eight
    // lanes stay in registers, and their chains are independent.
    for start in (0..lanes).step_by(LANES) {
        let mut lane_z = [0.0; LANES];
        lane_z.copy_from_slice(&z[start..start + LANES]);
        let mut acc = [[0.0; LANES]; 4];
        for term in terms.iter().rev() {
            for (sum, &c) in acc.iter_mut().zip(term) {
                for l in 0..LANES {
                    sum[l] = sum[l] * lane_z[l] + c;
                }
            }
        }
        // The constant term: c₀ = 1, and no derivative; ∂S/∂z's sum ends at j = 1.
        for l in 0..LANES {
            out[0][start + l] = acc[0][l] * lane_z[l] + 1.0;
            out[1][start + l] = acc[1][l] * lane_z[l];
            out[2][start + l] = acc[2][l] * lane_z[l];
            out[3][start + l] = acc[3][l];
        }
    }
    if lanes == 1 {
        for column in out.iter_mut() {
            let first = column[0];
            column.fill(first);
        }
    }
}

/// Lanes summed together by [`series_block`]: two AVX2 registers per sum.
const LANES: usize = 8;

/// One group's rows' part of the value and gradient of Σ w ln(e^A + e^B) (the x-dependent
/// gamma term aside), with A = −(r+x) ln(α+T) − s ln(β+T) (alive at T) and
/// B = ln s − ln(r+s+x) + ln A₀ (dropped out between t_x and T), ln A₀ = E + ln(1 − e^(L−E)),
/// E and L the series term at t_x and at T (see [`ln_a0`]). Per row: the two series over
/// the group's coefficients, then eight logarithms and two exponentials.
fn group_gradient(
    e: Evaluation,
    group: &FrequencyGroup,
    t_x: &[f64],
    t: &[f64],
    w: &[f64],
) -> Option<[f64; 5]> {
    let x = group.x;
    let (a, b) = e.series_shape(x);
    let (max, gap) = (e.max(), e.gap());
    let earliest = t_x.iter().fold(f64::INFINITY, |m, &v| m.min(v));
    let coefficients = series_coefficients(a, b, gap / (max + earliest.max(0.0)))?;
    let mut sums = [0.0; 5];
    for start in (0..t.len()).step_by(BLOCK) {
        let rows = start..(start + BLOCK).min(t.len());
        let n = rows.len();
        let (t_x, t, w) = (&t_x[rows.clone()], &t[rows.clone()], &w[rows]);
        let mut z_early = [0.0; BLOCK];
        let mut z_late = [0.0; BLOCK];
        for i in 0..n {
            z_early[i] = gap / (max + t_x[i]);
            z_late[i] = gap / (max + t[i]);
        }
        let mut early = [[0.0; BLOCK]; 4];
        let mut late = [[0.0; BLOCK]; 4];
        series_block(&coefficients, &z_early, &mut early);
        series_block(&coefficients, &z_late, &mut late);
        let block = row_sums(e, x, [t_x, t, w], &early, &late, n);
        sums.iter_mut().zip(block).for_each(|(s, v)| *s += v);
    }
    sums.iter().all(|v| v.is_finite()).then_some(sums)
}

/// Σ over a block's rows of w·[ln(e^A + e^B), and its derivatives in r, α, s, β] given the
/// rows' series at t_x (`early`) and T (`late`); see [`group_gradient`]. Each logarithm and
/// exponential is one small loop over the block, which the compiler vectorizes (one loop
/// over everything runs out of registers and stays scalar); the final loop is arithmetic.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn row_sums(
    e: Evaluation,
    x: f64,
    columns: [&[f64]; 3],
    early: &[[f64; BLOCK]; 4],
    late: &[[f64; BLOCK]; 4],
    n: usize,
) -> [f64; 5] {
    let Evaluation {
        r,
        alpha,
        s,
        beta,
        alpha_is_max,
    } = e;
    let [t_x, t, w] = columns;
    let (max, other) = if alpha_is_max {
        (alpha, beta)
    } else {
        (beta, alpha)
    };
    let (a, b) = e.series_shape(x);
    let ln_s_over_a = s.ln() - a.ln();
    let rx = r + x;
    let mut ln_max_t = [0.0; BLOCK];
    let mut ln_other_t = [0.0; BLOCK];
    let mut ln_max_t_x = [0.0; BLOCK];
    let mut ln_other_t_x = [0.0; BLOCK];
    map_into(&mut ln_max_t, [t], |[t]| vmath::ln(max + t));
    map_into(&mut ln_other_t, [t], |[t]| vmath::ln(other + t));
    // E and L: ln ₂F₁ = (1−b) ln(1−z) + ln S with 1 − z = (other+τ)/(max+τ), less a ln(max+τ).
    let series_term = |sum: f64, ln_max: f64, ln_other: f64| {
        (1.0 - b) * (ln_other - ln_max) + vmath::ln(sum) - a * ln_max
    };
    let mut early_ln = [0.0; BLOCK];
    if t_x.iter().all(|&v| v == t_x[0]) {
        // Customers who never came back (t_x = 0) share the early term: three logarithms
        // fewer per row.
        ln_max_t_x.fill((max + t_x[0]).ln());
        ln_other_t_x.fill((other + t_x[0]).ln());
        early_ln.fill(series_term(early[0][0], ln_max_t_x[0], ln_other_t_x[0]));
    } else {
        map_into(&mut ln_max_t_x, [t_x], |[t_x]| vmath::ln(max + t_x));
        map_into(&mut ln_other_t_x, [t_x], |[t_x]| vmath::ln(other + t_x));
        map_into(
            &mut early_ln,
            [&early[0][..n], &ln_max_t_x[..n], &ln_other_t_x[..n]],
            |[sum, ln_max, ln_other]| series_term(sum, ln_max, ln_other),
        );
    }
    let mut late_ln = [0.0; BLOCK];
    map_into(
        &mut late_ln,
        [&late[0][..n], &ln_max_t[..n], &ln_other_t[..n]],
        |[sum, ln_max, ln_other]| series_term(sum, ln_max, ln_other),
    );
    let mut q = [0.0; BLOCK];
    map_into(&mut q, [&early_ln[..n], &late_ln[..n]], |[e, l]| {
        vmath::exp(l - e)
    });
    // B = ln s − ln a + E + ln(1 − q); A from ln(α+T) and ln(β+T).
    let (ln_alpha_t, ln_beta_t) = if alpha_is_max {
        (&ln_max_t, &ln_other_t)
    } else {
        (&ln_other_t, &ln_max_t)
    };
    let mut dropped = [0.0; BLOCK];
    map_into(&mut dropped, [&early_ln[..n], &q[..n]], |[e, q]| {
        ln_s_over_a + e + vmath::ln(1.0 - q)
    });
    let mut alive = [0.0; BLOCK];
    map_into(
        &mut alive,
        [&ln_alpha_t[..n], &ln_beta_t[..n]],
        |[ln_alpha_t, ln_beta_t]| -rx * ln_alpha_t - s * ln_beta_t,
    );
    let mut ed = [0.0; BLOCK];
    map_into(&mut ed, [&dropped[..n], &alive[..n]], |[d, a]| {
        vmath::exp(-(d - a).abs())
    });
    let mut ln_1_ed = [0.0; BLOCK];
    map_into(&mut ln_1_ed, [&ed[..n]], |[ed]| vmath::ln(1.0 + ed));
    // ∇ of a series term E (or L) at time τ: a = r+s+x moves with r and s, b with s
    // (α ≥ β) or r, z = gap/(max+τ) with max (+(other+τ)/(max+τ)²) and other (−1/(max+τ)),
    // and −a ln(max+τ) with a and max.
    #[inline(always)]
    fn term_gradient(
        [max, other, a, b]: [f64; 4],
        alpha_is_max: bool,
        tau: f64,
        [sum, by_a, by_b, by_z]: [f64; 4],
        ln_max: f64,
        ln_other: f64,
    ) -> [f64; 4] {
        let inv_sum = 1.0 / sum;
        let inv_max = 1.0 / (max + tau);
        let inv_other = 1.0 / (other + tau);
        let f_a = by_a * inv_sum - ln_max;
        let f_b = by_b * inv_sum - (ln_other - ln_max);
        let f_z = by_z * inv_sum;
        let wrt_max = inv_max * ((b - 1.0) + f_z * inv_max / inv_other - a);
        let wrt_other = -(b - 1.0) * inv_other - f_z * inv_max;
        if alpha_is_max {
            [f_a, wrt_max, f_a + f_b, wrt_other]
        } else {
            [f_a + f_b, wrt_other, f_a, wrt_max]
        }
    }
    let constants = [max, other, a, b];
    lane_sums(
        [
            t_x,
            t,
            w,
            &early[1][..n],
            &early[2][..n],
            &early[3][..n],
            &late[1][..n],
            &late[2][..n],
            &late[3][..n],
            &early[0][..n],
            &late[0][..n],
            &ln_max_t_x[..n],
            &ln_other_t_x[..n],
            &ln_max_t[..n],
            &ln_other_t[..n],
            &q[..n],
            &dropped[..n],
            &alive[..n],
            &ed[..n],
            &ln_1_ed[..n],
        ],
        #[inline(always)]
        |[
            t_x,
            t,
            w,
            e_a,
            e_b,
            e_z,
            l_a,
            l_b,
            l_z,
            e_sum,
            l_sum,
            ln_max_t_x,
            ln_other_t_x,
            ln_max_t,
            ln_other_t,
            q,
            dropped,
            alive,
            ed,
            ln_1_ed,
        ]| {
            let d = dropped - alive;
            let has_a0 = t_x < t && q < 1.0;
            let larger = if d > 0.0 { dropped } else { alive };
            let share = 1.0 / (1.0 + ed);
            let p = if d > 0.0 { share } else { ed * share };
            let g_early = term_gradient(
                constants,
                alpha_is_max,
                t_x,
                [e_sum, e_a, e_b, e_z],
                ln_max_t_x,
                ln_other_t_x,
            );
            let g_late = term_gradient(
                constants,
                alpha_is_max,
                t,
                [l_sum, l_a, l_b, l_z],
                ln_max_t,
                ln_other_t,
            );
            let (ln_alpha_t, ln_beta_t) = if alpha_is_max {
                (ln_max_t, ln_other_t)
            } else {
                (ln_other_t, ln_max_t)
            };
            let g_alive = [-ln_alpha_t, -rx / (alpha + t), -ln_beta_t, -s / (beta + t)];
            let g_dropped_extra = [-1.0 / a, 0.0, 1.0 / s - 1.0 / a, 0.0];
            // ∇ ln A₀ = (∇E − q ∇L)/(1 − q).
            let inv = 1.0 / (1.0 - q);
            let mut out = [0.0; 5];
            out[0] = w * if has_a0 { larger + ln_1_ed } else { alive };
            for k in 0..4 {
                let g_dropped = g_dropped_extra[k] + (g_early[k] - q * g_late[k]) * inv;
                let mixed = g_alive[k] + p * (g_dropped - g_alive[k]);
                out[k + 1] = w * if has_a0 { mixed } else { g_alive[k] };
            }
            out
        },
    )
}

impl Likelihood<'_> {
    /// The log-likelihood and its gradient, written out: the terms of x alone once per x, the
    /// rest by [`group_gradient`] in parallel over pieces of groups (the tests hold it to the
    /// dual numbers of [`LogLikelihood::log_likelihood`]). `None` when a series does not
    /// converge.
    fn gradient(&self, params: &[f64; 4]) -> Option<(f64, [f64; 4])> {
        let [r, alpha, s, beta] = *params;
        let n = self.histories.customers();
        let mut value = n * (-ln_gamma(r) + r * alpha.ln() + s * beta.ln());
        let mut gradient = [
            n * (-digamma(r) + alpha.ln()),
            n * r / alpha,
            n * beta.ln(),
            n * s / beta,
        ];
        for group in &self.by_x.groups {
            value += group.weight * ln_gamma(r + group.x);
            gradient[0] += group.weight * digamma(r + group.x);
        }
        let evaluation = Evaluation {
            r,
            alpha,
            s,
            beta,
            alpha_is_max: alpha >= beta,
        };
        let by_x = &self.by_x;
        let pieces = by_x.par_pieces(|group, rows: Range<usize>| {
            group_gradient(
                evaluation,
                group,
                &by_x.t_x[rows.clone()],
                &by_x.t[rows.clone()],
                &by_x.weight[rows],
            )
        });
        for piece in pieces {
            let [v, g @ ..] = piece?;
            value += v;
            gradient
                .iter_mut()
                .zip(g)
                .for_each(|(total, part)| *total += part);
        }
        Some((value, gradient))
    }
}

/// The log-likelihood of `histories` in (r, α, s, β), with its written-out gradient: what
/// [`crate::covariates`] evaluates once per covariate profile.
pub(crate) fn likelihood(histories: &Histories) -> impl LogLikelihood<4> + Sync + '_ {
    Likelihood::new(histories)
}

/// Fits the Pareto/NBD model. Starting values: r = s = 1, α = β = mean T.
pub fn fit_histories(
    histories: &Histories,
    cancel: &AtomicBool,
) -> Result<(ParetoNbd, Fit<4>), FitError> {
    let scale = histories.mean_t().max(1e-3);
    let fit = fit(
        &Likelihood::new(histories),
        [1.0, scale, 1.0, scale],
        cancel,
    )?;
    let [r, alpha, s, beta] = fit.params;
    Ok((ParetoNbd { r, alpha, s, beta }, fit))
}

/// 8-point Gauss–Legendre nodes and weights on [−1, 1].
pub(crate) const GAUSS_LEGENDRE_8: [(f64, f64); 8] = [
    (-0.960_289_856_497_536_2, 0.101_228_536_290_376_26),
    (-0.796_666_477_413_626_7, 0.222_381_034_453_374_47),
    (-0.525_532_409_916_329, 0.313_706_645_877_887_3),
    (-0.183_434_642_495_649_8, 0.362_683_783_378_362),
    (0.183_434_642_495_649_8, 0.362_683_783_378_362),
    (0.525_532_409_916_329, 0.313_706_645_877_887_3),
    (0.796_666_477_413_626_7, 0.222_381_034_453_374_47),
    (0.960_289_856_497_536_2, 0.101_228_536_290_376_26),
];
const PANELS: usize = 32;

impl ParetoNbd {
    /// ln of the odds that the customer is inactive: s/(r+s+x) (α+T)^(r+x) (β+T)^s A₀;
    /// `Some(None)` when A₀ is zero (the odds are 0), `None` when a series did not converge.
    #[allow(clippy::option_option)]
    fn ln_dropout_odds(&self, x: f64, t_x: f64, t: f64) -> Option<Option<f64>> {
        let ParetoNbd { r, alpha, s, beta } = *self;
        let a0 = ln_a0(r, alpha, s, beta, x, t_x, t)?;
        Some(a0.map(|a0| {
            s.ln() - (r + s + x).ln() + (r + x) * (alpha + t).ln() + s * (beta + t).ln() + a0
        }))
    }

    /// ln NBD(j; τ) for j = 0..=max_n: the Poisson-Gamma probabilities of j purchases in τ.
    fn ln_nbd(&self, tau: f64, max_n: usize) -> impl Iterator<Item = f64> {
        let (r, alpha) = (self.r, self.alpha);
        let ln_z = (tau / (alpha + tau)).ln();
        let mut ln_p = r * (alpha / (alpha + tau)).ln();
        (0..=max_n).map(move |j| {
            let current = ln_p;
            let j = j as f64;
            ln_p += ((r + j) / (j + 1.0)).ln() + ln_z;
            current
        })
    }

    /// Simulates one customer for `t` time units (for tests and benchmarks): returns (x, t_x).
    #[doc(hidden)]
    pub fn simulate(&self, rng: &mut crate::testing::Rng, t: f64) -> (f64, f64) {
        let lambda = rng.gamma(self.r) / self.alpha;
        let mu = rng.gamma(self.s) / self.beta;
        let end = (-rng.uniform().ln() / mu).min(t);
        let (mut now, mut x, mut t_x) = (0.0, 0.0, 0.0);
        loop {
            now += -rng.uniform().ln() / lambda;
            if now > end {
                return (x, t_x);
            }
            x += 1.0;
            t_x = now;
        }
    }
}

impl ParetoNbd {
    /// E[X(T, T+horizon) | alive at T] = (r+x)(β+T) / ((α+T)(s−1)) · [1 − ((β+T)/(β+T+t))^(s−1)],
    /// the bracket over s − 1 taken by expm1 so s = 1 is no singularity (its limit is
    /// ln((β+T+t)/(β+T))).
    fn expected_if_alive(&self, horizon: f64, x: f64, t: f64) -> f64 {
        let ParetoNbd { r, alpha, s, beta } = *self;
        if horizon <= 0.0 {
            return 0.0;
        }
        let span = (horizon / (beta + t)).ln_1p();
        let shape = if (s - 1.0).abs() < 1e-12 {
            span
        } else {
            -(-(s - 1.0) * span).exp_m1() / (s - 1.0)
        };
        (r + x) * (beta + t) / (alpha + t) * shape
    }
}

/// E[λ/(λ+μ)] for independent λ ~ Gamma(a₁, rate b₁) and μ ~ Gamma(a₂, rate b₂). With
/// B = G₁/(G₁+G₂) ~ Beta(a₁, a₂) for the unit-rate gammas and k = b₁/b₂, λ/(λ+μ) =
/// B/(B + k(1−B)), whose expectation is by Euler's integral a₁/(a₁+a₂) ₂F₁(1, a₂; a₁+a₂+1; 1−k)
/// for k ≤ 1, and a₁/(k(a₁+a₂)) ₂F₁(1, a₁+1; a₁+a₂+1; 1−1/k) for k > 1: arguments in [0, 1).
fn purchase_share(a1: f64, b1: f64, a2: f64, b2: f64) -> Option<f64> {
    let k = b1 / b2;
    let mean = a1 / (a1 + a2);
    if k <= 1.0 {
        Some(mean * hyp2f1_short(1.0, a2, a1 + a2 + 1.0, 1.0 - k)?)
    } else {
        Some(mean / k * hyp2f1_short(1.0, a1 + 1.0, a1 + a2 + 1.0, 1.0 - 1.0 / k)?)
    }
}

impl PurchaseModel for ParetoNbd {
    fn purchase_rate_if_alive(&self, x: f64, t: f64) -> f64 {
        (self.r + x) / (self.alpha + t)
    }

    fn p_alive(&self, x: f64, t_x: f64, t: f64) -> f64 {
        match self.ln_dropout_odds(x, t_x, t) {
            Some(odds) => odds.map_or(1.0, alive_given_ln_odds),
            // NaN, not a guess: expected_purchases then returns None, and the engine refuses
            // a non-finite table value.
            None => f64::NAN,
        }
    }

    /// The individual likelihood splits by when the customer dropped out: alive at T
    /// (λ^x e^{−(λ+μ)T}) or at some τ in (t_x, T] (λ^x μ e^{−(λ+μ)τ}, integrated). The part
    /// with τ > `at` is the likelihood of the same x and T with the last purchase moved to
    /// `at`, so P(alive at `at` | data) = L(x, at, T) / L(x, t_x, T) = (1 + odds(at)) /
    /// (1 + odds(t_x)), the odds of [`ParetoNbd::ln_dropout_odds`]; linear in the integrand,
    /// the identity survives the gamma mixing.
    fn p_alive_back_at(&self, at: f64, x: f64, t_x: f64, t: f64) -> f64 {
        if at <= t_x {
            return 1.0;
        }
        match (
            self.ln_dropout_odds(x, at.min(t), t),
            self.ln_dropout_odds(x, t_x, t),
        ) {
            (Some(later), Some(now)) => (crate::purchase::ln_one_plus_odds(later)
                - crate::purchase::ln_one_plus_odds(now))
            .exp()
            .min(1.0),
            _ => f64::NAN,
        }
    }

    /// (r+x)(β+T) / ((α+T)(s−1)) · [1 − ((β+T)/(β+T+t))^(s−1)] · P(alive) (FHL 2005 note,
    /// eq. 41), by [`ParetoNbd::expected_if_alive`].
    fn expected_purchases_with_p_alive(
        &self,
        p_alive: f64,
        horizon: f64,
        x: f64,
        _t_x: f64,
        t: f64,
    ) -> Option<f64> {
        if horizon <= 0.0 {
            return Some(0.0);
        }
        let value = self.expected_if_alive(horizon, x, t) * p_alive;
        value.is_finite().then_some(value)
    }

    fn expected_purchases_if_alive_at(&self, horizons: &[f64], x: f64, t: f64) -> Option<Vec<f64>> {
        horizons
            .iter()
            .map(|&h| {
                let value = self.expected_if_alive(h, x, t);
                value.is_finite().then_some(value)
            })
            .collect()
    }

    /// 1 − P(alive) · E[λ/(λ+μ) (1 − e^(−(λ+μ)w))]: alive at T, with λ ~ Gamma(r+x, α+T) and
    /// μ ~ Gamma(s, β+T) independent given the history, the customer's first event after T
    /// comes at rate λ + μ and is a purchase with probability λ/(λ+μ). The expectation is
    /// E[λ/(λ+μ)] at the rates (α+T, β+T) less ((α+T)/(α+T+w))^(r+x) ((β+T)/(β+T+w))^s times
    /// the same at (α+T+w, β+T+w): e^(−(λ+μ)w) tilts each gamma to a rate larger by w
    /// ([`purchase_share`]).
    fn p_no_purchase_with_p_alive(
        &self,
        alive: f64,
        window: f64,
        x: f64,
        _t_x: f64,
        t: f64,
    ) -> Option<f64> {
        let ParetoNbd { r, alpha, s, beta } = *self;
        let w = window.max(0.0);
        let now = purchase_share(r + x, alpha + t, s, beta + t)?;
        let tilt = -(r + x) * (w / (alpha + t)).ln_1p() - s * (w / (beta + t)).ln_1p();
        let later = purchase_share(r + x, alpha + t + w, s, beta + t + w)?;
        let value = 1.0 - alive * (now - tilt.exp() * later);
        value.is_finite().then(|| value.clamp(0.0, 1.0))
    }

    /// P(alive) · ((β+T)/(β+T+w))^s: given alive at T, μ ~ Gamma(s, β+T), and the customer
    /// lives on through w with probability E[e^(−μw)].
    fn p_alive_at_with_p_alive(
        &self,
        alive: f64,
        window: f64,
        _x: f64,
        _t_x: f64,
        t: f64,
    ) -> Option<f64> {
        let value = alive * (-self.s * (window.max(0.0) / (self.beta + t)).ln_1p()).exp();
        value.is_finite().then_some(value)
    }

    /// E[λ/(μ+δ)] = (r+x)/(α+T) · E[1/(μ+δ)] for λ ~ Gamma(r+x, α+T) and μ ~ Gamma(s, β+T)
    /// independent: the closed form of Fader, Hardie & Lee (2005, "RFM and CLV", eq. 2),
    /// whose Ψ(s, s; δ(β+T)) factor is E[1/(μ+δ)] = ∫₀^∞ e^(−δv) ((β+T)/(β+T+v))^s dv,
    /// taken by [`Discounting`].
    fn dert_if_alive(&self, discounting: &Discounting, x: f64, t: f64) -> Option<f64> {
        let ParetoNbd { r, alpha, s, beta } = *self;
        let b = beta + t;
        let inverse = discounting.integrate(|v| (-s * (v / b).ln_1p()).exp());
        let value = (r + x) / (alpha + t) * inverse;
        value.is_finite().then_some(value)
    }

    /// A Pareto/NBD customer alive at T has λ ~ Gamma(r+x, α+T) and μ ~ Gamma(s, β+T), and,
    /// lifetimes being memoryless, from T on buys as a new customer with those parameters.
    fn purchase_distribution_if_alive(&self, t: f64, x: f64, t_cal: f64, max_n: usize) -> Vec<f64> {
        ParetoNbd {
            r: self.r + x,
            alpha: self.alpha + t_cal,
            s: self.s,
            beta: self.beta + t_cal,
        }
        .distribution_in_panels(t, max_n, QUANTILE_PANELS)
    }

    /// E[X(t)] = rβ/(α(s−1)) · [1 − (β/(β+t))^(s−1)]: the conditional expectation with no
    /// history.
    fn population_expected_purchases(&self, t: f64) -> Option<f64> {
        self.expected_purchases(t, 0.0, 0.0, 0.0)
    }

    /// P(X(t) = n) = P(τ > t) NBD(n; t) + ∫₀ᵗ f(τ) NBD(n; τ) dτ over the lifetime τ, whose
    /// marginal is Pareto: P(τ > t) = (β/(β+t))^s. The integral is taken by Gauss–Legendre
    /// quadrature in u = ln(1+τ/β) / ln(1+t/β), where the Pareto density is smooth; this
    /// avoids the closed form's cancellation between a ₂F₁ and a finite sum of them.
    fn purchase_distribution(&self, t: f64, max_n: usize) -> Vec<f64> {
        self.distribution_in_panels(t, max_n, PANELS)
    }
}

/// Panels of the conditional distribution's quadrature, whose quantiles need it to about 1e-6,
/// not the 1e-10 of the population's: half the work, checked against the full rule (eight panels
/// were 2e-6 off for 60 purchases over ten years).
const QUANTILE_PANELS: usize = 16;

impl ParetoNbd {
    /// [`PurchaseModel::purchase_distribution`] by 8-point Gauss–Legendre on `panels` panels.
    fn distribution_in_panels(&self, t: f64, max_n: usize, panels: usize) -> Vec<f64> {
        let (s, beta) = (self.s, self.beta);
        let mut out: Vec<f64> = self
            .ln_nbd(t, max_n)
            .map(|ln_p| (ln_p + s * (beta / (beta + t)).ln()).exp())
            .collect();
        let span = (t / beta).ln_1p();
        let width = 1.0 / panels as f64;
        for panel in 0..panels {
            for (node, weight) in GAUSS_LEGENDRE_8 {
                let u = (panel as f64 + 0.5 + 0.5 * node) * width;
                let tau = beta * (u * span).exp_m1();
                // f(τ) dτ = s β^s (β+τ)^−(s+1) · (β+τ) span du.
                let ln_density = s.ln() + s * (beta / (beta + tau)).ln() + span.ln();
                let ln_w = (0.5 * width * weight).ln() + ln_density;
                for (p, ln_p) in out.iter_mut().zip(self.ln_nbd(tau, max_n)) {
                    *p += (ln_w + ln_p).exp();
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Followed, cdnow, check_calibration, check_distribution};

    const PUBLISHED: ParetoNbd = ParetoNbd {
        r: 0.553,
        alpha: 10.578,
        s: 0.606,
        beta: 11.669,
    };

    /// P(alive at an earlier time | the history to T) at CDNOW's published parameters against
    /// mpmath (20 digits): the ratio of 2-D quadratures over the prior gammas of λ and μ of the
    /// likelihood with the dropout after that time to the whole likelihood.
    #[test]
    fn alive_back_then_matches_mpmath() {
        let p = PUBLISHED;
        // (x, t_x, T, at, P(alive at `at` | x, t_x, T))
        let cases = [
            (2.0, 30.43, 38.86, 35.0, 0.916_860_949_597_203_1),
            (0.0, 0.0, 38.86, 10.0, 0.554_970_794_056_244_4),
            (5.0, 12.0, 38.86, 30.0, 0.097_714_927_113_945_77),
            (1.0, 2.0, 38.86, 38.0, 0.177_117_635_002_936_5),
        ];
        for (x, t_x, t, at, expected) in cases {
            let got = p.p_alive_back_at(at, x, t_x, t);
            assert!(
                ((got - expected) / expected).abs() < 1e-10,
                "{x} {t_x} {at}: {got} vs {expected}"
            );
        }
        // Before the last purchase certain; at T the usual P(alive).
        assert_eq!(p.p_alive_back_at(29.0, 2.0, 30.43, 38.86), 1.0);
        assert_eq!(
            p.p_alive_back_at(38.86, 2.0, 30.43, 38.86),
            p.p_alive(2.0, 30.43, 38.86)
        );
    }

    /// P(alive at T+w), P(no purchase in w) and DERT at CDNOW's published parameters against
    /// mpmath (25 digits): P(no purchase) by 2-D quadrature over the posterior gammas of λ and
    /// μ, DERT by Fader, Hardie & Lee's closed form (2005, "RFM and CLV", eq. 2) with mpmath's
    /// Tricomi Ψ(s, s; δ(β+T)), at δ = ln(1.1)·7/365.25 a week.
    #[test]
    fn churn_predictions_and_dert_match_mpmath() {
        let p = PUBLISHED;
        let discounting = Discounting::new(Discounting::continuous_rate(0.1, 7.0)).unwrap();
        // (x, t_x, w, P(alive at T+w), P(no purchase), DERT if alive), T = 38.86
        let cases = [
            (
                2.0,
                30.43,
                4.0,
                0.829_951_834_824_054_9,
                0.846_863_594_948_415,
                9.405_167_003_094_333,
            ),
            (
                2.0,
                30.43,
                52.0,
                0.566_077_719_054_002_3,
                0.368_483_205_604_691_5,
                9.405_167_003_094_333,
            ),
            (
                0.0,
                0.0,
                4.0,
                0.281_963_652_140_418_8,
                0.987_845_351_845_134_1,
                2.037_233_588_997_714_8,
            ),
            (
                0.0,
                0.0,
                52.0,
                0.192_316_390_376_583_2,
                0.920_095_951_614_796_4,
                2.037_233_588_997_714_8,
            ),
            (
                10.0,
                35.0,
                52.0,
                0.603_959_533_285_285_6,
                0.122_371_720_923_134_6,
                38.876_900_659_480_8,
            ),
        ];
        for (x, t_x, w, alive_at, none, dert) in cases {
            let t = 38.86;
            let close = |what: &str, got: f64, want: f64, tolerance: f64| {
                assert!(
                    (got - want).abs() < tolerance * want,
                    "x={x} w={w} {what}: {got} vs {want}"
                );
            };
            close(
                "P(alive at T+w)",
                p.p_alive_at(w, x, t_x, t).unwrap(),
                alive_at,
                1e-10,
            );
            close(
                "P(no purchase)",
                p.p_no_purchase(w, x, t_x, t).unwrap(),
                none,
                1e-10,
            );
            let closed_form = p.dert_if_alive(&discounting, x, t).unwrap();
            close("DERT", closed_form, dert, 1e-8);
            // The generic route, δ ∫ e^(−δu) E[X(u) | alive] du, gives the same number.
            let expected = p
                .expected_purchases_if_alive_at(discounting.times_vanishing(), x, t)
                .unwrap();
            let generic = discounting.rate() * discounting.integral_vanishing(&expected);
            close("DERT by E[X]", generic, dert, 1e-8);
        }
    }

    /// The conditional distribution's coarser quadrature stays within 1e-6 of the full one,
    /// for light and heavy buyers and horizons short and long beside β + T.
    #[test]
    fn conditional_distribution_is_accurate_on_fewer_panels() {
        for x in [0.0, 2.0, 10.0, 60.0] {
            for t in [4.0, 52.0, 520.0] {
                let posterior = ParetoNbd {
                    r: PUBLISHED.r + x,
                    alpha: PUBLISHED.alpha + 38.86,
                    s: PUBLISHED.s,
                    beta: PUBLISHED.beta + 38.86,
                };
                let full = posterior.purchase_distribution(t, 200);
                let coarse = PUBLISHED.purchase_distribution_if_alive(t, x, 38.86, 200);
                for (n, (a, b)) in full.iter().zip(&coarse).enumerate() {
                    assert!((a - b).abs() < 1e-6, "x={x} t={t} n={n}: {a} vs {b}");
                }
            }
        }
    }

    /// Customers simulated from the model and followed for 26 weeks past T = 39 buy and stay
    /// as P(no purchase) and P(alive at T+w) say.
    #[test]
    fn churn_predictions_match_simulated_customers() {
        let p = ParetoNbd {
            r: 0.9,
            alpha: 7.0,
            s: 0.8,
            beta: 12.0,
        };
        let mut rng = crate::testing::Rng::new(23);
        let (t, w) = (39.0, 26.0);
        let followed: Vec<Followed> = (0..40_000)
            .map(|_| {
                let lambda = rng.gamma(p.r) / p.alpha;
                let death = -rng.uniform().ln() / (rng.gamma(p.s) / p.beta);
                let mut f = Followed {
                    x: 0.0,
                    t_x: 0.0,
                    bought_in_window: false,
                    alive_after_window: death > t + w,
                    purchases_in_window: 0,
                };
                let mut now = 0.0;
                loop {
                    now += -rng.uniform().ln() / lambda;
                    if now > death.min(t + w) {
                        return f;
                    }
                    if now <= t {
                        f.x += 1.0;
                        f.t_x = now;
                    } else {
                        f.bought_in_window = true;
                        f.purchases_in_window += 1;
                    }
                }
            })
            .collect();
        check_calibration(&p, &followed, t, w);
    }

    /// Fader, Hardie & Lee (2005), "A note on implementing the Pareto/NBD model in MATLAB",
    /// report r = 0.553, α = 10.578, s = 0.606, β = 11.669 and LL = −9595.0 on CDNOW.
    #[test]
    fn reproduces_the_published_cdnow_estimates() {
        let (p, fit) = fit_histories(&cdnow(), &AtomicBool::new(false)).unwrap();
        assert!(fit.converged, "{}", fit.status);
        for (got, want, tolerance) in [
            (p.r, PUBLISHED.r, 0.0006),
            (p.alpha, PUBLISHED.alpha, 0.006),
            (p.s, PUBLISHED.s, 0.0006),
            (p.beta, PUBLISHED.beta, 0.006),
        ] {
            assert!((got - want).abs() < tolerance, "{got} vs {want}: {p:?}");
        }
        assert!(
            (fit.log_likelihood - (-9594.98)).abs() < 0.01,
            "{}",
            fit.log_likelihood
        );
    }

    /// Single-customer predictions at the published parameters, against lifetimes 0.11.3
    /// (P(alive), conditional expectation) and mpmath quadrature (the distribution).
    #[test]
    fn single_customer_predictions() {
        let p = PUBLISHED;
        let alive = p.p_alive(2.0, 30.43, 38.86);
        assert!((alive - 0.869_167_559_153_011_1).abs() < 1e-10, "{alive}");
        let silent = p.p_alive(0.0, 0.0, 38.86);
        assert!((silent - 0.295_286_604_616_894_4).abs() < 1e-10, "{silent}");
        let e = p.expected_purchases(39.0, 2.0, 30.43, 38.86).unwrap();
        assert!((e - 1.455_123_193_257_602).abs() < 1e-10, "{e}");
        let population = p.population_expected_purchases(39.0).unwrap();
        assert!(
            (population - 1.213_002_844_281_015_7).abs() < 1e-10,
            "{population}"
        );
        // A customer seen only at T = 0 has had no time to drop out.
        assert_eq!(p.p_alive(0.0, 0.0, 0.0), 1.0);
        // The distribution sums to one with E[X(t)] as its mean, and matches quadrature.
        let distribution = check_distribution(&p, 39.0, 2000);
        for (n, want) in [
            (0, 0.593_625_031_602_384),
            (2, 0.082_487_184_116_316_59),
            (10, 0.004_193_439_332_080_426),
        ] {
            assert!(
                (distribution[n] - want).abs() < 1e-10,
                "{n}: {}",
                distribution[n]
            );
        }
    }

    /// A last purchase a rounding error before T gives (nearly) the likelihood of one exactly
    /// at T, never NaN: A₀ is then zero or negligible, which is not a failed series.
    #[test]
    fn last_purchase_at_the_end_is_continuous() {
        let p = PUBLISHED;
        let at = |t_x: f64| {
            let h = Histories::compress([(2.0, t_x, 38.86, 1.0)].into_iter());
            Likelihood::new(&h).log_likelihood(&[p.r, p.alpha, p.s, p.beta])
        };
        for gap in [0.0, 1e-15, 1e-12, 1e-9] {
            let ll = at(38.86 - gap);
            assert!((ll - at(38.86)).abs() < 1e-6, "gap {gap}: {ll}");
            assert!(p.p_alive(2.0, 38.86 - gap, 38.86) > 0.999_999, "gap {gap}");
        }
    }

    /// Heavy buyers, where a direct evaluation of the ₂F₁ terms overflows, against the
    /// formulas evaluated by mpmath at 80 digits: 500 repeat purchases in 100 weeks, the last
    /// just before T or 26 weeks before; 300 purchases over 1000 weeks, the last at T.
    #[test]
    fn extreme_histories_match_high_precision() {
        let p = PUBLISHED;
        for (x, t_x, t, alive, expected) in [
            (
                500.0,
                99.9,
                100.0,
                0.999_313_550_877_694_1,
                208.423_697_806_508_3,
            ),
            (
                500.0,
                74.0,
                100.0,
                3.830_542_804_703_394e-56,
                7.989_243_168_584_912e-54,
            ),
            (300.0, 1000.0, 1000.0, 1.0, 15.230_720_412_501_534),
        ] {
            let got_alive = p.p_alive(x, t_x, t);
            let got = p.expected_purchases(52.0, x, t_x, t).unwrap();
            assert!(
                (got_alive - alive).abs() <= 1e-10 * alive,
                "{x} {t_x} {t}: {got_alive}"
            );
            assert!(
                (got - expected).abs() <= 1e-10 * expected,
                "{x} {t_x} {t}: {got}"
            );
        }
        // Their likelihood is finite too, with a finite gradient.
        let h =
            Histories::compress([(500.0, 99.9, 100.0, 1.0), (500.0, 74.0, 100.0, 1.0)].into_iter());
        let duals: [crate::ad::Dual<4>; 4] =
            std::array::from_fn(|i| crate::ad::Dual::variable([p.r, p.alpha, p.s, p.beta][i], i));
        let ll = Likelihood::new(&h).log_likelihood(&duals);
        assert!(
            ll.value.is_finite() && ll.gradient.iter().all(|g| g.is_finite()),
            "{ll:?}"
        );
    }

    /// The written-out gradient against the dual numbers of the likelihood as written, on
    /// CDNOW (day-rounded weeks) and on histories to the second with last purchases at T, on
    /// both sides of α = β (the series then swap roles) and at α = β.
    #[test]
    fn hand_derived_gradient_matches_dual_numbers() {
        let mut rng = crate::testing::Rng::new(5);
        let fine = Histories::compress((0..3000).map(|i| {
            let t = 1.0 + 200.0 * rng.uniform();
            let x = (i % 7) as f64;
            let t_x = match (x == 0.0, i % 5) {
                (true, _) => 0.0,
                (false, 0) => t,
                _ => t * rng.uniform(),
            };
            (x, t_x, t, 1.0 + (i % 3) as f64)
        }));
        for histories in [cdnow(), fine] {
            let likelihood = Likelihood::new(&histories);
            for params in [
                [0.553, 10.578, 0.606, 11.669],
                [0.5, 11.2, 0.67, 29.1],
                [1.3, 40.0, 0.4, 2.5],
                [0.8, 7.0, 1.7, 7.0],
                [2.0, 0.5, 3.0, 60.0],
            ] {
                let (value, gradient) = likelihood.gradient(&params).unwrap();
                let duals: [crate::ad::Dual<4>; 4] =
                    std::array::from_fn(|i| crate::ad::Dual::variable(params[i], i));
                let want = likelihood.log_likelihood(&duals);
                assert!(
                    (value - want.value).abs() <= 1e-10 * want.value.abs(),
                    "{params:?}: {value} vs {}",
                    want.value
                );
                for k in 0..4 {
                    let scale = want.gradient[k].abs().max(histories.customers());
                    assert!(
                        (gradient[k] - want.gradient[k]).abs() <= 1e-9 * scale,
                        "{params:?} [{k}]: {gradient:?} vs {:?}",
                        want.gradient
                    );
                }
            }
        }
    }

    /// Parameter recovery on 30 000 simulated customers, within 4 standard errors.
    #[test]
    fn recovers_simulated_parameters() {
        let truth = ParetoNbd {
            r: 0.6,
            alpha: 8.0,
            s: 0.8,
            beta: 15.0,
        };
        let mut rng = crate::testing::Rng::new(17);
        let histories = Histories::compress((0..30_000).map(|i| {
            let t = 20.0 + (i % 30) as f64;
            let (x, t_x) = truth.simulate(&mut rng, t);
            (x, t_x, t, 1.0)
        }));
        let (p, fit) = fit_histories(&histories, &AtomicBool::new(false)).unwrap();
        assert!(fit.converged, "{}", fit.status);
        let se = fit.standard_errors.unwrap();
        let got = [p.r, p.alpha, p.s, p.beta];
        let want = [truth.r, truth.alpha, truth.s, truth.beta];
        for i in 0..4 {
            assert!(
                (got[i] - want[i]).abs() < 4.0 * se[i],
                "param {i}: {got:?} vs {want:?} ± {se:?}"
            );
        }
    }
}
