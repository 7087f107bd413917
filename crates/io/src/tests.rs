//! The readers end to end: every format and dialect into the same typed table.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, Date32Array, Decimal128Array, Float64Array, Int32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampNanosecondArray,
};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use mittari_sdk::{ColumnSpec, MetricDescriptor};

use crate::*;

fn descriptor() -> MetricDescriptor {
    MetricDescriptor::new("clv", "1", "test")
        .input(ColumnSpec::string("customer_id", "").required())
        .input(ColumnSpec::timestamp("timestamp", "").required())
        .input(ColumnSpec::double("amount", ""))
}

/// The table as `name=value` cells, a line per row.
fn render(batch: &RecordBatch) -> String {
    let schema = batch.schema();
    // Arrow formats a zone by name only with chrono-tz: the instants are shown in UTC.
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
            schema
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

/// Reads `bytes` as the file `name` with the flags given as `--flag value` text, and compares
/// the table (or the error) with `expect`.
fn check(name: &str, bytes: &[u8], flags: &[&str], group_by: &[&str], expect: Result<&str, &str>) {
    let mut options = ReadOptions::default();
    for flag in flags {
        let (flag, value) = flag.split_once(' ').unwrap();
        match flag {
            "--date-format" => options.date_format = Some(DateFormat::new(value).unwrap()),
            "--column" => options.columns.push(value.parse().unwrap()),
            "--delimiter" => options.delimiter = Some(value.as_bytes()[0]),
            "--decimal" if value == "comma" => options.decimal = Some(DecimalSeparator::Comma),
            "--decimal" => options.decimal = Some(DecimalSeparator::Point),
            _ => panic!("unknown flag {flag}"),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let group_by: Vec<String> = group_by.iter().map(|s| (*s).to_owned()).collect();
    let got = read(Source::Path(&path), &descriptor(), &group_by, &options);
    match (got, expect) {
        (Ok(table), Ok(want)) => assert_eq!(render(&table.batch), want, "{name}"),
        (Err(error), Err(want)) => {
            let error = error.to_string().replace(&path.display().to_string(), name);
            assert!(error.contains(want), "{name}: {error}\nlacks {want}");
        }
        (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
    }
    if !group_by.is_empty() {
        return;
    }
    // Read in chunks, the same rows (CSV crosses the tests' 4 KiB blocks) or the same error;
    // each chunk's rows know their lines or rows.
    let progress = ReadProgress::default();
    let mut chunks: Vec<Chunk> = Vec::new();
    let got = read_chunks(
        Source::Path(&path),
        &descriptor(),
        &options,
        &progress,
        &mut |chunk| {
            chunks.push(chunk);
            Ok(())
        },
    );
    match (got, expect) {
        (Ok(()), Ok(want)) => {
            let batches: Vec<RecordBatch> = chunks.iter().map(|c| c.batch.clone()).collect();
            let whole =
                arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap();
            assert_eq!(render(&whole), want, "{name} in chunks");
            let rows = whole.num_rows() as u64;
            assert_eq!(
                progress.rows.load(std::sync::atomic::Ordering::Relaxed),
                rows
            );
            let whole_table = read(Source::Path(&path), &descriptor(), &[], &options).unwrap();
            let mut row = 0;
            for chunk in &chunks {
                for i in 0..chunk.batch.num_rows() {
                    assert_eq!(
                        Some(chunk.location(i)),
                        whole_table.origins.of(row),
                        "{name} row {row}"
                    );
                    row += 1;
                }
            }
        }
        (Err(error), Err(want)) => {
            let error = error.to_string().replace(&path.display().to_string(), name);
            assert!(
                error.contains(want),
                "{name} in chunks: {error}\nlacks {want}"
            );
        }
        (got, want) => panic!("{name} in chunks: got {got:?}, want {want:?}"),
    }
}

const EXPECTED: &str = "customer_id=a timestamp=2024-12-31T00:00:00 amount=1234.5\n\
                        customer_id=b timestamp=2025-01-02T00:00:00 amount=-0.25";

#[test]
fn csv_dialects_read_the_same() {
    let iso = "customer_id,timestamp,amount\na,2024-12-31,1234.5\nb,2025-01-02,-0.25\n";
    check("in.csv", iso.as_bytes(), &[], &[], Ok(EXPECTED));
    // A Finnish spreadsheet: semicolons, decimal commas with thousands, day.month.year, a
    // byte order mark and CRLF line ends.
    let finnish =
        "\u{feff}customer_id;timestamp;amount\r\na;31.12.2024;1.234,5\r\nb;2.1.2025;-0,25\r\n";
    check(
        "fi.csv",
        finnish.as_bytes(),
        &["--date-format %d.%m.%Y"],
        &[],
        Ok(EXPECTED),
    );
    check(
        "fi.csv",
        finnish.as_bytes(),
        &[],
        &[],
        Err(
            "fi.csv: line 2: column timestamp: \"31.12.2024\" is not an ISO 8601 date or timestamp",
        ),
    );
    check(
        "fi.csv",
        finnish.as_bytes(),
        &[],
        &[],
        Err("pass --date-format %d.%m.%Y"),
    );
    let tabs = "customer_id\ttimestamp\tamount\na\t2024-12-31\t1234.5\nb\t2025-01-02\t-0.25\n";
    check("in.tsv", tabs.as_bytes(), &[], &[], Ok(EXPECTED));
    let pipes = "customer_id|timestamp|amount\na|2024-12-31|1234.5\nb|2025-01-02|-0.25\n";
    check("in.txt", pipes.as_bytes(), &[], &[], Ok(EXPECTED));
    // Semicolons with decimal points, said with a flag; quoted cells holding the delimiter.
    let points = "customer_id;timestamp;amount\n\"a;1\";2024-12-31;1234.5\nb;2025-01-02;-0.25\n";
    check(
        "in.csv",
        points.as_bytes(),
        &["--decimal point"],
        &[],
        Ok(&EXPECTED.replace("customer_id=a ", "customer_id=a;1 ")),
    );
    check(
        "in.csv",
        points.as_bytes(),
        &[],
        &[],
        Err(
            "in.csv: line 2: column amount: \"1234.5\" is not a number with a decimal comma (1234,5 or 1.234,5); the file is read with a decimal comma because its delimiter is ';': pass --decimal-point",
        ),
    );
    // Source columns under other names.
    let renamed = "asiakasnro;pvm;summa;alue\na;31.12.2024;1234,5;x\nb;02.01.2025;-0,25;y\n";
    check(
        "fi.csv",
        renamed.as_bytes(),
        &[
            "--date-format %d.%m.%Y",
            "--column customer_id=asiakasnro",
            "--column timestamp=pvm",
            "--column amount=summa",
        ],
        &[],
        Ok(EXPECTED),
    );
    check(
        "fi.csv",
        renamed.as_bytes(),
        &["--column customer_id=asiakasnro"],
        &[],
        Err("fi.csv: clv needs a column timestamp; its columns are asiakasnro, pvm, summa, alue"),
    );
}

/// The same two rows in the types a pyarrow or Spark writer picks: integers for ids,
/// nanosecond timestamps without a zone, dates, decimals.
fn typed_batch() -> RecordBatch {
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("customer_id", Arc::new(StringArray::from(vec!["a", "b"]))),
        (
            "timestamp",
            Arc::new(TimestampNanosecondArray::from(vec![
                1_735_603_200_000_000_000,
                1_735_776_000_000_000_000,
            ])),
        ),
        (
            "amount",
            Arc::new(
                Decimal128Array::from(vec![123_450, -25])
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
            ),
        ),
        ("region", Arc::new(Int32Array::from(vec![7, 8]))),
        ("day", Arc::new(Date32Array::from(vec![20_088, 20_090]))),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

fn parquet_bytes(batch: &RecordBatch) -> Vec<u8> {
    let mut bytes = Vec::new();
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(1))
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    bytes
}

fn ipc_bytes(batch: &RecordBatch, file: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    if file {
        let mut writer =
            arrow_ipc::writer::FileWriter::try_new(&mut bytes, &batch.schema()).unwrap();
        writer.write(batch).unwrap();
        writer.finish().unwrap();
    } else {
        let mut writer =
            arrow_ipc::writer::StreamWriter::try_new(&mut bytes, &batch.schema()).unwrap();
        writer.write(batch).unwrap();
        writer.finish().unwrap();
    }
    bytes
}

#[test]
fn columnar_formats_read_the_same() {
    let batch = typed_batch();
    let with_region = "customer_id=a timestamp=2024-12-31T00:00:00 amount=1234.5 region=7\n\
                       customer_id=b timestamp=2025-01-02T00:00:00 amount=-0.25 region=8";
    for (name, bytes) in [
        ("in.parquet", parquet_bytes(&batch)),
        ("in.arrow", ipc_bytes(&batch, true)),
        ("stream.arrow", ipc_bytes(&batch, false)),
        ("in.arrows", ipc_bytes(&batch, false)),
        // No extension: known by the magic bytes.
        ("in", parquet_bytes(&batch)),
    ] {
        check(name, &bytes, &[], &["region"], Ok(with_region));
        check(name, &bytes, &[], &[], Ok(EXPECTED));
    }
    // A date column read as the timestamp, by mapping.
    check(
        "in.parquet",
        &parquet_bytes(&batch.project(&[0, 4, 2]).unwrap()),
        &["--column timestamp=day"],
        &[],
        Ok(EXPECTED),
    );
    // A column of the wrong type is refused with its type; a value that does not fit names
    // its row.
    let wrong: Vec<(&str, ArrayRef)> = vec![
        (
            "customer_id",
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
        ),
        (
            "timestamp",
            Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])),
        ),
    ];
    check(
        "in.parquet",
        &parquet_bytes(&RecordBatch::try_from_iter(wrong).unwrap()),
        &[],
        &[],
        Err("in.parquet: column timestamp is Float64 in the input; clv needs timestamp"),
    );
    let text: Vec<(&str, ArrayRef)> = vec![
        (
            "customer_id",
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
        ),
        (
            "timestamp",
            Arc::new(StringArray::from(vec![
                "2024-12-31",
                "2025-01-02",
                "31.12.2024",
            ])),
        ),
    ];
    check(
        "in.parquet",
        &parquet_bytes(&RecordBatch::try_from_iter(text).unwrap()),
        &[],
        &[],
        Err("in.parquet: row 3: column timestamp: \"31.12.2024\" is not an ISO 8601 date"),
    );
}

#[test]
fn json_lines_read_like_csv() {
    let lines = "{\"customer_id\": \"a\", \"timestamp\": \"2024-12-31\", \"amount\": 1234.5, \"note\": [1]}\n\
                 \n\
                 {\"customer_id\": \"b\", \"timestamp\": \"2025-01-02T00:00:00Z\", \"amount\": -0.25}\n";
    check("in.jsonl", lines.as_bytes(), &[], &[], Ok(EXPECTED));
    let text_amount = "{\"customer_id\": \"a\", \"timestamp\": \"2024-12-31\", \"amount\": \"1.234,5\"}\n\
                       {\"customer_id\": \"b\", \"timestamp\": \"2025-01-02\", \"amount\": \"-0,25\"}\n";
    check(
        "in.ndjson",
        text_amount.as_bytes(),
        &["--decimal comma"],
        &[],
        Ok(EXPECTED),
    );
    check(
        "in.jsonl",
        b"{\"customer_id\": 1, \"timestamp\": \"yesterday\"}\n",
        &[],
        &[],
        Err("in.jsonl: row 1: column timestamp: \"yesterday\" is not an ISO 8601 date"),
    );
}

/// The RFM query in each dialect: identifiers quoted its way, integer arithmetic its way; the
/// PostgreSQL and DataFusion queries are run against Mittari's summary in tests/databases.rs.
#[test]
fn rfm_sql_speaks_each_dialect() {
    let query = RfmQuery {
        from: Relation::Table("shop.orders"),
        customer_id: "asiakas",
        timestamp: "pvm",
        amount: "summa",
        periods: RfmPeriods {
            unit: TimeUnit::Week,
            observation_end: None,
            holdout_start: Some(1_719_792_000_000_000),
        },
    };
    let check = |dialect: SqlDialect, expect: &[&str]| {
        let sql = rfm_query(dialect, &query).unwrap();
        for part in expect {
            assert!(sql.contains(part), "{dialect:?}: {part:?} not in\n{sql}");
        }
    };
    check(
        SqlDialect::Postgres,
        &[
            "FROM \"shop\".\"orders\"",
            "EXTRACT(EPOCH FROM \"pvm\")",
            "(micros) % 86400000000",
            "b.end_period - c.first_period AS \"T\"",
            "micros >= 1719792000000000 AS in_holdout",
            "(MIN(ARRAY[CASE WHEN in_holdout THEN 1 ELSE 0 END, CAST(period AS DOUBLE PRECISION), amount]))[3]",
            // 2024-07-01 is day 19 905, a Monday: week (19 905 + 3) / 7 = 2 844.
            "CAST(2844 AS BIGINT) AS end_period",
        ],
    );
    check(
        SqlDialect::DataFusion,
        &[
            "CAST(CAST(\"pvm\" AS TIMESTAMP(6)) AS BIGINT)",
            "WHEN c.period > s.first_period THEN c.amount",
        ],
    );
    check(
        SqlDialect::Spark,
        &[
            "SET spark.sql.session.timeZone = UTC;",
            "FROM `shop`.`orders`",
            "unix_micros(CAST(`pvm` AS TIMESTAMP))",
            ") div 86400000000",
            "min_by(amount, CASE WHEN in_holdout THEN 9223372036854775807 ELSE period END)",
        ],
    );
    check(
        SqlDialect::BigQuery,
        &[
            "UNIX_MICROS(CAST(`pvm` AS TIMESTAMP))",
            "DIV(micros - MOD(MOD(micros, 86400000000) + 86400000000, 86400000000), 86400000000)",
            "AS FLOAT64",
        ],
    );
    let late = RfmQuery {
        periods: RfmPeriods {
            observation_end: Some(1_700_000_000_000_000),
            ..query.periods
        },
        ..query
    };
    assert_eq!(
        rfm_query(SqlDialect::Postgres, &late).unwrap_err(),
        "the holdout must start before the end of observation"
    );
}

/// Column names of every format, renamed by `--column`.
#[test]
fn column_names_of_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let batch = typed_batch();
    let all = ["customer_id", "timestamp", "amount", "region", "day"];
    let files: [(&str, Vec<u8>); 7] = [
        ("in.parquet", parquet_bytes(&batch)),
        ("in.arrow", ipc_bytes(&batch, true)),
        ("stream.arrow", ipc_bytes(&batch, false)),
        ("in.arrows", ipc_bytes(&batch, false)),
        ("in", parquet_bytes(&batch)),
        (
            "in.csv",
            "\u{feff}customer_id;timestamp;amount;region;\"day\"\n".into(),
        ),
        (
            "in.jsonl",
            "{\"customer_id\":\"a\",\"timestamp\":1,\"amount\":2,\"region\":3,\"day\":4}\n".into(),
        ),
    ];
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let names = crate::column_names(&path, &crate::ReadOptions::default()).unwrap();
        assert_eq!(names, all, "{name}");
        let mapped = crate::ReadOptions {
            columns: vec!["when=timestamp".parse().unwrap()],
            ..Default::default()
        };
        let names = crate::column_names(&path, &mapped).unwrap();
        assert_eq!(names[1], "when", "{name}");
    }
    let missing = crate::column_names(&dir.path().join("none.csv"), &crate::ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(missing.contains("none.csv"), "{missing}");
}

/// Error positions are the same lines in LF, CRLF (every spreadsheet export) and BOM files,
/// for a bad cell, a row of the wrong width, a cell after a quoted line break, and a bad cell
/// far into a file read in several pieces.
#[test]
fn error_lines_are_the_same_for_every_line_end() {
    let body = [
        "customer_id,timestamp,amount",
        "a,2024-12-31,1",
        "b,2025-01-02,2",
        "c,2025-01-03,x",
    ];
    let wide = [
        "customer_id,timestamp,amount",
        "a,2024-12-31,1",
        "b,2025-01-02,2,3",
    ];
    let quoted = [
        "customer_id,timestamp,amount",
        "\"a",
        "a\",2024-12-31,1",
        "b,2025-01-02,x",
    ];
    let mut long = vec!["customer_id,timestamp,amount".to_owned()];
    long.extend((0..300_000).map(|i| format!("c{i},2024-12-31,{i}")));
    long.push("z,2024-12-31,x".to_owned());
    let long_lines = long.len();
    let long: Vec<&str> = long.iter().map(String::as_str).collect();
    let cases: [(&[&str], String); 4] = [
        (&body, "line 4: column amount: \"x\"".to_owned()),
        (
            &wide,
            "line 3: 4 cells, but the header names 3 columns".to_owned(),
        ),
        (&quoted, "line 4: column amount: \"x\"".to_owned()),
        (&long, format!("line {long_lines}: column amount: \"x\"")),
    ];
    for (lines, expect) in &cases {
        for (ending, bom) in [
            ("\n", ""),
            ("\r\n", ""),
            ("\n", "\u{feff}"),
            ("\r\n", "\u{feff}"),
        ] {
            let text = format!("{bom}{}{ending}", lines.join(ending));
            check("in.csv", text.as_bytes(), &[], &[], Err(expect));
        }
    }
}

#[test]
fn a_database_on_this_machine_is_told_apart() {
    for (url, local) in [
        ("postgres://u@127.0.0.1:5432/db", true),
        ("postgres://u@localhost/db", true),
        ("postgres://u@[::1]:5432/db", true),
        ("postgresql://u@db.example.com/db", false),
        ("postgres://u@10.0.0.7/db", false),
        ("host=/var/run/postgresql user=u", true),
        ("postgres://u@localhost,db.example.com/db", false),
        ("not a url", false),
    ] {
        assert_eq!(crate::is_local_database(url), local, "{url}");
    }
}

/// A log in time order is summarized part by part (the tests' CSV blocks are 4 KiB) into the
/// summary of the whole, customers in order of first purchase; one out of order is read
/// whole, from the parts kept or, past them, read again; a summary is read as it is.
#[test]
fn a_log_in_chunks_is_summarized_or_read_whole() {
    use mittari_models::rfm;
    // clv's: a log or a summary, neither's columns required.
    let summary_descriptor = MetricDescriptor::new("clv", "1", "test")
        .input(ColumnSpec::string("customer_id", ""))
        .input(ColumnSpec::timestamp("timestamp", ""))
        .input(ColumnSpec::double("amount", ""))
        .input(ColumnSpec::double("frequency", ""))
        .input(ColumnSpec::double("recency", ""))
        .input(ColumnSpec::double("T", ""));
    let day = 86_400_000_000i64;
    let rows: Vec<(String, i64, f64)> = (0..3_000i64)
        .map(|i| {
            (
                format!("c{}", i * 7919 % 401),
                1_700_000_000_000_000 + i * day / 7,
                (i % 97) as f64 * 1.25 + 0.1,
            )
        })
        .collect();
    let csv = |rows: &[(String, i64, f64)]| {
        let mut text = String::from("customer_id,timestamp,amount\n");
        for (id, at, amount) in rows {
            text.push_str(&format!(
                "{id},{},{amount}\n",
                mittari_sdk::time::format_timestamp(*at)
            ));
        }
        text
    };
    let dir = tempfile::tempdir().unwrap();
    let sorted = dir.path().join("sorted.csv");
    std::fs::write(&sorted, csv(&rows)).unwrap();
    let periods = RfmPeriods {
        unit: TimeUnit::Week,
        observation_end: None,
        holdout_start: Some(1_700_000_000_000_000 + 300 * day),
    };
    let no_check = |_: &Chunk| Ok(());
    let read_log = |path: &Path, keep: usize| {
        summarize_in_chunks(
            &Source::Path(path),
            &summary_descriptor,
            &ReadOptions::default(),
            periods,
            keep,
            &ReadProgress::default(),
            &no_check,
        )
        .unwrap()
    };
    let ChunkedRead::Summary { table, rows: read } = read_log(&sorted, 0) else {
        panic!("a log in time order is summarized");
    };
    assert_eq!(read, rows.len() as u64);
    let latest = rows.iter().map(|r| r.1).max().unwrap();
    let timestamps: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let amounts: Vec<f64> = rows.iter().map(|r| r.2).collect();
    let whole = rfm::summarize(
        |i| &rows[i].0,
        &timestamps,
        &amounts,
        periods.unit,
        latest,
        periods.holdout_start,
    )
    .unwrap();
    assert_eq!(table.batch.num_rows(), whole.len());
    let column = |name: &str| {
        table
            .batch
            .column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .clone()
    };
    let ids = table
        .batch
        .column_by_name("customer_id")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .clone();
    for (i, s) in whole.iter().enumerate() {
        assert_eq!(ids.value(i), rows[s.first_row as usize].0);
        assert_eq!(column("frequency").value(i), f64::from(s.frequency));
        assert_eq!(column("T").value(i), f64::from(s.t));
        assert_eq!(
            column("monetary_value").value(i).to_bits(),
            s.monetary_value.to_bits()
        );
        assert_eq!(
            column("frequency_holdout").value(i),
            f64::from(s.holdout_frequency.unwrap())
        );
    }
    // Out of order: read whole, from the kept parts or read again.
    let mut shuffled = rows.clone();
    shuffled.swap(10, 2_900);
    let unsorted = dir.path().join("unsorted.csv");
    std::fs::write(&unsorted, csv(&shuffled)).unwrap();
    for keep in [0, KEEP_BYTES] {
        let ChunkedRead::Whole { table, why } = read_log(&unsorted, keep) else {
            panic!("a log out of order is read whole");
        };
        assert_eq!(why, "not in time order for each customer");
        assert_eq!(table.batch.num_rows(), rows.len());
        assert_eq!(table.origins.of(2_999), Some(Location::Line(3_001)));
    }
    // A log without rows is a summary without customers, its columns known.
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "customer_id,timestamp,amount\n").unwrap();
    let ChunkedRead::Summary { table, rows: 0 } = read_log(&empty, 0) else {
        panic!("a log without rows is an empty summary");
    };
    assert_eq!(table.batch.num_rows(), 0);
    assert!(table.batch.column_by_name("frequency").is_some());
    let summary = dir.path().join("summary.csv");
    std::fs::write(&summary, "customer_id,frequency,recency,T\na,1,2,3\n").unwrap();
    let ChunkedRead::Whole { why, .. } = read_log(&summary, 0) else {
        panic!("a summary is read as it is");
    };
    assert_eq!(why, "the input is not a transaction log");
}
