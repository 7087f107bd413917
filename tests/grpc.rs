//! The gRPC API end to end: the real server binary, real plugin libraries, a real client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use mittari_e2e::{
    Server, fit_stream, standard_plugins, start_expecting_failure, summary_table, text,
};

/// `start_with` for owned plugin pairs.
fn start_with(plugins: &[(String, String)], env: &[(&str, &str)]) -> Server {
    let plugins: Vec<(&str, &str)> = plugins
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    Server::start_with(&plugins, env)
}
use mittari_proto::v1 as pb;
use pb::column::Values;
use tonic::Code;
use tonic_types::StatusExt;

fn int_column(name: &str, values: &[i64]) -> pb::Column {
    pb::Column {
        name: name.into(),
        values: Some(Values::Int64Values(pb::Int64Values {
            values: values.to_vec(),
        })),
        null_mask: vec![],
    }
}

fn string_column(name: &str, values: &[&str]) -> pb::Column {
    pb::Column {
        name: name.into(),
        values: Some(Values::StringValues(pb::StringValues {
            values: values.iter().map(|s| (*s).into()).collect(),
        })),
        null_mask: vec![],
    }
}

fn double_column(name: &str, values: &[f64]) -> pb::Column {
    pb::Column {
        name: name.into(),
        values: Some(Values::DoubleValues(pb::DoubleValues {
            values: values.to_vec(),
        })),
        null_mask: vec![],
    }
}

/// 4 promoters, 2 passives, 4 detractors: nps 0, se 100 * sqrt(0.08). North: 3 promoters and
/// 2 passives (nps 60); south: 1 promoter, 4 detractors (nps -60).
fn survey() -> pb::Table {
    pb::Table {
        columns: vec![
            int_column("score", &[10, 9, 9, 8, 7, 6, 5, 3, 10, 0]),
            string_column(
                "region",
                &[
                    "north", "north", "north", "north", "north", "south", "south", "south",
                    "south", "south",
                ],
            ),
        ],
        ..Default::default()
    }
}

fn request(metric: &str, input: pb::Table) -> pb::ComputeRequest {
    pb::ComputeRequest {
        metric: metric.into(),
        parameters: HashMap::new(),
        input: Some(input),
        group_by: vec![],
        ..Default::default()
    }
}

fn scalar(results: &pb::Results, name: &str) -> f64 {
    results
        .scalars
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.value)
        .unwrap_or_else(|| panic!("no scalar {name}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn lists_and_describes_metrics() {
    let server = Server::start();
    let mut client = server.client().await;
    let list = client
        .list_metrics(pb::ListMetricsRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = list.metrics.iter().map(|m| m.name.as_str()).collect();
    let mut expected = mittari_e2e::BUNDLED_METRICS.to_vec();
    expected.extend([
        "test_aborts",
        "test_leaks_path",
        "test_nondeterministic",
        "test_panics",
        "test_returns_nan",
        "test_run_on",
        "test_sleeps",
        "test_undeclared_output",
        "test_wrong_row",
    ]);
    assert_eq!(names, expected);
    let nps_summary = &list
        .metrics
        .iter()
        .find(|m| m.name == "nps")
        .unwrap()
        .summary;
    assert!(nps_summary.contains("Net Promoter Score"));

    let nps = client
        .describe_metric(pb::DescribeMetricRequest { name: "nps".into() })
        .await
        .unwrap()
        .into_inner()
        .metric
        .unwrap();
    // score, then the optional survey weight and answer time.
    let inputs: Vec<(&str, bool)> = nps
        .inputs
        .iter()
        .map(|c| (c.name.as_str(), c.required))
        .collect();
    assert_eq!(
        inputs,
        [("score", true), ("weight", false), ("timestamp", false)]
    );
    let score = &nps.inputs[0];
    assert_eq!(
        (score.name.as_str(), score.r#type(), score.required),
        ("score", pb::DataType::Int64, true)
    );
    assert_eq!(
        score.range,
        Some(pb::Range {
            min: Some(0.0),
            max: Some(10.0)
        })
    );
    let confidence = &nps.parameters[0];
    assert_eq!(confidence.name, "confidence");
    assert_eq!(
        confidence.default_value.as_ref().unwrap().kind,
        Some(pb::value::Kind::DoubleValue(0.95))
    );
    assert!(
        nps.outputs
            .iter()
            .any(|o| o.name == "standard_error" && o.unit == "points")
    );
    assert!(nps.library.contains("mittari_plugin_nps"));
    // A table's columns come with their units (clv's customers table declares them).
    let clv = client
        .describe_metric(pb::DescribeMetricRequest { name: "clv".into() })
        .await
        .unwrap()
        .into_inner()
        .metric
        .unwrap();
    let customers = clv.tables.iter().find(|t| t.name == "customers").unwrap();
    let unit_of = |name: &str| {
        customers
            .columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.unit.as_str())
    };
    assert_eq!(unit_of("p_alive"), Some("probability"));
    assert_eq!(unit_of("p_alive_lower"), Some("probability"));
    assert_eq!(unit_of("purchases_upper"), Some("transactions"));
    assert_eq!(unit_of("residual_value"), Some("currency"));

    let missing = client
        .describe_metric(pb::DescribeMetricRequest { name: "npx".into() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(
        missing.message().contains("unknown metric \"npx\""),
        "{}",
        missing.message()
    );
}

#[tokio::test]
async fn computes_nps_whole_and_grouped() {
    let server = Server::start();
    let mut client = server.client().await;
    let response = client
        .compute(request("nps", survey()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.rows, 10);
    let results = response.results.unwrap();
    assert!(close(scalar(&results, "nps"), 0.0));
    assert!(close(
        scalar(&results, "standard_error"),
        100.0 * 0.08f64.sqrt()
    ));
    assert_eq!(scalar(&results, "promoters"), 4.0);
    let ci = results.scalars[0].confidence_interval.unwrap();
    assert_eq!(ci.level, 0.95);
    // The adjusted Wald interval: 4.75 promoters and 4.75 detractors of 13 (docs/metrics/nps.md).
    assert!((ci.upper - 1.959963984540054 * 100.0 * (9.5f64 / 169.0).sqrt()).abs() < 1e-6);
    assert_eq!(results.warnings[0].code, "small_sample");

    let mut grouped = request("nps", survey());
    grouped.group_by = vec!["region".into()];
    let response = client.compute(grouped).await.unwrap().into_inner();
    assert!(response.results.is_none());
    let grouped = response.grouped.unwrap();
    let keys = match grouped.keys[0].values.as_ref().unwrap() {
        pb::column::Values::StringValues(v) => v.values.clone(),
        other => panic!("unexpected keys {other:?}"),
    };
    assert_eq!(grouped.keys[0].name, "region");
    assert_eq!(keys, ["north", "south"]);
    assert_eq!(grouped.rows, [5, 5]);
    let nps = grouped.scalars.iter().find(|c| c.name == "nps").unwrap();
    assert_eq!(
        (nps.values.as_slice(), nps.unit.as_str()),
        (&[60.0, -60.0][..], "points")
    );
    assert!(nps.undefined.is_empty());
    let intervals = nps.confidence_intervals.as_ref().unwrap();
    assert_eq!(intervals.level, [0.95, 0.95]);
    // Both groups have 5 responses, under the small-sample threshold: one warning, two groups.
    assert_eq!(grouped.warnings.len(), 1);
    assert_eq!(grouped.warnings[0].groups, [0, 1]);
    assert_eq!(
        grouped.warnings[0].warning.as_ref().unwrap().code,
        "small_sample"
    );
}

#[tokio::test]
async fn compute_stream_matches_unary() {
    use pb::compute_stream_request::Message;
    let server = Server::start();
    let mut client = server.client().await;
    let mut unary = request("nps", survey());
    unary.group_by = vec!["region".into()];
    let expected = client.compute(unary).await.unwrap().into_inner();

    let header = pb::ComputeStreamHeader {
        metric: "nps".into(),
        parameters: HashMap::new(),
        group_by: vec!["region".into()],
        schema: vec![
            pb::ColumnSchema {
                name: "score".into(),
                r#type: pb::DataType::Int64.into(),
            },
            pb::ColumnSchema {
                name: "region".into(),
                r#type: pb::DataType::String.into(),
            },
        ],
        ..Default::default()
    };
    let table = survey();
    let chunk = |from: usize, to: usize| {
        let Some(Values::Int64Values(scores)) = &table.columns[0].values else {
            unreachable!()
        };
        let Some(Values::StringValues(regions)) = &table.columns[1].values else {
            unreachable!()
        };
        let regions: Vec<&str> = regions.values[from..to]
            .iter()
            .map(String::as_str)
            .collect();
        pb::Table {
            columns: vec![
                int_column("score", &scores.values[from..to]),
                string_column("region", &regions),
            ],
            ..Default::default()
        }
    };
    let messages = vec![
        pb::ComputeStreamRequest {
            message: Some(Message::Header(header.clone())),
        },
        pb::ComputeStreamRequest {
            message: Some(Message::Chunk(chunk(0, 3))),
        },
        pb::ComputeStreamRequest {
            message: Some(Message::Chunk(chunk(3, 7))),
        },
        pb::ComputeStreamRequest {
            message: Some(Message::Chunk(chunk(7, 10))),
        },
    ];
    let streamed = client
        .compute_stream(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(streamed, expected);

    // A stream that does not start with a header, and a chunk with other columns, are refused.
    let no_header = vec![pb::ComputeStreamRequest {
        message: Some(Message::Chunk(chunk(0, 3))),
    }];
    let error = client
        .compute_stream(tokio_stream::iter(no_header))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let wrong_columns = vec![
        pb::ComputeStreamRequest {
            message: Some(Message::Header(header)),
        },
        pb::ComputeStreamRequest {
            message: Some(Message::Chunk(pb::Table {
                columns: vec![int_column("score", &[1])],
                ..Default::default()
            })),
        },
    ];
    let error = client
        .compute_stream(tokio_stream::iter(wrong_columns))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("chunk 1 has columns [score]"),
        "{}",
        error.message()
    );
}

/// A request, the expected code, and for INVALID_ARGUMENT the expected first field violation
/// path and a fragment of its description.
type BadRequestCase = (
    pb::ComputeRequest,
    Code,
    Option<(&'static str, &'static str)>,
);

#[tokio::test]
async fn bad_requests_get_precise_statuses() {
    let server = Server::start();
    let mut client = server.client().await;
    let with_param = |name: &str, value: pb::value::Kind| {
        let mut r = request("nps", survey());
        r.parameters
            .insert(name.into(), pb::Value { kind: Some(value) });
        r
    };
    let mut grouped_by_missing = request("nps", survey());
    grouped_by_missing.group_by = vec!["country".into()];
    let cases: Vec<BadRequestCase> = vec![
        (request("npx", survey()), Code::NotFound, None),
        (
            request(
                "nps",
                pb::Table {
                    columns: vec![int_column("score", &[10, 11, 3])],
                    ..Default::default()
                },
            ),
            Code::InvalidArgument,
            Some((
                "input.score[1]",
                "score 11 at row 1 is outside the allowed range 0..=10",
            )),
        ),
        (
            request(
                "nps",
                pb::Table {
                    columns: vec![int_column("rating", &[10])],
                    ..Default::default()
                },
            ),
            Code::InvalidArgument,
            Some(("input.score", "required column score (int64) is missing")),
        ),
        (
            request(
                "nps",
                pb::Table {
                    columns: vec![string_column("score", &["10"])],
                    ..Default::default()
                },
            ),
            Code::InvalidArgument,
            Some(("input.score", "column score must be int64, got string")),
        ),
        (
            request(
                "nps",
                pb::Table {
                    columns: vec![pb::Column {
                        null_mask: vec![0b10],
                        ..int_column("score", &[10, 0])
                    }],
                    ..Default::default()
                },
            ),
            Code::InvalidArgument,
            Some(("input.score[1]", "row 1 is empty")),
        ),
        (
            request(
                "nps",
                pb::Table {
                    columns: vec![int_column("score", &[])],
                    ..Default::default()
                },
            ),
            Code::InvalidArgument,
            Some(("input", "no responses")),
        ),
        (
            with_param("confidence", pb::value::Kind::DoubleValue(1.5)),
            Code::InvalidArgument,
            Some(("parameters.confidence", "outside the allowed range")),
        ),
        (
            with_param("confidence", pb::value::Kind::StringValue("high".into())),
            Code::InvalidArgument,
            Some(("parameters.confidence", "expected double, got string")),
        ),
        (
            with_param("colour", pb::value::Kind::BoolValue(true)),
            Code::InvalidArgument,
            Some((
                "parameters.colour",
                "unknown parameter colour; metric nps takes: confidence",
            )),
        ),
        (
            grouped_by_missing,
            Code::InvalidArgument,
            Some((
                "group_by.country",
                "column country is not in the input; the input has: score, region",
            )),
        ),
        (
            request(
                "test_panics",
                pb::Table {
                    columns: vec![int_column("value", &[1])],
                    ..Default::default()
                },
            ),
            Code::Internal,
            None,
        ),
        (
            request(
                "test_returns_nan",
                pb::Table {
                    columns: vec![int_column("value", &[1])],
                    ..Default::default()
                },
            ),
            Code::Internal,
            None,
        ),
    ];
    for (request, code, violation) in cases {
        let metric = request.metric.clone();
        let status = client.compute(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{metric}: {}", status.message());
        assert!(
            status
                .message()
                .chars()
                .next()
                .is_some_and(|c| !c.is_uppercase()),
            "message not lowercase: {}",
            status.message()
        );
        if let Some((field, fragment)) = violation {
            let details = status.get_error_details();
            let bad_request = details
                .bad_request()
                .unwrap_or_else(|| panic!("{metric}: no BadRequest in {status:?}"));
            let first = &bad_request.field_violations[0];
            assert_eq!(first.field, field, "{}", status.message());
            assert!(
                first.description.contains(fragment),
                "{:?} lacks {fragment:?}",
                first.description
            );
            let info = details.error_info().expect("ErrorInfo");
            assert_eq!(info.domain, "mittari.v1");
            assert_eq!(info.metadata.get("field").map(String::as_str), Some(field));
        }
    }
}

#[tokio::test]
async fn a_row_error_inside_a_group_names_the_request_row() {
    let server = Server::start();
    let mut client = server.client().await;
    // Rows 0..=2 are group "a", row 3 is group "b" and has no score: the violation must name
    // row 3 of the request, not row 0 of its group.
    let mut r = request(
        "nps",
        pb::Table {
            columns: vec![
                pb::Column {
                    null_mask: vec![0b1000],
                    ..int_column("score", &[10, 9, 8, 0])
                },
                string_column("segment", &["a", "a", "a", "b"]),
            ],
            ..Default::default()
        },
    );
    r.group_by = vec!["segment".into()];
    let status = client.compute(r).await.unwrap_err();
    assert_eq!(
        status.get_details_bad_request().unwrap().field_violations[0].field,
        "input.score[3]"
    );
}

/// Logs are structured records free of client text: names that could forge a line or flood
/// one are refused without being echoed, cell values stay out of info-level lines, and a
/// plugin's panic is a record with its location, not raw text on standard error.
#[tokio::test]
async fn logs_stay_structured_and_free_of_client_text() {
    let server = start_with(&standard_plugins(), &[("RUST_LOG", "info")]);
    let mut client = server.client().await.max_encoding_message_size(64 << 20);
    let forged = "nps\n{\"level\":\"ERROR\",\"fields\":{\"message\":\"forged\"}}";
    let huge = "m".repeat(10 << 20);
    for metric in [forged, huge.as_str()] {
        let status = client.compute(request(metric, survey())).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().len() < 1000,
            "{} bytes",
            status.message().len()
        );
    }
    // A repeated customer id: the client is told which; the log says only where.
    let retention = pb::ComputeRequest {
        metric: "retention".into(),
        parameters: HashMap::from([
            (
                "period_start".to_owned(),
                pb::Value {
                    kind: Some(pb::value::Kind::TimestampValue(0)),
                },
            ),
            (
                "period_end".to_owned(),
                pb::Value {
                    kind: Some(pb::value::Kind::TimestampValue(86_400_000_000)),
                },
            ),
        ]),
        input: Some(pb::Table {
            columns: vec![
                string_column("customer_id", &["alice@example.com", "alice@example.com"]),
                pb::Column {
                    name: "start".into(),
                    values: Some(Values::TimestampValues(pb::Int64Values {
                        values: vec![0, 0],
                    })),
                    null_mask: vec![],
                },
            ],
            ..Default::default()
        }),
        group_by: vec![],
        ..Default::default()
    };
    let status = client.compute(retention).await.unwrap_err();
    assert!(
        status.message().contains("alice@example.com"),
        "{}",
        status.message()
    );
    let status = client
        .compute(request(
            "test_panics",
            pb::Table {
                columns: vec![int_column("value", &[1])],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert!(
        status.message().contains("misbehaving/src/lib.rs"),
        "{}",
        status.message()
    );
    let server = tokio::task::spawn_blocking(move || {
        server.wait_for_log("test_panics");
        server
    })
    .await
    .unwrap();
    let logs = server.logs();
    for line in &logs {
        let record: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON record: {line}"));
        assert_ne!(record["fields"]["message"], "forged", "{line}");
        assert!(line.len() < 4096, "a {} byte log line", line.len());
        assert!(!line.contains("alice@example.com"), "{line}");
    }
}

#[tokio::test]
async fn survives_a_panicking_plugin() {
    let mut server = Server::start();
    let mut client = server.client().await;
    for _ in 0..3 {
        let status = client
            .compute(request(
                "test_panics",
                pb::Table {
                    columns: vec![int_column("value", &[1])],
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Internal);
        assert!(
            status.message().contains("deliberate panic in test_panics"),
            "{}",
            status.message()
        );
    }
    let response = client
        .compute(request("nps", survey()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        scalar(response.results.as_ref().unwrap(), "responses"),
        10.0
    );
    assert!(server.is_running());
}

/// Plugins of ABI versions 1 and 2 (no `compute_groups`) and 4 (no fitted models) still load,
/// and group-by still works through them: the engine calls the first two once per group and
/// builds the same columns.
#[tokio::test]
async fn loads_and_groups_through_plugins_of_older_abis() {
    let server = Server::start_with(
        &[
            ("mittari_plugin_nps", "mittari_plugin_nps"),
            ("mittari_testplugin_abi_v1", "mittari_plugin_abi_v1"),
            ("mittari_testplugin_abi_v2", "mittari_plugin_abi_v2"),
            ("mittari_testplugin_abi_v4", "mittari_plugin_abi_v4"),
        ],
        &[],
    );
    let mut client = server.client().await;
    let table = || pb::Table {
        columns: vec![
            int_column("value", &[1, 2, 3]),
            pb::Column {
                name: "region".into(),
                values: Some(pb::column::Values::StringValues(pb::StringValues {
                    values: vec!["b".into(), "a".into(), "b".into()],
                })),
                null_mask: Vec::new(),
            },
        ],
        ..Default::default()
    };
    for metric in ["test_v1_rows", "test_v2_rows", "test_v4_rows"] {
        let response = client
            .compute(request(metric, table()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(scalar(response.results.as_ref().unwrap(), "rows"), 3.0);
        let mut grouped = request(metric, table());
        grouped.group_by = vec!["region".into()];
        let grouped = client
            .compute(grouped)
            .await
            .unwrap()
            .into_inner()
            .grouped
            .unwrap();
        assert_eq!(grouped.rows, [1, 2], "{metric}");
        let rows = grouped.scalars.iter().find(|c| c.name == "rows").unwrap();
        assert_eq!(rows.values, [1.0, 2.0], "{metric}");
    }
    let logs = server.logs().join("\n");
    for expected in [
        "plugin library of ABI version 1: its computations cannot be cancelled",
        "plugin library of ABI version 2: it runs once per group",
    ] {
        assert!(logs.contains(expected), "{expected}: {logs}");
    }
}

/// The grace period bounds the process's exit, even with a computation that ignores
/// cancellation (an ABI version-1 plugin) still running.
#[tokio::test]
async fn sigterm_exits_within_the_grace_period() {
    let server = Server::start_with(
        &[
            ("mittari_plugin_nps", "mittari_plugin_nps"),
            ("mittari_testplugin_abi_v1", "mittari_plugin_abi_v1"),
        ],
        &[("MITTARI__SERVER__SHUTDOWN_GRACE_SECONDS", "1")],
    );
    let mut client = server.client().await;
    let mut sleep = request(
        "test_v1_sleeps",
        pb::Table {
            columns: vec![int_column("value", &[1])],
            ..Default::default()
        },
    );
    sleep.parameters.insert(
        "millis".into(),
        pb::Value {
            kind: Some(pb::value::Kind::Int64Value(60_000)),
        },
    );
    let call = tokio::spawn(async move { client.compute(sleep).await });
    let (status, elapsed) = tokio::task::spawn_blocking(move || {
        server.wait_for_log("computing metric");
        let started = std::time::Instant::now();
        let status = server.terminate();
        (status, started.elapsed())
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        elapsed < Duration::from_secs(5),
        "the server took {elapsed:?} to exit with a 1 s grace period"
    );
    assert!(call.await.unwrap().is_err());
}

/// Idle sockets cannot lock clients out: beyond `max_connections` new ones are closed at
/// once, and silent ones are closed after the handshake timeout, after which clients get in.
#[tokio::test]
async fn a_flood_of_idle_connections_is_bounded_and_logged() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let server = start_with(
        &standard_plugins(),
        &[
            ("MITTARI__SERVER__MAX_CONNECTIONS", "16"),
            ("MITTARI__SERVER__HANDSHAKE_TIMEOUT_SECONDS", "1"),
        ],
    );
    let idle: Vec<std::net::TcpStream> = (0..64)
        .filter_map(|_| std::net::TcpStream::connect(server.addr).ok())
        .collect();
    assert!(idle.len() >= 16);
    let server = tokio::task::spawn_blocking(move || {
        server.wait_for_log("connection limit reached");
        server
    })
    .await
    .unwrap();
    // The idle sockets stay open on our side, but the server closed them after a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut health = HealthClient::new(server.channel().await);
    let response = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", server.logs().join("\n")))
        .into_inner();
    assert_eq!(response.status(), ServingStatus::Serving);
    drop(idle);
}

/// Damaged plugin files are refused by name before they are mapped, and replacing a loaded
/// library in place (`cp new.so plugins/`) does not touch the running server, which loaded a
/// private copy.
#[tokio::test]
async fn damaged_and_replaced_plugin_files_cannot_crash_the_server() {
    let nps = mittari_e2e::library("mittari_plugin_nps");
    let bytes = std::fs::read(&nps).unwrap();
    let server = Server::start_with(&[("mittari_plugin_nps", "mittari_plugin_nps")], &[]);
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let installed = server
        .plugin_dir()
        .join(format!("{prefix}mittari_plugin_nps{suffix}"));
    // Overwrite in place, as cp does: same inode, new contents (another plugin's library).
    std::fs::copy(mittari_e2e::library("mittari_plugin_csat"), &installed).unwrap();
    let mut client = server.client().await;
    let response = client.compute(request("nps", survey())).await.unwrap();
    assert_eq!(
        scalar(response.get_ref().results.as_ref().unwrap(), "nps"),
        0.0
    );
    drop(server);

    // Truncated copies of a real library are refused at load, by file, with the reason.
    let dir = tempfile::tempdir().unwrap();
    for (name, length) in [("tiny", 1024), ("half", bytes.len() / 2)] {
        std::fs::write(
            dir.path()
                .join(format!("{prefix}mittari_plugin_truncated_{name}{suffix}")),
            &bytes[..length],
        )
        .unwrap();
    }
    std::fs::write(
        dir.path()
            .join(format!("{prefix}mittari_plugin_nps{suffix}")),
        &bytes,
    )
    .unwrap();
    let server = Server::start_in(dir, &[]);
    let logs = server.logs().join("\n");
    for name in ["tiny", "half"] {
        assert!(
            logs.lines().any(|l| l.contains("refused plugin library")
                && l.contains(&format!("mittari_plugin_truncated_{name}"))
                && l.contains("truncated")),
            "{logs}"
        );
    }
    let mut client = server.client().await;
    assert!(client.compute(request("nps", survey())).await.is_ok());
}

#[test]
fn plugin_libraries_are_confined_to_the_plugin_directory() {
    let (status, stderr) = start_expecting_failure(
        &[("mittari_plugin_nps", "mittari_plugin_nps")],
        &[("MITTARI__PLUGINS__LIBRARIES", "../../usr/lib/libevil.so")],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("plugins.libraries") && stderr.contains("allow_libraries_outside_dir"),
        "{stderr}"
    );
}

/// Out of file descriptors, the accept loop backs off instead of spinning, says why, and
/// serves again once descriptors are free.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn running_out_of_file_descriptors_backs_off_and_recovers() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let server = Server::start_with_open_files(
        &[("mittari_plugin_nps", "mittari_plugin_nps")],
        &[("MITTARI__SERVER__HANDSHAKE_TIMEOUT_SECONDS", "1")],
        64,
    );
    let idle: Vec<std::net::TcpStream> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(server.addr).ok())
        .collect();
    let server = tokio::task::spawn_blocking(move || {
        server.wait_for_log("cannot accept connections; backing off");
        server
    })
    .await
    .unwrap();
    let before = server.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = server.cpu_seconds() - before;
    assert!(spent < 0.5, "the accept loop used {spent:.2} CPU-s in 2 s");
    drop(idle);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut health = HealthClient::new(server.channel().await);
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn refuses_bad_libraries_and_serves_the_rest() {
    let server = Server::start_with(
        &[
            ("mittari_plugin_nps", "mittari_plugin_nps"),
            ("mittari_testplugin_wrong_abi", "mittari_plugin_wrong_abi"),
            (
                "mittari_testplugin_not_a_plugin",
                "mittari_plugin_not_a_plugin",
            ),
        ],
        &[],
    );
    let mut client = server.client().await;
    let list = client
        .list_metrics(pb::ListMetricsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["nps"]
    );
    let logs = server.logs().join("\n");
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("refused plugin library"))
        .collect();
    assert_eq!(refused.len(), 2, "{logs}");
    assert!(
        refused
            .iter()
            .any(|l| l.contains("mittari_plugin_wrong_abi")
                && l.contains("plugin ABI version 9999 is not one this server loads")),
        "{logs}"
    );
    assert!(
        refused.iter().any(
            |l| l.contains("mittari_plugin_not_a_plugin") && l.contains("not a mittari plugin")
        ),
        "{logs}"
    );
}

#[tokio::test]
async fn health_and_reflection_v1_and_v1alpha() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let server = Server::start();
    let channel = server.channel().await;
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "mittari.v1.MetricService", "mittari.v1.ModelService"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }

    macro_rules! reflect {
        ($version:ident) => {{
            use tonic_reflection::pb::$version::ServerReflectionRequest;
            use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
            let mut client = ServerReflectionClient::new(channel.clone());
            let requests = vec![
                ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::ListServices(String::new())),
                },
                ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::FileContainingSymbol(
                        "mittari.v1.MetricService".into(),
                    )),
                },
            ];
            let mut responses = client
                .server_reflection_info(tokio_stream::iter(requests))
                .await
                .unwrap()
                .into_inner();
            let Some(MessageResponse::ListServicesResponse(list)) =
                responses.message().await.unwrap().unwrap().message_response
            else {
                panic!("expected a service list");
            };
            let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            for service in ["mittari.v1.MetricService", "mittari.v1.ModelService"] {
                assert!(names.contains(&service.to_owned()), "{names:?}");
            }
            assert!(
                names.contains(&"grpc.health.v1.Health".to_owned()),
                "{names:?}"
            );
            let Some(MessageResponse::FileDescriptorResponse(files)) =
                responses.message().await.unwrap().unwrap().message_response
            else {
                panic!("expected a file descriptor");
            };
            let file = <prost_types_like::FileDescriptorProto as prost::Message>::decode(
                files.file_descriptor_proto[0].as_slice(),
            )
            .unwrap();
            assert_eq!(file.package.as_deref(), Some("mittari.v1"));
        }};
    }
    reflect!(v1);
    reflect!(v1alpha);
}

/// Just the fields of `google.protobuf.FileDescriptorProto` the test reads.
mod prost_types_like {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct FileDescriptorProto {
        #[prost(string, optional, tag = "1")]
        pub(crate) name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub(crate) package: Option<String>,
    }
}

fn sleep_request(millis: i64) -> pb::ComputeRequest {
    let mut r = request(
        "test_sleeps",
        pb::Table {
            columns: vec![int_column("value", &[1, 2])],
            ..Default::default()
        },
    );
    r.parameters.insert(
        "millis".into(),
        pb::Value {
            kind: Some(pb::value::Kind::Int64Value(millis)),
        },
    );
    r
}

#[tokio::test]
async fn overload_is_resource_exhausted() {
    let server = start_with(
        &standard_plugins(),
        &[
            ("MITTARI__SERVER__MAX_CONCURRENT_COMPUTATIONS", "1"),
            ("MITTARI__SERVER__MAX_QUEUED_COMPUTATIONS", "1"),
        ],
    );
    let client = server.client().await;
    // One runs, one waits, the rest are refused at once.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.compute(sleep_request(1500)).await })
        })
        .collect();
    let mut codes = Vec::new();
    for call in calls {
        codes.push(match call.await.unwrap() {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        });
    }
    codes.sort_by_key(|c| *c as i32);
    assert_eq!(
        codes,
        [
            Code::Ok,
            Code::Ok,
            Code::ResourceExhausted,
            Code::ResourceExhausted
        ]
    );
}

#[tokio::test]
async fn deadlines_are_honoured() {
    let server = Server::start();
    let mut client = server.client().await;
    let mut request = tonic::Request::new(sleep_request(3000));
    request.set_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let status = client.compute(request).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_abandoned_computation_stops_and_frees_its_slot() {
    let server = start_with(
        &standard_plugins(),
        &[("MITTARI__SERVER__MAX_CONCURRENT_COMPUTATIONS", "1")],
    );
    let mut client = server.client().await;
    let mut request = tonic::Request::new(sleep_request(30_000));
    request.set_timeout(Duration::from_millis(300));
    let status = client.compute(request).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    let server = tokio::task::spawn_blocking(move || {
        server.wait_for_log("the client gave up; cancelling its computation");
        server
    })
    .await
    .unwrap();
    // The only heavy slot is free again well before the abandoned 30 s would have ended.
    let started = std::time::Instant::now();
    let response = client
        .compute(sleep_request(10))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scalar(response.results.as_ref().unwrap(), "rows"), 2.0);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(server);
}

#[tokio::test]
async fn light_requests_are_not_delayed_by_heavy_ones() {
    let server = start_with(
        &standard_plugins(),
        &[("MITTARI__SERVER__MAX_CONCURRENT_COMPUTATIONS", "1")],
    );
    let client = server.client().await;
    // One heavy computation holds the heavy lane's only slot, another waits for it.
    let heavy: Vec<_> = (0..2)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.compute(sleep_request(3000)).await })
        })
        .collect();
    let server = tokio::task::spawn_blocking(move || {
        server.wait_for_log("computing metric");
        server
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let response = client
        .clone()
        .compute(request("nps", survey()))
        .await
        .unwrap()
        .into_inner();
    assert!(response.results.is_some());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a light request waited {:?} behind heavy ones",
        started.elapsed()
    );
    for call in heavy {
        call.await.unwrap().unwrap();
    }
    drop(server);
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let server = Server::start();
    let mut client = server.client().await;
    let call = tokio::spawn(async move { client.compute(sleep_request(1500)).await });
    let status = tokio::task::spawn_blocking(move || {
        server.wait_for_log("computing metric");
        server.terminate()
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
    let response = call
        .await
        .unwrap()
        .expect("the in-flight request completes")
        .into_inner();
    assert_eq!(scalar(response.results.as_ref().unwrap(), "rows"), 2.0);
}

#[tokio::test]
async fn configuration_sets_defaults_and_enabled_metrics() {
    let server = start_with(
        &standard_plugins(),
        &[
            ("MITTARI__METRICS__ENABLED", "nps,test_sleeps"),
            ("MITTARI__METRICS__DEFAULTS__NPS__CONFIDENCE", "0.9"),
        ],
    );
    let mut client = server.client().await;
    let list = client
        .list_metrics(pb::ListMetricsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["nps", "test_sleeps"]
    );
    let nps = client
        .describe_metric(pb::DescribeMetricRequest { name: "nps".into() })
        .await
        .unwrap()
        .into_inner()
        .metric
        .unwrap();
    assert_eq!(
        nps.parameters[0].default_value.as_ref().unwrap().kind,
        Some(pb::value::Kind::DoubleValue(0.9))
    );
    let response = client
        .compute(request("nps", survey()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.results.unwrap().scalars[0]
            .confidence_interval
            .unwrap()
            .level,
        0.9
    );
    let disabled = client
        .compute(request("test_panics", survey()))
        .await
        .unwrap_err();
    assert_eq!(disabled.code(), Code::NotFound);
}

/// Plugins to install, environment, and a fragment of the expected error.
type StartCase = (
    &'static [(&'static str, &'static str)],
    Vec<(&'static str, &'static str)>,
    &'static str,
);

/// Start-up problems stop the server with a message naming the cause.
#[test]
fn refuses_to_start_on_bad_configuration() {
    let nps = &[("mittari_plugin_nps", "mittari_plugin_nps")][..];
    let cases: Vec<StartCase> = vec![
        (
            nps,
            vec![("MITTARI__SERVER__LISTN", "127.0.0.1:1")],
            "unknown field `listn`",
        ),
        (
            nps,
            vec![("MITTARI__METRICS__ENABLED", "nps,npx")],
            "metrics.enabled: metric \"npx\" is not provided",
        ),
        (
            nps,
            vec![("MITTARI__METRICS__DEFAULTS__NPS__CONFIDENCE", "2")],
            "metrics.defaults.nps.confidence: 2 is outside the allowed range",
        ),
        (
            nps,
            vec![("MITTARI__METRICS__DEFAULTS__NPS__COLOUR", "red")],
            "metrics.defaults.nps.colour: metric nps has no parameter colour",
        ),
        (
            nps,
            vec![("MITTARI__PLUGINS__DIR", "/nonexistent/plugins")],
            "plugin directory /nonexistent/plugins does not exist",
        ),
        (&[], vec![], "no usable metric plugin"),
        (
            &[("mittari_testplugin_wrong_abi", "mittari_plugin_wrong_abi")],
            vec![],
            "plugin ABI version 9999",
        ),
    ];
    for (plugins, env, expect) in cases {
        let (status, stderr) = start_expecting_failure(plugins, &env);
        assert!(!status.success(), "{env:?}");
        assert!(
            stderr.contains(expect),
            "{env:?}: {stderr:?} lacks {expect:?}"
        );
    }
}

/// Runs a Python client script against a fresh server with the interpreter `.ci/run` prepares
/// (grpcio, grpcio-reflection and pyarrow in a throwaway virtualenv, named in
/// MITTARI_STOCK_CLIENT_PYTHON); it must print "all checks passed".
fn run_python_client(script: &str) {
    let python = mittari_e2e::client_python();
    let server = Server::start();
    let script = mittari_e2e::repo_root().join(script);
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(server.addr.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

/// A client in another language with only stock tooling (Python grpcio + grpcio-reflection,
/// v1alpha reflection) lists, describes and computes, and reads the field violation of a
/// score of 11.
#[test]
#[ignore = "needs Python with grpcio and grpcio-reflection (MITTARI_STOCK_CLIENT_PYTHON); .ci/run installs them and runs this with --ignored"]
fn stock_python_client_via_reflection() {
    run_python_client("tests/stock_client.py");
}

/// A pyarrow client sends Arrow IPC (one message and streamed chunks) and reads Arrow results
/// back, and gets field violations for a bad value and a bad text timestamp.
#[test]
#[ignore = "needs Python with grpcio and pyarrow (MITTARI_STOCK_CLIENT_PYTHON); .ci/run installs them and runs this with --ignored"]
fn pyarrow_client_sends_and_receives_arrow() {
    run_python_client("tests/arrow_client.py");
}

/// Covariates over gRPC: the descriptor says which parameters name columns, a request sends
/// the covariate column beside the summary and gets the coefficients table, and one naming a
/// column it did not send is INVALID_ARGUMENT naming the column and the parameter.
#[tokio::test]
async fn covariates_travel_as_named_columns() {
    let server = Server::start();
    let mut client = server.client().await;
    let clv = client
        .describe_metric(pb::DescribeMetricRequest { name: "clv".into() })
        .await
        .unwrap()
        .into_inner()
        .metric
        .unwrap();
    let named: Vec<(&str, &str)> = clv
        .parameters
        .iter()
        .filter(|p| p.names_columns)
        .map(|p| (p.name.as_str(), p.columns_table.as_str()))
        .collect();
    assert_eq!(
        named,
        [
            ("covariates", ""),
            ("purchase_covariates", ""),
            ("attrition_covariates", ""),
            ("dynamic_covariates", "covariates_over_time"),
            ("spend_covariates", "")
        ]
    );
    // 400 customers in two channels, the "web" ones buying more often.
    let (mut frequency, mut recency, mut t, mut channel) = (vec![], vec![], vec![], vec![]);
    for i in 0..400 {
        let web = i % 2 == 0;
        let x = f64::from((i * 7 % 5) as u8) + if web { 3.0 } else { 0.0 };
        frequency.push(x);
        recency.push(if x > 0.0 {
            30.0 - f64::from((i % 9) as u8)
        } else {
            0.0
        });
        t.push(39.0);
        channel.push(if web { "web" } else { "store" });
    }
    let input = pb::Table {
        columns: vec![
            double_column("frequency", &frequency),
            double_column("recency", &recency),
            double_column("T", &t),
            string_column("channel", &channel),
        ],
        ..Default::default()
    };
    let mut ok = request("clv", input.clone());
    for (key, value) in [("model", "bgnbd"), ("purchase_covariates", "channel")] {
        ok.parameters.insert(
            key.into(),
            pb::Value {
                kind: Some(pb::value::Kind::StringValue(value.into())),
            },
        );
    }
    let response = client.compute(ok.clone()).await.unwrap().into_inner();
    let results = response.results.unwrap();
    let coefficients = results
        .tables
        .iter()
        .find(|t| t.name == "coefficients")
        .and_then(|t| t.table.as_ref())
        .expect("a coefficients table");
    let covariate = coefficients
        .columns
        .iter()
        .find(|c| c.name == "covariate")
        .and_then(|c| match &c.values {
            Some(Values::StringValues(v)) => Some(v.values.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(covariate, ["channel=web"]);
    assert!(scalar(&results, "covariates_lr_statistic") > 10.0);
    assert_eq!(scalar(&results, "covariates_lr_df"), 1.0);

    let mut missing = ok;
    missing.parameters.insert(
        "purchase_covariates".into(),
        pb::Value {
            kind: Some(pb::value::Kind::StringValue("region".into())),
        },
    );
    let status = client.compute(missing).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("parameter purchase_covariates names column region, which the input lacks"),
        "{}",
        status.message()
    );
}

/// A table input over gRPC (ABI version 4): the descriptor declares clv's
/// covariates_over_time, a request sends it beside the transaction log in `tables`, and the
/// dynamic-covariate fit comes back; an undeclared table, or one lacking a declared column, is
/// INVALID_ARGUMENT pointing into `tables`.
#[tokio::test]
async fn table_inputs_travel_beside_the_input() {
    let server = Server::start();
    let mut client = server.client().await;
    let clv = client
        .describe_metric(pb::DescribeMetricRequest { name: "clv".into() })
        .await
        .unwrap()
        .into_inner()
        .metric
        .unwrap();
    let tables: Vec<(&str, Vec<&str>)> = clv
        .table_inputs
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                t.columns.iter().map(|c| c.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        tables,
        [("covariates_over_time", vec!["customer_id", "period_start"])]
    );
    // CLVTools' apparel data: the transaction log, and week by week to mid-2008 the
    // high-season flag beside the static gender and channel.
    let micros = |date: &str| -> i64 {
        let mut parts = date.split('-').map(|p| p.parse::<i64>().unwrap());
        let (y, m, d) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        (era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468) * 86_400_000_000
    };
    let root = mittari_e2e::repo_root().join("tests/data/apparel");
    let read = |name: &str| std::fs::read_to_string(root.join(name)).unwrap();
    let transactions = read("transactions.csv");
    let (mut ids, mut at, mut amount) = (vec![], vec![], vec![]);
    for line in transactions.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        ids.push(f[0]);
        at.push(micros(f[1]));
        amount.push(f[2].parse::<f64>().unwrap());
    }
    let input = pb::Table {
        columns: vec![
            string_column("customer_id", &ids),
            pb::Column {
                name: "timestamp".into(),
                values: Some(Values::TimestampValues(pb::Int64Values { values: at })),
                null_mask: vec![],
            },
            double_column("amount", &amount),
        ],
        ..Default::default()
    };
    let (season, statics) = (read("high_season.csv"), read("static_covariates.csv"));
    let (mut period_ids, mut period_starts, mut high_season, mut gender, mut channel) =
        (vec![], vec![], vec![], vec![], vec![]);
    for customer in statics.lines().skip(1) {
        let f: Vec<&str> = customer.split(',').collect();
        for week in season.lines().skip(1) {
            let (start, flag) = week.split_once(',').unwrap();
            if start <= "2008-06-29" {
                period_ids.push(f[0]);
                period_starts.push(micros(start));
                high_season.push(flag.parse::<i64>().unwrap());
                gender.push(f[1].parse::<i64>().unwrap());
                channel.push(f[2].parse::<i64>().unwrap());
            }
        }
    }
    let periods = |with_start: bool| {
        let mut columns = vec![string_column("customer_id", &period_ids)];
        if with_start {
            columns.push(pb::Column {
                name: "period_start".into(),
                values: Some(Values::TimestampValues(pb::Int64Values {
                    values: period_starts.clone(),
                })),
                null_mask: vec![],
            });
        }
        columns.push(int_column("high_season", &high_season));
        columns.push(int_column("gender", &gender));
        columns.push(int_column("channel", &channel));
        pb::Table {
            columns,
            ..Default::default()
        }
    };
    let mut ok = request("clv", input);
    for (key, value) in [
        ("model", "pareto_nbd"),
        ("time_unit", "week"),
        ("observation_end", "2006-12-31"),
        ("dynamic_covariates", "high_season,gender,channel"),
    ] {
        ok.parameters.insert(
            key.into(),
            pb::Value {
                kind: Some(pb::value::Kind::StringValue(value.into())),
            },
        );
    }
    ok.parameters.insert(
        "horizon".into(),
        pb::Value {
            kind: Some(pb::value::Kind::DoubleValue(52.0)),
        },
    );
    ok.tables
        .insert("covariates_over_time".into(), periods(true));
    let response = client.compute(ok.clone()).await.unwrap().into_inner();
    let results = response.results.unwrap();
    // The same fit as the CLI's (tests/cli.rs, dynamic_covariates_reproduce_clvtools_fit).
    assert_eq!(scalar(&results, "customers"), 600.0);
    assert_eq!(scalar(&results, "covariates_lr_df"), 6.0);
    assert!((scalar(&results, "log_likelihood") - -5752.6232).abs() < 1e-3);
    let coefficients = results
        .tables
        .iter()
        .find(|t| t.name == "coefficients")
        .and_then(|t| t.table.as_ref())
        .expect("a coefficients table");
    let estimate = coefficients
        .columns
        .iter()
        .find(|c| c.name == "coefficient")
        .and_then(|c| match &c.values {
            Some(Values::DoubleValues(v)) => Some(v.values.clone()),
            _ => None,
        })
        .unwrap();
    // High season doubles the purchase rate.
    assert!((estimate[0] - 0.7185).abs() < 1e-3, "{estimate:?}");

    let mut unknown = ok.clone();
    unknown.tables.insert("nope".into(), periods(true));
    let status = client.compute(unknown).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["tables.nope"], "{}", status.message());

    let mut lacking = ok;
    lacking
        .tables
        .insert("covariates_over_time".into(), periods(false));
    let status = client.compute(lacking).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let violation = status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .remove(0);
    assert_eq!(violation.field, "tables.covariates_over_time.period_start");
    assert!(
        violation
            .description
            .contains("table input covariates_over_time has"),
        "{}",
        violation.description
    );
}

/// ModelService end to end: a model fitted from a stream, scored (unary and streamed) with
/// the fit's own predictions, an alias moved and followed at once, a version an alias points
/// at kept from deletion, parameters the fit fixed refused, one audit line per change.
#[tokio::test]
async fn models_are_fitted_stored_and_scored_over_grpc() {
    use pb::model_service_client::ModelServiceClient;
    let server = Server::start();
    let mut models = ModelServiceClient::new(server.channel().await);
    let table = summary_table(400);
    let params: HashMap<String, pb::Value> = [
        ("model".to_owned(), text("bgnbd")),
        ("spend_model".to_owned(), text("gamma_gamma")),
    ]
    .into();
    let fit = |name: &str| tokio_stream::iter(fit_stream(name, &table, &params, 200));
    let fitted = models.fit(fit("clv-eu")).await.unwrap().into_inner();
    let info = fitted.model.unwrap();
    assert_eq!((info.name.as_str(), info.version), ("clv-eu", 1));
    assert_eq!(info.metric, "clv");
    assert!(
        info.fingerprint_json.contains("\"rows\":400"),
        "{}",
        info.fingerprint_json
    );
    assert!(
        info.parameters_json.contains("bgnbd"),
        "{}",
        info.parameters_json
    );
    let fit_results = fitted.results.unwrap().results.unwrap();

    let score = |reference: &str, params: HashMap<String, pb::Value>| pb::ScoreRequest {
        model: reference.into(),
        parameters: params,
        input: Some(table.clone()),
        result_encoding: pb::TableEncoding::Columns.into(),
    };
    let scored = models
        .score(score("clv-eu", HashMap::new()))
        .await
        .unwrap()
        .into_inner();
    let scored_results = scored.results.unwrap();
    assert_eq!(scored_results.scalars, fit_results.scalars);
    assert_eq!(scored_results.warnings[1..], fit_results.warnings[..]);
    assert_eq!(scored_results.tables, fit_results.tables);
    assert_eq!(scored_results.warnings[0].code, "stored_model");
    assert!(scored_results.warnings[0].message.contains("clv-eu@1"));

    let streamed = {
        use pb::score_stream_request::Message;
        let header = pb::ScoreStreamRequest {
            message: Some(Message::Header(pb::ScoreStreamHeader {
                model: "clv-eu@1".into(),
                input: Some(pb::ComputeStreamHeader {
                    schema: ["frequency", "recency", "T", "monetary_value"]
                        .iter()
                        .map(|name| pb::ColumnSchema {
                            name: (*name).into(),
                            r#type: pb::DataType::Double.into(),
                        })
                        .collect(),
                    ..Default::default()
                }),
            })),
        };
        let chunk = pb::ScoreStreamRequest {
            message: Some(Message::Chunk(table.clone())),
        };
        models
            .score_stream(tokio_stream::iter(vec![header, chunk]))
            .await
            .unwrap()
            .into_inner()
    };
    assert_eq!(streamed.results.unwrap().tables, fit_results.tables);

    // An alias, moved to a new version and followed at once by this server.
    let alias = |version: u64| pb::SetAliasRequest {
        name: "clv-eu".into(),
        alias: "production".into(),
        version,
    };
    assert_eq!(
        models
            .set_alias(alias(1))
            .await
            .unwrap()
            .into_inner()
            .previous_version,
        0
    );
    let on_production = |models: &mut ModelServiceClient<_>| {
        let request = score("clv-eu@production", HashMap::new());
        let mut models = models.clone();
        async move {
            let response = models.score(request).await.unwrap().into_inner();
            response.results.unwrap().warnings[0].message.clone()
        }
    };
    assert!(on_production(&mut models).await.contains("clv-eu@1"));
    let second = models.fit(fit("clv-eu")).await.unwrap().into_inner();
    assert_eq!(second.model.unwrap().version, 2);
    assert_eq!(
        models
            .set_alias(alias(2))
            .await
            .unwrap()
            .into_inner()
            .previous_version,
        1
    );
    assert!(on_production(&mut models).await.contains("clv-eu@2"));

    let status = models
        .delete_model(pb::DeleteModelRequest {
            reference: "clv-eu@2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("alias production points to"),
        "{status:?}"
    );
    models
        .delete_model(pb::DeleteModelRequest {
            reference: "clv-eu@1".into(),
        })
        .await
        .unwrap();
    let status = models
        .score(score("clv-eu@1", HashMap::new()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let listed = models
        .list_models(pb::ListModelsRequest {
            name: "clv-eu".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .models;
    let versions: Vec<u64> = listed.iter().map(|m| m.version).collect();
    assert_eq!(versions, [2]);
    assert_eq!(listed[0].aliases, ["production"]);

    // A parameter the fit fixed, given another value: a field violation naming it.
    let status = models
        .score(score(
            "clv-eu",
            [("model".to_owned(), text("pareto_nbd"))].into(),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = status.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "parameters.model");
    assert!(
        violations[0]
            .description
            .contains("was fitted with model=\"bgnbd\"")
    );

    // A model a newer plugin wrote in a state format this one does not read: refused with
    // FAILED_PRECONDITION naming both versions, never misread.
    {
        let store = mittari_store::open(&format!(
            "sqlite://{}",
            server.plugin_dir().join("mittari-models.db").display()
        ))
        .unwrap();
        let mut model = store
            .get(&mittari_store::Reference::Version("clv-eu".into(), 2))
            .unwrap()
            .model;
        model.state =
            br#"{"metric":"clv","metric_version":"9.0.0","format":99,"state":{}}"#.to_vec();
        store.put("clv-future", &model).unwrap();
    }
    let status = models
        .score(score("clv-future", HashMap::new()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("fitted by clv 9.0.0, and clv 0.1.0 cannot score with it: it is in state format 99, which this version does not read (it writes format 2)"),
        "{status:?}"
    );

    // A metric without fitted models.
    let status = {
        use pb::fit_request::Message;
        let header = pb::FitRequest {
            message: Some(Message::Header(pb::FitHeader {
                name: "nps-model".into(),
                input: Some(pb::ComputeStreamHeader {
                    metric: "nps".into(),
                    ..Default::default()
                }),
            })),
        };
        let chunk = pb::FitRequest {
            message: Some(Message::Chunk(pb::Table {
                columns: vec![int_column("score", &[9, 10, 3])],
                ..Default::default()
            })),
        };
        models
            .fit(tokio_stream::iter(vec![header, chunk]))
            .await
            .unwrap_err()
    };
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("has no fitted models"),
        "{status:?}"
    );

    let logs = server.logs().join("\n");
    for audit in [
        "fitted model version 1 of metric clv",
        "fitted model version 2 of metric clv",
        "pointed alias production at version 2 (was 1)",
        "deleted model version 1",
    ] {
        assert!(logs.contains(audit), "{audit}: {logs}");
    }
}
