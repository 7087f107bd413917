//! The Gauss hypergeometric function ₂F₁(a, b; c; z) for 0 ≤ z < 1, as the models need it:
//! its power series in z, and near z = 1 in 1 − z.

use crate::ad::Real;
use crate::special::recip_gamma_signed;

/// ₂F₁(a, b; c; z) = Σₖ (a)ₖ (b)ₖ / (c)ₖ · zᵏ / k! by its power series, for c > 0 and
/// 0 ≤ z < 1. Terms are summed until they stop mattering (relative 1e-16) or `max_terms`.
/// Callers arrange, by Euler's transformation where needed, that the series converges
/// quickly and without huge intermediate terms. `None` if it does not converge.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Option<f64> {
    let mut value = [0.0];
    hyp2f1_at(a, b, c, &[z], &mut value)?;
    Some(value[0])
}

/// [`hyp2f1`] at several z with the same a, b and c, into `out` (one value per z): the
/// coefficients (a)ₖ(b)ₖ/((c)ₖ k!) are shared, so each further z costs a multiply-add per
/// term instead of a division. Each series stops on its own, so a value does not depend on
/// the other z. No allocation: up to [`AT_ONCE`] series run side by side on the stack. `None`
/// if any series does not converge.
pub fn hyp2f1_at(a: f64, b: f64, c: f64, zs: &[f64], out: &mut [f64]) -> Option<()> {
    for (zs, out) in zs.chunks(AT_ONCE).zip(out.chunks_mut(AT_ONCE)) {
        series_side_by_side(a, b, c, zs, out)?;
    }
    Some(())
}

/// Series run side by side by [`hyp2f1_at`].
const AT_ONCE: usize = 16;

fn series_side_by_side(a: f64, b: f64, c: f64, zs: &[f64], out: &mut [f64]) -> Option<()> {
    const MAX_TERMS: usize = 1_000_000;
    let mut terms = [1.0; AT_ONCE];
    let mut open = [false; AT_ONCE];
    let mut remaining = 0;
    for (i, (&z, sum)) in zs.iter().zip(out.iter_mut()).enumerate() {
        *sum = 1.0;
        open[i] = z != 0.0;
        remaining += usize::from(open[i]);
    }
    for k in 0..MAX_TERMS {
        if remaining == 0 {
            return Some(());
        }
        let k = k as f64;
        let ratio = (a + k) * (b + k) / ((c + k) * (k + 1.0));
        for (i, (&z, sum)) in zs.iter().zip(out.iter_mut()).enumerate() {
            if !open[i] {
                continue;
            }
            terms[i] *= ratio * z;
            *sum += terms[i];
            if !sum.is_finite() {
                return None;
            }
            if terms[i] == 0.0 || terms[i].abs() < 1e-16 * sum.abs() {
                open[i] = false;
                remaining -= 1;
            }
        }
    }
    None
}

/// ₂F₁(a, b; c; z) for z near 1, by the connection formula to 1 − z (Abramowitz & Stegun
/// 15.3.6), with m = c − a − b:
///
/// Γ(c)Γ(m)/(Γ(c−a)Γ(c−b)) ₂F₁(a, b; 1−m; 1−z)
///     + (1−z)^m Γ(c)Γ(−m)/(Γ(a)Γ(b)) ₂F₁(c−a, c−b; 1+m; 1−z).
///
/// Both series are in 1 − z, so they take a few dozen terms where the direct series in z needs
/// about 37/(1 − z). Where m is an integer the two terms have poles that cancel (the formula
/// then has logarithms instead); within 1e-3 of one the cancellation would cost more than three
/// digits, so `None` comes back, as it does for a pole of Γ(c) or a series that does not
/// converge: the caller then sums the direct series.
pub fn hyp2f1_near_one(a: f64, b: f64, c: f64, z: f64) -> Option<f64> {
    NearOne::new(a, b, c)?.at(z)
}

/// [`hyp2f1_near_one`] with its gamma-function coefficients computed once, for many z with
/// the same a, b and c (a customer's horizons).
#[derive(Debug, Clone, Copy)]
pub struct NearOne {
    a: f64,
    b: f64,
    c: f64,
    m: f64,
    /// Γ(c)Γ(m)/(Γ(c−a)Γ(c−b)), signed.
    first: f64,
    /// Γ(c)Γ(−m)/(Γ(a)Γ(b)) as its sign and log.
    second_sign: f64,
    ln_second: f64,
}

impl NearOne {
    /// `None` where m = c − a − b is within 1e-3 of an integer, or Γ(c) has a pole.
    pub fn new(a: f64, b: f64, c: f64) -> Option<NearOne> {
        let m = c - a - b;
        if (m - m.round()).abs() < 1e-3 {
            return None;
        }
        // Γ(y) as (sign, ln|Γ(y)|); a pole has sign 0 in 1/Γ and is refused where Γ is needed.
        let gamma = |y: f64| {
            let (sign, ln_recip) = recip_gamma_signed(y);
            (sign != 0.0).then_some((sign, -ln_recip))
        };
        let (c_sign, ln_c) = gamma(c)?;
        let (m_sign, ln_m) = gamma(m)?;
        let (minus_m_sign, ln_minus_m) = gamma(-m)?;
        let recip = recip_gamma_signed;
        let ((ca_sign, ln_ca), (cb_sign, ln_cb)) = (recip(c - a), recip(c - b));
        let ((a_sign, ln_a), (b_sign, ln_b)) = (recip(a), recip(b));
        Some(NearOne {
            a,
            b,
            c,
            m,
            first: c_sign * m_sign * ca_sign * cb_sign * (ln_c + ln_m + ln_ca + ln_cb).exp(),
            second_sign: c_sign * minus_m_sign * a_sign * b_sign,
            ln_second: ln_c + ln_minus_m + ln_a + ln_b,
        })
    }

    /// ₂F₁(a, b; c; z); `None` where the parts cancel (see [`hyp2f1_near_one`]).
    pub fn at(&self, z: f64) -> Option<f64> {
        let NearOne { a, b, c, m, .. } = *self;
        let w = 1.0 - z;
        let second = self.second_sign * (self.ln_second + m * w.ln()).exp();
        // Each part's largest term, scaled: where they dwarf the value, the sum cancelled
        // (large a or b with c − a − b small makes the 1 − z series alternate with huge
        // terms), and the digits left are too few.
        let (near, near_largest) = if self.first == 0.0 {
            (0.0, 0.0)
        } else {
            let (sum, largest) = series_with_largest_term(a, b, 1.0 - m, w)?;
            (self.first * sum, (self.first * largest).abs())
        };
        let (far, far_largest) = if second == 0.0 {
            (0.0, 0.0)
        } else {
            let (sum, largest) = series_with_largest_term(c - a, c - b, 1.0 + m, w)?;
            (second * sum, (second * largest).abs())
        };
        let value = near + far;
        let largest = near_largest.max(far_largest).max(near.abs()).max(far.abs());
        (value.is_finite() && largest <= MAX_CANCELLATION * value.abs()).then_some(value)
    }
}

/// How much larger than the result its parts may be in [`hyp2f1_near_one`]: 1e4 leaves
/// about twelve digits.
const MAX_CANCELLATION: f64 = 1e4;

/// The power series of ₂F₁(a, b; c; z) and the magnitude of its largest term (1 for the first).
fn series_with_largest_term(a: f64, b: f64, c: f64, z: f64) -> Option<(f64, f64)> {
    const MAX_TERMS: usize = 100_000;
    let (mut term, mut sum, mut largest) = (1.0f64, 1.0f64, 1.0f64);
    for k in 0..MAX_TERMS {
        let k = k as f64;
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        sum += term;
        largest = largest.max(term.abs());
        if !sum.is_finite() {
            return None;
        }
        if term == 0.0 || term.abs() < 1e-17 * sum.abs() {
            return Some((sum, largest));
        }
    }
    None
}

/// Below this c − a − b, the power series' terms shrink little faster than zᵏ, so past
/// z = 0.5 the connection formula in 1 − z is the shorter sum.
const CONNECT_BELOW: f64 = 6.0;

/// ₂F₁(a, b; c; z) for 0 ≤ z < 1 by whichever sum is short: the power series in z, or, past
/// z = 0.5 where c − a − b < 6 (the series' terms then shrink only about as fast as zᵏ, about
/// 37/(1 − z) of them), the connection formula in 1 − z ([`hyp2f1_near_one`]), falling back to
/// the series where that declines. `None` if neither converges.
pub fn hyp2f1_short(a: f64, b: f64, c: f64, z: f64) -> Option<f64> {
    if connects(a, b, c, z)
        && let Some(value) = hyp2f1_near_one(a, b, c, z)
    {
        return Some(value);
    }
    hyp2f1(a, b, c, z)
}

/// Whether [`hyp2f1_short`] would try the connection formula at z.
pub(crate) fn connects(a: f64, b: f64, c: f64, z: f64) -> bool {
    z > 0.5 && c - a - b < CONNECT_BELOW
}

/// ₂F₁(a, b; c; z) through Euler's transformation, (1 − z)^(c−a−b) ₂F₁(c − a, c − b; c; z):
/// the better series when a and b are close to c (as with many repeat purchases).
pub fn hyp2f1_euler(a: f64, b: f64, c: f64, z: f64) -> Option<f64> {
    hyp2f1(c - a, c - b, c, z).map(|f| (1.0 - z).powf(c - a - b) * f)
}

/// ln ₂F₁(a, b; c; z) for a, b, c > 0 and 0 ≤ z < 1 by the power series, whose terms are then
/// all positive: no cancellation, and the sum is rescaled as it grows, so the result is finite
/// however large ₂F₁ is. The cost is the number of terms before they become negligible, about
/// where the ratio (a+k)(b+k)z/((c+k)(k+1)) falls below one and then 37/(1 − that ratio's
/// limit) more; `None` past `MAX_TERMS`. For the parameters at which a shorter series
/// overflows: a and b near c, both in the millions (BG/NBD with a dropout probability that
/// barely varies across customers).
pub fn ln_hyp2f1_positive(a: f64, b: f64, c: f64, z: f64) -> Option<f64> {
    const MAX_TERMS: usize = 10_000_000;
    /// Past this the sum and the term are scaled down by it, and its log remembered.
    const RESCALE: f64 = 1e300;
    let (mut term, mut sum, mut ln_scale) = (1.0f64, 1.0f64, 0.0f64);
    if z == 0.0 {
        return Some(0.0);
    }
    for k in 0..MAX_TERMS {
        let k = k as f64;
        let ratio = (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        term *= ratio;
        sum += term;
        if sum > RESCALE {
            sum /= RESCALE;
            term /= RESCALE;
            ln_scale += RESCALE.ln();
        }
        // Only once the terms shrink: before the peak a term may be small beside the sum
        // and yet the next ones large.
        if ratio < 1.0 && term <= 1e-17 * sum {
            let value = ln_scale + sum.ln();
            return value.is_finite().then_some(value);
        }
    }
    None
}

/// ln ₂F₁(a, b; a + 1; z) for a > 0, b > 0, 0 ≤ z < 1, generic in [`Real`] so a likelihood
/// using it has exact gradients in a, b and z: the Pareto/NBD case.
///
/// Taken through Euler's transformation, ₂F₁(a, b; a+1; z) = (1−z)^(1−b) ₂F₁(1, a+1−b; a+1; z):
/// the new series' terms have ratios (a+1−b+k)/(a+1+k)·z of magnitude below z, so no term
/// exceeds the first, and with b < a + 1 (always so for Pareto/NBD) all are positive and
/// nothing cancels, however large a and b are (a customer with
/// hundreds of purchases gives a ≈ b in the hundreds, where the direct series' terms, and
/// ₂F₁ itself, overflow). The result is finite for every z < 1; near z = 1 the series needs
/// about 37/(1−z) terms, and `None` comes back past `MAX_TERMS`.
pub fn ln_hyp2f1_c_is_a_plus_1<R: Real>(a: R, b: R, z: R) -> Option<R> {
    const MAX_TERMS: usize = 2_000_000;
    let numerator = a - b + 1.0;
    let denominator = a + 1.0;
    let mut term = R::constant(1.0);
    let mut sum = R::constant(1.0);
    // At z = 0 one term still runs: its value is zero, its derivative in z is not.
    let mut converged = false;
    for k in 0..MAX_TERMS {
        if converged {
            break;
        }
        let k = k as f64;
        term = term * (numerator + k) / (denominator + k) * z;
        sum = sum + term;
        converged = term.value().abs() <= 1e-17 * sum.value().abs();
    }
    let value = (-z + 1.0).ln() * (-b + 1.0) + sum.ln();
    (converged && value.value().is_finite()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against closed forms: ₂F₁(a, b; b; z) = (1 − z)^(−a), also where it overflows f64.
    #[test]
    fn the_positive_series_in_log_space() {
        for (a, b, z) in [
            (2.5, 7.0, 0.3),
            (0.7, 1e6, 0.99),
            (2000.0, 3.0, 0.9),
            (6.3, 2.5e8, 0.9),
            (700.0, 2.5e8, 0.95),
        ] {
            let got = ln_hyp2f1_positive(a, b, b, z).unwrap();
            let want = -a * (1.0 - z).ln();
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{a} {b} {z}: {got} vs {want}"
            );
        }
        assert_eq!(ln_hyp2f1_positive(3.0, 4.0, 5.0, 0.0), Some(0.0));
        // ln ₂F₁(1, 1; 2; z) = ln(−ln(1 − z)/z).
        let z: f64 = 0.75;
        let want = (-(1.0 - z).ln() / z).ln();
        assert!((ln_hyp2f1_positive(1.0, 1.0, 2.0, z).unwrap() - want).abs() < 1e-14);
    }

    /// A series does not depend on the others run beside it, converged early or late, nor on
    /// where the chunks of side-by-side series fall.
    #[test]
    fn many_z_equal_one_z_at_a_time() {
        for (a, b, c) in [(1.3, 2.1, 4.2), (0.5, -0.2, 3.7), (-1.4, -0.2, 250.0)] {
            let zs: Vec<f64> = (0..40)
                .map(|i| [0.0, 0.01, 0.3, 0.6, 0.95][i % 5])
                .collect();
            let mut many = vec![0.0; zs.len()];
            hyp2f1_at(a, b, c, &zs, &mut many).unwrap();
            for (z, got) in zs.iter().zip(&many) {
                assert_eq!(got.to_bits(), hyp2f1(a, b, c, *z).unwrap().to_bits(), "{z}");
            }
        }
    }

    /// The connection formula near z = 1 against mpmath (40 digits), where the direct series
    /// needs thousands of terms; and against the direct series where both are quick.
    #[test]
    fn near_one_matches_mpmath_and_the_direct_series() {
        for (a, b, c, z, want) in [
            (2.1, -0.21, 2.2, 0.9, 0.647_556_303_176_268_6),
            (2.405, -0.207, 3.219, 0.999, 0.695_405_501_743_337_7),
            (0.5, -0.2, 3.7, 0.95, 0.969_917_911_264_682_4),
            (1.3, 2.1, 4.2, 0.6, 1.682_430_158_573_501_5),
            (-1.4, -0.2, 2.5, 0.8, 1.086_066_864_016_580_6),
            (3.2, -0.3, 5.1, 0.99999, 0.717_484_365_594_262_6),
        ] {
            let got = hyp2f1_near_one(a, b, c, z).unwrap();
            assert!(
                (got - want).abs() < 1e-12 * want.abs(),
                "{a} {b} {c} {z}: {got} vs {want}"
            );
        }
        let direct = hyp2f1(1.3, 2.1, 4.2, 0.6).unwrap();
        assert!((hyp2f1_near_one(1.3, 2.1, 4.2, 0.6).unwrap() - direct).abs() < 1e-12 * direct);
        // Large a with c − a − b small: the 1 − z series alternates with terms 1e20 times the
        // value; refused, where summing it gave 1e16 for a value of 10.64 (mpmath: 10.6433308850935).
        assert_eq!(hyp2f1_near_one(69.96, 1.24, 74.29, 0.9), None);
        // c − a − b an integer, or within 1e-3 of one: refused, not cancelled into noise.
        assert_eq!(hyp2f1_near_one(1.0, 1.0, 4.0, 0.9), None);
        assert_eq!(hyp2f1_near_one(1.0, 1.0, 4.0005, 0.9), None);
    }

    #[test]
    fn closed_forms() {
        // ₂F₁(1, 1; 2; z) = −ln(1 − z) / z.
        let z: f64 = 0.75;
        assert!((hyp2f1(1.0, 1.0, 2.0, z).unwrap() - (-(1.0 - z).ln() / z)).abs() < 1e-13);
        // ₂F₁(a, b; b; z) = (1 − z)^(−a).
        assert!((hyp2f1(2.5, 3.0, 3.0, 0.3).unwrap() - 0.7f64.powf(-2.5)).abs() < 1e-12);
        // Euler's transformation agrees with the direct series.
        let direct = hyp2f1(1.3, 2.1, 4.2, 0.6).unwrap();
        assert!((hyp2f1_euler(1.3, 2.1, 4.2, 0.6).unwrap() - direct).abs() < 1e-13 * direct);
        // mpmath.hyp2f1(0.5, -0.2, 3.7, 0.95) = 0.969917911264682
        assert!((hyp2f1(0.5, -0.2, 3.7, 0.95).unwrap() - 0.969_917_911_264_682).abs() < 1e-12);
    }
}

#[cfg(test)]
mod c_is_a_plus_1 {
    use super::*;
    use crate::ad::Dual;

    #[test]
    fn matches_the_direct_series_and_mpmath() {
        for (a, b, z) in [
            (1.5, 1.6, 0.3),
            (0.7, 2.1, 0.9),
            (12.0, 0.4, 0.5),
            (3.2, 9.0, 0.01),
        ] {
            let direct = hyp2f1(a, b, a + 1.0, z).unwrap();
            let got = ln_hyp2f1_c_is_a_plus_1(a, b, z).unwrap();
            assert!(
                (got - direct.ln()).abs() < 1e-13,
                "{a} {b} {z}: {got} vs {}",
                direct.ln()
            );
        }
        // mpmath (60 digits): log(hyp2f1(600.5, 600.2, 601.5, 0.6)) = 549.0427054331246 (the
        // function is 1e238, summed directly from terms as large) and
        // log(hyp2f1(1.2, 1.7, 2.2, 0.999)) = 5.363712144531565 (z near 1).
        let big = ln_hyp2f1_c_is_a_plus_1(600.5, 600.2, 0.6).unwrap();
        assert!((big - 549.042_705_433_124_6).abs() < 1e-10, "{big}");
        let edge = ln_hyp2f1_c_is_a_plus_1(1.2, 1.7, 0.999).unwrap();
        assert!((edge - 5.363_712_144_531_565).abs() < 1e-10, "{edge}");
    }

    #[test]
    fn gradient_matches_central_differences() {
        let (a, b, z) = (2.3, 1.4, 0.7);
        let d = ln_hyp2f1_c_is_a_plus_1(
            Dual::<3>::variable(a, 0),
            Dual::<3>::variable(b, 1),
            Dual::<3>::variable(z, 2),
        )
        .unwrap();
        let f = |a: f64, b: f64, z: f64| ln_hyp2f1_c_is_a_plus_1(a, b, z).unwrap();
        let h = 1e-6;
        let numeric = [
            (f(a + h, b, z) - f(a - h, b, z)) / (2.0 * h),
            (f(a, b + h, z) - f(a, b - h, z)) / (2.0 * h),
            (f(a, b, z + h) - f(a, b, z - h)) / (2.0 * h),
        ];
        for i in 0..3 {
            assert!(
                (d.gradient[i] - numeric[i]).abs() < 1e-7,
                "{i}: {:?} vs {numeric:?}",
                d.gradient
            );
        }
    }
}
