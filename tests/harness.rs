#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Harness for the end-to-end tests: runs the real `mittari` binary with real plugin
//! libraries, on an ephemeral loopback port, in a scratch directory, and stops it afterwards.
//!
//! The binary and the plugin libraries are the ones `cargo build --workspace` put next to the
//! test executable's `deps/` directory; the README's test command builds them first.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub mod postgres_cluster;
pub mod raw_h2;

use mittari_proto::v1 as pb;
use mittari_proto::v1::metric_service_client::MetricServiceClient;
use tonic::transport::Channel;

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `target/<profile>`: where cargo put the binary and the plugin libraries.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test executable>
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_owned()
}

fn built(path: PathBuf) -> PathBuf {
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first with `cargo build --workspace && cargo test --workspace`",
        path.display()
    );
    path
}

pub fn mittari_bin() -> PathBuf {
    built(target_dir().join(format!("mittari{}", std::env::consts::EXE_SUFFIX)))
}

/// The library cargo built for crate `name` (dashes as underscores), e.g. `mittari_plugin_nps`.
pub fn library(name: &str) -> PathBuf {
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    built(target_dir().join(format!("{prefix}{name}{suffix}")))
}

/// A plugin directory with the given libraries installed under plugin names: `(crate library,
/// installed name)`, e.g. `("mittari_testplugin_wrong_abi", "mittari_plugin_wrong_abi")`.
pub fn plugin_dir(plugins: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    for (source, installed) in plugins {
        std::fs::copy(
            library(source),
            dir.path().join(format!("{prefix}{installed}{suffix}")),
        )
        .expect("copy plugin");
    }
    dir
}

/// The metrics the bundled plugins provide, in name order.
pub const BUNDLED_METRICS: &[&str] = &[
    "aov",
    "clv",
    "csat",
    "cx_outcomes",
    "cx_value",
    "key_drivers",
    "nps",
    "price_gap",
    "retention",
    "retention_forecast",
    "service",
];

/// Every bundled plugin (`mittari_plugin_<metric>` next to the binary, one per
/// [`BUNDLED_METRICS`]), by library name, installed under its own name. Only these: a plugin
/// of one's own left in the build output is not part of the tests.
pub fn bundled_plugins() -> Vec<(String, String)> {
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let names: Vec<String> = BUNDLED_METRICS
        .iter()
        .map(|metric| format!("mittari_plugin_{metric}"))
        .collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| {
            !target_dir()
                .join(format!("{prefix}{name}{suffix}"))
                .is_file()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "no plugin libraries {missing:?} in {}: run `cargo build --workspace` first",
        target_dir().display()
    );
    names.into_iter().map(|n| (n.clone(), n)).collect()
}

/// Every bundled plugin plus the misbehaving test plugin.
pub fn standard_plugins() -> Vec<(String, String)> {
    let mut plugins = bundled_plugins();
    plugins.push((
        "mittari_testplugin_misbehaving".to_owned(),
        "mittari_plugin_misbehaving".to_owned(),
    ));
    plugins
}

/// A running `mittari serve`. Killed on drop if still running.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    _plugins: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Server {
        let plugins = standard_plugins();
        let plugins: Vec<(&str, &str)> = plugins
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        Self::start_with(&plugins, &[])
    }

    /// Starts a server with these plugins and extra `MITTARI__…` environment variables.
    pub fn start_with(plugins: &[(&str, &str)], env: &[(&str, &str)]) -> Server {
        Self::start_limited(plugins, env, None)
    }

    /// Starts a server whose address space is limited to `address_space` bytes
    /// (`RLIMIT_AS`): a request that makes it allocate more fails the allocation, which aborts
    /// the server and fails the test, instead of swapping the machine.
    pub fn start_limited(
        plugins: &[(&str, &str)],
        env: &[(&str, &str)],
        address_space: Option<u64>,
    ) -> Server {
        let limits = ProcessLimits {
            address_space,
            open_files: None,
        };
        Self::start_in_limited(plugin_dir(plugins), env, limits)
    }

    /// Starts a server that may hold at most `open_files` file descriptors (`RLIMIT_NOFILE`).
    pub fn start_with_open_files(
        plugins: &[(&str, &str)],
        env: &[(&str, &str)],
        open_files: u64,
    ) -> Server {
        let limits = ProcessLimits {
            address_space: None,
            open_files: Some(open_files),
        };
        Self::start_in_limited(plugin_dir(plugins), env, limits)
    }

    /// Starts a server with these plugins and `config` as its `mittari.toml` (the server runs
    /// in the plugin directory and reads it from there).
    pub fn start_with_config(plugins: &[(&str, &str)], config: &str) -> Server {
        let dir = plugin_dir(plugins);
        std::fs::write(dir.path().join("mittari.toml"), config).expect("write mittari.toml");
        Self::start_in(dir, &[])
    }

    /// Starts a server with `config` as its `mittari.toml`, limited to `address_space` bytes
    /// and `open_files` descriptors when given.
    pub fn start_with_config_limited(
        plugins: &[(&str, &str)],
        config: &str,
        address_space: Option<u64>,
        open_files: Option<u64>,
    ) -> Server {
        let dir = plugin_dir(plugins);
        std::fs::write(dir.path().join("mittari.toml"), config).expect("write mittari.toml");
        let limits = ProcessLimits {
            address_space,
            open_files,
        };
        Self::start_in_limited(dir, &[], limits)
    }

    /// Starts a server on a plugin directory the caller prepared.
    pub fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        Self::start_in_limited(dir, env, ProcessLimits::default())
    }

    fn start_in_limited(
        dir: tempfile::TempDir,
        env: &[(&str, &str)],
        limits: ProcessLimits,
    ) -> Server {
        let mut command = serve_command(dir.path(), env);
        limit_process(&mut command, limits);
        command.args(["--log-format", "json"]);
        let mut child = command.spawn().expect("spawn mittari serve");
        let stderr = child.stderr.take().expect("stderr piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = listening_addr(&line) {
                    let _ = addr_tx.send(addr);
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let addr = match addr_rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start listening; its log:\n{}",
                    logs.lock().expect("log lock").join("\n")
                );
            }
        };
        Server {
            child,
            addr,
            logs,
            _plugins: dir,
        }
    }

    /// The plugin directory the server loaded from.
    pub fn plugin_dir(&self) -> &Path {
        self._plugins.path()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect to server")
    }

    pub async fn client(&self) -> MetricServiceClient<Channel> {
        MetricServiceClient::new(self.channel().await)
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("log lock").clone()
    }

    /// Waits until a log line contains `fragment`.
    pub fn wait_for_log(&self, fragment: &str) {
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        while !self.logs().iter().any(|l| l.contains(fragment)) {
            assert!(
                std::time::Instant::now() < deadline,
                "no log line with {fragment:?}:\n{}",
                self.logs().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The Prometheus endpoint's address (`server.metrics_listen`), from the server's log.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.wait_for_log("serving Prometheus metrics");
        self.logs()
            .iter()
            .find_map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).ok()?;
                value["fields"]["metrics_addr"].as_str()?.parse().ok()
            })
            .expect("a metrics_addr in the log")
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        self.child.wait().expect("wait for server")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system) the server has used so far, from `/proc/PID/stat`.
    #[cfg(target_os = "linux")]
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        // Fields after the parenthesized command name; utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("stat format")
            .1
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }

    /// The server's resident memory now, from `/proc/PID/status`.
    #[cfg(target_os = "linux")]
    pub fn resident_bytes(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    /// The part of [`Server::resident_bytes`] the process allocated (heap, stacks), without
    /// the pages of mapped files such as its code, from `/proc/PID/status`.
    #[cfg(target_os = "linux")]
    pub fn anonymous_resident_bytes(&self) -> u64 {
        self.status_kib("RssAnon:") * 1024
    }

    /// The most memory the process has had resident so far (VmHWM).
    #[cfg(target_os = "linux")]
    pub fn peak_resident_bytes(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    #[cfg(target_os = "linux")]
    fn status_kib(&self, key: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} in /proc/PID/status"))
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resource limits for a server process.
#[derive(Debug, Default, Clone, Copy)]
struct ProcessLimits {
    address_space: Option<u64>,
    open_files: Option<u64>,
}

#[cfg(unix)]
fn limit_process(command: &mut Command, limits: ProcessLimits) {
    use std::os::unix::process::CommandExt as _;
    if limits.address_space.is_some() {
        // glibc reserves 64 MiB of address space per malloc arena; a few arenas keep the limit
        // about memory actually used rather than about thread count.
        command.env("MALLOC_ARENA_MAX", "2");
    }
    let rlimit = |value: u64| libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    };
    let set: Vec<(libc::__rlimit_resource_t, libc::rlimit)> = [
        limits.address_space.map(|v| (libc::RLIMIT_AS, rlimit(v))),
        limits.open_files.map(|v| (libc::RLIMIT_NOFILE, rlimit(v))),
    ]
    .into_iter()
    .flatten()
    .collect();
    if set.is_empty() {
        return;
    }
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            for (resource, limit) in &set {
                if libc::setrlimit(*resource, limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[cfg(not(unix))]
fn limit_process(_command: &mut Command, _limits: ProcessLimits) {}

/// The address of a `listening` JSON log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = value.get("fields")?;
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    fields.get("addr")?.as_str()?.parse().ok()
}

/// Raises this test process's soft limit of open files to its hard limit (tests that open many
/// sockets), and fails the test when even that is below `needed`.
pub fn raise_open_file_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= needed,
        "the open file limit ({}) is below the {needed} this test needs",
        limit.rlim_cur
    );
}

/// Runs `mittari` with `args` in `dir` with the environment given, returning (exit status,
/// stdout, stderr).
pub fn run_cli(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut command = Command::new(mittari_bin());
    command.args(args).current_dir(dir).stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run mittari");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The Python interpreter with the cross-language clients' packages (grpcio, grpcio-reflection,
/// pyarrow, pyspark), which `.ci/run` prepares and names in MITTARI_STOCK_CLIENT_PYTHON. The
/// tests that need it are `#[ignore]`d (they need more than a Rust toolchain), and fail here
/// when run without it.
pub fn client_python() -> String {
    std::env::var("MITTARI_STOCK_CLIENT_PYTHON").unwrap_or_else(|_| {
        panic!(
            "MITTARI_STOCK_CLIENT_PYTHON is not set: this test needs a Python with grpcio, grpcio-reflection, pyarrow and pyspark; .ci/run prepares one in target/stock-client-venv (python3 -m venv target/stock-client-venv && target/stock-client-venv/bin/pip install grpcio grpcio-reflection googleapis-common-protos pyarrow pyspark, then MITTARI_STOCK_CLIENT_PYTHON=$PWD/target/stock-client-venv/bin/python)"
        )
    })
}

/// `compute clv` arguments the input-format tests share: BG/NBD with Gamma-Gamma spend, by
/// channel, as JSON.
pub const CLV_BY_CHANNEL: [&str; 10] = [
    "--param",
    "model=bgnbd",
    "--param",
    "spend_model=gamma_gamma",
    "--param",
    "margin=0.3",
    "--group-by",
    "channel",
    "--format",
    "json",
];

/// The Finnish example's column names mapped to the clv metric's.
pub const FINNISH_COLUMNS: [&str; 10] = [
    "--column",
    "customer_id=asiakasnro",
    "--column",
    "timestamp=pvm",
    "--column",
    "amount=summa",
    "--column",
    "margin=kate",
    "--column",
    "channel=kanava",
];

/// The repository root, for example data.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_owned()
}

/// `mittari serve` on an ephemeral loopback port, in `dir` (which has no mittari.toml, so only
/// the environment configures it), loading plugins from `dir`, with stderr piped.
fn serve_command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(mittari_bin());
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("MITTARI__PLUGINS__DIR", dir)
        // Debug for the server's own lines: tests wait on "computing metric".
        .env("RUST_LOG", "info,mittari=debug,mittari_server=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Starts a server that must refuse to start, and returns its exit status and stderr.
pub fn start_expecting_failure(
    plugins: &[(&str, &str)],
    env: &[(&str, &str)],
) -> (ExitStatus, String) {
    let dir = plugin_dir(plugins);
    let mut command = serve_command(dir.path(), env);
    let mut child = command.spawn().expect("spawn mittari serve");
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let output = child.wait_with_output().expect("output");
            return (status, String::from_utf8_lossy(&output.stderr).into_owned());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("server started although it should have refused to");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A wire column of integers.
pub fn int_column(name: &str, values: Vec<i64>) -> pb::Column {
    pb::Column {
        name: name.into(),
        values: Some(pb::column::Values::Int64Values(pb::Int64Values { values })),
        null_mask: Vec::new(),
    }
}

/// A wire column of doubles.
pub fn double_column(name: &str, values: &[f64]) -> pb::Column {
    pb::Column {
        name: name.into(),
        values: Some(pb::column::Values::DoubleValues(pb::DoubleValues {
            values: values.to_vec(),
        })),
        null_mask: Vec::new(),
    }
}

/// A text parameter value.
pub fn text(value: &str) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::StringValue(value.into())),
    }
}

/// RFM summaries of `customers` customers, deterministic, with repeat buyers and spend: a
/// base a BG/NBD and Gamma-Gamma fit identifies.
pub fn summary_table(customers: usize) -> pb::Table {
    let (mut frequency, mut recency, mut t, mut spend) = (vec![], vec![], vec![], vec![]);
    for i in 0..customers {
        let x = (i % 7) as f64;
        frequency.push(x);
        recency.push(if x > 0.0 { 30.0 - (i % 11) as f64 } else { 0.0 });
        t.push(39.0 - (i % 3) as f64);
        spend.push(if x > 0.0 {
            20.0 + (i % 13) as f64 * 3.5
        } else {
            0.0
        });
    }
    pb::Table {
        columns: vec![
            double_column("frequency", &frequency),
            double_column("recency", &recency),
            double_column("T", &t),
            double_column("monetary_value", &spend),
        ],
        ..Default::default()
    }
}

/// The messages of a ModelService `Fit` of clv over `table` (double columns only) as model
/// `name`: the header, then chunks of `chunk_rows` rows.
pub fn fit_stream(
    name: &str,
    table: &pb::Table,
    params: &std::collections::HashMap<String, pb::Value>,
    chunk_rows: usize,
) -> Vec<pb::FitRequest> {
    use pb::fit_request::Message;
    let schema = table
        .columns
        .iter()
        .map(|c| pb::ColumnSchema {
            name: c.name.clone(),
            r#type: pb::DataType::Double.into(),
        })
        .collect();
    let header = pb::FitRequest {
        message: Some(Message::Header(pb::FitHeader {
            name: name.into(),
            input: Some(pb::ComputeStreamHeader {
                metric: "clv".into(),
                parameters: params.clone(),
                schema,
                ..Default::default()
            }),
        })),
    };
    let doubles = |c: &pb::Column| match &c.values {
        Some(pb::column::Values::DoubleValues(v)) => v.values.clone(),
        _ => panic!("fit_stream takes double columns"),
    };
    let rows = table.columns.first().map_or(0, |c| doubles(c).len());
    let chunks = (0..rows).step_by(chunk_rows.max(1)).map(|start| {
        let end = (start + chunk_rows).min(rows);
        pb::FitRequest {
            message: Some(Message::Chunk(pb::Table {
                columns: table
                    .columns
                    .iter()
                    .map(|c| double_column(&c.name, &doubles(c)[start..end]))
                    .collect(),
                ..Default::default()
            })),
        }
    });
    std::iter::once(header).chain(chunks).collect()
}

/// A `Compute` request of NPS over these scores.
pub fn nps_request(scores: Vec<i64>) -> pb::ComputeRequest {
    pb::ComputeRequest {
        metric: "nps".into(),
        parameters: Default::default(),
        input: Some(pb::Table {
            columns: vec![int_column("score", scores)],
            ..Default::default()
        }),
        group_by: Vec::new(),
        ..Default::default()
    }
}

/// `(library, installed name)` pairs as [`plugin_dir`] takes them, borrowed from owned ones.
pub fn borrowed(plugins: &[(String, String)]) -> Vec<(&str, &str)> {
    plugins
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect()
}

/// Asserts two `--format json` results of a model fitted to the same customers in another
/// order agree: the same outputs, tables and warnings; whole numbers exactly, the customers'
/// summaries (monetary_value) to 1e-12 relative, and what the fit gives to 1e-3; table rows
/// matched by customer_id where they have one (rows tied in value may come in either order).
/// `rows`, the input's size, is not compared: a summary computed in a database has a row per
/// customer.
///
/// Why 1e-3: another order sums in another order, and a fit stops within its tolerance of the
/// optimum, so where the likelihood barely pins a parameter down (Gamma-Gamma's p, with a
/// standard error four times its value) it moves by 1e-6 and its standard error by 1e-3.
pub fn assert_same_result(got: &str, expected: &str) {
    fn normalized(text: &str) -> serde_json::Value {
        let mut value: serde_json::Value = serde_json::from_str(text).expect("a JSON result");
        if let Some(result) = value.as_object_mut() {
            result.remove("rows");
        }
        if let Some(tables) = value.get_mut("tables").and_then(|t| t.as_object_mut()) {
            for rows in tables.values_mut().filter_map(|t| t.as_array_mut()) {
                rows.sort_by_key(|row| row.get("customer_id").map(ToString::to_string));
            }
        }
        value
    }
    fn same(got: &serde_json::Value, expected: &serde_json::Value, at: &str) {
        let tolerance = if at.ends_with(".monetary_value") {
            1e-12
        } else if at.contains(".confidence_intervals.") {
            // A parameter's interval is θ·exp(±1.96·se/θ): where se/θ is large (a fit that
            // does not identify the parameter) it multiplies the standard error's last-digit
            // differences between two summaries by e^(1.96·se/θ).
            1e-2
        } else {
            1e-3
        };
        use serde_json::Value;
        match (got, expected) {
            (Value::Number(a), Value::Number(b)) if a.is_i64() && b.is_i64() => {
                assert_eq!(a, b, "{at}");
            }
            (Value::Number(a), Value::Number(b)) => {
                let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
                assert!(
                    (a - b).abs() <= tolerance * a.abs().max(b.abs()).max(1.0),
                    "{at}: {a} != {b}"
                );
            }
            (Value::Array(a), Value::Array(b)) => {
                assert_eq!(a.len(), b.len(), "{at}: lengths differ");
                for (i, (a, b)) in a.iter().zip(b).enumerate() {
                    same(a, b, &format!("{at}[{i}]"));
                }
            }
            (Value::Object(a), Value::Object(b)) => {
                let keys =
                    |o: &serde_json::Map<String, Value>| o.keys().cloned().collect::<Vec<_>>();
                assert_eq!(keys(a), keys(b), "{at}: keys differ");
                for (key, value) in a {
                    same(value, &b[key], &format!("{at}.{key}"));
                }
            }
            // A warning quotes figures to four digits; paths that differ in rounding may
            // differ in the last one.
            (Value::String(a), Value::String(b)) if at.ends_with(".message") => {
                let (ta, tb) = (number_split(a), number_split(b));
                let alike = ta.len() == tb.len()
                    && ta.iter().zip(&tb).all(|(x, y)| match (x, y) {
                        (Ok(x), Ok(y)) => (x - y).abs() <= 2e-3 * x.abs().max(y.abs()),
                        (x, y) => x == y,
                    });
                assert!(alike, "{at}: {a:?} != {b:?}");
            }
            (a, b) => assert_eq!(a, b, "{at}"),
        }
    }
    /// Text as runs of non-digits (`Err`) and the numbers between them (`Ok`).
    fn number_split(text: &str) -> Vec<Result<f64, String>> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits > 0 {
                parts.push(Err(rest[..digits].to_owned()));
                rest = &rest[digits..];
                continue;
            }
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e'))
                .unwrap_or(rest.len());
            match rest[..end].trim_end_matches(['.', 'e']).parse::<f64>() {
                Ok(number) => {
                    let used = rest[..end].trim_end_matches(['.', 'e']).len();
                    parts.push(Ok(number));
                    rest = &rest[used..];
                }
                Err(_) => {
                    parts.push(Err(rest[..end].to_owned()));
                    rest = &rest[end..];
                }
            }
        }
        parts
    }
    same(&normalized(got), &normalized(expected), "result");
}

/// The example purchase log (`examples/data/transactions.csv`) of only these customers, as CSV
/// text with its header: a log too small for a model to identify anything.
pub fn example_log_of(customers: &[&str]) -> String {
    let example = std::fs::read_to_string(repo_root().join("examples/data/transactions.csv"))
        .expect("read the example log");
    example
        .lines()
        .filter(|line| {
            line.starts_with("customer_id,")
                || line
                    .split_once(',')
                    .is_some_and(|(id, _)| customers.contains(&id))
        })
        .map(|line| format!("{line}\n"))
        .collect()
}
