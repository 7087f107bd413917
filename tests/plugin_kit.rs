//! The plugin kit against the real binary, real libraries and real cargo: `plugin new` makes
//! a crate that its README's three commands build, test, check and install in a running
//! server; `plugin check` passes every bundled plugin and fails the misbehaving fixture with
//! each of its misbehaviours named, surviving the one that aborts; the C header is what
//! cbindgen makes of the SDK, and a plugin written in C against it loads, passes the check and
//! computes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use mittari_e2e::{Server, bundled_plugins, library, plugin_dir, repo_root, run_cli, target_dir};

/// The README's commands from its "Build, check, install" block, one per line.
fn readme_commands(readme: &str) -> Vec<String> {
    let block = readme
        .split("## Build, check, install")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the generated README has a Build, check, install block");
    block.lines().map(str::to_owned).collect()
}

#[test]
fn a_new_plugin_builds_passes_its_tests_and_the_check_and_serves_after_a_reload() {
    let work = tempfile::tempdir().unwrap();
    let crate_dir = work.path().join("orders");
    let (status, stdout, stderr) = run_cli(
        &[
            "plugin",
            "new",
            "order_share",
            "--path",
            crate_dir.to_str().unwrap(),
        ],
        work.path(),
        &[],
    );
    assert!(status.success(), "{stdout}{stderr}");
    let readme = std::fs::read_to_string(crate_dir.join("README.md")).unwrap();
    let commands = readme_commands(&readme);
    assert_eq!(commands.len(), 3, "{readme}");

    // A server already running, as in the README: the new library arrives by a reload.
    let server = Server::start_in(
        plugin_dir(&[("mittari_plugin_nps", "mittari_plugin_nps")]),
        &[],
    );
    // The crate's target directory outlives the test (a link into the workspace's), so a
    // second run reuses the compiled SDK.
    let cargo_target = target_dir().join("plugin-new-test");
    std::fs::create_dir_all(&cargo_target).unwrap();
    std::os::unix::fs::symlink(&cargo_target, crate_dir.join("target")).unwrap();
    let mittari = mittari_e2e::mittari_bin();
    assert!(
        commands[1].starts_with(&format!("{} plugin check ", mittari.display())),
        "{readme}"
    );
    for command in &commands {
        let command = command
            .replace("PLUGIN_DIR", server.plugin_dir().to_str().unwrap())
            .replace("URL", &server.url());
        let output = Command::new("sh")
            .args(["-c", &command])
            .current_dir(&crate_dir)
            .env_remove("CARGO_TARGET_DIR")
            // As a new user runs them: without `mittari` on the PATH; the README names the
            // executable that wrote the crate.
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "`{command}` failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if command.contains(" plugin check ") {
            let report = String::from_utf8_lossy(&output.stdout);
            assert!(report.contains("\npassed: "), "{report}");
        }
        if command.contains(" admin reload ") {
            // The reload says what it changed.
            let said = String::from_utf8_lossy(&output.stdout);
            assert!(
                said.contains("library loaded: ")
                    && said.contains("metric now served: order_share"),
                "{said}"
            );
        }
    }

    // Served: 2 of 4 orders reach 100.
    let orders = work.path().join("orders.csv");
    std::fs::write(&orders, "amount\n50\n100\n150\n20\n").unwrap();
    let url = server.url();
    let (status, stdout, stderr) = run_cli(
        &[
            "compute",
            "order_share",
            "--input",
            orders.to_str().unwrap(),
            "--server",
            &url,
        ],
        work.path(),
        &[],
    );
    assert!(status.success(), "{stdout}{stderr}");
    let share: Vec<&str> = stdout
        .lines()
        .find(|line| line.starts_with("share "))
        .map(|line| line.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(share[..], ["share", "50", "%"], "{stdout}");

    // The report has no layout of its own for it: named, it gets the generic section.
    let report = |name: &str, extra: &[&str]| {
        let page = work.path().join(name);
        let mut args = vec!["report", "--input", orders.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--server", &url, "--output", page.to_str().unwrap()]);
        let (status, stdout, stderr) = run_cli(&args, work.path(), &[]);
        assert!(status.success(), "{stdout}{stderr}");
        std::fs::read_to_string(&page).unwrap()
    };
    let page = report(
        "orders.html",
        &["--metric", "order_share", "--param", "threshold=50"],
    );
    for text in [
        "<h2>order_share</h2>",
        "share of orders at or above a threshold",
        // 3 of 4 orders reach 50.
        "<td>share</td><td>75.0 %</td>",
    ] {
        assert!(page.contains(text), "no {text:?} in\n{page}");
    }
    assert!(!page.contains("none of its columns"), "{page}");

    // Not named: the input has every column it requires (amount), so the report has it too,
    // at its default threshold of 100 (2 of 4 orders).
    let page = report("auto.html", &[]);
    assert!(page.contains("<td>share</td><td>50.0 %</td>"), "{page}");
}

/// Rows of the large requests: a tenth of the default, as the test build is unoptimized.
const LARGE_ROWS: &str = "100000";

#[test]
fn every_bundled_plugin_passes_the_check() {
    let mut failures = Vec::new();
    for (name, _) in bundled_plugins() {
        let path = library(&name);
        let path = path.to_str().unwrap();
        let mut args = vec!["plugin", "check", path, "--large-rows", LARGE_ROWS];
        // clv's stored models, fitted to the example log: BG/NBD, MBG/NBD and Pareto/NBD.
        let fittable = name == "mittari_plugin_clv";
        if fittable {
            args.extend(["--fit-input", "examples/data/transactions.csv"]);
        }
        let (status, stdout, stderr) = run_cli(&args, &repo_root(), &[]);
        let round_trips = if fittable {
            "ok    fit and score: 3 requests fitted, stored and scored again gave the fit's results"
        } else {
            "--    fit and score: not run, the metric declares no fitted state"
        };
        if !status.success() || !stdout.contains("\npassed: ") || !stdout.contains(round_trips) {
            failures.push(format!("{name}: {status}\n{stdout}{stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_misbehaving_fixture_fails_with_each_misbehaviour_named() {
    let path = library("mittari_testplugin_misbehaving");
    let (status, stdout, stderr) = run_cli(
        &[
            "plugin",
            "check",
            path.to_str().unwrap(),
            "--large-rows",
            "1000",
            "--generated",
            "5",
            "--timeout",
            "3",
        ],
        &repo_root(),
        &[],
    );
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    // (metric, what the report must say about it)
    let expect = [
        (
            "test_aborts",
            "FAIL  the process died (11 requests; the first below): killed by signal 6 (SIGABRT",
        ),
        (
            "test_panics",
            "FAIL  panics (11 requests; the first below): the plugin panicked at tests/plugins/misbehaving/src/lib.rs",
        ),
        (
            "test_returns_nan",
            "FAIL  returns NaN or infinity (11 requests; the first below): the metric returned a non-finite value for value",
        ),
        (
            "test_undeclared_output",
            "FAIL  undeclared output (11 requests; the first below): the plugin returned output \"row_count\", which its descriptor does not declare",
        ),
        ("test_wrong_row", "FAIL  wrong row index ("),
        (
            "test_wrong_row",
            "an error names row 1 of \"value\", but the request has 1 rows",
        ),
        (
            "test_nondeterministic",
            "FAIL  not deterministic (6 requests; the first below): the same request gave two different results",
        ),
        (
            "test_leaks_path",
            "FAIL  internal error where a result or a clear error was due (11 requests; the first below): cannot open",
        ),
        (
            "test_sleeps",
            "FAIL  hangs: no answer after 3 s (plugin check --timeout)",
        ),
        (
            "test_run_on",
            "FAIL  descriptor: description: has a run of 18 spaces at byte 29",
        ),
        (
            "test_run_on",
            "output \"rows\": unit \"items\" is not one of %, count",
        ),
        (
            "test_panics",
            "FAIL  descriptor: description: the description is missing",
        ),
    ];
    for (metric, fragment) in expect {
        let section = section(&stdout, metric);
        assert!(
            section.contains(fragment),
            "{metric}: no {fragment:?} in\n{section}\n\nwhole report:\n{stdout}"
        );
    }
    assert!(stdout.contains("\nFAILED: "), "{stdout}");
}

#[test]
fn libraries_that_are_not_plugins_of_this_abi_fail_the_check_with_the_reason() {
    for (fixture, reason) in [
        (
            "mittari_testplugin_wrong_abi",
            "plugin ABI version 9999 is not one this server loads (1, 2, 3, 4, 5); rebuild the plugin against this server's mittari-sdk\n",
        ),
        (
            "mittari_testplugin_not_a_plugin",
            "not a mittari plugin: it does not export mittari_plugin_abi_version\n",
        ),
    ] {
        let path = library(fixture);
        let (status, stdout, stderr) = run_cli(
            &["plugin", "check", path.to_str().unwrap()],
            &repo_root(),
            &[],
        );
        assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
        assert!(
            stdout.contains(&format!("  FAIL  refused: {}: {reason}", path.display())),
            "{stdout}"
        );
    }
}

/// The report's lines about `metric`: its heading line and the indented lines after it.
fn section(report: &str, metric: &str) -> String {
    let mut lines = report.lines().skip_while(|line| *line != metric);
    let heading = lines
        .next()
        .unwrap_or_else(|| panic!("no section for {metric} in\n{report}"));
    let body: Vec<&str> = lines.take_while(|line| line.starts_with(' ')).collect();
    format!("{heading}\n{}", body.join("\n"))
}

/// `include/mittari_plugin.h` is cbindgen's output for `crates/sdk` with
/// `include/cbindgen.toml`: regenerate it after an ABI change with this test's output.
#[test]
fn the_c_header_is_what_cbindgen_makes_of_the_sdk() {
    let root = repo_root();
    let config = cbindgen::Config::from_file(root.join("include/cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_crate(root.join("crates/sdk"))
        .generate()
        .unwrap();
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let checked_in = std::fs::read_to_string(root.join("include/mittari_plugin.h")).unwrap();
    if generated != checked_in {
        let fresh = target_dir().join("mittari_plugin.h");
        std::fs::write(&fresh, &generated).unwrap();
        panic!(
            "include/mittari_plugin.h is not what cbindgen makes of crates/sdk; the fresh one is {}: copy it over if the ABI change is meant",
            fresh.display()
        );
    }
}

#[test]
fn a_plugin_written_in_c_loads_passes_the_check_and_computes() {
    let root = repo_root();
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join(format!(
        "{}mittari_plugin_repeat_purchase_rate{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let built = Command::new(&compiler)
        .args([
            "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
        ])
        .arg("-I")
        .arg(root.join("include"))
        .arg("-o")
        .arg(&library)
        .arg(root.join("examples/c_plugin/repeat_purchase_rate.c"))
        .output()
        .unwrap_or_else(|e| panic!("the system C compiler ({compiler}) does not run: {e}"));
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let (status, stdout, stderr) = run_cli(
        &[
            "plugin",
            "check",
            library.to_str().unwrap(),
            "--large-rows",
            LARGE_ROWS,
        ],
        &root,
        &[],
    );
    assert!(status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("ABI version 2, symbols present, metrics: repeat_purchase_rate"),
        "{stdout}"
    );

    // a and c order again: 2 of 4 customers; by region, n: a, b, c once each; s: a, c twice, d.
    let orders = dir.path().join("orders.csv");
    std::fs::write(
        &orders,
        "customer_id,region\na,n\nb,n\na,s\nc,s\nc,s\nc,n\nd,s\n",
    )
    .unwrap();
    let plugins = [("MITTARI__PLUGINS__DIR", dir.path().to_str().unwrap())];
    let compute = |extra: &[&str]| {
        let mut args = vec![
            "compute",
            "repeat_purchase_rate",
            "--input",
            orders.to_str().unwrap(),
            "--format",
            "csv",
        ];
        args.extend(extra);
        let (status, stdout, stderr) = run_cli(&args, dir.path(), &plugins);
        assert!(status.success(), "{stdout}{stderr}");
        stdout
    };
    let whole = compute(&[]);
    assert_eq!(whole, "repeat_purchase_rate,customers\n50,4\n");
    let by_region = compute(&["--group-by", "region"]);
    assert_eq!(
        by_region,
        "region,rows,repeat_purchase_rate,customers\nn,3,0,3\ns,4,33.333333333333336,3\n"
    );
}

/// The example third-party metric with a stored model (`examples/stateful_plugin`): it passes
/// the check with its fit and score round trip, and a server fits it on one set of orders and
/// scores another with the same path as clv's models.
#[tokio::test]
async fn a_third_party_metric_with_a_stored_model_fits_and_scores_through_a_server() {
    use mittari_proto::v1 as pb;
    use pb::model_service_client::ModelServiceClient;
    let path = library("mittari_example_order_baseline");
    let (status, stdout, stderr) = run_cli(
        &[
            "plugin",
            "check",
            path.to_str().unwrap(),
            "--large-rows",
            LARGE_ROWS,
            "--fit-input",
            "examples/data/transactions.csv",
        ],
        &repo_root(),
        &[],
    );
    assert!(status.success(), "{stdout}{stderr}");
    // The example file and the generated requests with amounts, fitted and scored again.
    assert!(
        stdout.contains("ok    fit and score: ")
            && stdout.contains("requests fitted, stored and scored again gave the fit's results")
            && !stdout.contains("no request could be fitted"),
        "{stdout}"
    );

    let server = Server::start_in(
        plugin_dir(&[(
            "mittari_example_order_baseline",
            "mittari_plugin_order_baseline",
        )]),
        &[],
    );
    let mut models = ModelServiceClient::new(server.channel().await);
    let amounts = |values: Vec<f64>| pb::Table {
        columns: vec![mittari_e2e::double_column("amount", &values)],
        ..Default::default()
    };
    use pb::fit_request::Message;
    let fit = vec![
        pb::FitRequest {
            message: Some(Message::Header(pb::FitHeader {
                name: "orders-2025".into(),
                input: Some(pb::ComputeStreamHeader {
                    metric: "order_baseline".into(),
                    schema: vec![pb::ColumnSchema {
                        name: "amount".into(),
                        r#type: pb::DataType::Double.into(),
                    }],
                    ..Default::default()
                }),
            })),
        },
        pb::FitRequest {
            // Orders worth 0 to 100: the p-th percentile is p.
            message: Some(Message::Chunk(amounts((0..=100).map(f64::from).collect()))),
        },
    ];
    let fitted = models
        .fit(tokio_stream::iter(fit))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fitted.model.unwrap().version, 1);
    // This week's orders, against last year's baseline: 2 of 4 above its 90th percentile.
    let scored = models
        .score(pb::ScoreRequest {
            model: "orders-2025".into(),
            input: Some(amounts(vec![50.5, 95.0, 120.0, 10.0])),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .unwrap();
    let scalar = |name: &str| {
        scored
            .scalars
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.value)
            .unwrap()
    };
    assert_eq!(scalar("orders"), 4.0);
    assert_eq!(scalar("baseline_orders"), 101.0);
    assert_eq!(scalar("share_above_p90"), 50.0);
    // Percentiles 10, 50.5, 95 and 100: the median is (50.5 + 95) / 2.
    assert_eq!(scalar("median_percentile"), 72.75);
}
