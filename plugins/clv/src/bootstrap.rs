//! Intervals by the bootstrap (`uncertainty=bootstrap`): resample the customers with
//! replacement, refit both models, predict every customer again with the draw's parameters,
//! and take the percentiles of the draws (Efron & Tibshirani 1993, ch. 13). This is CLVTools'
//! method (`predict(..., uncertainty = "boots")`), so the two can be compared on the same data;
//! it needs no covariance and no linearization, at the cost of a fit and a full set of
//! predictions per draw.
//!
//! Every draw predicts the customers of the input (not the resampled ones): its sums are the
//! same base's totals under other parameters, as the delta method's are.

use std::sync::atomic::AtomicBool;

use mittari_models::gamma_gamma::GammaGamma;
use mittari_models::{Discounting, Histories, PurchaseModel};
use mittari_sdk::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng};
use rayon::prelude::*;

use crate::intervals::{Bounds, Level};
use crate::predictive::{FIELDS, Field, Predictor, dert_tables};

/// Bytes the kept draws of the customers' predictions may take (f32 values): beyond, the
/// request is refused with what to change.
const MAX_KEPT_BYTES: usize = 1 << 30;
/// The draws' seed: the same input gives the same intervals on every run.
const SEED: u64 = 0x6d69_7474_6172_6921;
/// Draws from which percentile intervals hold their level in simulation (88.6 % at 90 % with
/// 800; 86.7 % with CLVTools' default of 100, the default here for comparison with it).
pub(crate) const DRAWS_FOR_LEVEL: usize = 800;

/// The warning for intervals from fewer draws than [`DRAWS_FOR_LEVEL`]: each end is an
/// estimate of a tail quantile from few draws, and the noise makes the intervals cover less
/// often than their level says.
pub(crate) fn few_draws(draws: usize) -> Option<String> {
    (draws < DRAWS_FOR_LEVEL).then(|| {
        format!(
            "percentile intervals from {draws} bootstrap draws cover less often than their level: each end is a \
             tail quantile estimated from few draws (in simulation, 90 % intervals covered 86.7 % of the time with \
             100 draws and 88.6 % with 800); give bootstrap_draws={DRAWS_FOR_LEVEL} or more where the level matters"
        )
    })
}

/// Refits the purchase model to resampled histories (their weights the draw's counts): one
/// model per covariate profile, in the order `model_of` refers to (one without covariates).
pub(crate) type Refit<'a> =
    dyn Fn(&Histories, &AtomicBool) -> Result<Vec<Box<dyn PurchaseModel>>, MetricError> + Sync + 'a;
/// Refits the spend model to the customers drawn (`counts` of each): one per spend profile.
pub(crate) type SpendRefit<'a> =
    dyn Fn(&[u32], &AtomicBool) -> Result<Vec<GammaGamma>, MetricError> + Sync + 'a;

/// What a bootstrap needs from the request.
pub(crate) struct Inputs<'a> {
    pub(crate) refit: &'a Refit<'a>,
    pub(crate) spend_refit: &'a SpendRefit<'a>,
    /// Each customer's spend profile, with spend covariates.
    pub(crate) spend_of: Option<&'a [u32]>,
    /// Each profile's range of histories, and which model predicts each history.
    pub(crate) parts: &'a [(std::ops::Range<usize>, u32)],
    pub(crate) model_of: &'a [u32],
    pub(crate) histories: &'a Histories,
    pub(crate) history_of: &'a [u32],
    /// Per customer: weight, frequency and mean value (for the spend refit).
    pub(crate) weight: &'a [f64],
    pub(crate) x: &'a [f64],
    pub(crate) monetary_value: &'a [Option<f64>],
    /// Whether a spend model values the purchases.
    pub(crate) valued: bool,
    pub(crate) margin: f64,
    pub(crate) predictor: &'a Predictor<'a>,
    pub(crate) discounting: Option<&'a Discounting>,
    /// The customers whose intervals are kept (the table's rows), in any order.
    pub(crate) kept: &'a [u32],
}

/// The per-customer columns a bootstrap gives ends to, in the order of [`Draw::kept`]'s
/// values per customer: those the table gives intervals.
const COLUMNS: [&str; 8] = crate::WITH_INTERVALS;
/// The totals a bootstrap gives intervals to (`clv` is the mean per customer).
pub(crate) const TOTALS: [&str; 11] = [
    "expected_purchases",
    "expected_active",
    "expected_lapsing",
    "expected_dropouts",
    "dert_total",
    "expected_spend",
    "clv_total",
    "residual_value_total",
    "clv",
    "expected_purchases_lost",
    "churn_cost",
];

/// One draw's predictions for the kept customers (COLUMNS per customer) and its totals.
struct Draw {
    kept: Vec<f32>,
    totals: [f64; 11],
}

/// The outcome: the ends of each column for the kept customers, in the order of
/// [`Inputs::kept`] (only they are shown: a full-length column per end cost 16 bytes per
/// customer each, 256 MB for a million customers and a table of 20), the totals' intervals, and
/// how many draws gave a fit.
pub(crate) struct Outcome {
    pub(crate) columns: Vec<(&'static str, Bounds)>,
    pub(crate) totals: Vec<(&'static str, (f64, f64))>,
    pub(crate) fitted: usize,
    pub(crate) draws: usize,
}

pub(crate) fn bootstrap(
    inputs: &Inputs<'_>,
    draws: usize,
    level: Level,
    input: &Input<'_>,
) -> Result<Outcome, MetricError> {
    let kept_bytes = inputs.kept.len() * COLUMNS.len() * draws * 4;
    if kept_bytes > MAX_KEPT_BYTES {
        return Err(MetricError::invalid_parameter(
            "bootstrap_draws",
            format!(
                "{draws} draws for {} customers would keep {:.1} GiB of predictions; ask for fewer draws, fewer customers in the table (top), or uncertainty=delta",
                inputs.kept.len(),
                kept_bytes as f64 / f64::from(1 << 30)
            ),
        ));
    }
    let customers = inputs.weight.len();
    // Resampling draws customers with probability proportional to their weight (a summary
    // row standing for several identical customers is drawn as that many), as many as the
    // input has.
    let mut cumulative = Vec::with_capacity(customers);
    let mut total = 0.0;
    for &w in inputs.weight {
        total += w;
        cumulative.push(total);
    }
    let size = total.round().max(1.0) as usize;
    let results: Vec<Option<Draw>> = (0..draws)
        .into_par_iter()
        .map(|b| -> Result<Option<Draw>, MetricError> {
            input.check_cancelled()?;
            let mut rng =
                SmallRng::seed_from_u64(SEED ^ (b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut counts = vec![0u32; customers];
            for _ in 0..size {
                let at = rng.random::<f64>() * total;
                let k = cumulative.partition_point(|&c| c <= at).min(customers - 1);
                counts[k] += 1;
            }
            draw(inputs, &counts, input)
        })
        .collect::<Result<_, MetricError>>()?;
    let fitted: Vec<Draw> = results.into_iter().flatten().collect();
    if fitted.len() < 2 {
        return Err(MetricError::invalid_input(format!(
            "only {} of {draws} bootstrap draws could be fitted; the data may be too few for the model",
            fitted.len()
        )));
    }
    let (low, high) = ((1.0 - level.level) / 2.0, (1.0 + level.level) / 2.0);
    let kept = inputs.kept.len();
    let mut columns: Vec<(&'static str, Bounds)> = COLUMNS
        .iter()
        .map(|&name| (name, (vec![None; kept], vec![None; kept])))
        .collect();
    let stride = COLUMNS.len();
    let ends: Vec<[(f64, f64); 8]> = (0..inputs.kept.len())
        .into_par_iter()
        .map(|i| {
            std::array::from_fn(|c| {
                let mut values: Vec<f64> = fitted
                    .iter()
                    .map(|d| f64::from(d.kept[i * stride + c]))
                    .collect();
                (quantile(&mut values, low), quantile(&mut values, high))
            })
        })
        .collect();
    for (i, ends) in ends.iter().enumerate() {
        for (c, (_, (lower, upper))) in columns.iter_mut().enumerate() {
            let (l, u) = ends[c];
            if l.is_finite() && u.is_finite() {
                lower[i] = Some(l);
                upper[i] = Some(u);
            }
        }
    }
    if !inputs.valued {
        columns.retain(|(name, _)| !matches!(*name, "expected_spend" | "clv" | "residual_value"));
    }
    if inputs.discounting.is_none() {
        columns.retain(|(name, _)| !matches!(*name, "dert" | "residual_value"));
    }
    let totals = TOTALS
        .iter()
        .enumerate()
        // Totals 5 to 8 and 10 are values, which need a spend model.
        .filter(|(t, _)| inputs.valued || *t < 5 || *t == 9)
        .filter(|(t, _)| inputs.discounting.is_some() || !matches!(*t, 4 | 7))
        .map(|(t, &name)| {
            let mut values: Vec<f64> = fitted.iter().map(|d| d.totals[t]).collect();
            (
                name,
                (quantile(&mut values, low), quantile(&mut values, high)),
            )
        })
        .collect();
    Ok(Outcome {
        columns,
        totals,
        fitted: fitted.len(),
        draws,
    })
}

/// One draw: the refits on the resampled customers (`counts` of each), and the predictions of
/// every customer under them; `None` where a fit fails (it is left out, and counted).
fn draw(
    inputs: &Inputs<'_>,
    counts: &[u32],
    input: &Input<'_>,
) -> Result<Option<Draw>, MetricError> {
    let cancel: &AtomicBool = input.cancellation();
    let histories = inputs.histories;
    let mut weight = vec![0.0; histories.len()];
    for (k, &h) in inputs.history_of.iter().enumerate() {
        weight[h as usize] += f64::from(counts[k]);
    }
    let resampled = Histories {
        x: histories.x.clone(),
        t_x: histories.t_x.clone(),
        t: histories.t.clone(),
        weight,
    };
    let models = match (inputs.refit)(&resampled, cancel) {
        Ok(models) => models,
        Err(MetricError::Cancelled) => return Err(MetricError::Cancelled),
        Err(_) => return Ok(None),
    };
    let gg: Option<Vec<GammaGamma>> = if inputs.valued {
        match (inputs.spend_refit)(counts, cancel) {
            Ok(models) => Some(models),
            Err(MetricError::Cancelled) => return Err(MetricError::Cancelled),
            Err(_) => return Ok(None),
        }
    } else {
        None
    };
    let dert = match inputs.discounting {
        Some(d) => Some(dert_tables(&models, inputs.parts, histories, d, input)?),
        None => None,
    };
    let per_history: Vec<[f64; FIELDS]> = (0..histories.len())
        .map(|h| {
            inputs
                .predictor
                .predict(
                    models[inputs.model_of[h] as usize].as_ref(),
                    dert.as_deref(),
                    h,
                )
                .map(|p| p.fields())
        })
        .collect::<Result<_, MetricError>>()?;
    let spend = |k: usize| -> f64 {
        gg.as_ref()
            .and_then(|gg| {
                let model = gg[inputs.spend_of.map_or(0, |of| of[k] as usize)];
                model.expected_mean_value(inputs.x[k], inputs.monetary_value[k].unwrap_or(0.0))
            })
            .unwrap_or(0.0)
    };
    let mut totals = [0.0; 11];
    let mut spend_weight = 0.0;
    for (k, &h) in inputs.history_of.iter().enumerate() {
        let (w, f) = (inputs.weight[k], &per_history[h as usize]);
        totals[0] += w * f[Field::Expected as usize];
        totals[1] += w * f[Field::PAlive as usize];
        totals[2] += w * f[Field::NoPurchase as usize];
        totals[3] += w * (f[Field::PAlive as usize] - f[Field::AliveAtEnd as usize]);
        totals[4] += w * f[Field::Dert as usize];
        totals[9] += w * f[Field::Lost as usize];
        if gg.is_some() {
            let s = spend(k);
            spend_weight += w;
            totals[5] += w * s;
            totals[6] += w * f[Field::Discounted as usize] * s * inputs.margin;
            totals[7] += w * f[Field::Dert as usize] * s * inputs.margin;
            totals[10] += w * f[Field::Lost as usize] * s * inputs.margin;
        }
    }
    if spend_weight > 0.0 {
        totals[5] /= spend_weight;
        totals[8] = totals[6] / spend_weight;
    }
    let mut kept = Vec::with_capacity(inputs.kept.len() * COLUMNS.len());
    for &k in inputs.kept {
        let k = k as usize;
        let f = &per_history[inputs.history_of[k] as usize];
        let s = spend(k);
        kept.extend(
            [
                f[Field::PAlive as usize],
                f[Field::Expected as usize],
                f[Field::NoPurchase as usize],
                f[Field::AliveAtEnd as usize],
                f[Field::Dert as usize],
                s,
                f[Field::Discounted as usize] * s * inputs.margin,
                f[Field::Dert as usize] * s * inputs.margin,
            ]
            .map(|v| v as f32),
        );
    }
    Ok(Some(Draw { kept, totals }))
}

/// The p-quantile of `values` by linear interpolation between order statistics (R's type 7,
/// which CLVTools' `quantile` uses). Sorts `values`.
fn quantile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let at = p * (values.len() - 1) as f64;
    let (below, fraction) = (at.floor() as usize, at.fract());
    match values.get(below + 1) {
        Some(next) => values[below] + fraction * (next - values[below]),
        None => values[below],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mittari_models::PurchaseModel;
    use mittari_models::bgnbd::{BgNbd, Variant};
    use mittari_models::testing::Rng;
    use mittari_sdk::arrow_array::RecordBatch;
    use mittari_sdk::arrow_schema::Schema;

    /// Coverage of the bootstrap's percentile intervals, measured as the delta method's is:
    /// 200 bases of 800 BG/NBD customers (39 weeks) plus four reference customers, each
    /// bootstrapped with 100 draws; the 90 % intervals of the references' P(alive) and expected
    /// purchases in 52 weeks, and of the base's expected purchases. Measured: 86.7 % overall
    /// (each 83–90.5 %), short of the 88–92 % the delta method reaches on the same kind of data:
    /// percentile intervals of a few hundred customers' refits are too narrow
    /// (docs/models.md). The test holds the bootstrap to what it does, 84–93 %, so that a
    /// change that makes it worse fails.
    #[test]
    fn percentile_intervals_cover_the_truth() {
        let truth = BgNbd {
            r: 0.6,
            alpha: 5.0,
            a: 0.9,
            b: 3.0,
            variant: Variant::Bg,
        };
        let references = [(1.0, 20.0), (3.0, 35.0), (6.0, 38.0), (2.0, 10.0)];
        let t = 39.0;
        let batch = RecordBatch::new_empty(std::sync::Arc::new(Schema::empty()));
        let input = Input::new(&batch);
        let level = Level {
            level: 0.9,
            z: 1.644_853_626_951_472_2,
        };
        let hits: Vec<Vec<bool>> = (0..200u64)
            .map(|seed| {
                let mut rng = Rng::new(90_000 + seed);
                let mut rows: Vec<(f64, f64, f64, f64)> = references
                    .iter()
                    .map(|&(x, t_x)| (x, t_x, t, 1.0))
                    .collect();
                rows.extend((0..800).map(|_| {
                    let (x, t_x) = truth.simulate(&mut rng, t);
                    (x, t_x, t, 1.0)
                }));
                let (histories, history_of) = Histories::compress_indexed(rows.iter().copied());
                let weight = vec![1.0; rows.len()];
                let x: Vec<f64> = rows.iter().map(|r| r.0).collect();
                let monetary_value = vec![None; rows.len()];
                let predictor = Predictor::plain(52.0, 13.0, &histories);
                let kept: Vec<u32> = (0..references.len() as u32).collect();
                let refit = |h: &Histories, cancel: &AtomicBool| {
                    let (model, fit) = mittari_models::bgnbd::fit_histories(h, Variant::Bg, cancel)
                        .map_err(|e| MetricError::invalid_input(e.to_string()))?;
                    if !fit.converged || fit.reached_boundary() {
                        return Err(MetricError::invalid_input(fit.status));
                    }
                    Ok(vec![Box::new(model) as Box<dyn PurchaseModel>])
                };
                let no_spend = |_: &[u32], _: &AtomicBool| Ok(Vec::new());
                let parts = [(0..histories.len(), 0)];
                let model_of = vec![0; histories.len()];
                let inputs = Inputs {
                    refit: &refit,
                    spend_refit: &no_spend,
                    spend_of: None,
                    parts: &parts,
                    model_of: &model_of,
                    histories: &histories,
                    history_of: &history_of,
                    weight: &weight,
                    x: &x,
                    monetary_value: &monetary_value,
                    valued: false,
                    margin: 1.0,
                    predictor: &predictor,
                    discounting: None,
                    kept: &kept,
                };
                let outcome = bootstrap(&inputs, DRAWS_FOR_LEVEL, level, &input).unwrap();
                let column =
                    |name: &str| &outcome.columns.iter().find(|(n, _)| *n == name).unwrap().1;
                let mut hits = Vec::new();
                for (i, &(x, t_x)) in references.iter().enumerate() {
                    for (name, value) in [
                        ("p_alive", truth.p_alive(x, t_x, t)),
                        (
                            "expected_purchases",
                            truth.expected_purchases(52.0, x, t_x, t).unwrap(),
                        ),
                    ] {
                        let (lower, upper) = column(name);
                        hits.push((lower[i].unwrap()..=upper[i].unwrap()).contains(&value));
                    }
                }
                let total: f64 = rows
                    .iter()
                    .map(|&(x, t_x, t, _)| truth.expected_purchases(52.0, x, t_x, t).unwrap())
                    .sum();
                let (_, (lower, upper)) = outcome
                    .totals
                    .iter()
                    .find(|(n, _)| *n == "expected_purchases")
                    .unwrap();
                hits.push((*lower..=*upper).contains(&total));
                hits
            })
            .collect();
        let (overall, each) = mittari_models::testing::coverage(&hits);
        eprintln!("bootstrap: 90 % intervals covered {overall:.3} overall, each {each:.3?}");
        // 88.6 % measured; 200 bases give the overall share a standard error of about 1.5
        // points. With 100 draws the same bases covered 86.7 % (see `few_draws`).
        assert!((0.86..=0.93).contains(&overall), "{overall} {each:?}");
    }
}
