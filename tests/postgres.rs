//! PostgreSQL in, against a real server: a throwaway cluster per test (see
//! `postgres_cluster.rs`), loaded with data, read by the CLI and by `mittari-io`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use mittari_e2e::postgres_cluster::{PASSWORD, PostgresCluster};
use mittari_e2e::{repo_root, run_cli};
use mittari_io::{PostgresQuery, ReadOptions, Source};
use mittari_sdk::{ColumnSpec, MetricDescriptor};

/// The example transactions as a table with PostgreSQL's own types.
fn load_orders(cluster: &PostgresCluster) {
    let mut client = cluster.client();
    client
        .batch_execute(
            "CREATE TABLE orders (customer_id text, timestamp timestamptz, amount numeric(12, 2),
                                  margin double precision, channel varchar(20));
             CREATE TABLE tilaukset (asiakasnro text, pvm date, summa numeric, kate real,
                                     kanava text);",
        )
        .unwrap();
    let csv = std::fs::read(repo_root().join("examples/data/transactions.csv")).unwrap();
    let mut writer = client
        .copy_in("COPY orders FROM STDIN (FORMAT csv, HEADER)")
        .unwrap();
    writer.write_all(&csv).unwrap();
    writer.finish().unwrap();
    client
        .batch_execute(
            "INSERT INTO tilaukset SELECT customer_id, timestamp::date, amount, margin, channel
             FROM orders",
        )
        .unwrap();
}

fn mittari(cluster: &PostgresCluster, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = run_cli(args, dir.path(), &[("PGPASSWORD", PASSWORD)]);
    assert!(status.success(), "mittari {args:?} failed: {stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    let _ = cluster;
    stdout
}

#[test]
fn a_table_a_query_and_the_csv_give_the_same_result() {
    let Some(cluster) = PostgresCluster::start() else {
        return;
    };
    load_orders(&cluster);
    let url = cluster.url();
    let csv = repo_root().join("examples/data/transactions.csv");
    let model = [
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
    let run = |input: &[&str]| {
        let mut args = vec!["compute", "clv"];
        args.extend(input);
        args.extend(model);
        mittari(&cluster, &args)
    };
    let from_csv = run(&["--input", csv.to_str().unwrap()]);
    let from_table = run(&["--input", &url, "--table", "public.orders"]);
    assert_eq!(from_table, from_csv);
    let from_query = run(&[
        "--input",
        &url,
        "--query",
        "SELECT * FROM tilaukset WHERE summa IS NOT NULL;",
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
    ]);
    // `kate` is a real (float4): 0.38 arrives as 0.3799999952316284, and margin is not used
    // by this computation (margin=0.3 is given), so the results agree exactly.
    assert_eq!(from_query, from_csv);
}

#[test]
fn the_cli_names_what_is_wrong_and_never_the_password() {
    let Some(cluster) = PostgresCluster::start() else {
        return;
    };
    load_orders(&cluster);
    let url = cluster.url();
    let with_password = url.replace("mittari@", &format!("mittari:{PASSWORD}@"));
    let dir = tempfile::tempdir().unwrap();
    let check = |args: &[&str], env: &[(&str, &str)], expect: &[&str]| {
        let mut all = vec!["compute", "aov"];
        all.extend(args);
        let (status, stdout, stderr) = run_cli(&all, dir.path(), env);
        assert!(!status.success(), "{args:?} succeeded: {stdout}");
        assert!(
            !stderr.contains(PASSWORD),
            "{args:?} printed the password: {stderr}"
        );
        for part in expect {
            assert!(stderr.contains(part), "{args:?}: {part:?} not in {stderr}");
        }
    };
    let password = [("PGPASSWORD", PASSWORD)];
    check(
        &["--input", &url],
        &password,
        &["needs --query \"SELECT …\" or --table NAME"],
    );
    check(
        &["--input", &with_password, "--table", "no_such_table"],
        &[],
        &[&url, "relation \"no_such_table\" does not exist"],
    );
    check(
        &["--input", &url, "--table", "orders"],
        &[("PGPASSWORD", "wrong")],
        &[&url, "cannot connect", "password authentication failed"],
    );
    check(
        &[
            "--input",
            &url,
            "--query",
            "SELECT customer_id AS who FROM orders",
        ],
        &password,
        &["aov needs a column customer_id; its columns are who"],
    );
    check(
        &[
            "--input",
            &url,
            "--query",
            "SELECT customer_id, timestamp, '{}'::jsonb AS amount FROM orders",
        ],
        &password,
        &["column amount is jsonb in PostgreSQL", "amount::text"],
    );
    check(
        &[
            "--input",
            &url,
            "--query",
            "SELECT customer_id, timestamp, CASE WHEN customer_id = 'c0258' THEN NULL ELSE amount END AS amount FROM orders ORDER BY customer_id <> 'c0258', timestamp",
        ],
        &password,
        &["/postgres row 1): column amount is required"],
    );
}

fn descriptor() -> MetricDescriptor {
    MetricDescriptor::new("types", "1", "every declared type")
        .input(ColumnSpec::string("id", "").required())
        .input(ColumnSpec::timestamp("at", ""))
        .input(ColumnSpec::double("x", ""))
        .input(ColumnSpec::int64("n", ""))
        .input(ColumnSpec::bool("flag", ""))
}

/// The table as `name=value` cells, a line per row; instants in UTC.
fn render(batch: &RecordBatch) -> String {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(
            |c| match c.as_any().downcast_ref::<TimestampMicrosecondArray>() {
                Some(t) => Arc::new(t.clone().with_timezone_opt(None::<String>)) as ArrayRef,
                None => c.clone(),
            },
        )
        .collect();
    let formatters: Vec<ArrayFormatter<'_>> = columns
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()).unwrap())
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            batch
                .schema()
                .fields()
                .iter()
                .zip(&formatters)
                .map(|(f, c)| format!("{}={}", f.name(), c.value(row)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn postgres_types_map_to_the_declared_ones() {
    let Some(cluster) = PostgresCluster::start() else {
        return;
    };
    cluster
        .client()
        .batch_execute(
            "CREATE TYPE tier AS ENUM ('gold', 'silver');
             CREATE DOMAIN money_amount AS numeric(10, 2);
             CREATE DOMAIN small_count AS int4;",
        )
        .unwrap();
    let url = cluster
        .url()
        .replace("mittari@", &format!("mittari:{PASSWORD}@"));
    let check = |sql: &str, group_by: &[&str], expect: Result<&str, &str>| {
        let group_by: Vec<String> = group_by.iter().map(|s| (*s).to_owned()).collect();
        let source = Source::Postgres {
            url: &url,
            query: PostgresQuery::Sql(sql.to_owned()),
        };
        let got = mittari_io::read(source, &descriptor(), &group_by, &ReadOptions::default())
            .map(|table| render(&table.batch))
            .map_err(|e| e.to_string());
        match (&got, expect) {
            (Ok(got), Ok(expect)) => assert_eq!(got, expect, "{sql}"),
            (Err(got), Err(expect)) => {
                assert!(
                    got.contains(expect),
                    "{sql}:\n{got}\ndoes not contain\n{expect}"
                );
                assert!(!got.contains(PASSWORD), "{got}");
            }
            _ => panic!("{sql}: got {got:?}, expected {expect:?}"),
        }
    };
    // Text of every kind, integers, booleans and dates as group-by (and string) columns.
    check(
        "SELECT 8::int8 AS id, 'b'::varchar AS g1, 'c'::char(3) AS g2, 'd'::name AS g3,
                7::int2 AS g4, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS g5,
                'gold'::tier AS g6, true AS g7, DATE '2024-01-02' AS g8",
        &["g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8"],
        Ok(
            "id=8 g1=b g2=c   g3=d g4=7 g5=a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 g6=gold g7=true g8=2024-01-02",
        ),
    );
    // Instants: timestamptz is an instant; timestamp and date are read as UTC, as in files.
    check(
        "SELECT 'x' AS id, '2024-03-31 03:30:00+03'::timestamptz AS at
         UNION ALL SELECT 'z', NULL",
        &[],
        Ok("id=x at=2024-03-31T00:30:00\nid=z at="),
    );
    check(
        "SELECT 'y' AS id, '2024-12-31 23:59:59.123456'::timestamp AS at",
        &[],
        Ok("id=y at=2024-12-31T23:59:59.123456"),
    );
    check(
        "SELECT 'x' AS id, '2024-12-31'::date AS at",
        &[],
        Ok("id=x at=2024-12-31T00:00:00"),
    );
    // Numbers: numeric exactly as its decimal text, floats widened, integers to doubles.
    check(
        "SELECT 'x' AS id, 12.50::numeric(12, 2) AS x, 9007199254740993::numeric AS n",
        &[],
        Ok("id=x x=12.5 n=9007199254740993"),
    );
    check(
        "SELECT 'y' AS id, 0.1::float4 AS x, 3::int4 AS n",
        &[],
        Ok("id=y x=0.10000000149011612 n=3"),
    );
    check(
        "SELECT 'z' AS id, 7::int8 AS x, 5::small_count AS n",
        &[],
        Ok("id=z x=7.0 n=5"),
    );
    check(
        "SELECT 'w' AS id, 19.99::money_amount AS x, NULL::int8 AS n",
        &[],
        Ok("id=w x=19.99 n="),
    );
    check("SELECT 'x' AS id, true AS flag", &[], Ok("id=x flag=true"));
    // Errors name the row and the column, or the type and the cast that reads it.
    check(
        "SELECT 'x' AS id, 1 AS n UNION ALL SELECT 'y', 1.5::numeric",
        &[],
        Err("row 2: column n"),
    );
    // A null in a required column is the metric's to refuse, with the row, as for files.
    check(
        "SELECT 'x' AS id UNION ALL SELECT NULL",
        &[],
        Ok("id=x\nid="),
    );
    check(
        "SELECT 'x' AS id, '1 day'::interval AS at",
        &[],
        Err("column at is interval in PostgreSQL, which mittari does not read; cast it in --query"),
    );
    check(
        "SELECT 'x' AS id, 'infinity'::timestamptz AS at",
        &[],
        Err("row 1: column at"),
    );
    check("SELEC 1", &[], Err("the query fails: syntax error"));
}

#[test]
fn a_large_query_streams_in_batches() {
    let Some(cluster) = PostgresCluster::start() else {
        return;
    };
    let url = cluster
        .url()
        .replace("mittari@", &format!("mittari:{PASSWORD}@"));
    // Three batches' worth (64 Ki rows each), the error on the last row of the third.
    let sql = "SELECT 'c' || (i % 1000) AS id, i::float8 AS x
               FROM generate_series(1, 200000) AS i";
    let read = |sql: &str, group_by: &[String]| {
        mittari_io::read(
            Source::Postgres {
                url: &url,
                query: PostgresQuery::Sql(sql.to_owned()),
            },
            &descriptor(),
            group_by,
            &ReadOptions::default(),
        )
    };
    let table = read(sql, &[]).unwrap();
    assert_eq!(table.batch.num_rows(), 200_000);
    let x = table.batch.column_by_name("x").unwrap();
    let x = x
        .as_any()
        .downcast_ref::<arrow_array::Float64Array>()
        .unwrap();
    assert_eq!(x.value(199_999), 200_000.0);
    let error = read(
        "SELECT id, CASE WHEN x = 200000 THEN 'bad' ELSE x::text END AS n FROM (SELECT 'c' AS id, i::float8 AS x FROM generate_series(1, 200000) AS i) AS t",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("row 200000: column n"), "{error}");
}

#[test]
fn the_readme_database_example_runs() {
    let Some(cluster) = PostgresCluster::start() else {
        return;
    };
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let commands: Vec<String> = readme
        .lines()
        .map(str::trim)
        .filter(|line| line.contains("$DATABASE_URL"))
        .map(|line| {
            let binary = mittari_e2e::mittari_bin();
            line.replace("cargo run --", binary.to_str().unwrap())
        })
        .collect();
    assert_eq!(commands.len(), 2, "{commands:?}");
    let psql = std::process::Command::new("psql").arg("--version").output();
    if psql.is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "psql is not installed (CI=true): .ci/run installs PostgreSQL's client with the server"
        );
        eprintln!("skipped: psql is not installed");
        return;
    }
    let mut last = String::new();
    for command in &commands {
        let output = std::process::Command::new("sh")
            .args(["-c", command])
            .current_dir(repo_root())
            .env("DATABASE_URL", cluster.url())
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{command}: {stderr}");
        last = String::from_utf8_lossy(&output.stdout).into_owned();
    }
    assert!(last.contains(" over "), "{last}");
}
