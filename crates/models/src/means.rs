//! Means of samples and their differences: Student's t interval of one mean and Welch's
//! (1947) interval and test of two means with unequal variances (Welch–Satterthwaite degrees
//! of freedom). Metrics compare group means with these (a rating between periods, spend between
//! experience tiers).

use crate::special::{student_t_quantile, student_t_two_sided_p};

/// Count, mean and sample variance of a sample, accumulated one value at a time (Welford's
/// update, which stays exact where the sum of squares would cancel).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    n: u64,
    mean: f64,
    /// Σ (x − mean)².
    squares: f64,
}

impl Moments {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Moments {
        let mut moments = Moments::default();
        for value in values {
            moments.push(value);
        }
        moments
    }

    pub fn push(&mut self, value: f64) {
        self.n += 1;
        let delta = value - self.mean;
        self.mean += delta / self.n as f64;
        self.squares += delta * (value - self.mean);
    }

    pub fn n(&self) -> u64 {
        self.n
    }

    /// `None` for an empty sample.
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then_some(self.mean)
    }

    /// The sample variance (n − 1 in the denominator); `None` below two values.
    pub fn variance(&self) -> Option<f64> {
        (self.n > 1).then(|| self.squares / (self.n - 1) as f64)
    }

    /// The squared standard error of the mean; `None` below two values.
    fn mean_variance(&self) -> Option<f64> {
        Some(self.variance()? / self.n as f64)
    }

    /// Student's t interval of the mean at confidence `level`; `None` below two values. A
    /// sample whose values are all equal gets the mean itself as its interval.
    pub fn mean_interval(&self, level: f64) -> Option<(f64, f64)> {
        let se = self.mean_variance()?.sqrt();
        let half = student_t_quantile(level, (self.n - 1) as f64) * se;
        Some((self.mean - half, self.mean + half))
    }
}

/// A difference of two means with its Welch interval and test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    /// mean of a − mean of b.
    pub difference: f64,
    pub lower: f64,
    pub upper: f64,
    /// Two-sided p-value of equal means.
    pub p_value: f64,
    /// The Welch–Satterthwaite degrees of freedom.
    pub df: f64,
}

/// Welch's interval and test of mean(a) − mean(b) at confidence `level`; `None` when either
/// sample has fewer than two values or both have no spread (no standard error to scale by).
pub fn welch(a: &Moments, b: &Moments, level: f64) -> Option<Welch> {
    let (va, vb) = (a.mean_variance()?, b.mean_variance()?);
    let se = (va + vb).sqrt();
    if !(se.is_finite() && se > 0.0) {
        return None;
    }
    let df = (va + vb).powi(2) / (va * va / (a.n - 1) as f64 + vb * vb / (b.n - 1) as f64);
    let difference = a.mean - b.mean;
    let half = student_t_quantile(level, df) * se;
    Some(Welch {
        difference,
        lower: difference - half,
        upper: difference + half,
        p_value: student_t_two_sided_p(difference / se, df),
        df,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_by_hand() {
        let m = Moments::of([1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m.n(), 4);
        assert_eq!(m.mean(), Some(2.5));
        assert!((m.variance().unwrap() - 5.0 / 3.0).abs() < 1e-15);
        assert_eq!(Moments::of([7.0]).variance(), None);
        assert_eq!(Moments::default().mean(), None);
        // Welford keeps the variance of values far from zero exact.
        let shifted = Moments::of([1e9 + 1.0, 1e9 + 2.0, 1e9 + 3.0, 1e9 + 4.0]);
        assert!((shifted.variance().unwrap() - 5.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn t_interval_matches_scipy() {
        // scipy.stats.t.interval(0.95, 3, 2.5, sd / 2): 0.4457397 4.5542603.
        let (lower, upper) = Moments::of([1.0, 2.0, 3.0, 4.0])
            .mean_interval(0.95)
            .unwrap();
        assert!((lower - 0.445_739_7).abs() < 1e-6, "{lower}");
        assert!((upper - 4.554_260_3).abs() < 1e-6, "{upper}");
    }

    #[test]
    fn welch_matches_scipy() {
        // scipy.stats.ttest_ind([4, 5, 6, 7], [1, 2, 3], equal_var=False): t = 4.041452,
        // df = 4.959184, p = 0.010077, 95 % interval 1.268289 5.731711 (means 5.5 and 2,
        // variances 5/3 and 1: se = sqrt(5/12 + 1/3)).
        let w = welch(
            &Moments::of([4.0, 5.0, 6.0, 7.0]),
            &Moments::of([1.0, 2.0, 3.0]),
            0.95,
        )
        .unwrap();
        assert!((w.difference - 3.5).abs() < 1e-12);
        assert!((w.df - 4.959_184).abs() < 1e-6, "{}", w.df);
        assert!((w.p_value - 0.010_077).abs() < 1e-6, "{}", w.p_value);
        assert!((w.lower - 1.268_289).abs() < 1e-6, "{}", w.lower);
        assert!((w.upper - 5.731_711).abs() < 1e-6, "{}", w.upper);
        assert!(welch(&Moments::of([1.0]), &Moments::of([1.0, 2.0]), 0.95).is_none());
        assert!(welch(&Moments::of([1.0, 1.0]), &Moments::of([2.0, 2.0]), 0.95).is_none());
    }
}
