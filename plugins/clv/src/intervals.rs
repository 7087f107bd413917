//! Intervals of the predictive models' predictions, per customer and for the whole base, by the
//! delta method on the fits' covariances ([`mittari_models::uncertainty`]).
//!
//! Each distinct history's predictions are recomputed by models at shifted parameters (one per
//! parameter), which gives their gradients; the variances follow from the purchase fit's
//! covariance, and for values from the spend fit's too (the two fits use separate likelihoods,
//! so their estimates are independent). A sum over customers is a function of the parameters
//! like any other: its gradient is the customers' gradients summed, so its interval has the
//! customers' errors moving together, as they do.

use mittari_models::Histories;
use mittari_models::gamma_gamma::GammaGamma;
use mittari_models::uncertainty::{FreeCovariance, Scale, interval};
use mittari_sdk::prelude::*;
use rayon::prelude::*;

use crate::predictive::{FIELDS, Field, HistoryPrediction, Predictor, dert_tables};

/// Histories per parallel task.
const CHUNK: usize = 4096;

/// Each covariate profile's purchase model at free parameters (ln θ, and any coefficients).
pub(crate) type RebuildProfiles<'a> =
    &'a (dyn Fn(&[f64]) -> Vec<Box<dyn mittari_models::PurchaseModel>> + Sync);

/// The purchase fit and what its predictions were made with.
pub(crate) struct PurchaseSide<'a> {
    /// The fit's covariance in its free parameters.
    pub(crate) covariance: FreeCovariance,
    pub(crate) rebuild: RebuildProfiles<'a>,
    /// Each distinct history's profile, and each profile's range of histories.
    pub(crate) model_of: &'a [u32],
    pub(crate) parts: &'a [(std::ops::Range<usize>, u32)],
    pub(crate) predictor: &'a Predictor<'a>,
    pub(crate) discounting: Option<&'a mittari_models::Discounting>,
    pub(crate) histories: &'a Histories,
    pub(crate) per_history: &'a [HistoryPrediction],
}

/// The spend fit, and each customer's expected spend, frequency and mean value.
pub(crate) struct SpendSide<'a> {
    /// The spend fit's free parameters (ln p, ln q, ln γ, and any coefficients).
    pub(crate) covariance: FreeCovariance,
    /// Each spend profile's model at free parameters (one without spend covariates).
    pub(crate) models_at: &'a (dyn Fn(&[f64]) -> Vec<GammaGamma> + Sync),
    /// Each customer's spend profile, with spend covariates.
    pub(crate) spend_of: Option<&'a [u32]>,
    pub(crate) values: &'a [f64],
    pub(crate) x: &'a [f64],
    pub(crate) monetary_value: &'a [Option<f64>],
    pub(crate) margin: f64,
}

/// The variances of every prediction and of the sums over customers.
pub(crate) struct Spread {
    /// Per distinct history, each field's variance.
    history: Vec<[f64; FIELDS]>,
    /// Per customer, the variance of the expected spend, with a spend model whose fit has a
    /// covariance.
    spend: Option<Vec<f64>>,
    /// The variances of the sums: each field summed over customers, the value to the horizon
    /// and the residual value (with a spend model), and the mean expected spend.
    totals: [f64; FIELDS],
    clv_total: Option<f64>,
    residual_total: Option<f64>,
    spend_mean: Option<f64>,
    churn_cost: Option<f64>,
    margin: f64,
}

/// Computes the [`Spread`]: N more predictions per distinct history (N parameters), and for a
/// spend model three per customer.
pub(crate) fn spread(
    purchase: &PurchaseSide<'_>,
    spend: Option<&SpendSide<'_>>,
    history_of: &[u32],
    weight: &[f64],
    input: &Input<'_>,
) -> Result<Spread, MetricError> {
    let n = purchase.covariance.len();
    let shifted: Vec<Vec<Box<dyn mittari_models::PurchaseModel>>> = purchase
        .covariance
        .shifted()
        .iter()
        .map(|params| (purchase.rebuild)(params))
        .collect();
    let shifted_dert: Vec<Option<Vec<f64>>> = shifted
        .iter()
        .map(|models| match purchase.discounting {
            Some(d) => dert_tables(models, purchase.parts, purchase.histories, d, input).map(Some),
            None => Ok(None),
        })
        .collect::<Result<_, MetricError>>()?;
    // Each history's weight in the value sums: Σ over its customers of weight × spend × margin.
    let histories = purchase.histories.len();
    let value_weight: Option<Vec<f64>> = spend.map(|spend| {
        let mut sums = vec![0.0; histories];
        for (k, &h) in history_of.iter().enumerate() {
            sums[h as usize] += weight[k] * spend.values[k] * spend.margin;
        }
        sums
    });
    struct Chunk {
        variances: Vec<[f64; FIELDS]>,
        sums: [Vec<f64>; FIELDS],
        valued: [Vec<f64>; 3],
    }
    let chunks: Vec<Chunk> = (0..histories)
        .into_par_iter()
        .step_by(CHUNK)
        .map(|start| {
            input.check_cancelled()?;
            let mut chunk = Chunk {
                variances: Vec::with_capacity(CHUNK),
                sums: std::array::from_fn(|_| vec![0.0; n]),
                valued: std::array::from_fn(|_| vec![0.0; n]),
            };
            let mut moved = vec![[0.0; FIELDS]; n];
            for h in start..(start + CHUNK).min(histories) {
                let base = purchase.per_history[h].fields();
                let profile = purchase.model_of[h] as usize;
                for (i, models) in shifted.iter().enumerate() {
                    moved[i] = purchase
                        .predictor
                        .predict(models[profile].as_ref(), shifted_dert[i].as_deref(), h)?
                        .fields();
                }
                let gradients: [Vec<f64>; FIELDS] = std::array::from_fn(|f| {
                    let at: Vec<f64> = moved.iter().map(|m| m[f]).collect();
                    FreeCovariance::gradient(base[f], &at)
                });
                chunk.variances.push(std::array::from_fn(|f| {
                    purchase.covariance.variance(&gradients[f])
                }));
                let n = purchase.histories.weight[h];
                for (sum, gradient) in chunk.sums.iter_mut().zip(&gradients) {
                    add_scaled(sum, gradient, n);
                }
                if let Some(value_weight) = &value_weight {
                    let w = value_weight[h];
                    add_scaled(
                        &mut chunk.valued[0],
                        &gradients[Field::Discounted as usize],
                        w,
                    );
                    add_scaled(&mut chunk.valued[1], &gradients[Field::Dert as usize], w);
                    add_scaled(&mut chunk.valued[2], &gradients[Field::Lost as usize], w);
                }
            }
            Ok(chunk)
        })
        .collect::<Result<_, MetricError>>()?;
    // Summed in chunk order: the same bits on every run.
    let mut sums: [Vec<f64>; FIELDS] = std::array::from_fn(|_| vec![0.0; n]);
    let mut valued: [Vec<f64>; 3] = std::array::from_fn(|_| vec![0.0; n]);
    let mut history_variance = Vec::with_capacity(histories);
    for chunk in chunks {
        history_variance.extend(chunk.variances);
        for (total, part) in sums.iter_mut().zip(&chunk.sums) {
            add_scaled(total, part, 1.0);
        }
        for (total, part) in valued.iter_mut().zip(&chunk.valued) {
            add_scaled(total, part, 1.0);
        }
    }
    let mut totals: [f64; FIELDS] = std::array::from_fn(|f| purchase.covariance.variance(&sums[f]));
    // Dropouts are active now less active at the window's end: one sum, one gradient.
    let mut dropouts = sums[Field::PAlive as usize].clone();
    add_scaled(&mut dropouts, &sums[Field::AliveAtEnd as usize], -1.0);
    totals[Field::AliveAtEnd as usize] = purchase.covariance.variance(&dropouts);

    let (mut spend_variance, mut clv_total, mut residual_total, mut spend_mean, mut churn_cost) =
        (None, None, None, None, None);
    if let Some(spend) = spend {
        let moved: Vec<Vec<GammaGamma>> = spend
            .covariance
            .shifted()
            .iter()
            .map(|free| (spend.models_at)(free))
            .collect();
        let n = spend.covariance.len();
        // Per chunk of customers, in order: each customer's variance, and the chunk's sums of
        // gradients for the mean spend, the value to the horizon and the residual value.
        let chunks: Vec<(Vec<f64>, [Vec<f64>; 4])> = (0..spend.values.len())
            .collect::<Vec<usize>>()
            .par_chunks(4096)
            .map(|customers| {
                let mut variances = Vec::with_capacity(customers.len());
                let mut sums = [vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]];
                for &k in customers {
                    let (x, m) = (spend.x[k], spend.monetary_value[k].unwrap_or(0.0));
                    let profile = spend.spend_of.map_or(0, |of| of[k] as usize);
                    let shifted: Vec<f64> = moved
                        .iter()
                        .map(|models| {
                            models[profile]
                                .expected_mean_value(x, m)
                                .unwrap_or(f64::NAN)
                        })
                        .collect();
                    let gradient = FreeCovariance::gradient(spend.values[k], &shifted);
                    variances.push(spend.covariance.variance(&gradient));
                    let fields = purchase.per_history[history_of[k] as usize].fields();
                    add_scaled(&mut sums[0], &gradient, weight[k]);
                    add_scaled(
                        &mut sums[1],
                        &gradient,
                        weight[k] * spend.margin * fields[Field::Discounted as usize],
                    );
                    add_scaled(
                        &mut sums[2],
                        &gradient,
                        weight[k] * spend.margin * fields[Field::Dert as usize],
                    );
                    add_scaled(
                        &mut sums[3],
                        &gradient,
                        weight[k] * spend.margin * fields[Field::Lost as usize],
                    );
                }
                (variances, sums)
            })
            .collect();
        let mut variances = Vec::with_capacity(spend.values.len());
        let [mut mean, mut clv, mut residual, mut lost] =
            [vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]];
        for (chunk, [m, c, r, l]) in chunks {
            variances.extend(chunk);
            add_scaled(&mut mean, &m, 1.0);
            add_scaled(&mut clv, &c, 1.0);
            add_scaled(&mut residual, &r, 1.0);
            add_scaled(&mut lost, &l, 1.0);
        }
        churn_cost =
            Some(purchase.covariance.variance(&valued[2]) + spend.covariance.variance(&lost));
        let customers: f64 = weight.iter().sum();
        spend_mean = Some(spend.covariance.variance(&mean) / (customers * customers));
        clv_total =
            Some(purchase.covariance.variance(&valued[0]) + spend.covariance.variance(&clv));
        residual_total =
            Some(purchase.covariance.variance(&valued[1]) + spend.covariance.variance(&residual));
        spend_variance = Some(variances);
    }
    Ok(Spread {
        history: history_variance,
        spend: spend_variance,
        totals,
        clv_total,
        residual_total,
        spend_mean,
        churn_cost,
        margin: spend.map_or(1.0, |s| s.margin),
    })
}

fn add_scaled(sum: &mut [f64], gradient: &[f64], by: f64) {
    for (s, g) in sum.iter_mut().zip(gradient) {
        *s += by * g;
    }
}

/// The requested level and its two-sided normal critical value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Level {
    pub(crate) level: f64,
    pub(crate) z: f64,
}

impl Level {
    /// The `interval` parameter, where given.
    pub(crate) fn of(params: &Params) -> Result<Option<Level>, MetricError> {
        if params.get("interval").is_none() {
            return Ok(None);
        }
        let level = params.f64("interval")?;
        let z = mittari_sdk::stats::two_sided_z(level).ok_or_else(|| {
            MetricError::invalid_parameter("interval", "the level must be between 0 and 1")
        })?;
        Ok(Some(Level { level, z }))
    }

    /// `scalar` with its interval, where one can be computed.
    pub(crate) fn scalar(&self, scalar: Scalar, variance: Option<f64>, scale: Scale) -> Scalar {
        match variance.and_then(|v| interval(scalar.value?, v, self.z, scale)) {
            Some((lower, upper)) => scalar.with_interval(lower, upper, self.level),
            None => scalar,
        }
    }
}

impl Spread {
    /// The variance of a sum of the field over customers.
    pub(crate) fn total(&self, field: Field) -> f64 {
        self.totals[field as usize]
    }

    /// The variance of the dropouts (active now less active at the window's end), summed.
    pub(crate) fn dropouts(&self) -> f64 {
        self.totals[Field::AliveAtEnd as usize]
    }

    pub(crate) fn clv_total(&self) -> Option<f64> {
        self.clv_total
    }

    pub(crate) fn residual_total(&self) -> Option<f64> {
        self.residual_total
    }

    pub(crate) fn spend_mean(&self) -> Option<f64> {
        self.spend_mean
    }

    /// The variance of the value of the purchases lost to churn, summed.
    pub(crate) fn churn_cost(&self) -> Option<f64> {
        self.churn_cost
    }

    /// The lower and upper ends of a per-customer purchase prediction (`values`, in customer
    /// order), from its history's variance.
    pub(crate) fn history_bounds(
        &self,
        field: Field,
        values: &[f64],
        history_of: &[u32],
        level: Level,
        scale: Scale,
    ) -> Bounds {
        bounds(values, level, scale, |k| {
            Some(self.history[history_of[k] as usize][field as usize])
        })
    }

    /// The ends of expected spend, per customer.
    pub(crate) fn spend_bounds(&self, values: &[f64], level: Level) -> Option<Bounds> {
        let spend = self.spend.as_ref()?;
        Some(bounds(values, level, Scale::Positive, |k| Some(spend[k])))
    }

    /// The ends of a value, margin × `purchases` (a purchase field of the customer's history)
    /// × expected spend: var = margin² (S² var(P) + P² var(S)), the fits independent.
    pub(crate) fn value_bounds(
        &self,
        values: &[f64],
        field: Field,
        purchases: impl Fn(usize) -> f64 + Sync,
        spend: &[f64],
        history_of: &[u32],
        level: Level,
    ) -> Option<Bounds> {
        let spend_variance = self.spend.as_ref()?;
        let margin = self.margin;
        Some(bounds(values, level, Scale::Positive, |k| {
            let h = history_of[k] as usize;
            let (p, s) = (purchases(k), spend[k]);
            Some(
                margin
                    * margin
                    * (s * s * self.history[h][field as usize] + p * p * spend_variance[k]),
            )
        }))
    }
}

/// Each value's interval from its variance; empty where none can be had (a variance that is
/// not finite), never a made-up one.
fn bounds(
    values: &[f64],
    level: Level,
    scale: Scale,
    variance: impl Fn(usize) -> Option<f64> + Sync,
) -> Bounds {
    values
        .par_iter()
        .enumerate()
        .map(
            |(k, &value)| match variance(k).and_then(|v| interval(value, v, level.z, scale)) {
                Some((lower, upper)) => (Some(lower), Some(upper)),
                None => (None, None),
            },
        )
        .unzip()
}

/// A column's lower and upper ends, per customer.
pub(crate) type Bounds = (Vec<Option<f64>>, Vec<Option<f64>>);
