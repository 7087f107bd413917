//! Timings and peak memory of the model fits and the RFM summary, for BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p mittari-models --bench fit -- simulate [--shape=day|log] CUSTOMERS SUMMARY.csv LOG.csv [LOG_ROWS]
//! cargo bench -p mittari-models --bench fit -- fit SUMMARY.csv [MODELS]
//! cargo bench -p mittari-models --bench fit -- rfm LOG.csv
//! cargo bench -p mittari-models --bench fit -- limits
//! cargo bench -p mittari-models --bench fit -- rfm-chunked LOG.csv [CHUNK_ROWS]
//! cargo bench -p mittari-models --bench fit -- rfm-push ROWS CUSTOMERS
//! ```
//!
//! `simulate` draws customers from BG/NBD and Gamma-Gamma at CDNOW-like parameters and writes
//! their lifetimes-style summary (in weeks) and, for the first LOG_ROWS transactions'
//! customers, the transaction log. Two shapes of data:
//! - `day` (the default): purchases on days over a 39-week window with a 12-week acquisition
//!   period, as in CDNOW; many customers share a history (about 1 in 10 is distinct).
//! - `log`: purchases timestamped to the second, customers acquired over three years and
//!   observed over four, as in a transaction log; nearly every history is distinct.
//!
//! `fit` and `rfm` print one JSON object per measurement: seconds (median of 3 runs),
//! estimates, log-likelihood, and the process's peak resident memory so far.
// A bench binary reports on standard output and may stop at the first bad input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use mittari_models::bgnbd::{self, Variant};
use mittari_models::covariates::{self, Options, Profile};
use mittari_models::rfm::{self, TimeUnit};
use mittari_models::testing::Rng;
use mittari_models::{Histories, gamma_gamma, pareto_nbd};

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// 2024-01-01 in days since 1970-01-01.
const START_DAY: i64 = 19_723;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let shape = match std::env::args().find_map(|a| a.strip_prefix("--shape=").map(str::to_owned)) {
        None => Shape::Day,
        Some(s) if s == "day" => Shape::Day,
        Some(s) if s == "log" => Shape::Log,
        Some(other) => panic!("--shape={other}: the shapes are day and log"),
    };
    match args.first().map(String::as_str) {
        Some("simulate") => simulate(
            shape,
            args[1].parse().unwrap(),
            &args[2],
            &args[3],
            args.get(4).map_or(1_000_000, |n| n.parse().unwrap()),
        ),
        Some("fit") => fit(
            &args[1],
            args.get(2)
                .map_or("bgnbd,pareto_nbd,gamma_gamma", String::as_str),
        ),
        Some("rfm") => summarize(&args[1]),
        Some("covariates") => covariates(&args[1]),
        Some("limits") => limits(),
        Some("rfm-chunked") => summarize_in_chunks(
            &args[1],
            args.get(2).map_or(1_000_000, |n| n.parse().unwrap()),
        ),
        Some("rfm-push") => push_in_memory(args[1].parse().unwrap(), args[2].parse().unwrap()),
        _ => eprintln!(
            "usage: fit.rs simulate N SUMMARY.csv LOG.csv [LOG_ROWS] | fit SUMMARY.csv [MODELS] | covariates SUMMARY.csv | rfm LOG.csv | rfm-chunked LOG.csv [CHUNK_ROWS] | rfm-push ROWS CUSTOMERS | limits"
        ),
    }
}

/// Peak resident set size of this process, in MiB (Linux).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn median_of_3<T>(mut run: impl FnMut() -> T) -> (f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let start = Instant::now();
        last = Some(run());
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (times[1], last.unwrap())
}

/// The shape of simulated data.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Day resolution, 39 weeks, 12 weeks of acquisition.
    Day,
    /// Second resolution, four years, three years of acquisition.
    Log,
}

const SECONDS_PER_DAY: f64 = 86_400.0;

fn simulate(shape: Shape, customers: usize, summary_path: &str, log_path: &str, log_rows: usize) {
    let (r, alpha, a, b) = (0.243, 4.414, 0.793, 2.426);
    let (p, q, gamma) = (6.25, 3.74, 15.44);
    // In days: the observation window, the acquisition period, and the time resolution.
    let (window, acquisition, resolution) = match shape {
        Shape::Day => (39.0 * 7.0, 84.0, 1.0),
        Shape::Log => (4.0 * 365.25, 3.0 * 365.25, 1.0 / SECONDS_PER_DAY),
    };
    let quantize = |day: f64| (day / resolution).floor() * resolution;
    let mut rng = Rng::new(2005);
    let mut summary = BufWriter::new(File::create(summary_path).unwrap());
    let mut log = BufWriter::new(File::create(log_path).unwrap());
    writeln!(summary, "customer_id,frequency,recency,T,monetary_value").unwrap();
    writeln!(log, "customer_id,timestamp,amount").unwrap();
    let mut logged = 0;
    // (time in days, quantized; amount) of each purchase period.
    let mut purchases: Vec<(f64, f64)> = Vec::new();
    for id in 0..customers {
        let first = quantize(rng.uniform() * acquisition);
        let lambda = rng.gamma(r) / alpha / 7.0; // per day
        let dropout = rng.beta(a, b);
        let nu = rng.gamma(q) / gamma;
        let spend = |rng: &mut Rng| (rng.gamma(p) / nu * 100.0).round() / 100.0;
        purchases.clear();
        purchases.push((first, spend(&mut rng)));
        let mut now = first;
        loop {
            now += -rng.uniform().ln() / lambda;
            if now >= window {
                break;
            }
            let time = quantize(now);
            let amount = spend(&mut rng);
            // Several purchases in one period (a day, or a second) are one purchase, their
            // amounts summed.
            match purchases.last_mut() {
                Some(last) if last.0 == time => last.1 += amount,
                _ => purchases.push((time, amount)),
            }
            if rng.uniform() < dropout {
                break;
            }
        }
        let x = purchases.len() - 1;
        let last = purchases.last().unwrap().0;
        let mean = if x > 0 {
            purchases[1..].iter().map(|d| d.1).sum::<f64>() / x as f64
        } else {
            0.0
        };
        // The summary's T runs to the last period observed: the window's last day, or second.
        writeln!(
            summary,
            "c{id},{x},{},{},{}",
            (last - first) / 7.0,
            (window - resolution - first) / 7.0,
            (mean * 100.0).round() / 100.0
        )
        .unwrap();
        if logged < log_rows {
            for &(time, amount) in &purchases {
                let day = time.floor();
                let (y, m, d) = civil_from_days(START_DAY + day as i64);
                match shape {
                    Shape::Day => writeln!(log, "c{id},{y:04}-{m:02}-{d:02},{amount:.2}"),
                    Shape::Log => {
                        let second = ((time - day) * SECONDS_PER_DAY).round() as i64;
                        let (hh, mm, ss) = (second / 3600, second / 60 % 60, second % 60);
                        writeln!(
                            log,
                            "c{id},{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z,{amount:.2}"
                        )
                    }
                }
                .unwrap();
                logged += 1;
            }
        }
    }
}

/// Howard Hinnant's civil-from-days.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn fit(path: &str, models: &str) {
    let start = Instant::now();
    let mut rows: Vec<(f64, f64, f64, f64)> = Vec::new();
    for line in BufReader::new(File::open(path).unwrap()).lines().skip(1) {
        let line = line.unwrap();
        let mut f = line.split(',').skip(1).map(|v| v.parse::<f64>().unwrap());
        rows.push((
            f.next().unwrap(),
            f.next().unwrap(),
            f.next().unwrap(),
            f.next().unwrap(),
        ));
    }
    println!(
        r#"{{"step": "read", "customers": {}, "seconds": {:.3}, "peak_rss_mib": {:.0}}}"#,
        rows.len(),
        start.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    for model in models.split(',') {
        let (seconds, (params, fitted, distinct)): (f64, (Vec<f64>, Fitted, usize)) = match model {
            "bgnbd" | "mbgnbd" | "pareto_nbd" => {
                let (merge_seconds, h) = median_of_3(|| {
                    Histories::compress(rows.iter().map(|&(x, t_x, t, _)| (x, t_x, t, 1.0)))
                });
                let (fit_seconds, (params, fitted)) = median_of_3(|| match model {
                    "pareto_nbd" => {
                        let (p, f) =
                            pareto_nbd::fit_histories(&h, &AtomicBool::new(false)).unwrap();
                        (vec![p.r, p.alpha, p.s, p.beta], Fitted::of(&f))
                    }
                    _ => {
                        let variant = if model == "bgnbd" {
                            Variant::Bg
                        } else {
                            Variant::Modified
                        };
                        let (p, f) =
                            bgnbd::fit_histories(&h, variant, &AtomicBool::new(false)).unwrap();
                        (vec![p.r, p.alpha, p.a, p.b], Fitted::of(&f))
                    }
                });
                println!(
                    r#"{{"step": "merge", "model": "{model}", "seconds": {merge_seconds:.3}, "fit_seconds": {fit_seconds:.3}}}"#
                );
                (merge_seconds + fit_seconds, (params, fitted, h.len()))
            }
            "gamma_gamma" => median_of_3(|| {
                let (p, f, spend) = gamma_gamma::fit_spend(
                    rows.iter().map(|&(x, _, _, m)| (x, m, 1.0)),
                    &AtomicBool::new(false),
                )
                .unwrap();
                (vec![p.p, p.q, p.gamma], Fitted::of(&f), spend.x.len())
            }),
            other => panic!("unknown model {other}"),
        };
        println!(
            r#"{{"step": "fit", "model": "{model}", "seconds": {seconds:.3}, "params": {params:?}, "log_likelihood": {}, "iterations": {}, "evaluations": {}, "converged": {}, "rows_fitted": {distinct}, "peak_rss_mib": {:.0}}}"#,
            fitted.log_likelihood,
            fitted.iterations,
            fitted.evaluations,
            fitted.converged,
            peak_rss_mib()
        );
    }
}

/// BG/NBD and Pareto/NBD with two binary covariates in both processes (gender and channel, say:
/// four profiles), against the same fit without them: the clv metric fits without covariates
/// first (the likelihood-ratio test's baseline and the start), then with them.
fn covariates(path: &str) {
    let mut rows: Vec<(f64, f64, f64)> = Vec::new();
    for line in BufReader::new(File::open(path).unwrap()).lines().skip(1) {
        let line = line.unwrap();
        let mut f = line.split(',').skip(1).map(|v| v.parse::<f64>().unwrap());
        rows.push((f.next().unwrap(), f.next().unwrap(), f.next().unwrap()));
    }
    // Customers' covariates from a hash of their position: unrelated to their histories, as
    // a covariate that explains nothing is (the fit's cost does not depend on the effects).
    let profile = |i: usize| (i.wrapping_mul(0x9E37_79B9) >> 7) % 4;
    for model in ["bgnbd", "pareto_nbd"] {
        let cancel = AtomicBool::new(false);
        let (plain_seconds, (start, plain_ll)) = median_of_3(|| {
            let h = Histories::compress(rows.iter().map(|&(x, t_x, t)| (x, t_x, t, 1.0)));
            match model {
                "pareto_nbd" => {
                    let (p, f) = pareto_nbd::fit_histories(&h, &cancel).unwrap();
                    ([p.r, p.alpha, p.s, p.beta], f.log_likelihood)
                }
                _ => {
                    let (p, f) = bgnbd::fit_histories(&h, Variant::Bg, &cancel).unwrap();
                    ([p.r, p.alpha, p.a, p.b], f.log_likelihood)
                }
            }
        });
        let (covariate_seconds, fitted) = median_of_3(|| {
            let profiles: Vec<Profile<Histories>> = (0..4)
                .map(|p| {
                    let values = vec![(p & 1) as f64, (p >> 1) as f64];
                    Profile {
                        purchase: values.clone(),
                        attrition: values,
                        data: Histories::compress(
                            rows.iter()
                                .enumerate()
                                .filter(|(i, _)| profile(*i) == p)
                                .map(|(_, &(x, t_x, t))| (x, t_x, t, 1.0)),
                        ),
                    }
                })
                .collect();
            match model {
                "pareto_nbd" => {
                    covariates::fit_pareto_nbd(&profiles, start, Options::default(), &cancel)
                        .unwrap()
                }
                _ => covariates::fit_bgnbd(
                    &profiles,
                    Variant::Bg,
                    start,
                    Options::default(),
                    &cancel,
                )
                .unwrap(),
            }
        });
        println!(
            r#"{{"step": "covariates", "model": "{model}", "customers": {}, "without_seconds": {plain_seconds:.3}, "with_seconds": {covariate_seconds:.3}, "ratio_of_the_metric": {:.2}, "log_likelihood_without": {plain_ll:.3}, "log_likelihood_with": {:.3}, "coefficients": {:?}, "evaluations": {}, "converged": {}, "peak_rss_mib": {:.0}}}"#,
            rows.len(),
            (plain_seconds + covariate_seconds) / plain_seconds,
            fitted.log_likelihood,
            [fitted.purchase.clone(), fitted.attrition.clone()].concat(),
            fitted.fit.evaluations,
            fitted.fit.converged,
            peak_rss_mib()
        );
    }
}

/// What a measurement reports of a fit besides its estimates.
struct Fitted {
    log_likelihood: f64,
    iterations: usize,
    evaluations: usize,
    converged: bool,
}

impl Fitted {
    fn of<const N: usize>(fit: &mittari_models::Fit<N>) -> Fitted {
        Fitted {
            log_likelihood: fit.log_likelihood,
            iterations: fit.iterations,
            evaluations: fit.evaluations,
            converged: fit.converged,
        }
    }
}

/// The chunked summary alone, on a log drawn in memory first: ROWS purchases of CUSTOMERS
/// customers (ids like `C000123456`, drawn uniformly), one a second in time order, pushed a
/// million rows at a time. Reports the seconds of the pushes and of `finish`, apart from the
/// drawing and any parsing.
fn push_in_memory(rows: usize, customers: u64) {
    let mut rng = Rng::new(7);
    let (mut ids, mut ends) = (String::with_capacity(rows * 10), Vec::with_capacity(rows));
    for _ in 0..rows {
        let who = ((rng.uniform() * customers as f64) as u64).min(customers - 1);
        write!(ids, "C{who:09}").unwrap();
        ends.push(ids.len());
    }
    let start_second = START_DAY * 86_400;
    let timestamps: Vec<i64> = (0..rows as i64)
        .map(|i| (start_second + i) * 1_000_000)
        .collect();
    let amounts: Vec<f64> = (0..rows).map(|i| (i % 997) as f64 + 0.5).collect();
    let chunk = 1_000_000;
    let mut summary = rfm::ChunkedSummary::new(TimeUnit::Day, None, None);
    let started = Instant::now();
    for from in (0..rows).step_by(chunk) {
        let to = (from + chunk).min(rows);
        let id = |i: usize| {
            let row = from + i;
            &ids[if row == 0 { 0 } else { ends[row - 1] }..ends[row]]
        };
        summary
            .push(id, &timestamps[from..to], &amounts[from..to])
            .unwrap();
    }
    let pushed = started.elapsed().as_secs_f64();
    let found = summary.customers();
    let finished = Instant::now();
    let summaries = summary.finish().unwrap();
    let finish = finished.elapsed().as_secs_f64();
    println!(
        r#"{{"step": "rfm_push", "rows": {rows}, "customers": {found}, "push_seconds": {pushed:.2}, "finish_seconds": {finish:.2}, "summaries": {}, "peak_rss_mib": {:.0}}}"#,
        summaries.len(),
        peak_rss_mib()
    );
}

/// A log far larger than memory: read in chunks of `chunk_rows`, summarized chunk by chunk
/// (`rfm::ChunkedSummary`), then fitted by BG/NBD; reports time and peak memory of each step.
fn summarize_in_chunks(path: &str, chunk_rows: usize) {
    let start = Instant::now();
    let mut summary = rfm::ChunkedSummary::new(TimeUnit::Day, None, None);
    let mut lines = BufReader::with_capacity(1 << 20, File::open(path).unwrap()).lines();
    lines.next();
    let (mut ids, mut ends, mut timestamps, mut amounts) =
        (String::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rows = 0u64;
    loop {
        ids.clear();
        ends.clear();
        timestamps.clear();
        amounts.clear();
        for line in lines.by_ref().take(chunk_rows) {
            let line = line.unwrap();
            let (id, timestamp, amount) = parse_log_line(&line);
            ids.push_str(id);
            ends.push(ids.len());
            timestamps.push(timestamp);
            amounts.push(amount);
        }
        if timestamps.is_empty() {
            break;
        }
        rows += timestamps.len() as u64;
        let id = |i: usize| &ids[if i == 0 { 0 } else { ends[i - 1] }..ends[i]];
        summary.push(id, &timestamps, &amounts).unwrap();
    }
    let customers = summary.customers();
    let summaries = summary.finish().unwrap();
    let summarized = start.elapsed().as_secs_f64();
    println!(
        r#"{{"step": "rfm_chunked", "rows": {rows}, "chunk_rows": {chunk_rows}, "customers": {customers}, "seconds": {summarized:.2}, "peak_rss_mib": {:.0}}}"#,
        peak_rss_mib()
    );
    // Days to weeks, as the summaries the other measurements fit.
    let histories = Histories::compress((0..summaries.len()).map(|i| {
        (
            summaries.frequency[i],
            summaries.recency[i] / 7.0,
            summaries.t[i] / 7.0,
            1.0,
        )
    }));
    drop(summaries);
    let fitting = Instant::now();
    let (p, fit) = bgnbd::fit_histories(&histories, Variant::Bg, &AtomicBool::new(false)).unwrap();
    println!(
        r#"{{"step": "fit_after_chunks", "model": "bgnbd", "customers": {customers}, "rows_fitted": {}, "seconds": {:.2}, "params": {:?}, "converged": {}, "total_seconds": {:.2}, "peak_rss_mib": {:.0}}}"#,
        histories.len(),
        fitting.elapsed().as_secs_f64(),
        [p.r, p.alpha, p.a, p.b],
        fit.converged,
        start.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
}

/// `c1,2024-01-31,12.5` or `c1,2024-01-31T12:34:56Z,12.5`: (id, µs since the epoch, amount).
fn parse_log_line(line: &str) -> (&str, i64, f64) {
    let mut f = line.split(',');
    let id = f.next().unwrap();
    let date = f.next().unwrap();
    let (y, m, d) = (
        date[0..4].parse().unwrap(),
        date[5..7].parse().unwrap(),
        date[8..10].parse().unwrap(),
    );
    let seconds: i64 = date.get(11..19).map_or(0, |time| {
        time.split(':')
            .map(|n| n.parse::<i64>().unwrap())
            .fold(0, |total, n| total * 60 + n)
    });
    (
        id,
        days_from_civil(y, m, d) * MICROS_PER_DAY + seconds * 1_000_000,
        f.next().unwrap().parse().unwrap(),
    )
}

fn summarize(path: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let rows: Vec<(&str, i64, f64)> = text.lines().skip(1).map(parse_log_line).collect();
    let end = rows.iter().map(|r| r.1).max().unwrap();
    let timestamps: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let amounts: Vec<f64> = rows.iter().map(|r| r.2).collect();
    let (seconds, customers) = median_of_3(|| {
        rfm::summarize(
            |i| rows[i].0,
            &timestamps,
            &amounts,
            TimeUnit::Day,
            end,
            None,
        )
        .unwrap()
        .len()
    });
    println!(
        r#"{{"step": "rfm", "rows": {}, "customers": {customers}, "seconds": {seconds:.3}, "peak_rss_mib": {:.0}}}"#,
        rows.len(),
        peak_rss_mib()
    );
}

/// The machine's limits that bound a likelihood pass: memory bandwidth reading a column far
/// larger than the caches (one core, then all), and the throughput of `ln` and `exp` on data in
/// L1, libm's against the vectorized ones the fits use.
fn limits() {
    use rayon::prelude::*;
    let column: Vec<f64> = (0..64 << 20).map(|i| 1.0 + (i % 1000) as f64).collect();
    let bytes = (column.len() * 8) as f64;
    let (one, _) = median_of_3(|| std::hint::black_box(sum_lanes(&column)));
    let (all, _) = median_of_3(|| {
        let sums: Vec<f64> = column.par_chunks(1 << 20).map(sum_lanes).collect();
        std::hint::black_box(sums)
    });
    println!(
        r#"{{"step": "memory", "bytes": {bytes}, "one_core_gb_per_s": {:.1}, "all_cores_gb_per_s": {:.1}}}"#,
        bytes / one / 1e9,
        bytes / all / 1e9
    );
    let inputs: Vec<f64> = (0..4096).map(|i| 0.5 + i as f64 * 0.37).collect();
    let small: Vec<f64> = (0..4096).map(|i| -20.0 + i as f64 * 0.005).collect();
    let rounds = 2000;
    type Kernel = fn(&[f64], &mut [f64]);
    let kernels: [(&str, &[f64], Kernel); 4] = [
        ("libm_ln", &inputs, |x, out| {
            out.iter_mut().zip(x).for_each(|(o, x)| *o = x.ln())
        }),
        ("vmath_ln", &inputs, vmath_ln),
        ("libm_exp", &small, |x, out| {
            out.iter_mut().zip(x).for_each(|(o, x)| *o = x.exp())
        }),
        ("vmath_exp", &small, vmath_exp),
    ];
    for (name, x, kernel) in kernels {
        let mut out = vec![0.0; x.len()];
        let (one, _) = median_of_3(|| {
            for _ in 0..rounds {
                kernel(std::hint::black_box(x), &mut out);
            }
        });
        // Every core at once, each on its own copy: what a parallel pass can get.
        let threads = rayon::current_num_threads();
        let (all, _) = median_of_3(|| {
            (0..threads).into_par_iter().for_each(|_| {
                let mut out = vec![0.0; x.len()];
                for _ in 0..rounds {
                    kernel(std::hint::black_box(x), &mut out);
                }
            })
        });
        let values = (rounds * x.len()) as f64;
        println!(
            r#"{{"step": "throughput", "function": "{name}", "ns_per_value_one_core": {:.2}, "ns_per_value_all_cores": {:.2}}}"#,
            one * 1e9 / values,
            all * 1e9 / (values * threads as f64)
        );
    }
    parse_throughput();
}

/// Decimal text to f64 at the standard library's speed (the CSV readers' per-cell floor).
fn parse_throughput() {
    let text: Vec<String> = (0..1_000_000)
        .map(|i| format!("{:.4}", 1.0 + (i % 9973) as f64 * 0.0137))
        .collect();
    let (seconds, _) = median_of_3(|| {
        let total: f64 = text.iter().map(|t| t.parse::<f64>().unwrap_or(0.0)).sum();
        std::hint::black_box(total)
    });
    println!(
        r#"{{"step": "throughput", "function": "parse_f64", "ns_per_value_one_core": {:.2}}}"#,
        seconds * 1e9 / text.len() as f64
    );
}

fn sum_lanes(column: &[f64]) -> f64 {
    let mut lanes = [0.0; 8];
    for chunk in column.chunks_exact(8) {
        for l in 0..8 {
            lanes[l] += chunk[l];
        }
    }
    lanes.iter().sum()
}

#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn vmath_ln(x: &[f64], out: &mut [f64]) {
    out.iter_mut()
        .zip(x)
        .for_each(|(o, x)| *o = mittari_models::vmath::ln(*x));
}

#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn vmath_exp(x: &[f64], out: &mut [f64]) {
    out.iter_mut()
        .zip(x)
        .for_each(|(o, x)| *o = mittari_models::vmath::exp(*x));
}
