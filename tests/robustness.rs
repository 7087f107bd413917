#![allow(clippy::unwrap_used, clippy::expect_used)]
//! No request takes the server down: extreme but well-typed inputs for every bundled metric
//! (generated from its descriptor by `mittari_engine::probe`), sent to a real server whose
//! address space is limited, must each come back as a result or INVALID_ARGUMENT, in bounded
//! time, with the server still serving.

use std::time::{Duration, Instant};

use mittari_e2e::{BUNDLED_METRICS, Server, bundled_plugins, target_dir};
use mittari_engine::{Engine, EngineConfig, ParamValue};
use mittari_proto::v1 as pb;
use mittari_server::convert;
use tonic::Code;

/// The server may use this much address space; the worst requests of the original probe asked
/// for 5 GB to 48 GB.
const ADDRESS_SPACE: u64 = 3 << 30;
/// Generated requests per metric.
const CASES_PER_METRIC: usize = 150;
/// No single request may take longer than this (debug build, two cores).
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

fn bundled_engine() -> Engine {
    let libraries = bundled_plugins()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    Engine::load(&EngineConfig {
        plugin_dir: target_dir(),
        extra_plugin_dirs: Vec::new(),
        libraries: Some(libraries),
        allow_libraries_outside_dir: false,
        enabled_metrics: None,
        metric_choices: Default::default(),
        metric_defaults: Default::default(),
        max_concurrent_computations: 1,
        max_queued_computations: 1,
        light_request_max_rows: 0,
        max_groups: 1,
        max_rows: 1,
        max_string_bytes: 1,
    })
    .expect("load the bundled plugins")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_inputs_get_a_result_or_invalid_argument() {
    let plugins = bundled_plugins();
    let plugins: Vec<(&str, &str)> = plugins
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut server = Server::start_limited(&plugins, &[], Some(ADDRESS_SPACE));
    let mut client = server.client().await.max_decoding_message_size(64 << 20);
    let engine = bundled_engine();
    let mut failures = Vec::new();
    for metric in BUNDLED_METRICS {
        let descriptor = engine.describe(metric).unwrap();
        for case in mittari_engine::probe::extreme_cases(descriptor, 20261123, CASES_PER_METRIC) {
            let mut request = tonic::Request::new(pb::ComputeRequest {
                metric: metric.to_string(),
                parameters: case
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), convert::value_to_proto(v)))
                    .collect(),
                input: Some(convert::batch_to_table(&case.input)),
                group_by: case.group_by.clone(),
                ..Default::default()
            });
            request.set_timeout(REQUEST_DEADLINE);
            let started = Instant::now();
            let outcome = client.compute(request).await;
            let elapsed = started.elapsed();
            match outcome {
                Ok(_) => {}
                Err(status) if status.code() == Code::InvalidArgument => {}
                Err(status) => {
                    failures.push(format!(
                        "{}: {:?} after {elapsed:.1?}: {}",
                        case.label,
                        status.code(),
                        status.message().chars().take(300).collect::<String>()
                    ));
                    if !server.is_running() {
                        panic!(
                            "the server died; failures so far:\n{}\nits log ends:\n{}",
                            failures.join("\n"),
                            tail(&server.logs())
                        );
                    }
                    if status.code() == Code::Unavailable {
                        client = server.client().await.max_decoding_message_size(64 << 20);
                    }
                }
            }
        }
    }
    assert!(server.is_running());
    assert!(
        failures.is_empty(),
        "{} generated requests failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn tail(logs: &[String]) -> String {
    logs[logs.len().saturating_sub(10)..].join("\n")
}

fn column(name: &str, values: pb::column::Values) -> pb::Column {
    pb::Column {
        name: name.to_owned(),
        values: Some(values),
        null_mask: Vec::new(),
    }
}

fn ints(name: &str, values: &[i64]) -> pb::Column {
    let values = pb::Int64Values {
        values: values.to_vec(),
    };
    column(name, pb::column::Values::Int64Values(values))
}

fn doubles(name: &str, values: &[f64]) -> pb::Column {
    let values = pb::DoubleValues {
        values: values.to_vec(),
    };
    column(name, pb::column::Values::DoubleValues(values))
}

fn timestamps(name: &str, values: &[i64]) -> pb::Column {
    let values = pb::Int64Values {
        values: values.to_vec(),
    };
    column(name, pb::column::Values::TimestampValues(values))
}

fn strings(name: &str, values: &[&str]) -> pb::Column {
    let values = pb::StringValues {
        values: values.iter().map(|s| s.to_string()).collect(),
    };
    column(name, pb::column::Values::StringValues(values))
}

const MONTH: i64 = 30 * 86_400 * 1_000_000;

/// (metric, input columns, parameters, the field the INVALID_ARGUMENT must name).
type ProbeRequest = (
    &'static str,
    Vec<pb::Column>,
    Vec<(&'static str, pb::Value)>,
    &'static str,
);

/// The requests of the reliability probe that crashed the server, exhausted its memory or
/// burned its CPU: each is now a quick INVALID_ARGUMENT naming the value at fault, on a server
/// limited to a fraction of the memory they used to take.
#[tokio::test]
async fn the_probes_crashing_requests_are_invalid_arguments() {
    let plugins = bundled_plugins();
    let plugins: Vec<(&str, &str)> = plugins
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut server = Server::start_limited(&plugins, &[], Some(ADDRESS_SPACE));
    let mut client = server.client().await;
    let ids: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let near_min: Vec<i64> = (0..16).map(|i| i64::MIN + i * MONTH).collect();
    let bgbb_rows = 10;
    let cases: Vec<ProbeRequest> = vec![
        (
            "retention_forecast",
            vec![
                ints("period", &[0, 2_000_000_000]),
                ints("active", &[100, 50]),
            ],
            vec![],
            "input.period",
        ),
        (
            "retention_forecast",
            vec![ints("period", &[0, i64::MAX]), ints("active", &[100, 50])],
            vec![],
            "input.period",
        ),
        (
            "retention",
            vec![strings("customer_id", &ids), timestamps("start", &near_min)],
            vec![
                (
                    "period_start",
                    convert::value_to_proto(&ParamValue::Timestamp(0)),
                ),
                (
                    "period_end",
                    convert::value_to_proto(&ParamValue::Timestamp(MONTH)),
                ),
            ],
            "input.start[0]",
        ),
        (
            "retention",
            vec![
                strings("customer_id", &["a", "b"]),
                timestamps("start", &[0, 2 * MONTH]),
            ],
            vec![
                (
                    "period_start",
                    convert::value_to_proto(&ParamValue::Timestamp(MONTH)),
                ),
                (
                    "period_end",
                    convert::value_to_proto(&ParamValue::Timestamp(i64::MAX)),
                ),
            ],
            "parameters.period_end",
        ),
        (
            "clv",
            vec![
                doubles("frequency", &vec![3.0; bgbb_rows]),
                doubles(
                    "recency",
                    &(0..bgbb_rows).map(|i| 5.0 + i as f64).collect::<Vec<_>>(),
                ),
                doubles(
                    "n_periods",
                    &(0..bgbb_rows)
                        .map(|i| 99_990.0 + i as f64)
                        .collect::<Vec<_>>(),
                ),
            ],
            vec![(
                "model",
                convert::value_to_proto(&ParamValue::String("bgbb".into())),
            )],
            "input.n_periods",
        ),
        (
            "price_gap",
            vec![
                doubles("quantity", &[1.0, 2.0]),
                doubles("target_price", &[1e308, 1e308]),
                doubles("realized_price", &[1.0, 1.0]),
            ],
            vec![],
            "input.target_price[0]",
        ),
        (
            "aov",
            vec![
                strings("customer_id", &["a", "b"]),
                timestamps("timestamp", &[0, 0]),
                doubles("amount", &[1e308, 1e308]),
            ],
            vec![],
            "input.amount[0]",
        ),
        (
            "clv",
            vec![
                strings("customer_id", &["a", "a", "b"]),
                timestamps("timestamp", &[i64::MIN, 0, i64::MAX]),
                doubles("amount", &[10.0, 20.0, 30.0]),
            ],
            vec![
                (
                    "model",
                    convert::value_to_proto(&ParamValue::String("simple".into())),
                ),
                (
                    "lifespan",
                    convert::value_to_proto(&ParamValue::Double(3.0)),
                ),
            ],
            "input.timestamp[0]",
        ),
    ];
    for (metric, columns, parameters, field) in cases {
        let mut request = tonic::Request::new(pb::ComputeRequest {
            metric: metric.to_owned(),
            parameters: parameters
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            input: Some(pb::Table {
                columns,
                ..Default::default()
            }),
            group_by: Vec::new(),
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(10));
        let started = Instant::now();
        let status = client.compute(request).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{metric} {field}: {}",
            status.message()
        );
        let details = tonic_types::StatusExt::get_details_bad_request(&status)
            .unwrap_or_else(|| panic!("{metric}: no BadRequest in {status:?}"));
        assert_eq!(
            details.field_violations[0].field,
            field,
            "{}",
            status.message()
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{metric} {field} took {:?}",
            started.elapsed()
        );
        assert!(server.is_running(), "{metric} {field} stopped the server");
    }
}

/// A Pareto/NBD fit whose client's deadline passes stops using the CPU within a second,
/// measured on the server process's CPU time: the cancellation flag reaches the optimizer.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_model_fit_stops_when_its_client_gives_up() {
    let plugins = bundled_plugins();
    let plugins: Vec<(&str, &str)> = plugins
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let server = Server::start_limited(&plugins, &[], Some(ADDRESS_SPACE));
    let mut client = server.client().await.max_encoding_message_size(64 << 20);
    // 20 000 customers with distinct fractional histories: many seconds of fitting in a debug
    // build, a fraction of a second per likelihood evaluation.
    let customers = 20_000;
    let frequency: Vec<f64> = (0..customers).map(|i| (i % 7) as f64).collect();
    let recency: Vec<f64> = (0..customers)
        .map(|i| {
            if i % 7 == 0 {
                0.0
            } else {
                1.0 + (i % 997) as f64 * 0.031
            }
        })
        .collect();
    let t: Vec<f64> = recency
        .iter()
        .enumerate()
        .map(|(i, r)| r + 0.5 + (i % 1013) as f64 * 0.017)
        .collect();
    let mut request = tonic::Request::new(pb::ComputeRequest {
        metric: "clv".to_owned(),
        parameters: [(
            "model".to_owned(),
            convert::value_to_proto(&ParamValue::String("pareto_nbd".into())),
        )]
        .into(),
        input: Some(pb::Table {
            columns: vec![
                doubles("frequency", &frequency),
                doubles("recency", &recency),
                doubles("T", &t),
            ],
            ..Default::default()
        }),
        group_by: Vec::new(),
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(1500));
    let before = server.cpu_seconds();
    let status = client.compute(request).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    let during = server.cpu_seconds() - before;
    assert!(
        during > 0.5,
        "the fit used only {during:.2} CPU-s before the deadline"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = server.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.cpu_seconds() - settled;
    assert!(
        after < 0.2,
        "the server used {after:.2} CPU-s in the 2 s after the fit's client gave up; its log ends:\n{}",
        tail(&server.logs())
    );
    server.wait_for_log("the client gave up; cancelling its computation");
}

/// A server killed (SIGKILL) while fits are being written leaves no half model: every version
/// in the store reads back whole (its state's SHA-256 checked), versions are never reused after
/// the crash, and a new server on the same store scores with the latest. Three rounds of four
/// clients fitting in a loop, each killed at a different moment of the stream of writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_write_leaves_no_half_model() {
    use mittari_e2e::{fit_stream, standard_plugins, summary_table, text};
    use pb::model_service_client::ModelServiceClient;
    let store_dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", store_dir.path().join("models.db").display());
    let plugins = standard_plugins();
    let plugins: Vec<(&str, &str)> = plugins
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let env = [("MITTARI__MODELS__STORE", url.as_str())];
    let table = summary_table(200);
    let params: std::collections::HashMap<String, pb::Value> =
        [("model".to_owned(), text("bgnbd"))].into();
    let mut fitted_before = 0;
    for round in 0..3u64 {
        let server = Server::start_with(&plugins, &env);
        let channel = server.channel().await;
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let mut client = ModelServiceClient::new(channel.clone());
                let messages = fit_stream("clv-eu", &table, &params, 100);
                tokio::spawn(async move {
                    let mut versions = Vec::new();
                    loop {
                        match client.fit(tokio_stream::iter(messages.clone())).await {
                            Ok(response) => {
                                versions.push(response.into_inner().model.unwrap().version)
                            }
                            Err(_) => return versions,
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300 + 170 * round)).await;
        drop(server); // SIGKILL, writes in flight
        let mut versions: Vec<u64> = Vec::new();
        for client in clients {
            versions.extend(client.await.unwrap());
        }
        assert!(!versions.is_empty(), "round {round}: no fit finished");
        // Versions acknowledged in this round are new: none reused from before the crash.
        assert!(
            versions.iter().all(|&v| v > fitted_before),
            "round {round}: {versions:?} after {fitted_before}"
        );
        fitted_before = fitted_before.max(*versions.iter().max().unwrap());
    }
    let store = mittari_store::open(&url).unwrap();
    let listed = store.list(Some("clv-eu")).unwrap();
    assert!(listed.len() as u64 >= 3, "{listed:?}");
    for model in &listed {
        let stored = store
            .get(&mittari_store::Reference::Version(
                model.name.clone(),
                model.version,
            ))
            .unwrap_or_else(|e| panic!("{}@{}: {e}", model.name, model.version));
        let state: serde_json::Value = serde_json::from_slice(&stored.model.state).unwrap();
        assert_eq!(state["metric"], "clv");
    }
    // Every acknowledged fit is there (durable once acknowledged).
    let latest = listed.iter().map(|m| m.version).max().unwrap();
    assert!(latest >= fitted_before, "{latest} < {fitted_before}");
    let server = Server::start_with(&plugins, &env);
    let mut client = ModelServiceClient::new(server.channel().await);
    let scored = client
        .score(pb::ScoreRequest {
            model: "clv-eu".into(),
            input: Some(table.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let warning = &scored.results.unwrap().warnings[0].message;
    assert!(warning.contains(&format!("clv-eu@{latest}")), "{warning}");
}
