//! What each customer's purchase history alone predicts for the window: a BG/NBD model (Fader,
//! Hardie & Lee 2005) fitted on the purchases up to the split, its expected purchases in the
//! window, times the Gamma-Gamma (Fader, Hardie & Lee 2005b) expected value per purchase.
//! A tier whose customers spend more than their history predicted tells something the
//! history did not.

use std::collections::HashMap;

use mittari_models::bgnbd::{self, Variant};
use mittari_models::gamma_gamma;
use mittari_models::identification::{message, purchase_support};
use mittari_models::rfm::{self, TimeUnit};
use mittari_models::{Histories, PurchaseModel};
use mittari_sdk::{Input, MetricError};

use crate::outcomes::{Customer, Log, Window};

/// Each base customer's predicted spend in the window, in `base` order; `Err` with the reason
/// when a fit cannot be used (it failed, or did not identify its parameters).
pub(crate) fn window_spend(
    log: &Log<'_>,
    window: &Window,
    unit: TimeUnit,
    base: &[Customer],
    input: &Input<'_>,
) -> Result<Result<Vec<f64>, String>, MetricError> {
    let summaries = rfm::summarize(
        |i| log.customer.value(i),
        log.timestamp.values(),
        log.amount.values(),
        unit,
        window.split,
        None,
    )
    .map_err(|e| MetricError::invalid_input(e.to_string()))?;
    input.check_cancelled()?;
    let position: HashMap<&str, usize> = base
        .iter()
        .enumerate()
        .map(|(i, c)| (log.customer.value(c.first_row), i))
        .collect();
    // (x, t_x, T, mean value) of each base customer.
    let mut history = vec![(0.0, 0.0, 0.0, 0.0); base.len()];
    for s in &summaries {
        if let Some(&i) = position.get(log.customer.value(s.first_row as usize)) {
            history[i] = (
                f64::from(s.frequency),
                f64::from(s.recency),
                f64::from(s.t),
                s.monetary_value,
            );
        }
    }
    let (histories, index) =
        Histories::compress_indexed(history.iter().map(|&(x, t_x, t, _)| (x, t_x, t, 1.0)));
    let cancel = input.cancellation();
    let (model, fit) = match bgnbd::fit_histories(&histories, Variant::Bg, cancel) {
        Ok(fitted) => fitted,
        Err(e) => {
            return Ok(Err(format!(
                "the BG/NBD fit on the purchases up to split failed: {e}"
            )));
        }
    };
    input.check_cancelled()?;
    let support = purchase_support(&histories);
    if let Some(problem) = message("BG/NBD", &fit, ["r", "alpha", "a", "b"], &support) {
        return Ok(Err(format!(
            "{problem} (on the purchases up to split); predicted_spend and beyond_history are not given"
        )));
    }
    let (spend, spend_fit, _) =
        match gamma_gamma::fit_spend(history.iter().map(|&(x, _, _, m)| (x, m, 1.0)), cancel) {
            Ok(fitted) => fitted,
            Err(e) => {
                return Ok(Err(format!(
                    "the Gamma-Gamma spend fit on the purchases up to split failed: {e}"
                )));
            }
        };
    if let Some(problem) = message("Gamma-Gamma", &spend_fit, ["p", "q", "gamma"], &[]) {
        return Ok(Err(format!(
            "{problem} (on the purchases up to split); predicted_spend and beyond_history are not given"
        )));
    }
    let horizon = window.days / unit.days();
    let mut predicted = Vec::with_capacity(base.len());
    for (&(x, t_x, t, mean_value), &h) in history.iter().zip(&index) {
        let purchases = model.expected_purchases(horizon, x, t_x, t);
        let value = spend.expected_mean_value(x, mean_value);
        match (purchases, value) {
            (Some(p), Some(v)) if (p * v).is_finite() => predicted.push(p * v),
            (None, _) => {
                return Ok(Err(format!(
                    "the expected purchases of a history (x = {}, t_x = {}, T = {}) did not converge",
                    histories.x[h as usize], histories.t_x[h as usize], histories.t[h as usize]
                )));
            }
            _ => {
                return Ok(Err(
                    "the Gamma-Gamma fit gives no finite mean value (q <= 1)".to_owned(),
                ));
            }
        }
    }
    Ok(Ok(predicted))
}
