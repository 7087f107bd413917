//! The `mittari` CLI end to end: embedded engine and `--server` give identical output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use mittari_e2e::{Server, repo_root, run_cli};

const SURVEY: &str = "respondent,region,score\n1,north,10\n2,north,9\n3,north,9\n4,north,8\n5,north,7\n\
                      6,south,6\n7,south,5\n8,south,3\n9,south,10\n10,south,0\n";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Runs `mittari` in a scratch directory (no mittari.toml) and expects success.
/// The (code, message) of each warning of a `--format json` result.
fn warnings_of(out: &serde_json::Value) -> Vec<(String, String)> {
    out["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|w| {
                    (
                        w["code"].as_str().unwrap().to_owned(),
                        w["message"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn mittari(dir: &Path, args: &[&str]) -> String {
    let (status, stdout, stderr) = run_cli(args, dir, &[]);
    assert!(status.success(), "mittari {args:?} failed: {stderr}");
    stdout
}

/// `mittari compute clv --input INPUT --format json ARGS…` from the repository root, parsed.
fn clv_json(input: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["compute", "clv", "--input", input, "--format", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&mittari(&repo_root(), &all)).unwrap()
}

#[test]
fn embedded_and_server_paths_print_identical_results() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "survey.csv", SURVEY);
    let server = Server::start();
    let url = server.url();
    let variants: [&[&str]; 4] = [
        &[],
        &["--group-by", "region"],
        &["--param", "confidence=0.9"],
        &["--group-by", "region", "--param", "confidence=0.8"],
    ];
    for extra in variants {
        for format in ["json", "table", "csv"] {
            let mut args = vec!["compute", "nps", "--input", &input, "--format", format];
            args.extend_from_slice(extra);
            let embedded = mittari(dir.path(), &args);
            let mut remote = args.clone();
            remote.extend_from_slice(&["--server", &url]);
            assert_eq!(
                mittari(dir.path(), &remote),
                embedded,
                "unary, {format}, {extra:?}"
            );
            // Three rows per chunk: the input goes through ComputeStream.
            remote.extend_from_slice(&["--chunk-rows", "3"]);
            assert_eq!(
                mittari(dir.path(), &remote),
                embedded,
                "streamed, {format}, {extra:?}"
            );
        }
    }
}

#[test]
fn json_output_has_plain_names_and_exact_values() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "survey.csv", SURVEY);
    let out: serde_json::Value = serde_json::from_str(&mittari(
        dir.path(),
        &["compute", "nps", "--input", &input, "--format", "json"],
    ))
    .unwrap();
    // 4 promoters, 2 passives, 4 detractors of 10: nps 0, se = 100 * sqrt(0.8 / 10).
    assert_eq!(out["metric"], "nps");
    assert_eq!(out["rows"], 10);
    assert_eq!(out["results"]["nps"], 0);
    assert_eq!(out["results"]["responses"], 10);
    assert_eq!(out["results"]["promoters"], 4);
    assert_eq!(out["results"]["passives"], 2);
    assert_eq!(out["results"]["detractors"], 4);
    let se = out["results"]["standard_error"].as_f64().unwrap();
    assert!((se - 28.284271247461902).abs() < 1e-12, "{se}");
    assert_eq!(out["confidence_intervals"]["nps"]["level"], 0.95);
    assert_eq!(out["units"]["nps"], "points");

    let grouped: serde_json::Value = serde_json::from_str(&mittari(
        dir.path(),
        &[
            "compute",
            "nps",
            "--input",
            &input,
            "--format",
            "json",
            "--group-by",
            "region",
        ],
    ))
    .unwrap();
    let groups = grouped["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["key"]["region"], "north");
    assert_eq!(groups[0]["results"]["nps"], 60);
    assert_eq!(groups[1]["key"]["region"], "south");
    assert_eq!(groups[1]["results"]["nps"], -60);
}

/// Each case: CSV text, extra arguments, and fragments the error output must contain.
#[test]
fn bad_input_fails_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str], &[&str]); 5] = [
        (
            "score\n10\nten\n",
            &[],
            &["bad.csv: line 3: column score: \"ten\" is not an integer"],
        ),
        (
            "score\n10\n11\n",
            &[],
            &[
                "input.score[1]",
                "bad.csv line 3",
                "score 11 at row 1 is outside the allowed range 0..=10",
            ],
        ),
        (
            "rating\n10\n",
            &[],
            &[
                "bad.csv: nps needs a column score; its columns are rating; if it has another name here, map it with --column score=NAME",
            ],
        ),
        ("score\n", &[], &["input: the input has no responses"]),
        (
            "score\n10\n",
            &["--param", "confidence=lots"],
            &["--param confidence: \"lots\" is not a finite number"],
        ),
    ];
    for (csv, extra, expect) in cases {
        let input = write(dir.path(), "bad.csv", csv);
        let mut args = vec!["compute", "nps", "--input", input.as_str()];
        args.extend_from_slice(extra);
        let (status, stdout, stderr) = run_cli(&args, dir.path(), &[]);
        assert!(!status.success(), "{csv:?} succeeded: {stdout}");
        for fragment in expect {
            assert!(
                stderr.contains(fragment),
                "{csv:?}: {stderr:?} lacks {fragment:?}"
            );
        }
    }
}

#[test]
fn metrics_lists_and_describes() {
    let dir = tempfile::tempdir().unwrap();
    let list = mittari(dir.path(), &["metrics"]);
    assert!(list.lines().any(|l| l.starts_with("nps ")), "{list}");
    let describe = mittari(dir.path(), &["metrics", "nps"]);
    for fragment in [
        "score",
        "int64",
        "required",
        "0..=10",
        "confidence",
        "0.95",
        "standard_error",
    ] {
        assert!(describe.contains(fragment), "{describe} lacks {fragment}");
    }
    let (status, _, stderr) = run_cli(&["metrics", "npx"], dir.path(), &[]);
    assert!(!status.success());
    assert!(stderr.contains("unknown metric \"npx\""), "{stderr}");
}

#[test]
fn missing_plugins_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, stderr) = run_cli(
        &["metrics"],
        dir.path(),
        &[("MITTARI__PLUGINS__DIR", "/nonexistent/plugins")],
    );
    assert!(!status.success());
    assert!(stderr.contains("plugin directory /nonexistent/plugins does not exist; build the bundled plugins with `cargo build --workspace`"), "{stderr}");
    let empty = tempfile::tempdir().unwrap();
    let (status, _, stderr) = run_cli(
        &["metrics"],
        dir.path(),
        &[("MITTARI__PLUGINS__DIR", empty.path().to_str().unwrap())],
    );
    assert!(!status.success());
    assert!(stderr.contains("no usable metric plugin"), "{stderr}");
}

/// Every `cargo run -- compute …` line in the README runs (as the built binary) from the
/// repository root and prints a result.
#[test]
fn the_readme_examples_run() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let mut commands = Vec::new();
    for line in readme.lines() {
        for (i, _) in line.match_indices("-- compute ") {
            if !line[..i].trim_end().ends_with("cargo run")
                && !line[..i]
                    .trim_end()
                    .ends_with("cargo run --features mittari/lake")
            {
                continue;
            }
            let rest = &line[i + "-- ".len()..];
            let command = rest.split('`').next().unwrap();
            // The database examples run against a real server in tests/postgres.rs.
            if !command.contains("$DATABASE_URL") {
                commands.push(command.to_owned());
            }
        }
    }
    assert!(commands.len() >= 8, "{commands:?}");
    for command in commands {
        // Quoted as a shell needs them ('examples/data/*.parquet'), none with a space.
        let args: Vec<&str> = command
            .split_whitespace()
            .map(|arg| arg.trim_matches('\''))
            .collect();
        let (status, stdout, stderr) = run_cli(&args, &repo_root(), &[]);
        assert!(status.success(), "{command}: {stderr}");
        assert!(stdout.contains(" over "), "{command}: {stdout}");
        // The README passes no parameter that changes nothing.
        assert!(!stdout.contains("parameter_ignored"), "{command}: {stdout}");
    }
}

/// A parameter given that changes nothing for the model asked for is a warning naming it and
/// why, never silence; one that matters is not.
#[test]
fn parameters_that_change_nothing_are_warnings() {
    let root = repo_root();
    let warnings = |args: &[&str]| -> Vec<String> {
        let mut all = vec![
            "compute",
            "clv",
            "--input",
            "examples/data/transactions.csv",
            "--format",
            "json",
        ];
        all.extend_from_slice(args);
        let out: serde_json::Value = serde_json::from_str(&mittari(&root, &all)).unwrap();
        warnings_of(&out)
            .into_iter()
            .map(|(code, message)| format!("{code}: {message}"))
            .collect()
    };
    let check = |args: &[&str], expect: &[&str]| {
        let got = warnings(args);
        let ignored: Vec<&String> = got
            .iter()
            .filter(|w| w.starts_with("parameter_ignored") || w.starts_with("clv_is_revenue"))
            .collect();
        assert_eq!(ignored.len(), expect.len(), "{args:?}: {got:#?}");
        for (got, expect) in ignored.iter().zip(expect) {
            assert!(got.contains(expect), "{args:?}: {got:?} lacks {expect:?}");
        }
    };
    // The file has a margin column with every row filled: margin=0.3 fills in nothing.
    check(
        &[
            "--param",
            "model=simple",
            "--param",
            "margin=0.3",
            "--param",
            "lifespan=3",
        ],
        &[
            "parameter_ignored: margin=0.3 has no effect here: every row has a value in the margin column",
        ],
    );
    check(&["--param", "model=simple", "--param", "lifespan=3"], &[]);
    check(
        &["--param", "horizon=10", "--param", "lifespan=2"],
        &[
            "lifespan has no effect here: it applies to model simple, and this is model historic",
            "horizon=10 has no effect here",
        ],
    );
    check(
        &[
            "--param",
            "model=retention",
            "--param",
            "retention=0.8",
            "--param",
            "annual_margin=100",
            "--param",
            "margin=0.5",
        ],
        &["margin=0.5 has no effect here: annual_margin is given"],
    );
    // Without a spend model the predictive models value nothing: margin and discounting do
    // nothing, unless dert=true asks for discounted purchases; with one, the value is revenue
    // unless margin is given, and it says so. The churn window is the predictive models'.
    check(
        &[
            "--param",
            "model=bgnbd",
            "--param",
            "margin=0.3",
            "--param",
            "discount_rate=0.05",
        ],
        &[
            "discount_rate=0.05 has no effect here: without spend_model=gamma_gamma or dert=true",
            "margin=0.3 has no effect here",
        ],
    );
    check(
        &[
            "--param",
            "model=bgnbd",
            "--param",
            "dert=true",
            "--param",
            "discount_rate=0.05",
        ],
        &[],
    );
    check(
        &[
            "--param",
            "churn_window=13",
            "--param",
            "discount_rate=0.05",
        ],
        &[
            "discount_rate=0.05 has no effect here: it applies to model retention, or a predictive model",
            "churn_window has no effect here",
        ],
    );
    check(
        &[
            "--param",
            "model=bgnbd",
            "--param",
            "spend_model=gamma_gamma",
        ],
        &[
            "clv_is_revenue: clv and clv_total are revenue, not margin: model bgnbd values purchases at the margin parameter",
        ],
    );
    check(
        &[
            "--param",
            "model=bgnbd",
            "--param",
            "spend_model=gamma_gamma",
            "--param",
            "margin=0.3",
        ],
        &[],
    );
}

/// One bad-input case: metric, CSV, extra arguments, and fragments the error must contain.
type BadCase = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

/// The documented errors of every metric, embedded and through a server alike: the field
/// path names the column and request row, or the parameter.
#[test]
fn each_metric_refuses_bad_input_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let url = server.url();
    const PERIOD: &[&str] = &[
        "--param",
        "period_start=2024-01-01",
        "--param",
        "period_end=2025-01-01",
    ];
    let cases: &[BadCase] = &[
        (
            "price_gap",
            "quantity,target_price,realized_price\n1,10,9\n-2,10,9\n",
            &[],
            &[
                "input.quantity[1]",
                "line 3",
                "outside the allowed range 0..=1e15",
            ],
        ),
        (
            "price_gap",
            "quantity,target_price,realized_price\n1,-10,9\n",
            &[],
            &["input.target_price[0]"],
        ),
        (
            "price_gap",
            "quantity,target_price,realized_price\n",
            &[],
            &["input: the input has no order lines"],
        ),
        (
            "csat",
            "score\n5\n6\n",
            &[],
            &[
                "input.score[1]",
                "line 3",
                "score 6 is outside the scale 1..=5",
            ],
        ),
        (
            "csat",
            "score\n5\n",
            &["--param", "satisfied_min=1"],
            &["parameters.satisfied_min", "must be above scale_min 1"],
        ),
        (
            "aov",
            "customer_id,timestamp,amount\na,2024-01-01,-5\n",
            &[],
            &["input.amount[0]"],
        ),
        (
            "aov",
            "customer_id,timestamp,amount\na,2024-01-01,5\nb,,5\n",
            &[],
            &["input.timestamp[1]", "row 1 is empty"],
        ),
        (
            "service",
            "customer_id,opened_at,resolved_at\na,2024-03-01 09:00,2024-03-01 10:00\nb,2024-03-02 09:00,2024-03-01 10:00\n",
            &[],
            &[
                "input.resolved_at[1]",
                "line 3",
                "resolved_at is before opened_at",
            ],
        ),
        (
            "service",
            "customer_id,opened_at\na,2024-03-01 09:00\n",
            &["--param", "business_hours=9-17"],
            &[
                "parameters.business_hours",
                "write opening and closing time as 08:00-16:30",
            ],
        ),
        (
            "service",
            "customer_id,opened_at\na,2024-03-01 09:00\n",
            &["--param", "timezone=Europe/Helsinky"],
            &["parameters.timezone", "not an IANA time zone"],
        ),
        (
            "cx_value",
            "customer_id,score,revenue,retained\na,9,10,true\na,3,5,false\n",
            &[],
            &[
                "input.customer_id[1]",
                "\"a\" appears again (first at row 0)",
            ],
        ),
        (
            "cx_value",
            "customer_id,score,revenue,retained\na,9,10,true\n",
            &["--param", "best_min=5"],
            &["parameters.best_min", "must be greater than worst_max 6"],
        ),
        (
            "cx_value",
            "customer_id,score,revenue,retained\na,9,10,maybe\n",
            &[],
            &["line 2: column retained: \"maybe\" is not a boolean"],
        ),
        (
            "retention",
            "customer_id,start,end\na,2023-01-01,\nb,2024-05-01,2024-04-01\n",
            PERIOD,
            &[
                "input.end[1]",
                "line 3",
                "end 2024-04-01 precedes start 2024-05-01",
            ],
        ),
        (
            "retention",
            "customer_id,start,end\na,2024-06-01,\n",
            PERIOD,
            &["input: no customer was active at period_start 2024-01-01"],
        ),
        (
            "retention",
            "customer_id,start,end\na,2023-01-01,\n",
            &[
                "--param",
                "period_start=2024-01-01",
                "--param",
                "period_end=2023-01-01",
            ],
            &["parameters.period_end", "is not after period_start"],
        ),
        (
            "retention",
            "customer_id,start,end\na,2023-01-01,\n",
            &["--param", "period_start=2024-01-01"],
            &[
                "parameters.period_end",
                "required parameter period_end is missing",
            ],
        ),
        (
            "retention",
            "customer_id,start,end\na,2023-01-01,\n",
            &[
                "--param",
                "period_start=2024-01-01",
                "--param",
                "period_end=2024-12-31",
                "--param",
                "cohort_period=week",
            ],
            &[
                "parameters.cohort_period",
                "\"week\" is not one of the allowed values: month, quarter",
            ],
        ),
        (
            "clv",
            "customer_id,timestamp,amount\na,2024-01-01,5\n",
            &["--param", "model=simple"],
            &[
                "parameters.lifespan",
                "model simple needs the expected customer lifespan",
            ],
        ),
        (
            "clv",
            "customer_id,timestamp,amount\na,2024-01-01,5\n",
            &["--param", "model=simple", "--param", "lifespan=3"],
            &[
                "input.timestamp",
                "all transactions are at the same instant",
            ],
        ),
        (
            "clv",
            "customer_id,timestamp,amount,margin\na,2024-01-01,5,1.5\n",
            &[],
            &["input.margin[0]", "outside the allowed range 0..=1"],
        ),
        (
            "clv",
            "customer_id,timestamp,amount\na,2024-01-01,5\n",
            &["--param", "model=retention"],
            &[
                "parameters.retention",
                "model retention needs the annual retention probability",
            ],
        ),
        (
            "retention_forecast",
            "period,active\n0,100\n1,80\n1,70\n2,60\n",
            &[],
            &["input.period[2]", "period 1 appears again (first at row 1)"],
        ),
        (
            "retention_forecast",
            "period,active\n0,100\n2,80\n3,70\n",
            &[],
            &["input.period", "period 1 is missing"],
        ),
        (
            "retention_forecast",
            "period,active\n0,100\n1,80\n2,90\n",
            &[],
            &["input.active[2]", "line 4", "more than the 80 of period 1"],
        ),
        (
            "retention_forecast",
            "period,active\n0,100\n1,100\n2,100\n",
            &[],
            &["input.active", "no churn to fit"],
        ),
        (
            "retention_forecast",
            "period,active\n0,100\n1,80\n",
            &[],
            &["input.period", "at least two later periods"],
        ),
        (
            "clv",
            "frequency,recency,T\n2,30,20\n",
            &["--param", "model=bgnbd"],
            &["input.recency[0]", "recency 30 exceeds T 20"],
        ),
        (
            "clv",
            "frequency,recency,T\n0,3,20\n",
            &["--param", "model=bgnbd"],
            &["input.recency[0]", "without repeat purchases recency is 0"],
        ),
        (
            "clv",
            "frequency,recency,T\n1.5,3,20\n",
            &["--param", "model=bgnbd"],
            &["input.frequency[0]", "not a whole number"],
        ),
        (
            "clv",
            "frequency,recency,T\n1,3,20\n",
            &[
                "--param",
                "model=bgnbd",
                "--param",
                "spend_model=gamma_gamma",
            ],
            &[
                "parameters.spend_model",
                "gamma_gamma needs monetary values",
            ],
        ),
        (
            "clv",
            "frequency,recency,T\n1,3,20\n",
            &[
                "--param",
                "model=bgnbd",
                "--param",
                "holdout_start=2024-01-01",
            ],
            &[
                "parameters.holdout_start",
                "give its holdout as frequency_holdout and duration_holdout columns",
            ],
        ),
        (
            "clv",
            "frequency,recency,T,frequency_holdout\n1,3,20,2\n",
            &["--param", "model=bgnbd"],
            &["needs both frequency_holdout and duration_holdout"],
        ),
        (
            "clv",
            "frequency,recency,T,frequency_holdout,duration_holdout\n1,3,20,2,8\n0,0,9,1,9\n",
            &["--param", "model=bgnbd"],
            &[
                "input.duration_holdout[1]",
                "line 3",
                "9 here but 8 on the first row",
            ],
        ),
        (
            "clv",
            "frequency,recency,T,frequency_holdout,duration_holdout\n1,3,20,0.5,8\n",
            &["--param", "model=bgnbd"],
            &["input.frequency_holdout[0]", "not a whole number"],
        ),
        (
            "clv",
            "frequency,recency,T\n1,3,20\n",
            &[],
            &[
                "input.customer_id: model historic needs a transaction log with columns customer_id, timestamp and amount",
            ],
        ),
        (
            "clv",
            "customer_id,timestamp,amount\na,2024-01-01,5\n",
            &[
                "--param",
                "model=bgnbd",
                "--param",
                "holdout_start=2025-01-01",
            ],
            &[
                "parameters.holdout_start",
                "must be before the end of observation",
            ],
        ),
        (
            "clv",
            "frequency,recency,T\n1,3,20\n",
            &[
                "--param",
                "model=pareto_nbd",
                "--param",
                "observation_end=2024-01-01",
            ],
            &["parameters.observation_end", "applies to a transaction log"],
        ),
        (
            "clv",
            "frequency,recency,T\n1,3,20\n",
            &["--param", "model=bgbb"],
            &[
                "model bgbb needs one row per customer",
                "missing: n_periods",
            ],
        ),
        (
            "clv",
            "frequency,recency,n_periods\n0,0,6\n3,2,6\n",
            &["--param", "model=bgbb"],
            &[
                "input.frequency[1]",
                "line 3",
                "more than the 2 opportunities",
            ],
        ),
        (
            "clv",
            "frequency,recency,n_periods\n1,7,6\n",
            &["--param", "model=bgbb"],
            &["input.recency[0]", "after the last opportunity observed"],
        ),
        (
            "clv",
            "frequency,recency,n_periods\n1,1,6\n",
            &[
                "--param",
                "model=bgbb",
                "--param",
                "spend_model=gamma_gamma",
            ],
            &["parameters.spend_model", "predicts transactions only"],
        ),
    ];
    for (metric, csv, extra, expect) in cases {
        let input = write(dir.path(), "bad.csv", csv);
        for server in [None, Some(url.as_str())] {
            let mut args = vec!["compute", metric, "--input", input.as_str()];
            args.extend_from_slice(extra);
            if let Some(url) = server {
                args.extend(["--server", url]);
            }
            let (status, stdout, stderr) = run_cli(&args, dir.path(), &[]);
            assert!(!status.success(), "{metric} {csv:?} succeeded: {stdout}");
            for fragment in *expect {
                assert!(
                    stderr.contains(fragment),
                    "{metric} {csv:?} {extra:?} (server: {server:?}): {stderr:?} lacks {fragment:?}"
                );
            }
        }
    }
}

#[test]
fn every_metric_groups_through_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "lines.csv",
        "region,quantity,target_price,realized_price\nnorth,10,100,90\nnorth,5,200,200\nsouth,2,50,55\n",
    );
    let out: serde_json::Value = serde_json::from_str(&mittari(
        dir.path(),
        &[
            "compute",
            "price_gap",
            "--input",
            &input,
            "--group-by",
            "region",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    let groups = out["groups"].as_array().unwrap();
    assert_eq!(groups[0]["key"]["region"], "north");
    assert_eq!(groups[0]["results"]["discount_total"], 100);
    assert_eq!(groups[1]["key"]["region"], "south");
    assert_eq!(groups[1]["results"]["premium_total"], 10);
}

/// The issue's retention example exactly: S = 1000, E = 900, N = 200 gives retention 70 % and
/// churn 30 %. 1000 customers at the start of 2024, 300 of whom leave mid-year, and 200 who
/// join in March and stay; embedded and through a server.
#[test]
fn retention_rule_of_thumb_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("customer_id,start,end\n");
    for i in 0..1000 {
        let end = if i < 300 { "2024-06-30" } else { "" };
        csv.push_str(&format!("old{i},2023-01-01,{end}\n"));
    }
    for i in 0..200 {
        csv.push_str(&format!("new{i},2024-03-01,\n"));
    }
    let input = write(dir.path(), "customers.csv", &csv);
    let server = Server::start();
    let url = server.url();
    let args = [
        "compute",
        "retention",
        "--input",
        &input,
        "--param",
        "period_start=2024-01-01",
        "--param",
        "period_end=2025-01-01",
        "--format",
        "json",
    ];
    let mut remote = args.to_vec();
    remote.extend(["--server", &url]);
    for args in [&args[..], &remote[..]] {
        let out: serde_json::Value = serde_json::from_str(&mittari(dir.path(), args)).unwrap();
        let results = &out["results"];
        assert_eq!(
            (
                &results["customers_at_start"],
                &results["customers_at_end"],
                &results["new_customers"]
            ),
            (
                &serde_json::json!(1000),
                &serde_json::json!(900),
                &serde_json::json!(200)
            )
        );
        assert_eq!(results["retention_rate"], 70);
        assert_eq!(results["churn_rate"], 30);
        assert_eq!(results["churned_customers"], 300);
    }
}

/// A holdout split through the predictive model: fitted before the holdout, compared in it.
#[test]
fn clv_holdout_validation() {
    let dir = tempfile::tempdir().unwrap();
    let input = repo_root().join("examples/data/transactions.csv");
    let out: serde_json::Value = serde_json::from_str(&mittari(
        dir.path(),
        &[
            "compute",
            "clv",
            "--input",
            input.to_str().unwrap(),
            "--param",
            "model=bgnbd",
            "--param",
            "holdout_start=2024-07-01",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    let results = &out["results"];
    let (actual, predicted) = (
        results["holdout_purchases"].as_f64().unwrap(),
        results["predicted_holdout_purchases"].as_f64().unwrap(),
    );
    assert!(actual > 0.0 && predicted > 0.0, "{results}");
    assert!(
        out["undefined"]["clv"]
            .as_str()
            .unwrap()
            .contains("spend_model=gamma_gamma")
    );
    let customers = out["tables"]["customers"].as_array().unwrap();
    assert!(customers[0].get("holdout_purchases").is_some());
    // The customers table comes highest expected purchases first.
    let first = customers[0]["expected_purchases"].as_f64().unwrap();
    assert!(
        customers
            .iter()
            .all(|c| c["expected_purchases"].as_f64().unwrap() <= first)
    );

    // The same split as a summary with lifetimes' holdout columns (what `mittari sql rfm
    // --holdout-start` computes in a database) gives the same fit and holdout comparison. The
    // holdout runs from 2024-07-01's week to the week of the log's last day.
    let week = |date: &str| {
        let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .unwrap()
            .signed_duration_since(chrono::NaiveDate::default())
            .num_days();
        (day + 3).div_euclid(7)
    };
    let log = std::fs::read_to_string(&input).unwrap();
    let last = log.lines().skip(1).map(|l| &l[6..16]).max().unwrap();
    let duration = week(last) - week("2024-07-01");
    let mut summary =
        String::from("customer_id,frequency,recency,T,frequency_holdout,duration_holdout\n");
    for c in customers {
        summary.push_str(&format!(
            "{},{},{},{},{},{duration}\n",
            c["customer_id"].as_str().unwrap(),
            c["frequency"],
            c["recency"],
            c["T"],
            c["holdout_purchases"]
        ));
    }
    let path = dir.path().join("summary.csv");
    std::fs::write(&path, summary).unwrap();
    let from_summary: serde_json::Value = serde_json::from_str(&mittari(
        dir.path(),
        &[
            "compute",
            "clv",
            "--input",
            path.to_str().unwrap(),
            "--param",
            "model=bgnbd",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    for name in [
        "r",
        "alpha",
        "a",
        "b",
        "holdout_purchases",
        "predicted_holdout_purchases",
    ] {
        let (got, expected) = (
            from_summary["results"][name].as_f64().unwrap(),
            results[name].as_f64().unwrap(),
        );
        assert!(
            (got - expected).abs() < 1e-6 * expected,
            "{name}: {got} != {expected}"
        );
    }
}

/// Every predictive model through the CLI, on the datasets of the papers: the published
/// estimates to 3 significant digits, the printed parameters with their standard errors, the
/// printed customers cut to `top`, and the full table in CSV and Parquet.
#[test]
fn clv_models_reproduce_the_papers_and_write_every_customer() {
    let dir = tempfile::tempdir().unwrap();
    let data = repo_root().join("tests/data");
    let cdnow = data.join("cdnow_summary.csv");
    let donations = data.join("donations.csv");
    // (model, input, published estimates)
    type Case<'a> = (&'a str, &'a Path, &'a [(&'a str, f64)]);
    let cases: &[Case] = &[
        // Fader, Hardie & Lee (2005).
        (
            "bgnbd",
            &cdnow,
            &[("r", 0.243), ("alpha", 4.414), ("a", 0.793), ("b", 2.426)],
        ),
        // Fader, Hardie & Lee (2005), the MATLAB note.
        (
            "pareto_nbd",
            &cdnow,
            &[
                ("r", 0.553),
                ("alpha", 10.58),
                ("s", 0.606),
                ("beta", 11.67),
            ],
        ),
        // No paper fits MBG/NBD to CDNOW; lifetimes 0.11.3 finds these.
        (
            "mbgnbd",
            &cdnow,
            &[("r", 0.525), ("alpha", 6.183), ("a", 0.891), ("b", 1.614)],
        ),
        // Fader, Hardie & Shang (2010).
        (
            "bgbb",
            &donations,
            &[
                ("alpha", 1.204),
                ("beta", 0.750),
                ("gamma", 0.657),
                ("delta", 2.783),
            ],
        ),
    ];
    for &(model, input, published) in cases {
        let model_param = format!("model={model}");
        let mut args = vec![
            "compute",
            "clv",
            "--input",
            input.to_str().unwrap(),
            "--param",
            &model_param,
        ];
        if model != "bgbb" {
            args.extend(["--param", "spend_model=gamma_gamma"]);
        }
        let json: serde_json::Value = serde_json::from_str(&mittari(
            dir.path(),
            &[&args[..], &["--format", "json"]].concat(),
        ))
        .unwrap();
        for &(name, want) in published {
            let got = json["results"][name].as_f64().unwrap();
            assert!(
                (got - want).abs() < 5e-4 * want.max(1.0),
                "{model} {name}: {got} vs {want}"
            );
            assert!(json["results"][format!("{name}_se")].as_f64().unwrap() > 0.0);
        }
        let csv_path = dir.path().join(format!("{model}.csv"));
        let parquet_path = dir.path().join(format!("{model}.parquet"));
        for path in [&csv_path, &parquet_path] {
            let printed = mittari(
                dir.path(),
                &[
                    &args[..],
                    &["--param", "top=3", "--output", path.to_str().unwrap()],
                ]
                .concat(),
            );
            let (first, _) = published[0];
            assert!(
                printed
                    .lines()
                    .any(|l| l.starts_with(&format!("{first} ")) && l.contains("± ")),
                "{model}: {printed}"
            );
            let customers = json["tables"]["customers"].as_array().unwrap().len();
            assert!(
                printed.contains(&format!("… {} more rows", customers - 3)),
                "{model}: {printed}"
            );
        }
        let rows = json["tables"]["customers"].as_array().unwrap();
        let text = std::fs::read_to_string(&csv_path).unwrap();
        assert_eq!(text.lines().count(), rows.len() + 1, "{model}");
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let expected_header: Vec<&str> = rows[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(header.len(), expected_header.len(), "{model}: {header:?}");
        // The first written row is the top customer, exactly as JSON gives it.
        let first: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
        let p_alive = header.iter().position(|h| *h == "p_alive").unwrap();
        assert_eq!(
            first[p_alive].parse::<f64>().unwrap(),
            rows[0]["p_alive"].as_f64().unwrap()
        );

        let file = std::fs::File::open(&parquet_path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<_> = reader.map(Result::unwrap).collect();
        let total: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(total, rows.len(), "{model}");
        let names: Vec<String> = batches[0]
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, header, "{model}");
    }
}

/// The CLI never destroys or misreads data silently: results are not written over the input,
/// an open quote is an error at its line, a stream of zeros is refused at once, and a server
/// asked for over https is not sent data in clear text.
#[test]
fn the_cli_refuses_what_would_lose_or_leak_data() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "survey.csv", SURVEY);
    let link = dir.path().join("link.csv");
    std::os::unix::fs::symlink(&input, &link).unwrap();
    let unbalanced = write(
        dir.path(),
        "unbalanced.csv",
        "score,region\n10,\"north\n9,south\n8,south\n",
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["compute", "nps", "--input", &input, "--output", &input],
            "is the input file",
        ),
        (
            vec![
                "compute",
                "nps",
                "--input",
                &input,
                "--output",
                link.to_str().unwrap(),
            ],
            "is the input file",
        ),
        (
            vec!["compute", "nps", "--input", &unbalanced],
            "unbalanced.csv: line 2: a quote opens here and is never closed",
        ),
        (
            vec!["compute", "nps", "--input", "/dev/zero"],
            "/dev/zero: line 1: a NUL byte at byte 0",
        ),
        (
            vec![
                "compute",
                "nps",
                "--input",
                &input,
                "--server",
                "http://127.0.0.1:9",
                "--ca-cert",
                &input,
            ],
            "--ca-cert and --client-cert need an https:// server; http://127.0.0.1:9 would be reached in clear text",
        ),
        (
            vec![
                "compute",
                "nps",
                "--input",
                &input,
                "--server",
                "ftp://127.0.0.1:9",
            ],
            "--server \"ftp://127.0.0.1:9\" must start with http:// or https://",
        ),
    ];
    for (args, expect) in cases {
        let (status, _, stderr) = run_cli(&args, dir.path(), &[]);
        assert!(!status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
    // A token is never sent in clear text beyond loopback (refused before any connection;
    // 192.0.2.1 is a documentation address no test reaches).
    for args in [
        vec![
            "compute",
            "nps",
            "--input",
            &input,
            "--server",
            "http://192.0.2.1:50051",
        ],
        vec!["metrics", "--server", "http://192.0.2.1:50051"],
        vec!["admin", "plugins", "--server", "http://192.0.2.1:50051"],
    ] {
        let (status, _, stderr) = run_cli(&args, dir.path(), &[("MITTARI_TOKEN", "secret")]);
        assert!(!status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains("MITTARI_TOKEN would travel in clear text to http://192.0.2.1:50051"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("secret"), "{stderr}");
    }
    assert_eq!(std::fs::read_to_string(&input).unwrap(), SURVEY);
}

/// The shipped transactions in three forms — comma CSV, Parquet (dates, decimals, a
/// dictionary column) and a Finnish spreadsheet export (semicolons, decimal commas,
/// day.month.year dates, Finnish column names, a byte order mark, CRLF) — give the same CLV,
/// embedded and on a server, to the last digit.
#[test]
fn every_input_format_gives_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let data = mittari_e2e::repo_root().join("examples/data");
    let path = |name: &str| data.join(name).to_str().unwrap().to_owned();
    let (csv, parquet, finnish) = (
        path("transactions.csv"),
        path("transactions.parquet"),
        path("transactions_fi.csv"),
    );
    let model = mittari_e2e::CLV_BY_CHANNEL;
    let server = Server::start();
    let url = server.url();
    let mut outputs = Vec::new();
    for remote in [None, Some(url.as_str())] {
        for input in [
            vec!["--input", csv.as_str()],
            vec!["--input", parquet.as_str()],
            [
                ["--input", finnish.as_str()].as_slice(),
                &mittari_e2e::FINNISH_COLUMNS,
                &["--date-format", "%d.%m.%Y"],
            ]
            .concat(),
        ] {
            let mut args = vec!["compute", "clv"];
            args.extend(input);
            args.extend(model);
            if let Some(url) = remote {
                args.extend(["--server", url]);
            }
            outputs.push(mittari(dir.path(), &args));
        }
    }
    assert!(outputs[0].contains("\"customers\""), "{}", outputs[0]);
    for (i, output) in outputs.iter().enumerate() {
        assert_eq!(output, &outputs[0], "variant {i} differs");
    }
}

/// `--server` takes the address as the server logs it (`127.0.0.1:PORT`) on loopback, and asks
/// for a scheme elsewhere; an unknown metric is answered with the closest one.
#[test]
fn the_server_address_as_logged_is_accepted_on_loopback() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let address = server.addr.to_string();
    let (status, stdout, stderr) = run_cli(&["metrics", "--server", &address], dir.path(), &[]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("nps"), "{stdout}");
    let (status, _, stderr) = run_cli(&["metrics", "--server", "192.0.2.1:50051"], dir.path(), &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("has no scheme: write https://192.0.2.1:50051"),
        "{stderr}"
    );
    let input = write(dir.path(), "survey.csv", SURVEY);
    for server_args in [vec![], vec!["--server", address.as_str()]] {
        let mut args = vec!["compute", "npss", "--input", &input];
        args.extend(&server_args);
        let (status, _, stderr) = run_cli(&args, dir.path(), &[]);
        assert!(!status.success());
        assert!(stderr.contains("(did you mean nps?)"), "{stderr}");
    }
}

/// A missing value in a CRLF file (a spreadsheet export) is reported on its own line, as in an
/// LF file.
#[test]
fn a_missing_value_in_a_crlf_file_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    for ending in ["\n", "\r\n"] {
        let text = [
            "respondent,region,score",
            "1,north,10",
            "2,north,9",
            "3,south,",
            "4,south,8",
        ]
        .join(ending);
        let input = write(dir.path(), "missing.csv", &text);
        let (status, _, stderr) = run_cli(&["compute", "nps", "--input", &input], dir.path(), &[]);
        assert!(!status.success());
        assert!(
            stderr.contains("missing.csv line 4)"),
            "{ending:?}: {stderr}"
        );
    }
}

/// Fits that cannot identify their parameters are flagged with every reason, the parameters
/// named, and each with its interval; fits that can are not. Three customers drive the BG/NBD
/// and Pareto/NBD to a limit of the model (r and α growing together without bound, P(alive)
/// = 1) where the fit used to report r = 19 446 749 as an estimate; Pareto/NBD used to take
/// minutes there.
#[test]
fn fits_that_identify_nothing_are_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let three = write(
        dir.path(),
        "three.csv",
        &mittari_e2e::example_log_of(&["c0001", "c0002", "c0003"]),
    );
    for (model, label, parameters) in [
        ("bgnbd", "BG/NBD", "(r, alpha, a, b)"),
        ("pareto_nbd", "Pareto/NBD", "(r, alpha, s, beta)"),
    ] {
        let out: serde_json::Value = serde_json::from_str(&mittari(
            dir.path(),
            &[
                "compute",
                "clv",
                "--input",
                &three,
                "--param",
                &format!("model={model}"),
                "--format",
                "json",
            ],
        ))
        .unwrap();
        let flagged: Vec<(String, String)> = warnings_of(&out)
            .into_iter()
            .filter(|(code, _)| code == "fit_not_identified")
            .collect();
        assert_eq!(flagged.len(), 1, "{model}: {out}");
        let message = &flagged[0].1;
        for fragment in [
            format!("the {label} fit does not identify its parameters {parameters}"),
            "3 customers are too few to estimate 4 parameters (at least 40 are needed)".to_owned(),
            "reached the edge of the range the fit searches".to_owned(),
            "read them as no finding".to_owned(),
        ] {
            assert!(
                message.contains(&fragment),
                "{model}: no {fragment:?} in {message}"
            );
        }
        let r = out["results"]["r"].as_f64().unwrap();
        assert!(
            r <= 1.000_001e6,
            "{model}: r = {r} is past the searched range"
        );
    }
    // The terminal shows the warning before the tables, where it is read.
    let text = mittari(
        dir.path(),
        &[
            "compute",
            "clv",
            "--input",
            &three,
            "--param",
            "model=bgnbd",
        ],
    );
    let warning = text
        .find("warning: the BG/NBD fit does not identify")
        .expect(&text);
    assert!(warning < text.find("customers:").unwrap(), "{text}");

    // The example log identifies both fits: no warning, and intervals on the parameters.
    let out: serde_json::Value = serde_json::from_str(&mittari(
        &repo_root(),
        &[
            "compute",
            "clv",
            "--input",
            "examples/data/transactions.csv",
            "--param",
            "model=bgnbd",
            "--param",
            "spend_model=gamma_gamma",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    assert!(
        warnings_of(&out)
            .iter()
            .all(|(code, _)| !code.ends_with("fit_not_identified")),
        "{out}"
    );
    let r = &out["confidence_intervals"]["r"];
    assert!(
        r["lower"].as_f64().unwrap() < out["results"]["r"].as_f64().unwrap(),
        "{r}"
    );
    assert_eq!(r["level"], 0.95);

    // sBG: a cohort that keeps 60 % every period shows no heterogeneity to estimate.
    let constant = write(
        dir.path(),
        "constant.csv",
        "period,active\n0,100\n1,60\n2,36\n3,22\n",
    );
    let out: serde_json::Value = serde_json::from_str(&mittari(
        dir.path(),
        &[
            "compute",
            "retention_forecast",
            "--input",
            &constant,
            "--format",
            "json",
        ],
    ))
    .unwrap();
    let flagged: Vec<String> = warnings_of(&out)
        .into_iter()
        .filter(|(code, _)| code == "fit_not_identified")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(flagged.len(), 1, "{out}");
    assert!(
        flagged[0].contains("the standard error is larger than the estimate for alpha"),
        "{}",
        flagged[0]
    );
    let out: serde_json::Value = serde_json::from_str(&mittari(
        &repo_root(),
        &[
            "compute",
            "retention_forecast",
            "--input",
            "examples/data/cohorts.csv",
            "--group-by",
            "cohort",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    assert!(!out.to_string().contains("fit_not_identified"), "{out}");
}

/// `--on-missing skip` leaves out rows with an empty cell in a column the metric reads or
/// groups by, and the result says how many and where the first was; without it the metric
/// refuses them as before.
#[test]
fn on_missing_skip_leaves_rows_out_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    // CRLF, as a spreadsheet writes it: the first skipped row is on line 3.
    let input = write(
        dir.path(),
        "survey.csv",
        "respondent,region,score\r\n1,north,9\r\n2,north,\r\n3,south,3\r\n4,,10\r\n5,south,10\r\n",
    );
    let (status, _, stderr) = run_cli(&["compute", "nps", "--input", &input], dir.path(), &[]);
    assert!(!status.success());
    assert!(stderr.contains("line 3"), "{stderr}");

    let out: serde_json::Value = serde_json::from_str(&mittari(
        dir.path(),
        &[
            "compute",
            "nps",
            "--input",
            &input,
            "--on-missing",
            "skip",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    // Only row 2 (line 3) lacks a score (the region is not read ungrouped): 9, 3, 10, 10 →
    // 3 promoters, 1 detractor of 4.
    assert_eq!(out["results"]["responses"], 4, "{out}");
    assert_eq!(out["results"]["nps"], 50, "{out}");
    let skipped = out["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == "rows_skipped")
        .unwrap_or_else(|| panic!("no rows_skipped in {out}"));
    assert_eq!(
        skipped["message"],
        format!(
            "1 row with an empty cell in a column the metric reads or groups by was left out (--on-missing skip) (the first: {input} line 3, column score)"
        ),
        "{out}"
    );
    // Grouped by region: the row without a region is left out too, and the warning is
    // about every group, said once.
    let text = mittari(
        dir.path(),
        &[
            "compute",
            "nps",
            "--input",
            &input,
            "--on-missing",
            "skip",
            "--group-by",
            "region",
        ],
    );
    assert!(
        text.contains("warning [every group]: 2 rows with an empty cell"),
        "{text}"
    );
    assert_eq!(text.matches("rows_skipped").count(), 1, "{text}");
}

/// A metric that finds a column missing gets the same help as one the reader finds missing:
/// the file's columns and the --column that maps one.
#[test]
fn a_missing_column_lists_the_files_columns_for_every_metric() {
    let (status, _, stderr) = run_cli(
        &["compute", "clv", "--input", "examples/data/nps.csv"],
        &repo_root(),
        &[],
    );
    assert!(!status.success());
    for fragment in [
        "input.customer_id: model historic needs a transaction log with columns customer_id, timestamp and amount; missing: customer_id, amount",
        "examples/data/nps.csv has columns respondent, region, channel, score, timestamp: if one of them holds customer_id, map it with --column customer_id=NAME",
    ] {
        assert!(stderr.contains(fragment), "no {fragment:?} in {stderr}");
    }
}

/// One's own plugins live in a directory of their own, listed in `plugins.extra_dirs`, and are
/// loaded beside the bundled ones; with `plugins.libraries` the setting would change nothing,
/// and start-up says so.
#[test]
fn own_plugins_load_from_extra_dirs() {
    let bundled = mittari_e2e::plugin_dir(&[("mittari_plugin_nps", "mittari_plugin_nps")]);
    let own = mittari_e2e::plugin_dir(&[("mittari_plugin_csat", "mittari_plugin_csat")]);
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "mittari.toml",
        &format!(
            "[plugins]\ndir = {:?}\nextra_dirs = [{:?}]\n",
            bundled.path(),
            own.path()
        ),
    );
    let listed = mittari(dir.path(), &["--config", &config, "metrics"]);
    let names: Vec<&str> = listed
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(names, ["csat", "nps"], "{listed}");

    let conflicting = write(
        dir.path(),
        "both.toml",
        &format!(
            "[plugins]\ndir = {:?}\nlibraries = [\"mittari_plugin_nps\"]\nextra_dirs = [{:?}]\n",
            bundled.path(),
            own.path()
        ),
    );
    let (status, _, stderr) = run_cli(&["--config", &conflicting, "metrics"], dir.path(), &[]);
    assert!(!status.success());
    assert!(
        stderr.contains(
            "plugins.extra_dirs would change nothing: plugins.libraries names every library to load"
        ),
        "{stderr}"
    );
}

/// With `interval`, every per-customer prediction is followed by its ends, which hold it and
/// stay in range, widen with the level, and the totals carry theirs: a total's interval is far
/// narrower than the sum of the customers' (their errors come from one set of parameters and
/// partly cancel). The churn columns: P(no purchase) falls as the window grows, and P(alive at
/// the window's end) is at most P(alive). Calendar months count as time units.
#[test]
fn predictions_carry_intervals_and_churn_probabilities() {
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "--param",
            "model=bgnbd",
            "--param",
            "spend_model=gamma_gamma",
            "--param",
            "margin=0.3",
        ];
        args.extend_from_slice(extra);
        clv_json("examples/data/transactions.csv", &args)
    };
    let at_90 = run(&[
        "--param",
        "interval=0.9",
        "--param",
        "churn_window=13",
        "--param",
        "dert=true",
    ]);
    let at_99 = run(&[
        "--param",
        "interval=0.99",
        "--param",
        "churn_window=13",
        "--param",
        "dert=true",
    ]);
    let customers =
        |out: &serde_json::Value| out["tables"]["customers"].as_array().unwrap().clone();
    let (c90, c99) = (customers(&at_90), customers(&at_99));
    assert_eq!(c90.len(), 385);
    let number = |row: &serde_json::Value, column: &str| {
        row[column]
            .as_f64()
            .unwrap_or_else(|| panic!("{column} in {row}"))
    };
    let columns = [
        ("p_alive", true),
        ("expected_purchases", false),
        ("p_no_purchase", true),
        ("p_alive_at_window_end", true),
        ("dert", false),
        ("expected_spend", false),
        ("clv", false),
        ("residual_value", false),
    ];
    let mut widened = 0;
    for (row90, row99) in c90.iter().zip(&c99) {
        assert_eq!(row90["customer_id"], row99["customer_id"]);
        // The value of the purchases to come: from nothing (where no purchase is likely) up,
        // and wider at 99 %.
        let (low, high) = (
            number(row90, "purchase_value_lower"),
            number(row90, "purchase_value_upper"),
        );
        assert!(0.0 <= low && low <= high, "{row90}");
        assert!(number(row99, "purchase_value_upper") >= high, "{row99}");
        // No value exactly where no purchase is within the interval of purchases.
        assert_eq!(
            low == 0.0,
            number(row90, "purchases_lower") == 0.0,
            "{row90}"
        );
        for (column, probability) in columns {
            let value = number(row90, column);
            let (lower, upper) = (
                number(row90, &format!("{column}_lower")),
                number(row90, &format!("{column}_upper")),
            );
            assert!(
                lower <= value && value <= upper,
                "{column}: {lower} {value} {upper} in {row90}"
            );
            assert!(lower >= 0.0 && (!probability || upper <= 1.0), "{row90}");
            let (lower99, upper99) = (
                number(row99, &format!("{column}_lower")),
                number(row99, &format!("{column}_upper")),
            );
            assert!(lower99 <= lower && upper <= upper99, "{column}: {row99}");
            widened += usize::from(upper99 - lower99 > upper - lower);
        }
        assert!(number(row90, "p_alive_at_window_end") <= number(row90, "p_alive") + 1e-12);
        // The prediction interval of what the customer will buy: whole purchases, wider at
        // 99 %. (Not always wider than the expectation's interval: for a customer most likely
        // gone, 90 % of outcomes are no purchase at all.)
        let (low, high) = (
            number(row90, "purchases_lower"),
            number(row90, "purchases_upper"),
        );
        assert!(
            low.fract() == 0.0 && high.fract() == 0.0 && low <= high,
            "{row90}"
        );
        assert!(
            number(row99, "purchases_lower") <= low && high <= number(row99, "purchases_upper")
        );
    }
    assert!(
        widened > 385 * 6,
        "only {widened} intervals widened at 99 %"
    );
    // The total's interval, against the customers': on the log scale, a sum's gradient is the
    // value-weighted mean of the customers' log gradients, so its spread is at most their
    // value-weighted mean spread, and less where their errors differ in direction. Adding the
    // customers' intervals would give the mean itself.
    let total = &at_90["confidence_intervals"]["clv_total"];
    assert_eq!(total["level"], 0.9);
    let spread = (total["upper"].as_f64().unwrap() / total["lower"].as_f64().unwrap()).ln();
    let value: f64 = c90.iter().map(|row| number(row, "clv")).sum();
    let mean_spread: f64 = c90
        .iter()
        .map(|row| {
            number(row, "clv") / value * (number(row, "clv_upper") / number(row, "clv_lower")).ln()
        })
        .sum();
    assert!(
        spread > 0.0 && spread < 0.95 * mean_spread,
        "{spread} vs {mean_spread}"
    );
    for name in [
        "expected_purchases",
        "expected_active",
        "expected_lapsing",
        "expected_dropouts",
        "dert_total",
        "expected_spend",
        "clv",
        "residual_value_total",
    ] {
        let interval = &at_90["confidence_intervals"][name];
        let value = at_90["results"][name].as_f64().unwrap();
        assert!(
            interval["lower"].as_f64().unwrap() <= value
                && value <= interval["upper"].as_f64().unwrap(),
            "{name}: {interval} around {value}"
        );
    }
    // A longer window: fewer customers without a purchase in it.
    let longer = run(&["--param", "churn_window=52"]);
    let lapsing = |out: &serde_json::Value| out["results"]["expected_lapsing"].as_f64().unwrap();
    assert!(
        lapsing(&longer) < lapsing(&at_90),
        "{} vs {}",
        lapsing(&longer),
        lapsing(&at_90)
    );
    assert!(customers(&longer)[0].get("p_alive_lower").is_none());
    // Calendar months: the same customers, the longest observed about as many months as
    // weeks × 7 / 30.44.
    let monthly = run(&["--param", "time_unit=month", "--param", "horizon=12"]);
    let months = customers(&monthly);
    assert_eq!(months.len(), 385);
    let longest =
        |rows: &[serde_json::Value]| rows.iter().map(|row| number(row, "T")).fold(0.0, f64::max);
    let (in_months, in_weeks) = (longest(&months), longest(&c90));
    assert!(
        (in_months - in_weeks * 7.0 / 30.4375).abs() <= 1.5,
        "{in_months} months, {in_weeks} weeks"
    );
}

/// `uncertainty=bootstrap`: the draws are seeded (the same intervals twice), every kept
/// customer's ends are ordered, and the totals' intervals are of the delta method's size on
/// the same data (each within a factor 2 of its width, and overlapping it).
#[test]
fn bootstrap_intervals_are_reproducible_and_agree_with_the_delta_method() {
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "--param",
            "model=bgnbd",
            "--param",
            "spend_model=gamma_gamma",
            "--param",
            "margin=0.3",
            "--param",
            "interval=0.9",
            "--param",
            "top=20",
            "--param",
            "dert=true",
        ];
        args.extend_from_slice(extra);
        clv_json("examples/data/transactions.csv", &args)
    };
    let boot = [
        "--param",
        "uncertainty=bootstrap",
        "--param",
        "bootstrap_draws=40",
    ];
    let (first, second) = (run(&boot), run(&boot));
    assert_eq!(first["tables"]["customers"], second["tables"]["customers"]);
    assert_eq!(
        first["confidence_intervals"],
        second["confidence_intervals"]
    );
    // 40 draws: the ends are noisy, and the output says the intervals cover less than 90 %.
    assert!(
        warnings_of(&first)
            .iter()
            .any(|(code, message)| code == "bootstrap_draws_few"
                && message.contains("from 40 bootstrap draws")),
        "{first}"
    );
    let rows = first["tables"]["customers"].as_array().unwrap();
    assert_eq!(rows.len(), 20);
    for row in rows {
        for column in ["p_alive", "expected_purchases", "clv", "residual_value"] {
            let lower = row[format!("{column}_lower")].as_f64().unwrap();
            let upper = row[format!("{column}_upper")].as_f64().unwrap();
            assert!(lower <= upper, "{column}: {row}");
        }
    }
    // Pareto/NBD does not identify s and β on this file: no bootstrap, and a warning why.
    let unidentified = run(&[
        "--param",
        "model=pareto_nbd",
        "--param",
        "uncertainty=bootstrap",
    ]);
    let warnings = warnings_of(&unidentified);
    assert!(
        warnings
            .iter()
            .any(|(code, message)| code == "interval_unavailable"
                && message.contains("the Pareto/NBD fit does not identify its parameters")),
        "{warnings:?}"
    );
    assert!(
        unidentified["tables"]["customers"][0]
            .get("p_alive_lower")
            .is_none()
    );
    let delta = run(&[]);
    for name in [
        "expected_purchases",
        "clv_total",
        "expected_spend",
        "expected_active",
    ] {
        let ends = |out: &serde_json::Value| {
            let interval = &out["confidence_intervals"][name];
            (
                interval["lower"].as_f64().unwrap(),
                interval["upper"].as_f64().unwrap(),
            )
        };
        let ((bl, bu), (dl, du)) = (ends(&first), ends(&delta));
        let ratio = (bu - bl) / (du - dl);
        assert!(
            (0.5..2.0).contains(&ratio) && bl < du && dl < bu,
            "{name}: bootstrap [{bl}, {bu}], delta [{dl}, {du}]"
        );
    }
}

/// The goodness of fit on CDNOW under BG/NBD: the repeat-purchase histogram observed against
/// expected (FHL 2005, fig. 3: 1 411 customers without a repeat purchase, about 1 408
/// expected), and Pearson's χ² on three degrees of freedom.
#[test]
fn fits_say_how_well_they_reproduce_the_data() {
    let out = clv_json("tests/data/cdnow_summary.csv", &["--param", "model=bgnbd"]);
    let rows = out["tables"]["repeat_purchases"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    let column =
        |name: &str| -> Vec<f64> { rows.iter().map(|r| r[name].as_f64().unwrap()).collect() };
    let (observed, expected) = (column("observed"), column("expected"));
    assert_eq!(observed[0], 1411.0);
    assert_eq!(observed.iter().sum::<f64>(), 2357.0);
    assert!((expected.iter().sum::<f64>() - 2357.0).abs() < 1e-6);
    assert!((expected[0] - 1407.68).abs() < 0.01, "{expected:?}");
    assert_eq!(rows[7]["or_more"], true);
    let results = &out["results"];
    assert_eq!(results["chi_square_df"], 3);
    assert!(
        (results["chi_square"].as_f64().unwrap() - 4.82).abs() < 0.01,
        "{results}"
    );
    assert!((results["chi_square_p_value"].as_f64().unwrap() - 0.185).abs() < 0.001);
}

/// CLVTools' apparel customers as one transaction log with their static covariates joined in,
/// gender and channel as text: what an analyst's export looks like.
fn apparel_log(dir: &Path) -> String {
    let root = repo_root();
    let covariates =
        std::fs::read_to_string(root.join("tests/data/apparel/static_covariates.csv")).unwrap();
    let of: std::collections::HashMap<&str, (&str, &str)> = covariates
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let gender = if f[1] == "1" { "female" } else { "male" };
            let channel = if f[2] == "1" { "offline" } else { "online" };
            (f[0], (gender, channel))
        })
        .collect();
    let mut log = String::from("customer_id,timestamp,amount,gender,channel\n");
    let transactions =
        std::fs::read_to_string(root.join("tests/data/apparel/transactions.csv")).unwrap();
    for line in transactions.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (gender, channel) = of[f[0]];
        log.push_str(&format!("{},{},{},{gender},{channel}\n", f[0], f[1], f[2]));
    }
    write(dir, "apparel.csv", &log)
}

/// Static covariates through the CLI reproduce CLVTools 0.12.1 on its apparel data (Pareto/NBD,
/// Gender and Channel in both processes, estimation to 2006-12-31): the likelihood-ratio test
/// χ² = 54.07 on 4 df, and the coefficients (here against the levels female and offline, the
/// first in sorted order, so with the opposite signs of CLVTools' 0/1 coding): trans Gender
/// 0.2859, Channel 0.6241; life Gender −0.6430, Channel 0.7907 (within CLVTools' optimizer
/// tolerance). Daily units: CLVTools counts transactions on distinct days, which is what a
/// daily summary counts; the coefficients do not depend on the time unit.
#[test]
fn covariates_explain_why_customers_differ() {
    let dir = tempfile::tempdir().unwrap();
    let input = apparel_log(dir.path());
    let out = clv_json(
        &input,
        &[
            "--param",
            "model=pareto_nbd",
            "--param",
            "time_unit=day",
            "--param",
            "observation_end=2006-12-31T23:59:59Z",
            "--param",
            "covariates=gender,channel",
            "--param",
            "spend_model=gamma_gamma",
            "--param",
            "spend_covariates=channel",
        ],
    );
    let results = &out["results"];
    let value = |name: &str| {
        results[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: {results}"))
    };
    assert!(
        (value("covariates_lr_statistic") - 54.07).abs() < 0.01,
        "{results}"
    );
    assert_eq!(value("covariates_lr_df"), 4.0);
    assert!(value("covariates_lr_p_value") < 1e-10);
    assert!((value("r") - 1.8378).abs() < 3e-3 * 1.8378, "{results}");
    assert!(value("log_likelihood") > value("log_likelihood_without_covariates"));
    assert_eq!(value("spend_covariates_lr_df"), 1.0);
    let rows = out["tables"]["coefficients"].as_array().unwrap();
    let expect = [
        ("purchase", "gender=male", -0.2859),
        ("purchase", "channel=online", -0.6241),
        ("attrition", "gender=male", 0.6430),
        ("attrition", "channel=online", -0.7907),
    ];
    for (row, (process, covariate, coefficient)) in rows.iter().zip(expect) {
        assert_eq!(row["process"], process);
        assert_eq!(row["covariate"], covariate);
        let got = row["coefficient"].as_f64().unwrap();
        assert!(
            (got - coefficient).abs() < 3e-3 * coefficient.abs(),
            "{row}"
        );
        assert_eq!(row["at_boundary"], false);
        let z = row["z"].as_f64().unwrap();
        assert!((z - got / row["standard_error"].as_f64().unwrap()).abs() < 1e-9);
    }
    assert_eq!(rows[4]["process"], "spend");
    assert_eq!(rows.len(), 5);
    // Delta-method intervals of a covariate fit come from the covariance of all its free
    // parameters (ln r, ln alpha, ln s, ln beta and the coefficients): every customer's
    // interval holds their prediction (a point only where the prediction is certain: P(alive)
    // is 1 for a customer who bought in the last period), and the total has one.
    let interval_of = |covariates: bool| {
        let mut args = vec!["--param", "model=pareto_nbd", "--param", "interval=0.9"];
        if covariates {
            args.extend(["--param", "covariates=gender"]);
        }
        clv_json(&input, &args)
    };
    let with_interval = interval_of(true);
    assert!(
        warnings_of(&with_interval)
            .iter()
            .all(|(code, _)| code != "interval_unavailable"),
        "{with_interval}"
    );
    for row in with_interval["tables"]["customers"].as_array().unwrap() {
        for column in ["p_alive", "expected_purchases"] {
            let value = row[column].as_f64().unwrap();
            let (lower, upper) = (
                row[format!("{column}_lower")].as_f64().unwrap(),
                row[format!("{column}_upper")].as_f64().unwrap(),
            );
            assert!(lower <= value && value <= upper, "{column}: {row}");
            assert!(lower < upper || value == 1.0, "{column}: {row}");
        }
    }
    let total = |out: &serde_json::Value| -> (f64, f64) {
        let interval = &out["confidence_intervals"]["expected_purchases"];
        (
            interval["lower"]
                .as_f64()
                .unwrap_or_else(|| panic!("{out}")),
            interval["upper"].as_f64().unwrap(),
        )
    };
    let (with, without) = (total(&with_interval), total(&interval_of(false)));
    assert!(
        with.1 - with.0 > 0.0 && without.1 - without.0 > 0.0,
        "{with:?} {without:?}"
    );
    // With spend covariates, expected spend's interval carries the spend coefficients'
    // uncertainty (delta method), and the bootstrap refits them per draw: both give every
    // customer an interval around their own profile's prediction, of similar width.
    let spend_interval_of = |uncertainty: &str| {
        clv_json(
            &input,
            &[
                "--param",
                "model=pareto_nbd",
                "--param",
                "spend_model=gamma_gamma",
                "--param",
                "spend_covariates=channel",
                "--param",
                "interval=0.9",
                "--param",
                &format!("uncertainty={uncertainty}"),
                "--param",
                "bootstrap_draws=60",
            ],
        )
    };
    let mut widths = Vec::new();
    for uncertainty in ["delta", "bootstrap"] {
        let out = spend_interval_of(uncertainty);
        assert!(
            warnings_of(&out)
                .iter()
                .all(|(code, _)| code != "interval_unavailable"),
            "{uncertainty}: {out}"
        );
        let rows = out["tables"]["customers"].as_array().unwrap();
        let mut width = 0.0;
        for row in rows {
            let value = row["expected_spend"].as_f64().unwrap();
            let (lower, upper) = (
                row["expected_spend_lower"].as_f64().unwrap(),
                row["expected_spend_upper"].as_f64().unwrap(),
            );
            assert!(lower < value && value < upper, "{uncertainty}: {row}");
            width += (upper - lower) / value;
        }
        widths.push(width / rows.len() as f64);
        assert!(
            out["confidence_intervals"]["clv_total"]["lower"].is_f64(),
            "{out}"
        );
    }
    eprintln!("relative widths of expected spend's intervals, delta and bootstrap: {widths:?}");
    assert!(
        widths[1] / widths[0] > 0.6 && widths[1] / widths[0] < 1.6,
        "relative widths of expected spend's intervals, delta and bootstrap: {widths:?}"
    );

    // A covariate that changes within a customer, a column that is not there, and a
    // covariate that is the same for everyone are refused, each naming what to fix.
    let mut varying = std::fs::read_to_string(&input).unwrap();
    varying = varying.replacen(
        "\n1,2005-09-06,84.39,male,online",
        "\n1,2005-09-06,84.39,female,online",
        1,
    );
    assert!(
        varying.contains("1,2005-09-06,84.39,female"),
        "the fixture changed"
    );
    let varying = write(dir.path(), "varying.csv", &varying);
    let constant = write(
        dir.path(),
        "constant.csv",
        "customer_id,timestamp,amount,region\na,2024-01-01,10,north\na,2024-02-01,12,north\nb,2024-01-03,5,north\n",
    );
    let cases: [(&str, &str, &str); 3] = [
        (
            varying.as_str(),
            "covariates=gender",
            "covariate gender changes within customer 1: \"female\" here, \"male\" in the customer's first row (input row 0)",
        ),
        (
            input.as_str(),
            "covariates=gender,region",
            "--param covariates: the input has no column region",
        ),
        (
            constant.as_str(),
            "covariates=region",
            "covariate region has the same value for every customer",
        ),
    ];
    // A numeric covariate in a Finnish CSV (`;`, decimal comma) is one coefficient, read as
    // the number it is, not as one level per value; a text column with more levels than can
    // be estimated is refused.
    let finnish = {
        let log = std::fs::read_to_string(&input).unwrap();
        let mut text = String::from("customer_id;timestamp;amount;score\n");
        for line in log.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let id: u32 = f[0].parse().unwrap();
            let score = format!("{:.2}", f64::from(id % 17) / 4.0).replace('.', ",");
            text.push_str(&format!(
                "{};{};{};{score}\n",
                f[0],
                f[1],
                f[2].replace('.', ",")
            ));
        }
        write(dir.path(), "finnish.csv", &text)
    };
    let numeric = clv_json(
        &finnish,
        &[
            "--param",
            "model=bgnbd",
            "--param",
            "purchase_covariates=score",
        ],
    );
    let rows = numeric["tables"]["coefficients"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["covariate"], "score");
    let (status, _, stderr) = run_cli(
        &[
            "compute",
            "clv",
            "--input",
            &input,
            "--param",
            "model=bgnbd",
            "--param",
            "covariates=customer_id",
        ],
        dir.path(),
        &[],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("at most 50 levels can be estimated"),
        "{stderr}"
    );

    // A per-customer table joined in by the CLI gives the same fit as the joined log.
    let customers = {
        let mut text = String::from("customer_id,gender,channel\n");
        let log = std::fs::read_to_string(&input).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for line in log.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if seen.insert(f[0].to_owned()) {
                text.push_str(&format!("{},{},{}\n", f[0], f[3], f[4]));
            }
        }
        write(dir.path(), "customers.csv", &text)
    };
    let joined = clv_json(
        "tests/data/apparel/transactions.csv",
        &[
            "--column",
            "timestamp=date",
            "--join",
            &customers,
            "--param",
            "model=pareto_nbd",
            "--param",
            "time_unit=day",
            "--param",
            "observation_end=2006-12-31T23:59:59Z",
            "--param",
            "covariates=gender,channel",
        ],
    );
    assert_eq!(
        joined["results"]["covariates_lr_statistic"],
        results["covariates_lr_statistic"]
    );
    let short = write(
        dir.path(),
        "short.csv",
        &std::fs::read_to_string(&customers)
            .unwrap()
            .replacen("\n600,", "\nnobody,", 1),
    );
    let (status, _, stderr) = run_cli(
        &[
            "compute",
            "clv",
            "--input",
            "tests/data/apparel/transactions.csv",
            "--column",
            "timestamp=date",
            "--join",
            &short,
            "--param",
            "model=pareto_nbd",
            "--param",
            "covariates=gender",
        ],
        &repo_root(),
        &[],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("transactions.csv (line 3184): customer \"600\" is not in --join"),
        "{stderr}"
    );
    for (file, param, expect) in cases {
        let args = [
            "compute",
            "clv",
            "--input",
            file,
            "--param",
            "model=pareto_nbd",
            "--param",
            param,
        ];
        let (status, stdout, stderr) = run_cli(&args, dir.path(), &[]);
        assert!(!status.success(), "{param} succeeded: {stdout}");
        assert!(
            stderr.contains(expect),
            "{param}: {stderr:?} lacks {expect:?}"
        );
    }
}

/// `model=auto` fits the three continuous-time models, shows the comparison, and reports the
/// one with the lowest BIC (without a holdout) or holdout error per customer (with one),
/// among those that identify their parameters, saying which and why.
#[test]
fn model_auto_compares_and_says_why() {
    let input = "examples/data/transactions.csv";
    for holdout in [None, Some("holdout_start=2024-07-01")] {
        let mut args = vec!["--param", "model=auto"];
        if let Some(h) = holdout {
            args.extend(["--param", h]);
        }
        let out = clv_json(input, &args);
        let rows = out["tables"]["model_comparison"].as_array().unwrap();
        let models: Vec<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
        assert_eq!(models, ["bgnbd", "mbgnbd", "pareto_nbd"]);
        let fitted: Vec<&serde_json::Value> = rows
            .iter()
            .filter(|r| r["log_likelihood"].is_number())
            .collect();
        for row in &fitted {
            let (ll, k) = (
                row["log_likelihood"].as_f64().unwrap(),
                row["parameters"].as_f64().unwrap(),
            );
            assert!(
                (row["aic"].as_f64().unwrap() - (2.0 * k - 2.0 * ll)).abs() < 1e-6,
                "{row}"
            );
            let n = out["results"]["customers"].as_f64().unwrap();
            assert!(
                (row["bic"].as_f64().unwrap() - (k * n.ln() - 2.0 * ll)).abs() < 1e-6,
                "{row}"
            );
        }
        let chosen: Vec<&&serde_json::Value> =
            fitted.iter().filter(|r| r["chosen"] == true).collect();
        assert_eq!(chosen.len(), 1, "{rows:?}");
        let chosen = chosen[0];
        let criterion = if holdout.is_some() {
            "holdout_mae"
        } else {
            "bic"
        };
        let identified = fitted.iter().any(|r| r["identified"] == true);
        let best = fitted
            .iter()
            .filter(|r| !identified || r["identified"] == true)
            .map(|r| r[criterion].as_f64().unwrap())
            .fold(f64::INFINITY, f64::min);
        assert_eq!(chosen[criterion].as_f64().unwrap(), best, "{rows:?}");
        // The results are the chosen model's.
        assert_eq!(out["results"]["log_likelihood"], chosen["log_likelihood"]);
        let said = warnings_of(&out);
        let (_, why) = said
            .iter()
            .find(|(code, _)| code == "model_chosen")
            .unwrap();
        assert!(why.contains(chosen["model"].as_str().unwrap()), "{why}");
        assert!(
            why.contains(if holdout.is_some() {
                "holdout error"
            } else {
                "BIC"
            }),
            "{why}"
        );
        if holdout.is_some() {
            // The scalar is the mean over customers of |predicted − actual| in the holdout.
            let customers = out["tables"]["customers"].as_array().unwrap();
            let mae = customers
                .iter()
                .map(|c| {
                    (c["predicted_holdout_purchases"].as_f64().unwrap()
                        - c["holdout_purchases"].as_f64().unwrap())
                    .abs()
                })
                .sum::<f64>()
                / customers.len() as f64;
            let reported = out["results"]["holdout_mae"].as_f64().unwrap();
            assert!((mae - reported).abs() < 1e-9, "{mae} vs {reported}");
            assert_eq!(chosen["holdout_mae"].as_f64().unwrap(), reported);
        }
    }
}

/// BG/BB's predictions carry intervals too: the delta method on its fit (FHS 2010's donors,
/// five more years), each customer's range of transactions, and the totals'.
#[test]
fn bgbb_predictions_carry_intervals() {
    let out = clv_json(
        "tests/data/donations.csv",
        &[
            "--param",
            "model=bgbb",
            "--param",
            "horizon=5",
            "--param",
            "interval=0.9",
        ],
    );
    let rows = out["tables"]["customers"].as_array().unwrap();
    assert_eq!(rows.len(), 22);
    for row in rows {
        for column in [
            "p_alive",
            "expected_purchases",
            "p_no_purchase",
            "p_alive_at_window_end",
        ] {
            let value = row[column].as_f64().unwrap();
            let (lower, upper) = (
                row[format!("{column}_lower")].as_f64().unwrap(),
                row[format!("{column}_upper")].as_f64().unwrap(),
            );
            assert!(lower < value && value < upper, "{column}: {row}");
        }
        let (low, high) = (
            row["purchases_lower"].as_f64().unwrap(),
            row["purchases_upper"].as_f64().unwrap(),
        );
        assert!(0.0 <= low && low <= high && high <= 5.0, "{row}");
    }
    // FHS 2010: a donor who gave in all six years is expected to give 3.75 times in the next
    // five.
    assert!((rows[0]["expected_purchases"].as_f64().unwrap() - 3.75).abs() < 0.01);
    for total in [
        "expected_purchases",
        "expected_active",
        "expected_lapsing",
        "expected_dropouts",
    ] {
        let interval = &out["confidence_intervals"][total];
        let value = out["results"][total].as_f64().unwrap();
        assert!(
            interval["lower"].as_f64().unwrap() < value
                && value < interval["upper"].as_f64().unwrap(),
            "{total}: {out}"
        );
    }
}

/// CLVTools' apparel data with its dynamic covariates, week by week from 2005-01-02 to
/// `last_week` (ISO day), one row per customer and week: High.Season and the static Gender and
/// Channel, as CLVTools' `apparelDynCov` holds them, under the data's own column names.
fn apparel_weeks(dir: &Path, last_week: &str) -> String {
    let root = repo_root();
    let season = std::fs::read_to_string(root.join("tests/data/apparel/high_season.csv")).unwrap();
    let covariates =
        std::fs::read_to_string(root.join("tests/data/apparel/static_covariates.csv")).unwrap();
    let mut text = String::from("customer_id,week_start,high_season,gender,channel\n");
    for customer in covariates.lines().skip(1) {
        let (id, static_values) = customer.split_once(',').unwrap();
        for week in season.lines().skip(1) {
            let (start, flag) = week.split_once(',').unwrap();
            if start <= last_week {
                text.push_str(&format!("{id},{start},{flag},{static_values}\n"));
            }
        }
    }
    write(dir, "weeks.csv", &text)
}

/// Dynamic covariates through the CLI, as CLVTools' vignette fits them (Pareto/NBD, weekly,
/// estimation to 2006-12-31, High.Season, Gender and Channel in both processes): the fit
/// reaches −5752.6232, above CLVTools 0.12.1's best (−5752.63, its second-order check unmet),
/// and says why CLVTools' checks failed: the attrition coefficient of High.Season runs to the
/// edge (nobody drops out in high season). A request without the table, or with one that ends
/// before the horizon, is refused saying what to send.
#[test]
fn dynamic_covariates_reproduce_clvtools_fit() {
    let dir = tempfile::tempdir().unwrap();
    let input = apparel_log(dir.path());
    let weeks = apparel_weeks(dir.path(), "2008-06-29");
    let table = format!("covariates_over_time={weeks}");
    let args = |horizon: &'static str| {
        vec![
            "--param",
            "model=pareto_nbd",
            "--param",
            "time_unit=week",
            "--param",
            "observation_end=2006-12-31",
            "--param",
            "dynamic_covariates=high_season,gender,channel",
            "--param",
            "spend_model=gamma_gamma",
            "--param",
            horizon,
            "--table-column",
            "covariates_over_time.period_start=week_start",
        ]
    };
    let mut with_table = args("horizon=52");
    with_table.extend(["--table-input", table.as_str()]);
    let out = clv_json(&input, &with_table);
    let results = &out["results"];
    let value = |name: &str| {
        results[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: {results}"))
    };
    assert!(
        (value("log_likelihood") - -5752.6232).abs() < 1e-3,
        "{results}"
    );
    assert!(value("log_likelihood") >= -5752.63);
    assert_eq!(value("covariates_lr_df"), 6.0);
    assert!(value("log_likelihood_without_covariates") < value("log_likelihood") - 50.0);
    // Churn takes purchases away, and with them value.
    assert!(
        value("expected_purchases_lost") > 0.0 && value("churn_cost") > 0.0,
        "{results}"
    );
    assert_eq!(value("customers"), 600.0);
    let rows = out["tables"]["coefficients"].as_array().unwrap();
    let edge: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r["at_boundary"] == true)
        .map(|r| {
            (
                r["process"].as_str().unwrap(),
                r["covariate"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(edge, [("attrition", "high_season")], "{rows:?}");
    let purchase_season = rows
        .iter()
        .find(|r| r["process"] == "purchase" && r["covariate"] == "high_season")
        .unwrap();
    // High season doubles the purchase rate, with a small standard error.
    assert!(
        (purchase_season["multiplier"].as_f64().unwrap() - 2.05).abs() < 0.01,
        "{purchase_season}"
    );
    let codes: Vec<String> = warnings_of(&out).into_iter().map(|(c, _)| c).collect();
    assert!(
        codes.contains(&"covariate_not_identified".to_owned()),
        "{codes:?}"
    );
    let customers = out["tables"]["customers"].as_array().unwrap();
    assert_eq!(customers.len(), 600);
    let expected: f64 = customers
        .iter()
        .map(|c| c["expected_purchases"].as_f64().unwrap())
        .sum();
    assert!((expected - value("expected_purchases")).abs() < 1e-6 * expected);
    for c in customers {
        let p = c["p_alive"].as_f64().unwrap();
        let lapsing = c["p_no_purchase"].as_f64().unwrap();
        assert!(
            (0.0..=1.0).contains(&p) && (1.0 - p..=1.0).contains(&(lapsing + 1e-12)),
            "{c}"
        );
    }

    // Intervals: the delta method's, and the bootstrap's (refits on resampled customers), both
    // around every customer's prediction, of the same order of width for the total.
    let mut with_delta = with_table.clone();
    with_delta.extend(["--param", "interval=0.9"]);
    let mut with_boot = with_delta.clone();
    with_boot.extend([
        "--param",
        "uncertainty=bootstrap",
        "--param",
        "bootstrap_draws=30",
    ]);
    let mut widths = Vec::new();
    for args in [&with_delta, &with_boot] {
        let out = clv_json(&input, args);
        let total = &out["confidence_intervals"]["expected_purchases"];
        let (lower, upper) = (
            total["lower"].as_f64().unwrap(),
            total["upper"].as_f64().unwrap(),
        );
        let value = out["results"]["expected_purchases"].as_f64().unwrap();
        assert!(lower < value && value < upper, "{total}");
        widths.push((upper - lower) / value);
        for row in out["tables"]["customers"].as_array().unwrap() {
            // The range of what the customer will actually buy: whole counts, from at most
            // the expectation's ceiling (zero for most) up.
            let expected = row["expected_purchases"].as_f64().unwrap();
            let (low, high) = (
                row["purchases_lower"].as_f64().unwrap(),
                row["purchases_upper"].as_f64().unwrap(),
            );
            assert!(
                low <= high && low <= expected.ceil() && high.fract() == 0.0,
                "{row}"
            );
            assert!(
                row["purchase_value_upper"].as_f64().unwrap()
                    >= row["purchase_value_lower"].as_f64().unwrap(),
                "{row}"
            );
            for column in ["p_alive", "expected_purchases", "clv", "expected_spend"] {
                let v = row[column].as_f64().unwrap();
                let (l, u) = (
                    row[format!("{column}_lower")].as_f64().unwrap(),
                    row[format!("{column}_upper")].as_f64().unwrap(),
                );
                assert!(l <= v && v <= u, "{column}: {row}");
            }
        }
    }
    assert!(
        widths[1] / widths[0] > 0.5 && widths[1] / widths[0] < 2.0,
        "relative widths of the total's intervals, delta and bootstrap: {widths:?}"
    );

    // Without the table, and with one that ends before the horizon: refused, saying what to send.
    let mut without = vec!["compute", "clv", "--input", input.as_str()];
    without.extend(args("horizon=52"));
    without.retain(|a| !a.starts_with("--table-column") && !a.starts_with("covariates_over_time."));
    let (status, _, stderr_without) = run_cli(&without, &repo_root(), &[]);
    assert!(!status.success());
    assert!(
        stderr_without.contains("--table-input covariates_over_time=FILE"),
        "{stderr_without}"
    );
    let mut short = vec!["compute", "clv", "--input", input.as_str()];
    short.extend(args("horizon=104"));
    short.extend(["--table-input", table.as_str()]);
    let (status, _, stderr) = run_cli(&short, &repo_root(), &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("covariates_over_time covers customer")
            && stderr.contains("only until 2008-07-06"),
        "{stderr}"
    );
    let mut unknown = vec!["compute", "clv", "--input", input.as_str()];
    unknown.extend(["--table-input", "nope=weeks.csv"]);
    let (status, _, stderr) = run_cli(&unknown, &repo_root(), &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("unknown table input; metric clv reads: covariates_over_time"),
        "{stderr}"
    );
}

/// `mittari report` sends the table input to the metric that declares it: the CLV section of
/// a dynamic-covariate fit shows the coefficients and says why the model charts are left out;
/// a table no reported metric reads is refused.
#[test]
fn the_report_reads_table_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = apparel_log(dir.path());
    let weeks = apparel_weeks(dir.path(), "2008-06-29");
    let table = format!("covariates_over_time={weeks}");
    let page = dir.path().join("report.html");
    let mut args = vec![
        "report",
        "--input",
        input.as_str(),
        "--metric",
        "clv",
        "--output",
        page.to_str().unwrap(),
        "--param",
        "model=pareto_nbd",
        "--param",
        "time_unit=week",
        "--param",
        "observation_end=2006-12-31",
        "--param",
        "dynamic_covariates=high_season,gender,channel",
        "--table-input",
        table.as_str(),
        "--table-column",
        "covariates_over_time.period_start=week_start",
    ];
    mittari(dir.path(), &args);
    let html = std::fs::read_to_string(&page).unwrap();
    for expected in [
        "The covariates change over time (covariates_over_time)",
        "χ² = 190.95 on 6 df",
        "not identified (at the edge of the range)",
    ] {
        assert!(html.contains(expected), "{expected} is not in the report");
    }
    // The same table for a report of NPS alone, which reads none.
    args[4] = "nps";
    let (status, _, stderr) = run_cli(&args, dir.path(), &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("--table-input covariates_over_time: no metric in this report reads it"),
        "{stderr}"
    );
}

/// sBG with a cohort covariate, on Fader & Hardie's (2007) two published cohorts (regular and
/// high-end customers, seven years): with one covariate telling the two apart the model is
/// saturated, so its coefficients are the log ratios of the separate fits' published estimates
/// (regular α 0.704, β 1.182; high end α 0.668, β 3.806), and the likelihood-ratio test is
/// that of one α and β for both against one each.
#[test]
fn retention_forecast_covariates_reproduce_the_separate_fits() {
    let dir = tempfile::tempdir().unwrap();
    let regular = [1000, 631, 468, 382, 326, 289, 262, 241];
    let high_end = [1000, 869, 743, 653, 593, 551, 517, 491];
    let mut text = String::from("cohort,segment,period,active\n");
    for (name, counts) in [("r2000", regular), ("h2000", high_end)] {
        let segment = if name.starts_with('r') {
            "regular"
        } else {
            "high_end"
        };
        for (period, active) in counts.iter().enumerate() {
            text.push_str(&format!("{name},{segment},{period},{active}\n"));
        }
    }
    let input = write(dir.path(), "cohorts.csv", &text);
    let out: serde_json::Value = serde_json::from_str(&mittari(
        dir.path(),
        &[
            "compute",
            "retention_forecast",
            "--input",
            &input,
            "--param",
            "covariates=segment",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    let results = &out["results"];
    let value = |name: &str| {
        results[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: {results}"))
    };
    // The reference is the first level in sorted order: high_end.
    assert!((value("alpha") - 0.668).abs() < 0.0005, "{results}");
    assert!((value("beta") - 3.806).abs() < 0.0005, "{results}");
    let rows = out["tables"]["coefficients"].as_array().unwrap();
    let expect = [
        ("alpha", (0.704f64 / 0.668).ln()),
        ("beta", (1.182f64 / 3.806).ln()),
    ];
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, (process, coefficient)) in rows.iter().zip(expect) {
        assert_eq!(row["process"], process);
        assert_eq!(row["covariate"], "segment=regular");
        assert!(
            (row["coefficient"].as_f64().unwrap() - coefficient).abs() < 0.001,
            "{row}"
        );
    }
    assert_eq!(value("cohorts"), 2.0);
    assert_eq!(value("covariates_lr_df"), 2.0);
    assert!(value("covariates_lr_p_value") < 1e-10, "{results}");
    let cohorts = out["tables"]["cohorts"].as_array().unwrap();
    let regular_row = cohorts.iter().find(|c| c["cohort"] == "r2000").unwrap();
    assert!(
        (regular_row["alpha"].as_f64().unwrap() - 0.704).abs() < 0.0005,
        "{regular_row}"
    );
    assert!(
        (regular_row["beta"].as_f64().unwrap() - 1.182).abs() < 0.0005,
        "{regular_row}"
    );
    // Over both cohorts, weighted by size: the mean of the two churn probabilities.
    let churn = |a: f64, b: f64| 100.0 * a / (a + b);
    let mean = (churn(0.704, 1.182) + churn(0.668, 3.806)) / 2.0;
    assert!(
        (value("mean_churn_probability") - mean).abs() < 0.05,
        "{results}"
    );

    // Several cohorts without covariates, and covariates without a cohort column: refused,
    // saying what to do.
    let (status, _, stderr) = run_cli(
        &["compute", "retention_forecast", "--input", &input],
        dir.path(),
        &[],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("forecast them one by one with group_by cohort"),
        "{stderr}"
    );
    let no_cohort = write(
        dir.path(),
        "no_cohort.csv",
        &text.replace("cohort,segment", "name,segment"),
    );
    let (status, _, stderr) = run_cli(
        &[
            "compute",
            "retention_forecast",
            "--input",
            &no_cohort,
            "--param",
            "covariates=segment",
        ],
        dir.path(),
        &[],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("give each row's cohort in a cohort column"),
        "{stderr}"
    );
}

/// With `interval`, the report draws the most valuable customers' values with their
/// intervals, saying the level and the method; without it, no such chart.
#[test]
fn the_report_draws_the_intervals_it_computes() {
    let dir = tempfile::tempdir().unwrap();
    let input = apparel_log(dir.path());
    let page = dir.path().join("report.html");
    let report = |extra: &[&str]| {
        let mut args = vec![
            "report",
            "--input",
            input.as_str(),
            "--metric",
            "clv",
            "--output",
            page.to_str().unwrap(),
            "--param",
            "model=pareto_nbd",
            "--param",
            "time_unit=week",
            "--param",
            "observation_end=2006-12-31",
        ];
        args.extend_from_slice(extra);
        mittari(dir.path(), &args);
        std::fs::read_to_string(&page).unwrap()
    };
    let html = report(&["--param", "interval=0.9"]);
    assert!(
        html.contains("id=\"chart-clv-top-intervals\""),
        "no interval chart"
    );
    assert!(
        html.contains("90 % confidence interval, from the delta method"),
        "the caption does not say the level and method"
    );
    let html = report(&[
        "--param",
        "interval=0.8",
        "--param",
        "uncertainty=bootstrap",
        "--param",
        "bootstrap_draws=30",
    ]);
    assert!(html.contains("80 % confidence interval, from the percentiles of refits"));
    assert!(!report(&[]).contains("clv-top-intervals"));
}

/// A covariates_over_time table with a gap, a repeated period, a text covariate, no rows, or a
/// customer it does not cover is refused, each saying what is wrong and where.
#[test]
fn dynamic_covariate_tables_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let log = write(
        dir.path(),
        "log.csv",
        "customer_id,timestamp,amount\na,2024-01-01,10\na,2024-01-20,12\nb,2024-01-03,5\nb,2024-02-10,7\nc,2024-01-05,9\n",
    );
    // Weekly rows from Monday 2024-01-01 (day 19723), 30 weeks per customer.
    let weeks =
        |customers: &str, skip: Option<(char, u32)>, repeat: Option<(char, u32)>, value: &str| {
            let mut text = String::from("customer_id,period_start,promo\n");
            for c in customers.chars() {
                for w in 0..30u32 {
                    if skip == Some((c, w)) {
                        continue;
                    }
                    let day = 19_723 + 7 * i64::from(w);
                    let line = format!("{c},{},{value}\n", day_text(day));
                    text.push_str(&line);
                    if repeat == Some((c, w)) {
                        text.push_str(&line);
                    }
                }
            }
            text
        };
    let cases = [
        (
            weeks("abc", Some(('b', 5)), None, "1"),
            "customer \"b\": the period starting 2024-02-12 follows one starting 2024-01-29; periods must be equally long (7 days here) and without gaps",
        ),
        (
            weeks("abc", None, Some(('c', 3)), "1"),
            "customer \"c\" has two rows for the period starting 2024-01-22",
        ),
        (
            weeks("abc", None, None, "yes"),
            "covariate promo of covariates_over_time is text",
        ),
        (
            weeks("ab", None, None, "1"),
            "covariates_over_time has no period of customer \"c\" that contains the first purchase (2024-01-05)",
        ),
        (
            "customer_id,period_start,promo\n".to_owned(),
            "covariates_over_time has at most one period per customer",
        ),
    ];
    for (i, (table, expected)) in cases.iter().enumerate() {
        let path = write(dir.path(), &format!("weeks{i}.csv"), table);
        let (status, _, stderr) = run_cli(
            &[
                "compute",
                "clv",
                "--input",
                &log,
                "--param",
                "model=pareto_nbd",
                "--param",
                "time_unit=week",
                "--param",
                "dynamic_covariates=promo",
                "--param",
                "horizon=4",
                "--table-input",
                &format!("covariates_over_time={path}"),
            ],
            dir.path(),
            &[],
        );
        assert!(!status.success(), "case {i}");
        assert!(stderr.contains(expected), "case {i}: {stderr}");
    }
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (Hinnant's civil_from_days).
fn day_text(day: i64) -> String {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Retention from a purchase log: the counts are predicted, N is counted, the contractual
/// identities hold, the intervals hold their values, and a server gives the same answer.
#[test]
fn retention_from_a_purchase_log_is_predicted_with_intervals() {
    let input = "examples/data/transactions.csv";
    let args = [
        "compute",
        "retention",
        "--input",
        input,
        "--param",
        "period_start=2024-01-01",
        "--param",
        "period_end=2025-01-01",
        "--param",
        "interval=0.9",
        "--format",
        "json",
    ];
    let text = mittari(&repo_root(), &args);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    // Each customer's first purchase, from the file itself.
    let csv = std::fs::read_to_string(repo_root().join(input)).unwrap();
    let mut first: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for line in csv.lines().skip(1) {
        let mut cells = line.split(',');
        let (id, date) = (cells.next().unwrap(), cells.next().unwrap());
        let seen = first.entry(id).or_insert(date);
        if date < *seen {
            *seen = date;
        }
    }
    let before = first.values().filter(|d| **d <= "2024-01-01").count() as f64;
    let new = first
        .values()
        .filter(|d| **d > "2024-01-01" && **d <= "2025-01-01")
        .count() as f64;
    let value = |name: &str| json["results"][name].as_f64().unwrap();
    let (s, e, n) = (
        value("customers_at_start"),
        value("customers_at_end"),
        value("new_customers"),
    );
    assert_eq!(n, new);
    assert!(0.0 < s && s < before, "S {s} of {before} customers");
    assert!((value("churned_customers") - (s + n - e)).abs() < 1e-9);
    assert!((value("retention_rate") - 100.0 * (e - n) / s).abs() < 1e-9);
    assert!((value("churn_rate") + value("retention_rate") - 100.0).abs() < 1e-9);
    for name in [
        "customers_at_start",
        "customers_at_end",
        "retention_rate",
        "churn_rate",
        "churned_customers",
        "churned_revenue",
        "net_change",
    ] {
        let ci = &json["confidence_intervals"][name];
        let (lower, upper) = (ci["lower"].as_f64().unwrap(), ci["upper"].as_f64().unwrap());
        assert!(lower < value(name) && value(name) < upper, "{name}: {ci}");
        assert_eq!(ci["level"], 0.9);
    }
    let codes: Vec<&str> = json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"churn_predicted"), "{codes:?}");
    // The example's 385 customers do not pin down the dropout distribution, and it says so.
    assert!(codes.contains(&"fit_not_identified"), "{codes:?}");
    let server = Server::start();
    let url = server.url();
    let mut remote = args.to_vec();
    remote.extend_from_slice(&["--server", &url]);
    assert_eq!(mittari(&repo_root(), &remote), text);

    // One kind of input at a time, and a parameter of the other kind is a warning.
    let dir = tempfile::tempdir().unwrap();
    let mixed = write(
        dir.path(),
        "mixed.csv",
        "customer_id,start,timestamp\na,2023-01-01,2023-01-01\n",
    );
    let (status, _, stderr) = run_cli(
        &[
            "compute",
            "retention",
            "--input",
            &mixed,
            "--param",
            "period_start=2024-01-01",
            "--param",
            "period_end=2025-01-01",
        ],
        dir.path(),
        &[],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("both start") && stderr.contains("give one kind of input"),
        "{stderr}"
    );
    let contractual = write(dir.path(), "c.csv", "customer_id,start\na,2023-01-01\n");
    let out = mittari(
        dir.path(),
        &[
            "compute",
            "retention",
            "--input",
            &contractual,
            "--param",
            "period_start=2024-01-01",
            "--param",
            "period_end=2025-01-01",
            "--param",
            "model=bgnbd",
        ],
    );
    assert!(
        out.contains("model=\"bgnbd\" has no effect here: it applies to a purchase log"),
        "{out}"
    );
}

/// `mittari model`: the store's models listed, shown, aliased, deleted only when no alias
/// points at them, exported and imported again as the same model; the store from the
/// configuration file when --store is not given.
#[test]
fn model_commands_manage_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("models.db");
    std::fs::write(
        dir.path().join("mittari.toml"),
        format!("[models]\nstore = \"sqlite://{}\"\n", db.display()),
    )
    .unwrap();
    {
        let store = mittari_store::open(&format!("sqlite://{}", db.display())).unwrap();
        for state in [&b"first"[..], b"second"] {
            store
                .put("clv-eu", &mittari_store::testing::model(state))
                .unwrap();
        }
    }
    let run = |args: &[&str]| mittari(dir.path(), args);
    let fails = |args: &[&str]| {
        let (status, _, stderr) = run_cli(args, dir.path(), &[]);
        assert!(!status.success(), "{args:?} succeeded");
        stderr
    };
    let listed = run(&["model", "list"]);
    assert!(listed.starts_with("model"), "{listed}");
    assert!(
        listed.contains("clv-eu@1") && listed.contains("clv-eu@2"),
        "{listed}"
    );
    assert_eq!(
        run(&["model", "alias", "clv-eu", "production", "1"]),
        "clv-eu@production points at clv-eu@1\n"
    );
    assert_eq!(
        run(&["model", "alias", "clv-eu", "production", "2"]),
        "clv-eu@production now points at clv-eu@2 (was clv-eu@1)\n"
    );
    let shown = run(&["model", "show", "clv-eu@production"]);
    assert!(
        shown.contains("clv-eu@2") && shown.contains("aliases         production"),
        "{shown}"
    );
    assert!(shown.contains("state           6 bytes"), "{shown}");
    let refused = fails(&["model", "delete", "clv-eu@2"]);
    assert!(
        refused.contains("clv-eu@2 is what alias production points to"),
        "{refused}"
    );
    assert!(fails(&["model", "delete", "clv-eu"]).contains("give NAME@VERSION"));
    assert_eq!(run(&["model", "delete", "clv-eu@1"]), "deleted clv-eu@1\n");
    assert!(fails(&["model", "show", "clv-eu@1"]).contains("no model clv-eu@1"));
    let file = dir.path().join("clv-eu.json");
    let file = file.to_str().unwrap();
    run(&["model", "export", "clv-eu@production", file]);
    // Into another store (another environment), under another name.
    let other = format!("sqlite://{}", dir.path().join("other.db").display());
    assert_eq!(
        run(&[
            "model", "import", file, "--name", "clv-fi", "--store", &other
        ]),
        format!("stored clv-eu@2 from {file} as clv-fi@1\n")
    );
    let store = mittari_store::open(&other).unwrap();
    let imported = store
        .get(&mittari_store::Reference::Version("clv-fi".into(), 1))
        .unwrap();
    assert_eq!(imported.model, mittari_store::testing::model(b"second"));
    assert_eq!(
        run(&["model", "alias", "clv-eu", "production", "--remove"]),
        "removed clv-eu@production (it pointed at clv-eu@2)\n"
    );
}

/// Fits clv with `model` (and `shared`) as `name` in `store`, scores `log` with it (with
/// `shared`), and computes it (`model` and `shared`): the scores must equal the fit's answer
/// and the computation's — results, intervals, units and every table, as JSON text, so bit for
/// bit. Returns the fit's and the score's JSON and the fit's stderr.
fn fit_then_score(
    (store, dir): (&str, &Path),
    log: &str,
    name: &str,
    model: &[&str],
    shared: &[&str],
) -> (serde_json::Value, serde_json::Value, String) {
    let mut fit = vec![
        "fit", "clv", "--name", name, "--input", log, "--format", "json",
    ];
    fit.extend_from_slice(model);
    fit.extend_from_slice(shared);
    let (ok, fitted, fit_stderr) = run_model(store, dir, &fit);
    assert!(ok, "{fit_stderr}");
    let mut score = vec!["score", name, "--input", log, "--format", "json"];
    score.extend_from_slice(shared);
    let (ok, scored, stderr) = run_model(store, dir, &score);
    assert!(ok, "{stderr}");
    let (fitted, scored): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&fitted).unwrap(),
        serde_json::from_str(&scored).unwrap(),
    );
    let mut compute = model.to_vec();
    compute.extend_from_slice(shared);
    let computed = clv_json(log, &compute);
    for key in ["results", "confidence_intervals", "units", "tables"] {
        assert_eq!(scored[key], fitted[key], "{key}: scored against fitted");
        assert_eq!(scored[key], computed[key], "{key}: scored against computed");
    }
    (fitted, scored, fit_stderr)
}

/// Runs `mittari model --store STORE ARGS` in `dir`: whether it succeeded, stdout, stderr.
fn run_model(store: &str, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["model", "--store", store];
    all.extend_from_slice(args);
    let (status, stdout, stderr) = run_cli(&all, dir, &[]);
    (status.success(), stdout, stderr)
}

/// `model fit` stores what `compute` computes, and `model score` with the stored model gives
/// the fit's own customers the fit's predictions bit for bit (JSON numbers are written in
/// their shortest exact form, so equal text is equal bits); parameters the fit fixed are
/// refused, as are models a stored fit cannot hold.
#[test]
fn a_stored_model_scores_its_own_customers_as_its_fit_did() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("models.db").display());
    let log = repo_root().join("examples/data/transactions.csv");
    let log = log.to_str().unwrap();
    let run = |args: &[&str]| run_model(&store, dir.path(), args);
    let model = [
        "--param",
        "model=pareto_nbd",
        "--param",
        "spend_model=gamma_gamma",
    ];
    let (fitted, scored, stderr) = fit_then_score(
        (&store, dir.path()),
        log,
        "clv-eu",
        &model,
        &["--param", "interval=0.9"],
    );
    assert!(stderr.contains("stored clv-eu@1 in sqlite://"), "{stderr}");
    let customers = scored["tables"]["customers"].to_string();
    assert!(customers.contains("p_alive_lower"), "{customers}");
    let warnings = warnings_of(&scored);
    assert_eq!(warnings[0].0, "stored_model");
    assert!(warnings[0].1.contains("clv-eu@1"), "{warnings:?}");
    assert_eq!(warnings[1..], warnings_of(&fitted)[..]);

    // One new customer, given as a summary, scored without the data the model was fitted on.
    let summary = write(
        dir.path(),
        "one.csv",
        "customer_id,frequency,recency,T,monetary_value\nnew,0,0,10,0\n",
    );
    let (ok, one, stderr) = run(&["score", "clv-eu@1", "--input", &summary, "--format", "json"]);
    assert!(ok, "{stderr}");
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    let p_alive = one["tables"]["customers"][0]["p_alive"].as_f64().unwrap();
    assert!(p_alive > 0.0 && p_alive < 1.0, "{one}");
    // The fit's identification, not the one customer's: the same warning as the fit's.
    assert!(
        warnings_of(&one)
            .iter()
            .any(|(code, _)| code == "fit_not_identified")
    );

    // The report of an input scored with the stored model: its CLV section says so.
    let page = dir.path().join("report.html");
    let page_path = page.to_str().unwrap();
    let (status, _, stderr) = run_cli(
        &[
            "report", "--input", log, "--output", page_path, "--metric", "clv", "--model",
            "clv-eu@1", "--store", &store,
        ],
        dir.path(),
        &[],
    );
    assert!(status.success(), "{stderr}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("scored with the stored model clv-eu@1"),
        "{html}"
    );
    assert!(html.contains("Customer lifetime value by the pareto_nbd model"));
    let (status, _, stderr) = run_cli(
        &[
            "report",
            "--input",
            log,
            "--output",
            page_path,
            "--metric",
            "clv",
            "--model",
            "clv-eu@1",
            "--store",
            &store,
            "--param",
            "model=bgnbd",
        ],
        dir.path(),
        &[],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("the report scores with model clv-eu@1, fitted with model=\"pareto_nbd\""),
        "{stderr}"
    );

    for (args, expected) in [
        (
            vec!["score", "clv-eu", "--input", log, "--param", "model=bgnbd"],
            "model clv-eu@1 was fitted with model=\"pareto_nbd\"",
        ),
        (
            vec![
                "score",
                "clv-eu",
                "--input",
                log,
                "--param",
                "interval=0.9",
                "--param",
                "uncertainty=bootstrap",
            ],
            "a stored model keeps its estimates, not its customers",
        ),
        (
            vec!["fit", "clv", "--name", "x", "--input", log],
            "model=historic is a formula with nothing to fit",
        ),
        (
            vec![
                "fit",
                "clv",
                "--name",
                "x",
                "--input",
                log,
                "--param",
                "model=auto",
            ],
            "compute it to see which model it chooses",
        ),
        (
            vec!["score", "clv-eu@7", "--input", log],
            "no model clv-eu@7",
        ),
    ] {
        let (ok, _, stderr) = run(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// A model with covariates stores each covariate's encoding with its coefficients: its own
/// customers score as the fit predicted them, a new customer of a level the fit saw scores with
/// that level's parameters (on an input too small to fit covariates to), and a level the fit
/// never saw is refused with its file, line and the fit's levels, not scored as the reference.
#[test]
fn a_stored_model_with_covariates_keeps_the_fits_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("models.db").display());
    let log = repo_root().join("examples/data/transactions.csv");
    let log = log.to_str().unwrap();
    let run = |args: &[&str]| run_model(&store, dir.path(), args);
    let model = [
        "--param",
        "model=pareto_nbd",
        "--param",
        "covariates=channel",
        "--param",
        "spend_model=gamma_gamma",
        "--param",
        "spend_covariates=channel",
    ];
    // The covariate columns come from the stored model's parameters: the score names none.
    let (_, scored, _) = fit_then_score((&store, dir.path()), log, "by-channel", &model, &[]);
    assert!(
        scored["tables"]["coefficients"]
            .to_string()
            .contains("channel=web")
    );

    // The same new customer under two levels: each with its level's parameters.
    let one = |channel: &str| -> serde_json::Value {
        let file = write(
            dir.path(),
            &format!("{channel}.csv"),
            &format!(
                "customer_id,timestamp,amount,margin,channel\nnew,2022-03-01,50,0.4,{channel}\nnew,2022-06-01,70,0.4,{channel}\n"
            ),
        );
        let (ok, out, stderr) = run(&["score", "by-channel", "--input", &file, "--format", "json"]);
        assert!(ok, "{stderr}");
        serde_json::from_str(&out).unwrap()
    };
    let (store_customer, web_customer) = (one("store"), one("web"));
    let expected = |v: &serde_json::Value| {
        v["tables"]["customers"][0]["expected_purchases"]
            .as_f64()
            .unwrap()
    };
    assert!(expected(&store_customer) > 0.0);
    assert_ne!(expected(&store_customer), expected(&web_customer));

    let unseen = write(
        dir.path(),
        "unseen.csv",
        "customer_id,timestamp,amount,margin,channel\nnew,2022-03-01,50,0.4,store\nother,2022-03-01,50,0.4,tiktok\n",
    );
    let (ok, _, stderr) = run(&["score", "by-channel", "--input", &unseen]);
    assert!(!ok);
    assert!(stderr.contains("unseen.csv line 3"), "{stderr}");
    assert!(
        stderr.contains("\"tiktok\"") && stderr.contains("its levels: phone, store, web"),
        "{stderr}"
    );
    // Covariates that change over time are not stored: refused before fitting.
    let (ok, _, stderr) = run(&[
        "fit",
        "clv",
        "--name",
        "dynamic",
        "--input",
        log,
        "--param",
        "model=pareto_nbd",
        "--param",
        "dynamic_covariates=channel",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("not ones that change over time"),
        "{stderr}"
    );
}

/// The model commands with --server act on the server's store through its ModelService, and
/// print what they print on a local store.
#[test]
fn model_commands_work_on_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let url = server.url();
    let log = repo_root().join("examples/data/transactions.csv");
    let log = log.to_str().unwrap();
    let run = |args: &[&str]| -> String {
        let mut all = vec!["model"];
        all.extend_from_slice(args);
        let (status, stdout, stderr) = run_cli(&all, dir.path(), &[]);
        assert!(status.success(), "{args:?}: {stderr}");
        stdout + &stderr
    };
    let fitted = run(&[
        "fit",
        "clv",
        "--name",
        "clv-eu",
        "--input",
        log,
        "--param",
        "model=bgnbd",
        "--server",
        &url,
    ]);
    assert!(
        fitted.contains(&format!("stored clv-eu@1 in the model store of {url}")),
        "{fitted}"
    );
    let listed = run(&["list", "--server", &url]);
    assert!(
        listed.starts_with("model") && listed.contains("clv-eu@1") && listed.contains("anonymous"),
        "{listed}"
    );
    assert_eq!(
        run(&["alias", "clv-eu", "production", "1", "--server", &url]),
        "clv-eu@production points at clv-eu@1\n"
    );
    let shown = run(&["show", "clv-eu@production", "--server", &url]);
    assert!(shown.contains("aliases         production"), "{shown}");
    assert!(
        shown.contains("\"model\":{\"string\":\"bgnbd\"}"),
        "{shown}"
    );
    let scored = run(&[
        "score",
        "clv-eu@production",
        "--input",
        log,
        "--server",
        &url,
        "--format",
        "json",
    ]);
    assert!(
        scored.contains("scored with the stored model clv-eu@1"),
        "{scored}"
    );
    assert_eq!(
        run(&[
            "alias",
            "clv-eu",
            "production",
            "--remove",
            "--server",
            &url
        ]),
        "removed clv-eu@production (it pointed at clv-eu@1)\n"
    );
    assert_eq!(
        run(&["delete", "clv-eu@1", "--server", &url]),
        "deleted clv-eu@1\n"
    );
    assert_eq!(
        run(&["list", "--server", &url]),
        format!("no models in the model store of {url}\n")
    );

    // Covariates over the wire (Arrow IPC, in one message or in chunks): the columns the
    // request's parameters name, and when scoring the stored model's, reach the metric; the
    // fit's own customers score as computing gives them.
    let covariates = ["--param", "model=bgnbd", "--param", "covariates=channel"];
    let mut compute = vec![
        "compute", "clv", "--input", log, "--server", &url, "--format", "json",
    ];
    compute.extend_from_slice(&covariates);
    let (status, computed, stderr) = run_cli(&compute, dir.path(), &[]);
    assert!(status.success(), "{stderr}");
    let computed: serde_json::Value = serde_json::from_str(&computed).unwrap();
    let mut fit = vec![
        "fit",
        "clv",
        "--name",
        "by-channel",
        "--input",
        log,
        "--server",
        &url,
    ];
    fit.extend_from_slice(&covariates);
    run(&fit);
    for chunk_rows in ["1000000", "1000"] {
        let (status, scored, stderr) = run_cli(
            &[
                "model",
                "score",
                "by-channel",
                "--input",
                log,
                "--server",
                &url,
                "--chunk-rows",
                chunk_rows,
                "--format",
                "json",
            ],
            dir.path(),
            &[],
        );
        assert!(status.success(), "{stderr}");
        let scored: serde_json::Value = serde_json::from_str(&scored).unwrap();
        assert_eq!(
            scored["tables"], computed["tables"],
            "chunks of {chunk_rows} rows"
        );
    }
}

/// NPS segments compared with the rest, embedded and through a server: the difference, its
/// adjusted Wald interval and the Holm-adjusted p-value, as computed independently in Python
/// (docs/metrics/nps.md, "Comparisons").
#[test]
fn survey_segments_are_compared_with_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("segment,score\n");
    for score in [10, 10, 9, 9, 8, 7, 6, 5, 3, 0] {
        csv.push_str(&format!("a,{score}\n"));
    }
    for score in [10, 8, 6, 5, 4, 3, 2, 1, 0, 0] {
        csv.push_str(&format!("b,{score}\n"));
    }
    let input = write(dir.path(), "answers.csv", &csv);
    let server = Server::start();
    let url = server.url();
    let args = [
        "compute",
        "nps",
        "--input",
        &input,
        "--param",
        "compare=segment",
        "--format",
        "json",
    ];
    for remote in [None, Some(url.as_str())] {
        let mut all = args.to_vec();
        if let Some(url) = remote {
            all.extend(["--server", url]);
        }
        let out: serde_json::Value = serde_json::from_str(&mittari(dir.path(), &all)).unwrap();
        let a = &out["tables"]["segments"][0];
        assert_eq!(
            (a["segment"].as_str(), a["nps"].as_f64()),
            (Some("a"), Some(0.0))
        );
        assert_eq!(a["rest_nps"], -70.0);
        assert_eq!(a["difference"], 70.0);
        let close = |key: &str, want: f64| {
            let got = a[key].as_f64().unwrap();
            assert!(
                (got - want).abs() < 1e-6,
                "{key}: {got} != {want} ({remote:?})"
            );
        };
        close("difference_lower", -6.893776591713767);
        close("difference_upper", 114.58608428402147);
        close("difference_p_value", 0.08229636093145361);
        close("difference_p_adjusted", 0.16459272186290722);
        assert_eq!(a["difference_significant"], false);

        // --group-by segment says the same beside each segment's own figures.
        let mut grouped = vec![
            "compute",
            "nps",
            "--input",
            &input,
            "--group-by",
            "segment",
            "--format",
            "json",
        ];
        if let Some(url) = remote {
            grouped.extend(["--server", url]);
        }
        let out: serde_json::Value = serde_json::from_str(&mittari(dir.path(), &grouped)).unwrap();
        let group = &out["groups"][0];
        assert_eq!(group["key"]["segment"], "a");
        let results = &group["results"];
        assert_eq!(
            (results["nps"].as_f64(), results["rest_nps"].as_f64()),
            (Some(0.0), Some(-70.0))
        );
        assert_eq!(results["vs_rest"], 70.0);
        let interval = &group["confidence_intervals"]["vs_rest"];
        for (got, want) in [
            (&interval["lower"], -6.893776591713767),
            (&interval["upper"], 114.58608428402147),
            (&results["vs_rest_p_adjusted"], 0.16459272186290722),
        ] {
            assert!(
                (got.as_f64().unwrap() - want).abs() < 1e-6,
                "{got} != {want}"
            );
        }
        assert_eq!(results["vs_rest_significant"], 0);
        assert_eq!(group["units"]["vs_rest_significant"], "flag");
    }
    // In the table, the verdict reads as words.
    let table = mittari(
        dir.path(),
        &["compute", "nps", "--input", &input, "--group-by", "segment"],
    );
    assert!(table.contains("vs_rest_significant"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("a ") && l.trim_end().ends_with("no")),
        "{table}"
    );
}

/// Experience to money from the logs as kept: survey answers and the contact log's
/// first-contact resolution joined to the purchase log by cx_outcomes, embedded and through a
/// server alike; its customers table is clv's covariate; a bad experiences file is named by
/// file, line and column.
#[test]
fn experience_outcomes_join_answers_and_contacts_to_purchases() {
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root();
    let server = Server::start();
    let url = server.url();
    let answers = [
        "compute",
        "cx_outcomes",
        "--input",
        "examples/data/transactions.csv",
        "--table-input",
        "experiences=examples/data/survey.csv",
        "--param",
        "split=2024-07-01",
        "--format",
        "json",
    ];
    let embedded = mittari(&root, &answers);
    let mut remote = answers.to_vec();
    remote.extend(["--server", &url]);
    assert_eq!(embedded, mittari(&root, &remote));
    let out: serde_json::Value = serde_json::from_str(&embedded).unwrap();
    let column = |out: &serde_json::Value, table: &str, name: &str| -> Vec<serde_json::Value> {
        out["tables"][table]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row[name].clone())
            .collect()
    };
    assert_eq!(
        column(&out, "tiers", "tier"),
        ["detractor", "passive", "promoter", "none"].map(serde_json::Value::from)
    );
    let customers: i64 = column(&out, "tiers", "customers")
        .iter()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(out["results"]["customers"], customers);
    // The example's promoters do not differ from its detractors beyond chance: every
    // comparison says so.
    let significant = column(&out, "comparisons", "significant");
    assert!(!significant.is_empty() && significant.iter().all(|s| s == false));
    assert!(
        out["confidence_intervals"]["spend_gap"]["lower"]
            .as_f64()
            .unwrap()
            < 0.0
    );

    // Service outcomes: service's contacts table, written out, as the experiences.
    let facts = dir.path().join("facts.csv");
    let facts = facts.to_str().unwrap();
    mittari(
        &root,
        &[
            "compute",
            "service",
            "--input",
            "examples/data/contacts.csv",
            "--param",
            "contacts_table=true",
            "--output",
            facts,
            "--output-table",
            "contacts",
        ],
    );
    let resolution: serde_json::Value = serde_json::from_str(&mittari(
        &root,
        &[
            "compute",
            "cx_outcomes",
            "--input",
            "examples/data/transactions.csv",
            "--table-input",
            &format!("experiences={facts}"),
            "--table-column",
            "experiences.outcome=first_contact_resolved",
            "--table-column",
            "experiences.timestamp=opened_at",
            "--param",
            "split=2024-07-01",
            "--param",
            "predict=false",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(
        column(&resolution, "tiers", "tier"),
        ["false", "true", "none"].map(serde_json::Value::from)
    );
    let codes: Vec<String> = warnings_of(&resolution).into_iter().map(|w| w.0).collect();
    assert!(
        codes.contains(&"experiences_without_value".to_owned()),
        "contacts whose outcome is not known yet are counted: {codes:?}"
    );

    // The model-based way: each customer's tier as clv's covariate.
    let tiers_file = dir.path().join("tiers.csv");
    let tiers_file = tiers_file.to_str().unwrap();
    let mut with_table = answers[..answers.len() - 2].to_vec();
    with_table.extend([
        "--param",
        "customers_table=true",
        "--param",
        "predict=false",
        "--output",
        tiers_file,
        "--output-table",
        "customers",
    ]);
    mittari(&root, &with_table);
    let clv = clv_json(
        "examples/data/transactions.csv",
        &[
            "--join",
            tiers_file,
            "--param",
            "covariates=tier",
            "--param",
            "model=bgnbd",
            "--param",
            "holdout_start=2024-07-01",
            "--param",
            "top=1",
        ],
    );
    let p = clv["results"]["covariates_lr_p_value"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "{clv}");

    let bad = write(
        dir.path(),
        "answers.csv",
        "customer_id,timestamp,score\nc0001,2024-01-05,9\nc0002,2024-13-01,7\n",
    );
    let (status, _, stderr) = run_cli(
        &[
            "compute",
            "cx_outcomes",
            "--input",
            "examples/data/transactions.csv",
            "--table-input",
            &format!("experiences={bad}"),
        ],
        &root,
        &[],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("answers.csv: line 3: column timestamp"),
        "{stderr}"
    );
}

/// A transaction log in time order is summarized as it is read (`--in-chunks auto`, the
/// default) from a CSV file, JSON Lines in several batches and standard input, and the result
/// is the one reading it whole gives, to the byte, with the log's rows counted; a log out of
/// time order is read whole and gives the same; a bad cell names its file, line and column.
#[test]
fn a_log_summarized_as_it_is_read_equals_the_whole_one() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 150_000u64;
    let day = 86_400u64;
    let mut log: Vec<(String, u64, String)> = (0..rows)
        .map(|i| {
            let customer = format!("c{}", (i * 2_654_435_761) % 30_011);
            // 2021-01-01 on, 37 s apart: three months of weekly periods.
            let at = 1_609_459_200 + i * 37;
            (customer, at, format!("{}.{:02}", i * 7919 % 400, i % 100))
        })
        .collect();
    let iso = |seconds: u64| {
        let (days, rest) = (seconds / day, seconds % day);
        // Days since 1970 to a date, as the harness has no calendar crate: 2021 only.
        let mut day_of_year = days - 18_628;
        let lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let mut month = 0;
        while day_of_year >= lengths[month] {
            day_of_year -= lengths[month];
            month += 1;
        }
        format!(
            "2021-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            month + 1,
            day_of_year + 1,
            rest / 3600,
            rest % 3600 / 60,
            rest % 60
        )
    };
    let csv_of = |log: &[(String, u64, String)]| {
        let mut text = String::from("customer_id,timestamp,amount\n");
        for (customer, at, amount) in log {
            text.push_str(&format!("{customer},{},{amount}\n", iso(*at)));
        }
        text
    };
    let sorted = write(dir.path(), "sorted.csv", &csv_of(&log));
    let jsonl: String = log
        .iter()
        .map(|(customer, at, amount)| {
            format!(
                "{{\"customer_id\": \"{customer}\", \"timestamp\": \"{}\", \"amount\": {amount}}}\n",
                iso(*at)
            )
        })
        .collect();
    let jsonl = write(dir.path(), "sorted.jsonl", &jsonl);
    let model = [
        "--param",
        "model=bgnbd",
        "--param",
        "holdout_start=2021-03-01",
        "--param",
        "top=20",
        "--format",
        "json",
    ];
    let run = |input: &str, extra: &[&str], stdin: Option<&str>| {
        let mut args = vec!["compute", "clv", "--input", input];
        args.extend_from_slice(&model);
        args.extend_from_slice(extra);
        let mut command = std::process::Command::new(mittari_e2e::mittari_bin());
        command
            .args(&args)
            .current_dir(dir.path())
            .env("RUST_LOG", "mittari=info,mittari_io=info")
            .stdin(match stdin {
                Some(path) => std::fs::File::open(path).unwrap().into(),
                None => std::process::Stdio::null(),
            });
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "mittari {args:?}: {stderr}");
        (String::from_utf8(output.stdout).unwrap(), stderr)
    };
    let (whole, _) = run(&sorted, &["--in-chunks", "never"], None);
    let parsed: serde_json::Value = serde_json::from_str(&whole).unwrap();
    assert_eq!(parsed["rows"], rows, "{whole}");
    for (input, stdin) in [
        (sorted.as_str(), None),
        (jsonl.as_str(), None),
        ("-", Some(sorted.as_str())),
    ] {
        let (chunked, log) = run(input, &[], stdin);
        assert!(
            log.contains("summarized the log as it was read"),
            "{input}: {log}"
        );
        assert_eq!(chunked, whole, "{input} in chunks");
    }
    // Summarized here, computed on a server: the same.
    let server = Server::start();
    let (remote, _) = run(&sorted, &["--server", &server.url()], None);
    assert_eq!(remote, whole, "--server");
    drop(server);
    // Out of time order: read whole, the same result.
    log.reverse();
    let reversed = write(dir.path(), "reversed.csv", &csv_of(&log));
    let (out_of_order, read) = run(&reversed, &[], None);
    assert!(read.contains("not in time order"), "{read}");
    let (reversed_whole, _) = run(&reversed, &["--in-chunks", "never"], None);
    assert_eq!(out_of_order, reversed_whole);
    // Where the log is read whole anyway, --in-chunks never changes nothing and says so.
    let historic: serde_json::Value = serde_json::from_str(&mittari(
        dir.path(),
        &[
            "compute",
            "clv",
            "--input",
            &sorted,
            "--format",
            "json",
            "--in-chunks",
            "never",
        ],
    ))
    .unwrap();
    assert!(
        warnings_of(&historic)
            .iter()
            .any(|(code, _)| code == "in_chunks_unused"),
        "{historic}"
    );
    let (chunked, _) = run(&sorted, &[], None);
    assert!(!chunked.contains("in_chunks_unused"));
    // A bad cell deep in the log names its line.
    log.reverse();
    log[120_000].2 = "-5".to_owned();
    let bad = write(dir.path(), "bad.csv", &csv_of(&log));
    let (status, _, stderr) = run_cli(
        &["compute", "clv", "--input", &bad, "--param", "model=bgnbd"],
        dir.path(),
        &[],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("line 120002") && stderr.contains("column amount") && stderr.contains("-5"),
        "{stderr}"
    );
}
