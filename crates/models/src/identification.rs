//! Whether a fit identified its parameters, or only ran until it stopped.
//!
//! A maximum-likelihood fit always returns numbers. On a handful of customers, or data with no
//! heterogeneity for a mixing distribution to describe, those numbers are not estimates: the
//! likelihood is flat along some direction, the optimizer walks off towards a limit of the
//! model (r and α of a gamma growing together without bound, say), and predictions from there
//! look precise (P(alive) = 1 for everyone) while meaning nothing. The signs are standard: the
//! estimate at the edge of the searched range, an observed information matrix that is not
//! positive definite, standard errors larger than the estimates (a Wald interval on the log
//! scale that spans more than a factor e⁴ ≈ 50), or fewer observations than the parameters
//! can be learnt from. [`problems`] lists those it finds, in words a reader can act on.
//! docs/models.md cites the sources (Pawitan, *In All Likelihood*, ch. 9; Fader & Hardie's
//! notes on the BG/NBD's and sBG's limiting cases).

use crate::optimize::Fit;

/// How much data a fit had of one kind, and how much it needs to identify its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Support {
    /// What was counted, plural: "customers", "repeat buyers", "periods".
    pub what: &'static str,
    pub count: f64,
    pub needed: f64,
}

impl Support {
    /// `per_parameter` observations of a kind for each of the model's `parameters`.
    pub fn per_parameter(
        what: &'static str,
        count: f64,
        per_parameter: f64,
        parameters: usize,
    ) -> Support {
        Support {
            what,
            count,
            needed: per_parameter * parameters as f64,
        }
    }
}

/// Customers per parameter a fit needs before its parameters can be taken as estimates, and
/// repeat buyers per parameter: a rule of thumb (ten events per parameter, as for regression
/// models), documented in docs/models.md; the standard errors catch what it lets through.
pub const CUSTOMERS_PER_PARAMETER: f64 = 10.0;
pub const REPEATERS_PER_PARAMETER: f64 = 5.0;

/// How much data a four-parameter purchase model's fit (BG/NBD, MBG/NBD, Pareto/NBD) had: its
/// customers and its repeat buyers.
pub fn purchase_support(histories: &crate::Histories) -> [Support; 2] {
    let repeat_buyers: f64 = histories
        .x
        .iter()
        .zip(&histories.weight)
        .filter(|&(&x, _)| x > 0.0)
        .map(|(_, w)| w)
        .sum();
    purchase_support_of(histories.customers(), repeat_buyers)
}

/// [`purchase_support`] from the counts: what a stored fit keeps of its data.
pub fn purchase_support_of(customers: f64, repeat_buyers: f64) -> [Support; 2] {
    [
        Support::per_parameter("customers", customers, CUSTOMERS_PER_PARAMETER, 4),
        Support::per_parameter("repeat buyers", repeat_buyers, REPEATERS_PER_PARAMETER, 4),
    ]
}

/// What [`assess`] found: every reason, and the parameters it makes no estimates of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    /// Each reason a sentence without a final full stop; empty when none is found.
    pub problems: Vec<String>,
    /// The parameters a reader should not take as estimates: those at the edge or with a
    /// standard error larger than the value, or all of them when the data are too few, the
    /// fit did not converge or there are no standard errors.
    pub unidentified: Vec<String>,
}

/// Whether `fit` identified its parameters (`names`, as the papers write them), given how
/// much data of each kind it had. One pass decides both the reasons and the parameters, so
/// the two never disagree.
pub fn assess<const N: usize>(fit: &Fit<N>, names: [&str; N], support: &[Support]) -> Assessment {
    let mut problems = Vec::new();
    let too_few: Vec<&Support> = support.iter().filter(|s| s.count < s.needed).collect();
    for s in &too_few {
        problems.push(format!(
            "{} {} are too few to estimate {N} parameters (at least {} are needed)",
            format_count(s.count),
            s.what,
            format_count(s.needed),
        ));
    }
    let edge: Vec<usize> = (0..N).filter(|&i| fit.at_boundary[i]).collect();
    if !edge.is_empty() {
        let shown: Vec<String> = edge
            .iter()
            .map(|&i| format!("{} = {}", names[i], format_value(fit.params[i])))
            .collect();
        problems.push(format!(
            "{} reached the edge of the range the fit searches: the data cannot pin {} down, and the model is at a limiting case",
            shown.join(", "),
            if edge.len() == 1 { "it" } else { "them" }
        ));
    }
    if !fit.converged {
        problems.push(format!("the fit did not converge ({})", fit.status));
    }
    let wide: Vec<usize> = match fit.standard_errors {
        None => {
            problems.push(
                "the likelihood is flat at the estimate (its curvature is not negative definite), so the parameters have no standard errors".to_owned(),
            );
            Vec::new()
        }
        Some(se) => (0..N)
            .filter(|&i| imprecise(se[i], fit.params[i]))
            .collect(),
    };
    if let (Some(se), false) = (fit.standard_errors, wide.is_empty()) {
        let shown: Vec<String> = wide
            .iter()
            .map(|&i| {
                format!(
                    "{} = {} ± {}",
                    names[i],
                    format_value(fit.params[i]),
                    format_value(se[i])
                )
            })
            .collect();
        problems.push(format!(
            "the standard error is larger than the estimate for {}",
            shown.join(", ")
        ));
    }
    let whole_fit = !too_few.is_empty() || !fit.converged || fit.standard_errors.is_none();
    let unidentified = (0..N)
        .filter(|i| whole_fit || edge.contains(i) || wide.contains(i))
        .map(|i| names[i].to_owned())
        .collect();
    Assessment {
        problems,
        unidentified,
    }
}

/// One message for a reader, `None` when the fit identified its parameters: which parameters
/// of `model` are not estimates, every reason, and that what follows from them is no finding.
pub fn message<const N: usize>(
    model: &str,
    fit: &Fit<N>,
    names: [&str; N],
    support: &[Support],
) -> Option<String> {
    let Assessment {
        problems,
        unidentified,
    } = assess(fit, names, support);
    if problems.is_empty() {
        return None;
    }
    Some(format!(
        "the {model} fit does not identify {} ({}): {}. Its predictions follow from parameters the data do not determine; read them as no finding, and fit more data",
        if unidentified.len() == 1 {
            "its parameter"
        } else {
            "its parameters"
        },
        unidentified.join(", "),
        problems.join("; ")
    ))
}

/// z of a two-sided 95 % interval, for [`log_wald_interval`].
pub const Z_95: f64 = 1.959_963_984_540_054;

/// Each parameter's 95 % [`log_wald_interval`]; `None` where there is no standard error or
/// the interval overflows.
pub fn intervals_95<const N: usize>(fit: &Fit<N>) -> [Option<(f64, f64)>; N] {
    std::array::from_fn(|i| {
        fit.standard_errors
            .and_then(|se| log_wald_interval(fit.params[i], se[i], Z_95))
    })
}

/// The Wald interval of a positive parameter at `level`, on the log scale (where the fit
/// works, and where the interval stays positive): θ · exp(± z · se / θ).
pub fn log_wald_interval(estimate: f64, se: f64, z: f64) -> Option<(f64, f64)> {
    if !(estimate > 0.0 && se.is_finite() && se >= 0.0) {
        return None;
    }
    let half = z * se / estimate;
    let (lower, upper) = (estimate * (-half).exp(), estimate * half.exp());
    (lower.is_finite() && upper.is_finite()).then_some((lower, upper))
}

/// A standard error larger than its estimate, or not a number.
fn imprecise(se: f64, estimate: f64) -> bool {
    use std::cmp::Ordering::{Equal, Less};
    !matches!(se.partial_cmp(&estimate), Some(Less | Equal))
}

fn format_count(count: f64) -> String {
    if count.fract() == 0.0 {
        format!("{count:.0}")
    } else {
        format!("{count:.1}")
    }
}

/// Four significant digits, in scientific notation when very large or small.
fn format_value(value: f64) -> String {
    if value != 0.0 && !(1e-3..1e6).contains(&value.abs()) {
        format!("{value:.3e}")
    } else {
        let digits = (3 - value.abs().log10().floor() as i32).clamp(0, 6) as usize;
        format!("{value:.digits$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(params: [f64; 2], se: Option<[f64; 2]>, at_boundary: [bool; 2]) -> Fit<2> {
        Fit {
            params,
            standard_errors: se,
            covariance: se.map(|se| [[se[0] * se[0], 0.0], [0.0, se[1] * se[1]]]),
            log_likelihood: -1.0,
            iterations: 1,
            evaluations: 1,
            converged: true,
            status: "converged".to_owned(),
            at_boundary,
        }
    }

    fn check(fit: Fit<2>, support: &[Support], expect: &[&str], unidentified_expect: &[&str]) {
        let found = assess(&fit, ["a", "b"], support);
        assert_eq!(found.problems, expect);
        assert_eq!(found.unidentified, unidentified_expect);
    }

    #[test]
    fn a_well_identified_fit_has_no_problems() {
        let enough = Support::per_parameter("customers", 1000.0, 10.0, 2);
        check(
            fit([0.5, 2.0], Some([0.05, 0.3]), [false; 2]),
            &[enough],
            &[],
            &[],
        );
    }

    #[test]
    fn each_sign_of_a_fit_that_identified_nothing_is_named() {
        let few = Support::per_parameter("customers", 3.0, 10.0, 2);
        check(
            fit([0.5, 2.0], Some([0.05, 0.3]), [false; 2]),
            &[few],
            &["3 customers are too few to estimate 2 parameters (at least 20 are needed)"],
            &["a", "b"],
        );
        check(
            fit([1e6, 2.0], Some([0.05, 0.3]), [true, false]),
            &[],
            &[
                "a = 1.000e6 reached the edge of the range the fit searches: the data cannot pin it down, and the model is at a limiting case",
            ],
            &["a"],
        );
        check(
            fit([0.5, 2.0], None, [false; 2]),
            &[],
            &[
                "the likelihood is flat at the estimate (its curvature is not negative definite), so the parameters have no standard errors",
            ],
            &["a", "b"],
        );
        check(
            fit([0.5, 2.0], Some([0.05, 2.5]), [false; 2]),
            &[],
            &["the standard error is larger than the estimate for b = 2.000 ± 2.500"],
            &["b"],
        );
        // A NaN standard error is not small.
        check(
            fit([0.5, 2.0], Some([f64::NAN, 0.1]), [false; 2]),
            &[],
            &["the standard error is larger than the estimate for a = 0.5000 ± NaN"],
            &["a"],
        );
    }

    /// The check on real fits: CDNOW's published BG/NBD and Pareto/NBD fits identify their
    /// parameters; simulated customer bases of 2 000 do too, seed after seed (no false alarm);
    /// three customers, and a thousand customers who all buy at one rate and never leave (no
    /// heterogeneity for the gamma to describe), do not.
    #[test]
    fn real_and_simulated_fits_are_judged_as_they_are() {
        use crate::bgnbd::{self, BgNbd, Variant};
        use crate::purchase::Histories;
        use std::sync::atomic::AtomicBool;
        let cancel = AtomicBool::new(false);
        let support = |h: &Histories| {
            let repeaters: f64 =
                h.x.iter()
                    .zip(&h.weight)
                    .filter(|&(&x, _)| x > 0.0)
                    .map(|(_, w)| w)
                    .sum();
            [
                Support::per_parameter("customers", h.customers(), 10.0, 4),
                Support::per_parameter("repeat buyers", repeaters, 5.0, 4),
            ]
        };
        let names = ["r", "alpha", "a", "b"];
        let cdnow = crate::testing::cdnow();
        let (_, fit) = bgnbd::fit_histories(&cdnow, Variant::Bg, &cancel).unwrap();
        assert_eq!(
            assess(&fit, names, &support(&cdnow)).problems,
            Vec::<String>::new()
        );
        let (_, fit) = crate::pareto_nbd::fit_histories(&cdnow, &cancel).unwrap();
        assert_eq!(
            assess(&fit, ["r", "alpha", "s", "beta"], &support(&cdnow)).problems,
            Vec::<String>::new()
        );

        let truth = BgNbd {
            r: 0.24,
            alpha: 4.41,
            a: 0.79,
            b: 2.43,
            variant: Variant::Bg,
        };
        for seed in 1..=5 {
            let mut rng = crate::testing::Rng::new(seed);
            let histories = Histories::compress((0..2000).map(|i| {
                let t = 20.0 + (i % 30) as f64;
                let (x, t_x) = truth.simulate(&mut rng, t);
                (x, t_x, t, 1.0)
            }));
            let (_, fit) = bgnbd::fit_histories(&histories, Variant::Bg, &cancel).unwrap();
            assert_eq!(
                assess(&fit, names, &support(&histories)).problems,
                Vec::<String>::new(),
                "seed {seed}: {fit:?}"
            );
        }

        let three = Histories::compress(
            [
                (7.0, 12.0, 12.0, 1.0),
                (2.0, 3.0, 12.0, 1.0),
                (20.0, 46.0, 99.0, 1.0),
            ]
            .into_iter(),
        );
        let (_, fit) = bgnbd::fit_histories(&three, Variant::Bg, &cancel).unwrap();
        let found = assess(&fit, names, &support(&three)).problems;
        assert!(found[0].starts_with("3 customers are too few"), "{found:?}");
        assert!(fit.params.iter().all(|p| *p < 1e7), "{fit:?}");

        // One purchase rate for everyone (0.5 a week, weekly periods), no one leaving: the
        // gamma of purchase rates collapses to a point, r and α grow together to the edge.
        let mut rng = crate::testing::Rng::new(11);
        let homogeneous = Histories::compress((0..1000).map(|i| {
            let t = 30.0 + (i % 20) as f64;
            let (mut at, mut x, mut last) = (0.0, -1.0, 0.0);
            while at <= t {
                x += 1.0;
                last = at;
                at += -(1.0 - rng.uniform()).ln() / 0.5;
            }
            (x, last, t, 1.0)
        }));
        let (_, fit) = bgnbd::fit_histories(&homogeneous, Variant::Bg, &cancel).unwrap();
        let found = assess(&fit, names, &support(&homogeneous));
        assert!(
            found
                .problems
                .iter()
                .any(|p| p.contains("reached the edge")),
            "{found:?} {fit:?}"
        );
        assert!(found.unidentified.contains(&"r".to_owned()));
    }

    #[test]
    fn log_wald_intervals_stay_positive_and_multiply_symmetrically() {
        let (lower, upper) = log_wald_interval(2.0, 0.2, Z_95).unwrap();
        assert!((lower * upper - 4.0).abs() < 1e-12);
        assert!((upper / 2.0 - (Z_95 * 0.1).exp()).abs() < 1e-12);
        assert_eq!(log_wald_interval(0.0, 0.2, 1.96), None);
        assert_eq!(log_wald_interval(1.0, f64::INFINITY, 1.96), None);
        assert_eq!(log_wald_interval(1.0, 1e6, 1.96), None);
    }
}
