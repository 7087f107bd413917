//! Forward-mode automatic differentiation: a log-likelihood written once, generic over
//! [`Real`], gives its value with `f64` and its exact gradient with [`Dual`]. No finite
//! differences, and no hand-derived gradient formulas to get wrong.

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::special;

/// A number a log-likelihood can be computed in.
pub trait Real:
    Copy
    + Send
    + Sync
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Add<f64, Output = Self>
    + Sub<f64, Output = Self>
    + Mul<f64, Output = Self>
    + Div<f64, Output = Self>
{
    fn constant(value: f64) -> Self;
    fn value(self) -> f64;
    fn ln(self) -> Self;
    fn exp(self) -> Self;
    fn ln_gamma(self) -> Self;

    /// ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b).
    fn ln_beta(self, b: Self) -> Self {
        self.ln_gamma() + b.ln_gamma() - (self + b).ln_gamma()
    }

    /// ln(e^self + e^other), without overflow.
    fn log_add_exp(self, other: Self) -> Self {
        let (high, low) = if self.value() >= other.value() {
            (self, other)
        } else {
            (other, self)
        };
        high + ((low - high).exp() + 1.0).ln()
    }

    /// ln(1 − e^self) for self < 0, accurate near 0 and for very negative self.
    fn ln_one_minus_exp(self) -> Self;

    /// ln(e^self − e^other) for self > other, without overflow.
    fn log_sub_exp(self, other: Self) -> Self {
        self + (other - self).ln_one_minus_exp()
    }
}

/// ln(1 − e^x), choosing expm1 or ln1p by where each is accurate (Mächler 2012).
fn ln_one_minus_exp(x: f64) -> f64 {
    if x > -std::f64::consts::LN_2 {
        (-x.exp_m1()).ln()
    } else {
        (-x.exp()).ln_1p()
    }
}

impl Real for f64 {
    fn constant(value: f64) -> Self {
        value
    }
    fn value(self) -> f64 {
        self
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn ln_gamma(self) -> Self {
        special::ln_gamma(self)
    }
    fn ln_one_minus_exp(self) -> Self {
        ln_one_minus_exp(self)
    }
}

/// A value and its gradient with respect to `N` parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dual<const N: usize> {
    pub value: f64,
    pub gradient: [f64; N],
}

impl<const N: usize> Dual<N> {
    /// The `index`th of the variables being differentiated with respect to.
    pub fn variable(value: f64, index: usize) -> Self {
        let mut gradient = [0.0; N];
        gradient[index] = 1.0;
        Dual { value, gradient }
    }

    /// `f(self)` given f's value and derivative at `self.value`.
    fn chain(self, value: f64, derivative: f64) -> Self {
        Dual {
            value,
            gradient: self.gradient.map(|g| g * derivative),
        }
    }
}

impl<const N: usize> Real for Dual<N> {
    fn constant(value: f64) -> Self {
        Dual {
            value,
            gradient: [0.0; N],
        }
    }
    fn value(self) -> f64 {
        self.value
    }
    fn ln(self) -> Self {
        self.chain(self.value.ln(), 1.0 / self.value)
    }
    fn exp(self) -> Self {
        let e = self.value.exp();
        self.chain(e, e)
    }
    fn ln_gamma(self) -> Self {
        self.chain(special::ln_gamma(self.value), special::digamma(self.value))
    }
    fn ln_one_minus_exp(self) -> Self {
        // d/dx ln(1 − e^x) = −e^x / (1 − e^x) = 1 / (1 − e^−x) = −1 / expm1(−x).
        self.chain(ln_one_minus_exp(self.value), -1.0 / (-self.value).exp_m1())
    }
}

impl<const N: usize> Add for Dual<N> {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        let mut gradient = self.gradient;
        gradient
            .iter_mut()
            .zip(o.gradient)
            .for_each(|(g, h)| *g += h);
        Dual {
            value: self.value + o.value,
            gradient,
        }
    }
}

impl<const N: usize> Sub for Dual<N> {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        let mut gradient = self.gradient;
        gradient
            .iter_mut()
            .zip(o.gradient)
            .for_each(|(g, h)| *g -= h);
        Dual {
            value: self.value - o.value,
            gradient,
        }
    }
}

impl<const N: usize> Mul for Dual<N> {
    type Output = Self;
    fn mul(self, o: Self) -> Self {
        let mut gradient = [0.0; N];
        for (i, g) in gradient.iter_mut().enumerate() {
            *g = self.gradient[i] * o.value + o.gradient[i] * self.value;
        }
        Dual {
            value: self.value * o.value,
            gradient,
        }
    }
}

impl<const N: usize> Div for Dual<N> {
    type Output = Self;
    fn div(self, o: Self) -> Self {
        let inv = 1.0 / o.value;
        let value = self.value * inv;
        let mut gradient = [0.0; N];
        for (i, g) in gradient.iter_mut().enumerate() {
            *g = (self.gradient[i] - value * o.gradient[i]) * inv;
        }
        Dual { value, gradient }
    }
}

impl<const N: usize> Neg for Dual<N> {
    type Output = Self;
    fn neg(self) -> Self {
        Dual {
            value: -self.value,
            gradient: self.gradient.map(|g| -g),
        }
    }
}

impl<const N: usize> Add<f64> for Dual<N> {
    type Output = Self;
    fn add(self, o: f64) -> Self {
        Dual {
            value: self.value + o,
            gradient: self.gradient,
        }
    }
}

impl<const N: usize> Sub<f64> for Dual<N> {
    type Output = Self;
    fn sub(self, o: f64) -> Self {
        Dual {
            value: self.value - o,
            gradient: self.gradient,
        }
    }
}

impl<const N: usize> Mul<f64> for Dual<N> {
    type Output = Self;
    fn mul(self, o: f64) -> Self {
        Dual {
            value: self.value * o,
            gradient: self.gradient.map(|g| g * o),
        }
    }
}

impl<const N: usize> Div<f64> for Dual<N> {
    type Output = Self;
    fn div(self, o: f64) -> Self {
        self * (1.0 / o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function of two variables exercising every operation.
    fn f<R: Real>(x: R, y: R) -> R {
        (x * y + x / y - y * 2.0).exp().ln() + x.ln_gamma() + (-x).exp() * (y + 1.0) - x.ln_beta(y)
            + x.log_add_exp(y)
            + (x + 1.0).log_sub_exp(y)
            + (-y).ln_one_minus_exp()
    }

    #[test]
    fn gradients_match_central_differences() {
        let (x, y) = (1.7, 0.6);
        let dual = f(Dual::<2>::variable(x, 0), Dual::<2>::variable(y, 1));
        assert_eq!(dual.value, f(x, y));
        let h = 1e-6;
        let dx = (f(x + h, y) - f(x - h, y)) / (2.0 * h);
        let dy = (f(x, y + h) - f(x, y - h)) / (2.0 * h);
        assert!(
            (dual.gradient[0] - dx).abs() < 1e-7,
            "{} vs {dx}",
            dual.gradient[0]
        );
        assert!(
            (dual.gradient[1] - dy).abs() < 1e-7,
            "{} vs {dy}",
            dual.gradient[1]
        );
    }

    #[test]
    fn log_add_exp_does_not_overflow() {
        assert_eq!(1000.0f64.log_add_exp(1000.0), 1000.0 + 2f64.ln());
        assert_eq!((-1000.0f64).log_add_exp(0.0), 0.0);
        // ln(e^1000 − e^999) = 1000 + ln(1 − 1/e).
        let got = 1000.0f64.log_sub_exp(999.0);
        assert!((got - (1000.0 + (1.0 - (-1.0f64).exp()).ln())).abs() < 1e-12);
        // Near 0 and far below it, where the naive ln(1 − e^x) loses every digit.
        assert!(((-1e-20f64).ln_one_minus_exp() - (1e-20f64).ln()).abs() < 1e-12);
        assert_eq!((-50.0f64).ln_one_minus_exp(), -(-50.0f64).exp());
    }
}
