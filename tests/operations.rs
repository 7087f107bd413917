//! Running the server in production, against the real binary: reloads (admin call and
//! SIGHUP) that add, change and refuse plugins and configurations while a client keeps
//! computing; metrics switched on and off that stay so across a restart; the Prometheus
//! endpoint; request ids in logs and response metadata.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mittari_e2e::{Server, int_column, library, plugin_dir, run_cli};
use mittari_proto::admin::v1 as admin_pb;
use mittari_proto::admin::v1::admin_service_client::AdminServiceClient;
use mittari_proto::v1 as pb;
use mittari_proto::v1::metric_service_client::MetricServiceClient;
use tonic::Code;
use tonic::transport::Channel;

fn plugin_file(dir: &Path, name: &str) -> std::path::PathBuf {
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    dir.join(format!("{prefix}{name}{suffix}"))
}

/// Copies the built library `name` into the plugin directory `dir`.
fn install(dir: &Path, name: &str) {
    std::fs::copy(library(name), plugin_file(dir, name)).unwrap();
}

/// Gives the library at `path` other contents (the same code with bytes appended): a new
/// version as far as its SHA-256 goes.
fn change_library(path: &Path) {
    let mut changed = std::fs::read(path).unwrap();
    changed.extend_from_slice(b"version 2");
    std::fs::write(path, changed).unwrap();
}

async fn reload(
    admin: &mut AdminServiceClient<Channel>,
) -> Result<admin_pb::ReloadResponse, tonic::Status> {
    admin
        .reload(admin_pb::ReloadRequest {})
        .await
        .map(tonic::Response::into_inner)
}

/// Reloads, expecting a refusal whose message names `fragment`.
async fn refused_reload(admin: &mut AdminServiceClient<Channel>, fragment: &str) {
    let refused = reload(admin).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Code::FailedPrecondition,
        "{}",
        refused.message()
    );
    assert!(
        refused.message().contains(fragment),
        "{} lacks {fragment:?}",
        refused.message()
    );
}

/// A server whose plugin directory holds `plugins` (library names) and a `mittari.toml`.
fn start(plugins: &[&str], config: &str) -> Server {
    let plugins: Vec<(&str, &str)> = plugins.iter().map(|p| (*p, *p)).collect();
    Server::start_with_config(&plugins, config)
}

fn nps_request() -> pb::ComputeRequest {
    mittari_e2e::nps_request(vec![10, 9, 8, 7, 3, 10, 0, 6, 9, 10])
}

async fn metric_names(client: &mut MetricServiceClient<Channel>) -> Vec<String> {
    let list = client
        .list_metrics(pb::ListMetricsRequest {})
        .await
        .unwrap();
    list.into_inner()
        .metrics
        .into_iter()
        .map(|m| m.name)
        .collect()
}

async fn library_sha(admin: &mut AdminServiceClient<Channel>, file: &str) -> String {
    let libraries = admin
        .list_plugins(admin_pb::ListPluginsRequest {})
        .await
        .unwrap()
        .into_inner()
        .libraries;
    libraries
        .iter()
        .find(|l| l.path.ends_with(file))
        .map(|l| l.sha256.clone())
        .unwrap_or_default()
}

/// Computes NPS in a loop until `stop`, returning every call's outcome code.
fn compute_loop(
    client: MetricServiceClient<Channel>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Code>> {
    tokio::spawn(async move {
        let mut client = client;
        let mut codes = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let code = match client.compute(nps_request()).await {
                Ok(_) => Code::Ok,
                Err(status) => status.code(),
            };
            codes.push(code);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        codes
    })
}

#[tokio::test]
async fn reloads_apply_valid_changes_and_refuse_the_rest_while_clients_compute() {
    let server = start(
        &["mittari_plugin_nps", "mittari_plugin_csat"],
        "[metrics.defaults.nps]\nconfidence = 0.9\n",
    );
    let dir = server.plugin_dir().to_owned();
    let mut client = server.client().await;
    let mut admin = AdminServiceClient::new(server.channel().await);
    let stop = Arc::new(AtomicBool::new(false));
    let looping = compute_loop(client.clone(), Arc::clone(&stop));
    assert_eq!(metric_names(&mut client).await, ["csat", "nps"]);

    // A new library in the directory is served after a reload.
    install(&dir, "mittari_plugin_aov");
    let reloaded = reload(&mut admin).await.unwrap();
    assert!(reloaded.restart_required.is_empty(), "{reloaded:?}");
    assert_eq!(metric_names(&mut client).await, ["aov", "csat", "nps"]);

    // A changed library at the same path is loaded beside the old one: the new contents
    // (here: the same code with bytes appended) have another SHA-256.
    let nps_file = plugin_file(&dir, "mittari_plugin_nps");
    let old_sha = library_sha(&mut admin, "libmittari_plugin_nps.so").await;
    change_library(&nps_file);
    reload(&mut admin).await.unwrap();
    let new_sha = library_sha(&mut admin, "libmittari_plugin_nps.so").await;
    assert!(
        !new_sha.is_empty() && new_sha != old_sha,
        "{old_sha} {new_sha}"
    );

    // A broken configuration is refused, with the reason, and nothing changes.
    let config = dir.join("mittari.toml");
    std::fs::write(&config, "[metrics.defaults.nps]\nconfidence = 2.5\n").unwrap();
    refused_reload(&mut admin, "metrics.defaults.nps.confidence").await;
    std::fs::write(&config, "[server\n").unwrap();
    refused_reload(&mut admin, "invalid configuration").await;
    assert_eq!(metric_names(&mut client).await, ["aov", "csat", "nps"]);
    let described = client
        .describe_metric(pb::DescribeMetricRequest { name: "nps".into() })
        .await
        .unwrap()
        .into_inner()
        .metric
        .unwrap();
    let confidence = described
        .parameters
        .iter()
        .find(|p| p.name == "confidence")
        .and_then(|p| p.default_value.as_ref())
        .and_then(|v| v.kind.clone());
    assert_eq!(confidence, Some(pb::value::Kind::DoubleValue(0.9)));

    // A broken library is refused, with its name, and nothing changes.
    std::fs::write(&config, "[metrics.defaults.nps]\nconfidence = 0.9\n").unwrap();
    let broken = plugin_file(&dir, "mittari_plugin_broken");
    std::fs::write(&broken, b"\x7fELF not really").unwrap();
    refused_reload(&mut admin, "libmittari_plugin_broken").await;
    assert_eq!(
        library_sha(&mut admin, "libmittari_plugin_nps.so").await,
        new_sha
    );
    std::fs::remove_file(&broken).unwrap();

    // A changed key that only a restart applies is reported as such.
    std::fs::write(
        &config,
        "[server]\nmax_connections = 100\n[metrics.defaults.nps]\nconfidence = 0.9\n",
    )
    .unwrap();
    let reloaded = reload(&mut admin).await.unwrap();
    assert_eq!(reloaded.restart_required, ["server.max_connections"]);

    // SIGHUP reloads too.
    install(&dir, "mittari_plugin_price_gap");
    // SAFETY: kill only sends a signal to the test's own child process.
    assert_eq!(
        unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) },
        0
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !metric_names(&mut client)
        .await
        .contains(&"price_gap".to_owned())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    stop.store(true, Ordering::Relaxed);
    let codes = looping.await.unwrap();
    assert!(codes.len() > 10, "only {} calls", codes.len());
    assert!(
        codes.iter().all(|c| *c == Code::Ok),
        "a client computing through the reloads saw {:?}",
        codes.iter().filter(|c| **c != Code::Ok).collect::<Vec<_>>()
    );
    let logs = server.logs().join("\n");
    assert!(logs.contains("\"trigger\":\"SIGHUP\""), "{logs}");
    assert!(logs.contains("reload refused"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_finish_on_the_library_they_started_with() {
    let plugins = [(
        "mittari_testplugin_misbehaving",
        "mittari_plugin_misbehaving",
    )];
    let dir = plugin_dir(&plugins);
    let server = Server::start_in(dir, &[]);
    let file = plugin_file(server.plugin_dir(), "mittari_plugin_misbehaving");
    let mut admin = AdminServiceClient::new(server.channel().await);
    let old_sha = library_sha(&mut admin, "libmittari_plugin_misbehaving.so").await;
    let mut client = server.client().await;
    let sleeping = tokio::spawn(async move {
        let request = pb::ComputeRequest {
            metric: "test_sleeps".into(),
            parameters: [(
                "millis".to_owned(),
                pb::Value {
                    kind: Some(pb::value::Kind::Int64Value(1500)),
                },
            )]
            .into(),
            input: Some(pb::Table {
                columns: vec![int_column("value", vec![1, 2, 3])],
                ..Default::default()
            }),
            group_by: Vec::new(),
            ..Default::default()
        };
        client.compute(request).await
    });
    server.wait_for_log("computing metric");
    change_library(&file);
    reload(&mut admin).await.unwrap();
    let new_sha = library_sha(&mut admin, "libmittari_plugin_misbehaving.so").await;
    assert_ne!(old_sha, new_sha);
    let response = sleeping.await.unwrap().unwrap().into_inner();
    let rows = response.results.unwrap().scalars[0].value;
    assert_eq!(rows, Some(3.0));
}

#[tokio::test]
async fn metrics_switched_at_run_time_stay_switched_after_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("state.toml");
    let config = format!(
        "[metrics]\nstate_file = {:?}\n",
        state_file.to_str().unwrap()
    );
    let plugins = ["mittari_plugin_nps", "mittari_plugin_csat"];
    let server = start(&plugins, &config);
    let url = server.url();
    let admin_cli = |args: &[&str]| {
        let mut all = vec!["admin"];
        all.extend_from_slice(args);
        all.extend(["--server", url.as_str()]);
        let (status, stdout, stderr) = run_cli(&all, Path::new("."), &[]);
        assert!(status.success(), "{all:?}: {stderr}");
        stdout
    };
    let disabled = admin_cli(&["disable", "nps"]);
    assert!(disabled.contains("nps disabled"), "{disabled}");
    let mut client = server.client().await;
    assert_eq!(metric_names(&mut client).await, ["csat"]);
    let refused = client.compute(nps_request()).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    assert!(
        refused.message().contains("disabled"),
        "{}",
        refused.message()
    );
    let plugins_table = admin_cli(&["plugins"]);
    let nps_line = plugins_table
        .lines()
        .find(|l| l.contains(" nps "))
        .unwrap_or_default();
    assert!(nps_line.contains(" no "), "{plugins_table}");
    let shown = admin_cli(&["config"]);
    assert!(
        shown.contains(&format!("# metric state file: {}", state_file.display())),
        "{shown}"
    );
    assert!(
        std::fs::read_to_string(&state_file)
            .unwrap()
            .contains("disabled = [\"nps\"]")
    );
    server.terminate();

    // The choice wins over the configuration at the next start...
    let server = start(&plugins, &config);
    let mut client = server.client().await;
    assert_eq!(metric_names(&mut client).await, ["csat"]);
    // ...until it is switched back.
    let url = server.url();
    let (status, _, stderr) = run_cli(
        &["admin", "enable", "nps", "--server", &url],
        Path::new("."),
        &[],
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(metric_names(&mut client).await, ["csat", "nps"]);
    client.compute(nps_request()).await.unwrap();
    // Reset forgets the recorded choice: the configuration (which names no metrics, so serves
    // every one) decides again, and the state file no longer names nps.
    let (status, _, stderr) = run_cli(
        &["admin", "disable", "nps", "--server", &url],
        Path::new("."),
        &[],
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(metric_names(&mut client).await, ["csat"]);
    let (status, stdout, stderr) = run_cli(
        &["admin", "reset", "nps", "--server", &url],
        Path::new("."),
        &[],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("nps enabled as the configuration says"),
        "{stdout}"
    );
    assert_eq!(metric_names(&mut client).await, ["csat", "nps"]);
    assert!(
        !std::fs::read_to_string(&state_file)
            .unwrap()
            .contains("nps"),
        "{}",
        std::fs::read_to_string(&state_file).unwrap()
    );
    // An unknown metric is refused.
    let mut admin = AdminServiceClient::new(server.channel().await);
    let refused = admin
        .set_metric_enabled(admin_pb::SetMetricEnabledRequest {
            name: "no_such_metric".into(),
            enabled: true,
            reset: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{}", refused.message());
}

/// `GET /metrics` over a plain socket.
fn scrape(addr: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[tokio::test]
async fn operators_get_prometheus_metrics_and_request_ids() {
    let server = start(
        &["mittari_plugin_nps"],
        "[server]\nmetrics_listen = \"127.0.0.1:0\"\n",
    );
    let metrics_addr = server.metrics_addr().to_string();
    let mut client = server.client().await;
    let mut request = tonic::Request::new(nps_request());
    request
        .metadata_mut()
        .insert("x-request-id", "trace-7f3c".parse().unwrap());
    let response = client.compute(request).await.unwrap();
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "trace-7f3c"
    );
    let generated = client.compute(nps_request()).await.unwrap();
    let generated = generated
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(generated.len() >= 16, "{generated}");
    let mut unknown = nps_request();
    unknown.metric = "made_up_name".into();
    let refused = client.compute(unknown).await.unwrap_err();
    assert_eq!(
        refused
            .metadata()
            .get("x-request-id")
            .map(|v| v.len() >= 16),
        Some(true)
    );
    // The audit line of the call carries its id. The server writes it as the call ends, which
    // can be just after the client has the answer: wait for it rather than race it.
    let audited = |logs: &[String]| {
        logs.iter()
            .any(|l| l.contains("computed metric") && l.contains("\"request_id\":\"trace-7f3c\""))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !audited(&server.logs()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let logs = server.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("computed metric") && l.contains("\"request_id\":\"trace-7f3c\"")),
        "{}",
        logs.join("\n")
    );

    let text = scrape(&metrics_addr);
    for line in [
        r#"mittari_requests_total{rpc="/mittari.v1.MetricService/Compute",metric="nps",code="Ok"} 2"#,
        r#"mittari_requests_total{rpc="/mittari.v1.MetricService/Compute",metric="",code="NotFound"} 1"#,
        r#"mittari_rows_processed_total{metric="nps"} 20"#,
        r#"mittari_request_duration_seconds_count{rpc="/mittari.v1.MetricService/Compute"} 3"#,
        "mittari_computations_in_flight 0",
        "mittari_computations_queued 0",
        "mittari_computation_queue_wait_seconds_count 2",
        "mittari_plugin_compute_seconds_total{metric=\"nps\"}",
        "mittari_plugin_load_failures_total 0",
        "mittari_build_info{version=",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    // A client's made-up metric name never becomes a label.
    assert!(!text.contains("made_up_name"), "{text}");
}
