//! The Gauss hypergeometric function ₂F₁(a, b; c; z) for 0 ≤ z < 1, as the models need it.

/// ₂F₁(a, b; c; z) = Σₖ (a)ₖ (b)ₖ / (c)ₖ · zᵏ / k! by its power series, for c > 0 and
/// 0 ≤ z < 1. Terms are summed until they stop mattering (relative 1e-16) or `max_terms`.
/// Callers arrange, by Euler's transformation where needed, that the series converges
/// quickly and without huge intermediate terms. `None` if it does not converge.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Option<f64> {
    const MAX_TERMS: usize = 1_000_000;
    if z == 0.0 {
        return Some(1.0);
    }
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 0..MAX_TERMS {
        let k = k as f64;
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        sum += term;
        if term == 0.0 || term.abs() < 1e-16 * sum.abs() {
            return sum.is_finite().then_some(sum);
        }
        if !sum.is_finite() {
            return None;
        }
    }
    None
}

/// ₂F₁(a, b; c; z) through Euler's transformation, (1 − z)^(c−a−b) ₂F₁(c − a, c − b; c; z):
/// the better series when a and b are close to c (as with many repeat purchases).
pub fn hyp2f1_euler(a: f64, b: f64, c: f64, z: f64) -> Option<f64> {
    hyp2f1(c - a, c - b, c, z).map(|f| (1.0 - z).powf(c - a - b) * f)
}

#[cfg(test)]
mod tests {
    use super::*;

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
