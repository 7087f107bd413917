//! Data where it lives: PostgreSQL in, against a real server (a throwaway cluster per test, see
//! `postgres_cluster.rs`), and the RFM summary's SQL run by PostgreSQL and DataFusion against
//! Mittari's own summary.
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
#[ignore = "needs a PostgreSQL server and psql; .ci/run installs them and runs this with --ignored"]
fn a_table_a_query_and_the_csv_give_the_same_result() {
    let cluster = PostgresCluster::start();
    load_orders(&cluster);
    let url = cluster.url();
    let csv = repo_root().join("examples/data/transactions.csv");
    let model = mittari_e2e::CLV_BY_CHANNEL;
    let run = |input: &[&str]| {
        let mut args = vec!["compute", "clv"];
        args.extend(input);
        args.extend(model);
        mittari(&cluster, &args)
    };
    let from_csv = run(&["--input", csv.to_str().unwrap()]);
    let from_table = run(&["--input", &url, "--table", "public.orders"]);
    assert_eq!(from_table, from_csv);
    let mut query = vec![
        "--input",
        &url,
        "--query",
        "SELECT * FROM tilaukset WHERE summa IS NOT NULL;",
    ];
    query.extend(mittari_e2e::FINNISH_COLUMNS);
    let from_query = run(&query);
    // `kate` is a real (float4): 0.38 arrives as 0.3799999952316284, and margin is not used
    // by this computation (margin=0.3 is given), so the results agree exactly.
    assert_eq!(from_query, from_csv);
}

/// With the log in PostgreSQL and one of clv's predictive models, the RFM summary is computed
/// in the database (the log says so) and the result is the one of reading the rows
/// (`--no-pushdown`): by day and by week, with a holdout or an observation end, from a table
/// and from a query with renamed columns.
#[test]
#[ignore = "needs a PostgreSQL server and psql; .ci/run installs them and runs this with --ignored"]
fn the_summary_is_pushed_down_to_postgres_with_the_same_result() {
    let cluster = PostgresCluster::start();
    load_orders(&cluster);
    let url = cluster.url();
    let dir = tempfile::tempdir().unwrap();
    let finnish_query = "SELECT * FROM tilaukset WHERE summa IS NOT NULL";
    let mut from_query = vec!["--input", &url, "--query", finnish_query];
    // All but channel, which clv does not read without --group-by.
    from_query.extend(&mittari_e2e::FINNISH_COLUMNS[..8]);
    let from_table = ["--input", url.as_str(), "--table", "public.orders"];
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &from_table,
            &["model=bgnbd", "time_unit=day", "holdout_start=2024-10-01"],
        ),
        (
            &from_table,
            &["model=mbgnbd", "observation_end=2024-06-30T12:00:00Z"],
        ),
        (&from_query, &["model=bgnbd", "holdout_start=2024-07-01"]),
        (&from_query, &["model=pareto_nbd", "time_unit=day"]),
    ];
    const PUSHED_DOWN: &str = "summarizing the transaction log in the database";
    for (input, params) in cases {
        let mut args = vec!["compute", "clv", "--format", "json"];
        args.extend(input);
        for param in ["spend_model=gamma_gamma", "margin=0.3"]
            .iter()
            .chain(params)
        {
            args.extend(["--param", param]);
        }
        let env = [
            ("PGPASSWORD", PASSWORD),
            ("RUST_LOG", "mittari_io=info,mittari=info"),
        ];
        let mut always = args.clone();
        always.extend(["--pushdown", "always"]);
        let (status, pushed, log) = run_cli(&always, dir.path(), &env);
        assert!(status.success(), "{always:?}: {log}");
        assert!(log.contains(PUSHED_DOWN), "{always:?}: {log}");
        let mut never = args.clone();
        never.push("--no-pushdown");
        let (status, read, log) = run_cli(&never, dir.path(), &env);
        assert!(status.success(), "{never:?}: {log}");
        assert!(!log.contains(PUSHED_DOWN), "{never:?}: {log}");
        mittari_e2e::assert_same_result(&pushed, &read);
        // By default, a database on this machine has its rows read: faster without a network.
        let (status, auto, log) = run_cli(&args, dir.path(), &env);
        assert!(status.success(), "{args:?}: {log}");
        assert!(
            !log.contains(PUSHED_DOWN) && log.contains("the database is on this machine"),
            "{args:?}: {log}"
        );
        mittari_e2e::assert_same_result(&auto, &read);
    }
}

#[test]
#[ignore = "needs a PostgreSQL server and psql; .ci/run installs them and runs this with --ignored"]
fn the_cli_names_what_is_wrong_and_never_the_password() {
    let cluster = PostgresCluster::start();
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
#[ignore = "needs a PostgreSQL server and psql; .ci/run installs them and runs this with --ignored"]
fn postgres_types_map_to_the_declared_ones() {
    let cluster = PostgresCluster::start();
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
#[ignore = "needs a PostgreSQL server and psql; .ci/run installs them and runs this with --ignored"]
fn a_large_query_streams_in_batches() {
    let cluster = PostgresCluster::start();
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
#[ignore = "needs a PostgreSQL server and psql; .ci/run installs them and runs this with --ignored"]
fn the_readme_database_example_runs() {
    let cluster = PostgresCluster::start();
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
    assert!(
        psql.is_ok(),
        "psql is not installed: .ci/run installs PostgreSQL's client with the server"
    );
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

/// A transaction log shaped like a shop's: customers acquired over six years, timestamps to
/// the second, amounts in quarters (exact in binary, so sums agree to the bit), and the edge
/// cases of the summary's definitions placed on purpose.
fn generated_log() -> Vec<(String, i64, f64)> {
    const DAY: i64 = 86_400_000_000;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let start = 1_546_300_800_000_000i64; // 2019-01-01
    let span_seconds = 6 * 365 * 86_400;
    let mut rows = Vec::new();
    for customer in 0..400 {
        let id = format!("k{customer:04}");
        let first = start + (next() % span_seconds) as i64 * 1_000_000;
        for _ in 0..1 + next() % 9 {
            let at = first + (next() % (400 * 86_400)) as i64 * 1_000_000;
            rows.push((id.clone(), at, (next() % 2_000) as f64 / 4.0));
        }
    }
    let at = |text: &str| mittari_sdk::time::parse_timestamp(text).unwrap();
    for (id, when, amount) in [
        // Same day twice, at its first and last second: one period.
        ("same-day", "2023-05-10T00:00:00Z", 10.0),
        ("same-day", "2023-05-10T23:59:59Z", 2.5),
        ("same-day", "2023-05-20T12:00:00Z", 4.0),
        // Sunday's last second and Monday's first: two weeks.
        ("week-edge", "2023-06-11T23:59:59Z", 1.0),
        ("week-edge", "2023-06-12T00:00:00Z", 1.0),
        // Before 1970: floor division, not truncation.
        ("before-1970", "1969-12-31T23:59:59Z", 3.0),
        ("before-1970", "1970-01-01T00:00:00Z", 3.0),
        // At the ends used below: observation end is inclusive, the holdout starts at its
        // start, a second later is outside.
        ("at-end", "2024-09-30T00:00:00Z", 5.0),
        ("at-end", "2024-12-31T00:00:00Z", 5.0),
        ("after-end", "2024-10-01T00:00:00Z", 7.0),
        ("after-end", "2024-12-31T00:00:01Z", 7.0),
        ("holdout-only", "2024-07-01T00:00:00Z", 8.0),
        // Around the spring DST change in Helsinki (03:00 local did not exist on
        // 2024-03-31): instants, unaffected by the session's zone.
        ("dst", "2024-03-31T00:59:59Z", 1.25),
        ("dst", "2024-03-31T01:00:00Z", 1.25),
        ("dst", "2024-10-27T00:30:00Z", 1.25),
    ] {
        rows.push((id.to_owned(), at(when), amount));
    }
    debug_assert!(rows.iter().all(|r| r.1 % DAY != 1));
    rows
}

/// One way of summarizing: the unit, the bounds, and the timestamp column (an instant, a local
/// timestamp read as UTC, or a date).
#[derive(Debug, Clone, Copy)]
struct RfmCase {
    unit: mittari_io::TimeUnit,
    observation_end: Option<i64>,
    holdout_start: Option<i64>,
    column: &'static str,
}

fn rfm_cases() -> Vec<RfmCase> {
    use mittari_io::TimeUnit;
    let at = |text: &str| Some(mittari_sdk::time::parse_timestamp(text).unwrap());
    let mut cases = Vec::new();
    for unit in [TimeUnit::Day, TimeUnit::Week] {
        for (observation_end, holdout_start) in [
            (None, None),
            (at("2024-12-31T00:00:00Z"), None),
            (at("2024-12-31T00:00:00Z"), at("2024-07-01T00:00:00Z")),
            (None, at("2024-10-01T00:00:00Z")),
        ] {
            for column in ["at", "at_local", "day"] {
                cases.push(RfmCase {
                    unit,
                    observation_end,
                    holdout_start,
                    column,
                });
            }
        }
    }
    // The calendar units and hours: their arithmetic differs from days', the bounds' does not.
    for unit in [
        TimeUnit::Hour,
        TimeUnit::Month,
        TimeUnit::Quarter,
        TimeUnit::Year,
    ] {
        for (observation_end, holdout_start) in [(None, None), (None, at("2024-10-01T00:00:00Z"))] {
            for column in ["at", "day"] {
                cases.push(RfmCase {
                    unit,
                    observation_end,
                    holdout_start,
                    column,
                });
            }
        }
    }
    cases
}

impl RfmCase {
    fn sql(&self, dialect: mittari_io::SqlDialect, table: &str) -> String {
        mittari_io::rfm_query(
            dialect,
            &mittari_io::RfmQuery {
                from: mittari_io::Relation::Table(table),
                customer_id: "who",
                timestamp: self.column,
                amount: "total",
                periods: mittari_io::RfmPeriods {
                    unit: self.unit,
                    observation_end: self.observation_end,
                    holdout_start: self.holdout_start,
                },
            },
        )
        .unwrap()
    }

    /// Mittari's own summary of `log`, a line per customer in id order.
    fn expected(&self, log: &[(String, i64, f64)]) -> Vec<String> {
        use mittari_models::rfm;
        let ids: Vec<&str> = log.iter().map(|r| r.0.as_str()).collect();
        let amounts: Vec<f64> = log.iter().map(|r| r.2).collect();
        let timestamps: Vec<i64> = log
            .iter()
            .map(|r| match self.column {
                "day" => r.1.div_euclid(86_400_000_000) * 86_400_000_000,
                _ => r.1,
            })
            .collect();
        let end = self
            .observation_end
            .unwrap_or(*timestamps.iter().max().unwrap());
        let unit = self.unit;
        let summaries = rfm::summarize(
            |i| ids[i],
            &timestamps,
            &amounts,
            unit,
            end,
            self.holdout_start,
        )
        .unwrap();
        let mut lines: Vec<String> = summaries
            .iter()
            .map(|s| {
                summary_line(
                    ids[s.first_row as usize],
                    [s.frequency, s.recency, s.t].map(i64::from),
                    s.monetary_value,
                    self.holdout_start.map(|start| {
                        let frequency = i64::from(s.holdout_frequency.unwrap_or(0));
                        (frequency, unit.period(end) - unit.period(start))
                    }),
                )
            })
            .collect();
        lines.sort();
        lines
    }

    fn check(&self, got: Vec<String>, expected: &[String], sql: &str) {
        assert_eq!(got.len(), expected.len(), "{self:?}");
        for (got, expected) in got.iter().zip(expected) {
            assert_eq!(got, expected, "{self:?}\n{sql}");
        }
    }
}

/// A summary row as text; `holdout` is its frequency_holdout and duration_holdout.
fn summary_line(
    id: &str,
    counts: [i64; 3],
    monetary_value: f64,
    holdout: Option<(i64, i64)>,
) -> String {
    let [frequency, recency, t] = counts;
    format!("{id} {frequency} {recency} {t} {monetary_value:?} {holdout:?}")
}

#[test]
#[ignore = "needs a PostgreSQL server and psql; .ci/run installs them and runs this with --ignored"]
fn the_rfm_sql_computes_mittaris_summary_in_postgres() {
    let cluster = PostgresCluster::start();
    let log = generated_log();
    let mut client = cluster.client();
    client
        .batch_execute(
            "CREATE TABLE log (who text, at timestamptz, at_local timestamp, day date, total numeric(12, 2))",
        )
        .unwrap();
    let mut writer = client
        .copy_in("COPY log (who, at, at_local, day, total) FROM STDIN (FORMAT csv)")
        .unwrap();
    for (id, micros, amount) in &log {
        let instant = chrono::DateTime::from_timestamp_micros(*micros).unwrap();
        writeln!(
            writer,
            "{id},{}Z,{},{},{amount}",
            instant.format("%Y-%m-%dT%H:%M:%S%.6f"),
            instant.format("%Y-%m-%d %H:%M:%S%.6f"),
            instant.format("%Y-%m-%d"),
        )
        .unwrap();
    }
    writer.finish().unwrap();
    // Local-time columns are read as UTC whatever the session's zone: DST changes nothing.
    client
        .batch_execute("ALTER DATABASE postgres SET TimeZone = 'Europe/Helsinki'")
        .unwrap();
    let mut client = cluster.client();
    for case in rfm_cases() {
        let sql = case.sql(mittari_io::SqlDialect::Postgres, "public.log");
        let got = client
            .query(sql.as_str(), &[])
            .unwrap()
            .iter()
            .map(|row| {
                summary_line(
                    row.get(0),
                    [1, 2, 3].map(|i| row.get::<_, i64>(i)),
                    row.get(4),
                    case.holdout_start
                        .map(|_| (row.get::<_, i64>(5), row.get::<_, i64>(6))),
                )
            })
            .collect();
        case.check(got, &case.expected(&log), &sql);
    }
}

/// The generated log with its instant as a UTC timestamp (`at`), a local one (`at_local`) and
/// a date (`day`): DataFusion's timestamp and Spark's TIMESTAMP_NTZ are without a zone.
fn log_batch(log: &[(String, i64, f64)]) -> RecordBatch {
    use arrow_array::{Date32Array, Float64Array, StringArray};
    let micros: Vec<i64> = log.iter().map(|r| r.1).collect();
    RecordBatch::try_from_iter([
        (
            "who",
            Arc::new(StringArray::from_iter_values(log.iter().map(|r| &r.0))) as ArrayRef,
        ),
        (
            "at",
            Arc::new(TimestampMicrosecondArray::from(micros.clone()).with_timezone("UTC")),
        ),
        (
            "at_local",
            Arc::new(TimestampMicrosecondArray::from(micros.clone())),
        ),
        (
            "day",
            Arc::new(Date32Array::from_iter_values(
                micros.iter().map(|m| m.div_euclid(86_400_000_000) as i32),
            )),
        ),
        (
            "total",
            Arc::new(Float64Array::from_iter_values(log.iter().map(|r| r.2))),
        ),
    ])
    .unwrap()
}

fn write_parquet(batch: &RecordBatch, path: &std::path::Path) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// The summary Mittari's DataFusion computes over a pattern of Parquet files (the log split
/// in three) equals Mittari's own summary, case by case, with and without a memory limit.
#[test]
fn the_rfm_summary_runs_in_process_in_datafusion_over_a_parquet_pattern() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    let log = generated_log();
    let dir = tempfile::tempdir().unwrap();
    let batch = log_batch(&log);
    let third = batch.num_rows() / 3;
    for (i, offset) in [0, third, 2 * third].into_iter().enumerate() {
        let length = if i == 2 {
            batch.num_rows() - offset
        } else {
            third
        };
        let path = dir.path().join(format!("part-{i}.parquet"));
        write_parquet(&batch.slice(offset, length), &path);
    }
    let pattern = format!("{}/part-*.parquet", dir.path().display());
    let descriptor = MetricDescriptor::new("summary", "1", "test")
        .input(ColumnSpec::string("customer_id", ""))
        .input(ColumnSpec::double("frequency", ""))
        .input(ColumnSpec::double("recency", ""))
        .input(ColumnSpec::double("T", ""))
        .input(ColumnSpec::double("monetary_value", ""))
        .input(ColumnSpec::double("frequency_holdout", ""))
        .input(ColumnSpec::double("duration_holdout", ""));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Without a memory limit (a hash join), and with one (a sort-merge join, which spills; this
    // log fits in it, so what is checked is the other plan's result, not spilling).
    for limit in [None, Some(128 << 20)] {
        let lake = runtime
            .block_on(mittari_lake::Lake::open(&pattern, limit))
            .unwrap();
        for case in rfm_cases() {
            let options = ReadOptions {
                columns: [
                    "customer_id=who",
                    &format!("timestamp={}", case.column),
                    "amount=total",
                ]
                .iter()
                .map(|m| m.parse().unwrap())
                .collect(),
                ..ReadOptions::default()
            };
            let periods = mittari_io::RfmPeriods {
                unit: case.unit,
                observation_end: case.observation_end,
                holdout_start: case.holdout_start,
            };
            let table = runtime
                .block_on(lake.read_rfm_summary(&descriptor, &options, periods))
                .unwrap()
                .unwrap();
            let batch = table.batch;
            let ids = batch
                .column_by_name("customer_id")
                .unwrap()
                .as_string::<i32>();
            let number = |name: &str, row: usize| {
                batch
                    .column_by_name(name)
                    .unwrap()
                    .as_primitive::<Float64Type>()
                    .value(row)
            };
            let got = (0..batch.num_rows())
                .map(|row| {
                    summary_line(
                        ids.value(row),
                        ["frequency", "recency", "T"].map(|c| number(c, row) as i64),
                        number("monetary_value", row),
                        case.holdout_start.map(|_| {
                            (
                                number("frequency_holdout", row) as i64,
                                number("duration_holdout", row) as i64,
                            )
                        }),
                    )
                })
                .collect();
            case.check(
                got,
                &case.expected(&log),
                &format!("{case:?}, memory limit {limit:?}"),
            );
        }
    }
}

/// `--input 'orders/*.parquet'`: the transactions split over files by year. clv's predictive
/// models summarize in DataFusion (the log says so) and give the result of summarizing the
/// CSV here; a metric that reads rows (clv historic) gets them all, with --column renames.
#[test]
fn a_parquet_pattern_gives_the_results_of_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv = repo_root().join("examples/data/transactions.csv");
    let descriptor = MetricDescriptor::new("orders", "1", "test")
        .input(ColumnSpec::string("customer_id", ""))
        .input(ColumnSpec::timestamp("timestamp", ""))
        .input(ColumnSpec::double("amount", ""))
        .input(ColumnSpec::double("margin", ""));
    let orders = mittari_io::read(
        Source::Path(&csv),
        &descriptor,
        &[],
        &ReadOptions::default(),
    )
    .unwrap()
    .batch;
    std::fs::create_dir(dir.path().join("orders")).unwrap();
    // Renamed as a lake would have them, a file per 3 000 rows.
    let renamed = RecordBatch::try_new(
        Arc::new(mittari_sdk::arrow_schema::Schema::new(
            ["asiakas", "aika", "summa", "kate"]
                .iter()
                .zip(orders.schema().fields())
                .map(|(name, field)| field.as_ref().clone().with_name(*name))
                .collect::<Vec<_>>(),
        )),
        orders.columns().to_vec(),
    )
    .unwrap();
    for (i, offset) in (0..renamed.num_rows()).step_by(3_000).enumerate() {
        let length = 3_000.min(renamed.num_rows() - offset);
        let path = dir.path().join(format!("orders/part-{i}.parquet"));
        write_parquet(&renamed.slice(offset, length), &path);
    }
    let columns = [
        "--column",
        "customer_id=asiakas",
        "--column",
        "timestamp=aika",
        "--column",
        "amount=summa",
        "--column",
        "margin=kate",
    ];
    const SUMMARIZED: &str = "summarizing the transaction log in DataFusion";
    let run = |input: &str, params: &[&str], renamed: bool| {
        let mut args = vec!["compute", "clv", "--format", "json", "--input", input];
        if input.contains('*') {
            args.extend(["--pushdown", "always"]);
        }
        if renamed {
            args.extend(columns);
        }
        for param in params {
            args.extend(["--param", param]);
        }
        let (status, stdout, stderr) =
            run_cli(&args, dir.path(), &[("RUST_LOG", "mittari_lake=info")]);
        assert!(status.success(), "{args:?}: {stderr}");
        (stdout, stderr.contains(SUMMARIZED))
    };
    let csv = csv.to_str().unwrap();
    for params in [
        &[
            "model=bgnbd",
            "spend_model=gamma_gamma",
            "holdout_start=2024-07-01",
        ][..],
        &["model=pareto_nbd", "time_unit=day"],
    ] {
        let (lake, summarized) = run("orders/*.parquet", params, true);
        assert!(summarized, "{params:?}");
        let (here, _) = run(csv, params, false);
        mittari_e2e::assert_same_result(&lake, &here);
    }
    let (lake, summarized) = run("orders/*.parquet", &["model=historic"], true);
    assert!(!summarized);
    // By default DataFusion reads the rows and Mittari summarizes them: faster in one process.
    let mut auto = vec![
        "compute",
        "clv",
        "--format",
        "json",
        "--input",
        "orders/*.parquet",
    ];
    auto.extend(columns);
    auto.extend(["--param", "model=bgnbd"]);
    let (status, _, stderr) = run_cli(&auto, dir.path(), &[("RUST_LOG", "mittari_lake=info")]);
    assert!(status.success() && !stderr.contains(SUMMARIZED), "{stderr}");
    let (here, _) = run(csv, &["model=historic"], false);
    mittari_e2e::assert_same_result(&lake, &here);
    let (status, _, stderr) = run_cli(
        &["compute", "clv", "--input", "nothing/*.parquet"],
        dir.path(),
        &[],
    );
    assert!(!status.success());
    assert!(stderr.contains("no file matches the pattern"), "{stderr}");
}

/// Runs every case's query for `dialect` in `engine` (tests/sql_engines.py) over the
/// generated log as Parquet, and compares with Mittari's summary.
fn check_rfm_in(engine: &str, dialect: mittari_io::SqlDialect) {
    let python = mittari_e2e::client_python();
    let log = generated_log();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.parquet");
    write_parquet(&log_batch(&log), &path);

    let cases = rfm_cases();
    let queries: Vec<String> = cases.iter().map(|case| case.sql(dialect, "log")).collect();
    let mut child = std::process::Command::new(python)
        .arg(repo_root().join("tests/sql_engines.py"))
        .arg(engine)
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &queries).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{engine}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Vec<Vec<serde_json::Value>>> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results.len(), cases.len());
    for ((case, rows), sql) in cases.iter().zip(results).zip(&queries) {
        let got = rows
            .iter()
            .map(|row| {
                summary_line(
                    row[0].as_str().unwrap(),
                    [1, 2, 3].map(|i| row[i].as_i64().unwrap()),
                    row[4].as_f64().unwrap(),
                    case.holdout_start
                        .map(|_| (row[5].as_i64().unwrap(), row[6].as_i64().unwrap())),
                )
            })
            .collect();
        case.check(got, &case.expected(&log), sql);
    }
}

#[test]
#[ignore = "needs Java and the Python packages pyspark and pyarrow (MITTARI_STOCK_CLIENT_PYTHON); .ci/run installs them and runs this with --ignored"]
fn the_rfm_sql_computes_mittaris_summary_in_spark() {
    check_rfm_in("spark", mittari_io::SqlDialect::Spark);
}

/// The model store keeps on PostgreSQL every promise it keeps on SQLite (one suite for both):
/// versions never reused, aliases that cannot dangle, concurrent fits on separate connections
/// (as replicas would make them) with distinct versions; and a second open, as a second
/// replica starting, finds the schema migrated and the models there.
#[test]
#[ignore = "needs a PostgreSQL server; .ci/run installs it and runs this with --ignored"]
fn the_model_store_keeps_its_promises_on_postgres() {
    let cluster = PostgresCluster::start();
    let url = format!(
        "postgres://mittari:{PASSWORD}@127.0.0.1:{}/postgres",
        cluster.port
    );
    let open = || mittari_store::open(&url).unwrap();
    mittari_store::testing::suite(&open);
    let replica = open();
    assert_eq!(replica.list(Some("busy")).unwrap().len(), 20);
    // The store names itself without the password.
    assert!(
        !replica.describe().contains(PASSWORD),
        "{}",
        replica.describe()
    );
    let Err(error) = mittari_store::open(&format!(
        "postgres://mittari:{PASSWORD}@127.0.0.1:{}/no_such_database",
        cluster.port
    )) else {
        panic!("opened a database that does not exist");
    };
    let message = error.to_string();
    assert!(
        message.contains("no_such_database") && !message.contains(PASSWORD),
        "{message}"
    );
}

/// Two servers on one PostgreSQL model store, as two replicas: a model fitted on one is
/// scored on the other with the fit's own predictions, and an alias moved on one is followed
/// by the other within `models.cache_seconds`.
#[test]
#[ignore = "needs a PostgreSQL server; .ci/run installs it and runs this with --ignored"]
fn a_model_fitted_on_one_replica_is_scored_on_another() {
    // The cluster's set-up uses the blocking client, outside the runtime.
    let cluster = PostgresCluster::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(two_replicas(&cluster));
}

async fn two_replicas(cluster: &PostgresCluster) {
    use mittari_e2e::{Server, fit_stream, standard_plugins, summary_table, text};
    use mittari_proto::v1 as pb;
    use pb::model_service_client::ModelServiceClient;
    // The password from PGPASSWORD, not the URL: it never shows in a configuration.
    let url = format!("postgres://mittari@127.0.0.1:{}/postgres", cluster.port);
    let plugins = standard_plugins();
    let plugins: Vec<(&str, &str)> = plugins
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let env = [
        ("MITTARI__MODELS__STORE", url.as_str()),
        ("MITTARI__MODELS__CACHE_SECONDS", "0.2"),
        ("PGPASSWORD", PASSWORD),
    ];
    let first = Server::start_with(&plugins, &env);
    let second = Server::start_with(&plugins, &env);
    let mut on_first = ModelServiceClient::new(first.channel().await);
    let mut on_second = ModelServiceClient::new(second.channel().await);
    let table = summary_table(300);
    let params: std::collections::HashMap<String, pb::Value> = [
        ("model".to_owned(), text("bgnbd")),
        ("spend_model".to_owned(), text("gamma_gamma")),
    ]
    .into();
    let fit = || tokio_stream::iter(fit_stream("clv-eu", &table, &params, 1000));
    let fitted = on_first.fit(fit()).await.unwrap().into_inner();
    assert_eq!(fitted.model.as_ref().unwrap().version, 1);
    let score = |reference: &str| pb::ScoreRequest {
        model: reference.into(),
        input: Some(table.clone()),
        ..Default::default()
    };
    let scored = on_second
        .score(score("clv-eu"))
        .await
        .unwrap()
        .into_inner()
        .results
        .unwrap();
    assert_eq!(
        scored.tables,
        fitted.results.unwrap().results.unwrap().tables
    );

    let alias = |version: u64| pb::SetAliasRequest {
        name: "clv-eu".into(),
        alias: "production".into(),
        version,
    };
    on_first.set_alias(alias(1)).await.unwrap();
    let scored_by = |client: &ModelServiceClient<_>| {
        let mut client = client.clone();
        async move {
            let results = client
                .score(score("clv-eu@production"))
                .await
                .unwrap()
                .into_inner()
                .results
                .unwrap();
            results.warnings[0].message.clone()
        }
    };
    assert!(scored_by(&on_second).await.contains("clv-eu@1"));
    on_first.fit(fit()).await.unwrap();
    on_first.set_alias(alias(2)).await.unwrap();
    // The second replica polls: within its cache_seconds it follows the alias.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(scored_by(&on_second).await.contains("clv-eu@2"));
    let listed = on_second
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|m| m.created_by == "anonymous"));
}
