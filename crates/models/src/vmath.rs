//! `ln` and `exp` written without branches or library calls, so that a loop calling them over
//! a slice compiles to SIMD instructions.
//!
//! The likelihood loops of the purchase models spend most of their time in logarithms and
//! exponentials; libm's are scalar calls, which stop the compiler from vectorizing the loop
//! around them. These are fdlibm's algorithms (the ones musl's `log` and `exp` descend from,
//! both under 1 ulp): the same argument reductions and polynomials, with every branch turned
//! into a select and the integer ↔ float conversions done with bit tricks that exist in SIMD.
//! They are tested against the platform's libm over the whole range of doubles.

// fdlibm's constants, digit for digit as published, so they can be checked against it.
#![allow(clippy::excessive_precision)]

/// 2^52 + 2^51: adding it to a double of magnitude below 2^51 rounds it to an integer and
/// leaves that integer in the low bits of the result.
const ROUNDING_SHIFTER: f64 = 6_755_399_441_055_744.0;
const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;

/// Natural logarithm, within 1 ulp of the correctly rounded result; `ln(0) = −∞`, negative
/// and NaN arguments give NaN, `ln(∞) = ∞`, as `f64::ln`.
#[inline(always)]
pub fn ln(x: f64) -> f64 {
    const LG1: f64 = 6.666_666_666_666_735_130e-1;
    const LG2: f64 = 3.999_999_999_940_941_908e-1;
    const LG3: f64 = 2.857_142_874_366_239_149e-1;
    const LG4: f64 = 2.222_219_843_214_978_396e-1;
    const LG5: f64 = 1.818_357_216_161_805_012e-1;
    const LG6: f64 = 1.531_383_769_920_937_332e-1;
    const LG7: f64 = 1.479_819_860_511_658_591e-1;
    // Subnormals are scaled into the normal range first, their exponent corrected after.
    let subnormal = x < f64::MIN_POSITIVE;
    let scaled = if subnormal {
        x * 18_014_398_509_481_984.0
    } else {
        x
    }; // 2^54
    let bits = scaled.to_bits();
    // x = 2^k · m with m in [√2/2, √2): shift the high word so that the exponent field rolls
    // over at √2, not at 2.
    let high = (bits >> 32) + (0x3ff0_0000 - 0x3fe6_a09e);
    let biased_k = (high >> 20) & 0x7ff;
    let m_high = (high & 0x000f_ffff) + 0x3fe6_a09e;
    let m = f64::from_bits((m_high << 32) | (bits & 0xffff_ffff));
    let k = f64::from_bits(0x4330_0000_0000_0000 | biased_k)
        - 4_503_599_627_370_496.0
        - 1023.0
        - if subnormal { 54.0 } else { 0.0 };
    let f = m - 1.0;
    let half_f_squared = 0.5 * f * f;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG2 + w * (LG4 + w * LG6));
    let t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    let r = t2 + t1;
    let value = s * (half_f_squared + r) + k * LN2_LO - half_f_squared + f + k * LN2_HI;
    if x > 0.0 && x < f64::INFINITY {
        value
    } else if x == 0.0 {
        f64::NEG_INFINITY
    } else if x == f64::INFINITY {
        f64::INFINITY
    } else {
        f64::NAN
    }
}

/// e^x, within 1 ulp of the correctly rounded result (subnormal results within 1 ulp of
/// their precision); overflows to ∞ above 709.78 and underflows to 0 below −745.14, as
/// `f64::exp`.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    const P1: f64 = 1.666_666_666_666_660_190_37e-1;
    const P2: f64 = -2.777_777_777_701_559_338_42e-3;
    const P3: f64 = 6.613_756_321_437_934_361_17e-5;
    const P4: f64 = -1.653_390_220_546_525_153_90e-6;
    const P5: f64 = 4.138_136_797_057_238_460_39e-8;
    const OVERFLOW: f64 = 7.097_827_128_933_839_730_96e2;
    const UNDERFLOW: f64 = -7.451_332_191_019_411_993_53e2;
    // Reduce: x = k ln 2 + r, |r| ≤ ln 2 / 2, k an integer; clamped so that k fits.
    let clamped = x.clamp(-1100.0, 1100.0);
    let shifted = clamped * std::f64::consts::LOG2_E + ROUNDING_SHIFTER;
    let k_int = shifted.to_bits() as i64 - ROUNDING_SHIFTER.to_bits() as i64;
    let k = shifted - ROUNDING_SHIFTER;
    let hi = clamped - k * LN2_HI;
    let lo = k * LN2_LO;
    let r = hi - lo;
    let rr = r * r;
    let c = r - rr * (P1 + rr * (P2 + rr * (P3 + rr * (P4 + rr * P5))));
    let y = 1.0 + (r * c / (2.0 - c) - lo + hi);
    // y · 2^k in two factors, so that results near the ends of the range (2^k itself not a
    // normal double) are still exact scalings.
    let k1 = k_int >> 1;
    let k2 = k_int - k1;
    let scale1 = f64::from_bits(((k1 + 1023) as u64) << 52);
    let scale2 = f64::from_bits(((k2 + 1023) as u64) << 52);
    let value = y * scale1 * scale2;
    if x > OVERFLOW {
        f64::INFINITY
    } else if x < UNDERFLOW {
        0.0
    } else if x.is_nan() {
        f64::NAN
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    /// Distance in units in the last place between two doubles of the same sign.
    fn ulps(a: f64, b: f64) -> u64 {
        if a == b || (a.is_nan() && b.is_nan()) {
            return 0;
        }
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    /// Checks `ours` against libm's `reference` on `inputs`, returning the worst ulp error
    /// and where it happened.
    fn worst(
        inputs: impl Iterator<Item = f64>,
        ours: fn(f64) -> f64,
        reference: fn(f64) -> f64,
    ) -> (u64, f64) {
        inputs
            .map(|x| (ulps(ours(x), reference(x)), x))
            .max_by_key(|&(u, _)| u)
            .unwrap_or((0, 0.0))
    }

    /// Doubles spread over every exponent: random bit patterns of the given sign.
    fn every_magnitude(rng: &mut Rng, n: usize, negative: bool) -> Vec<f64> {
        let sign = if negative { 1u64 << 63 } else { 0 };
        (0..n)
            .map(|_| {
                let bits = ((rng.uniform() * (1u64 << 52) as f64) as u64)
                    | (((rng.uniform() * 2047.0) as u64) << 52);
                f64::from_bits(bits | sign)
            })
            .collect()
    }

    #[test]
    fn ln_is_within_one_ulp_of_libm_everywhere() {
        let mut rng = Rng::new(7);
        let (u, at) = worst(
            every_magnitude(&mut rng, 2_000_000, false).into_iter(),
            ln,
            f64::ln,
        );
        assert!(u <= 1, "{u} ulp at {at:e}");
        // Near 1, where the result is small and cancellation would show.
        let near_one = (0..1_000_000).map(|i| 1.0 + (i as f64 - 5e5) * 1e-12);
        let (u, at) = worst(near_one, ln, f64::ln);
        assert!(u <= 1, "{u} ulp at {at:e}");
        // The range the likelihoods use: 1 + e^-d and α + T.
        let (u, at) = worst((0..1_000_000).map(|i| 1.0 + i as f64 * 1e-6), ln, f64::ln);
        assert!(u <= 1, "{u} ulp at {at:e}");
        let subnormals = (1..100_000).map(|i| f64::from_bits(i * 45_035_996_273));
        let (u, at) = worst(subnormals, ln, f64::ln);
        assert!(u <= 1, "{u} ulp at {at:e}");
        for special in [0.0, -0.0, -1.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            assert_eq!(ulps(ln(special), special.ln()), 0, "ln({special})");
        }
    }

    #[test]
    fn exp_is_within_one_ulp_of_libm_everywhere() {
        let mut rng = Rng::new(11);
        let uniform = |rng: &mut Rng, lo: f64, hi: f64| lo + (hi - lo) * rng.uniform();
        let mut inputs: Vec<f64> = (0..2_000_000)
            .map(|_| uniform(&mut rng, -708.0, 709.7))
            .collect();
        inputs.extend((0..1_000_000).map(|_| uniform(&mut rng, -1.0, 1.0)));
        // Tiny arguments of either sign, down to the smallest subnormal.
        inputs.extend(
            every_magnitude(&mut rng, 500_000, false)
                .iter()
                .filter(|x| **x < 1.0),
        );
        inputs.extend(
            every_magnitude(&mut rng, 500_000, true)
                .iter()
                .filter(|x| **x > -1.0),
        );
        let (u, at) = worst(inputs.into_iter(), exp, f64::exp);
        assert!(u <= 1, "{u} ulp at {at:e}");
        // Subnormal results: within 1 ulp of their (reduced) precision.
        let (u, at) = worst(
            (0..100_000).map(|i| -708.5 - i as f64 * 3.6e-4),
            exp,
            f64::exp,
        );
        assert!(u <= 1, "{u} ulp at {at:e}");
        for special in [
            0.0,
            -0.0,
            709.78,
            709.79,
            -745.13,
            -745.2,
            1e300,
            -1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ] {
            assert_eq!(ulps(exp(special), special.exp()), 0, "exp({special})");
        }
    }
}
