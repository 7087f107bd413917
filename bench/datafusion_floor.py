"""DataFusion's floor for the RFM summary: the plain GROUP BY (count, first and last instant,
sum of amounts per customer), the least a summary of distinct periods needs (a GROUP BY of
customer and day, then of customer), against the summary query Mittari runs in DataFusion
(`mittari sql rfm --dialect datafusion`), both in DataFusion's Python binding of the same
major version as Mittari's (55), two partitions (the two cores), over the same Parquet
files, in one process, alternating. Prints seconds per run and the rows returned.

Usage: datafusion_floor.py LAKE_DIR SUMMARY.sql [RUNS] [--alternatives]   (needs datafusion==55.*)

With --alternatives, three other forms of the summary by day (for a log with columns
customer_id, timestamp, amount) run beside Mittari's, and each one's result is compared with
Mittari's: the first period's total from MIN over a struct of (period, amount); the periods
joined to each customer's first period without regrouping the join; the joined form without
the cross join of every row with the bounds.
"""
import sys
import time

from datafusion import SessionConfig, SessionContext


TX = """
WITH tx AS (
  SELECT customer_id, CAST(CAST("timestamp" AS TIMESTAMP(6)) AS BIGINT) AS micros, amount
  FROM orders WHERE "timestamp" IS NOT NULL
),
days AS (
  SELECT customer_id, micros,
    (micros - ((micros) % 86400000000 + 86400000000) % 86400000000) / 86400000000 AS day, amount
  FROM tx
),
cal AS (SELECT customer_id, day AS period, SUM(amount) AS amount FROM days GROUP BY customer_id, day),
"""

ALTERNATIVES = [
    ("MIN(struct)", TX + """
spans AS (
  SELECT customer_id, COUNT(*) AS periods, MIN(period) AS first_period, MAX(period) AS last_period,
    SUM(amount) AS total, MIN(named_struct('p', period, 'a', amount)) AS first_tx
  FROM cal GROUP BY customer_id
)
SELECT customer_id, periods - 1 AS frequency, last_period - first_period AS recency,
  (SELECT MAX(day) FROM days) - first_period AS "T",
  CASE WHEN periods > 1 THEN (total - first_tx['a']) / (periods - 1) ELSE CAST(0 AS DOUBLE) END AS monetary_value
FROM spans ORDER BY customer_id
"""),
    ("join on first", TX + """
spans AS (
  SELECT customer_id, COUNT(*) AS periods, MIN(period) AS first_period, MAX(period) AS last_period,
    SUM(amount) AS total
  FROM cal GROUP BY customer_id
),
bounds AS (SELECT MAX(last_period) AS end_period FROM spans)
SELECT s.customer_id, s.periods - 1 AS frequency, s.last_period - s.first_period AS recency,
  b.end_period - s.first_period AS "T",
  CASE WHEN s.periods > 1 THEN (s.total - c.amount) / (s.periods - 1) ELSE CAST(0 AS DOUBLE) END AS monetary_value
FROM spans s JOIN cal c ON c.customer_id = s.customer_id AND c.period = s.first_period
CROSS JOIN bounds b ORDER BY s.customer_id
"""),
    ("no cross join", TX + """
spans AS (
  SELECT customer_id, COUNT(*) AS periods, MIN(period) AS first_period, MAX(period) AS last_period
  FROM cal GROUP BY customer_id
),
bounds AS (SELECT MAX(last_period) AS end_period FROM spans),
summary AS (
  SELECT c.customer_id, s.periods, s.first_period, s.last_period,
    SUM(CASE WHEN c.period > s.first_period THEN c.amount ELSE 0 END) AS repeat_total
  FROM cal c JOIN spans s ON c.customer_id = s.customer_id
  GROUP BY c.customer_id, s.periods, s.first_period, s.last_period
)
SELECT customer_id, periods - 1 AS frequency, last_period - first_period AS recency,
  b.end_period - first_period AS "T",
  CASE WHEN periods > 1 THEN CAST(repeat_total AS DOUBLE) / (periods - 1) ELSE CAST(0 AS DOUBLE) END AS monetary_value
FROM summary CROSS JOIN bounds b ORDER BY customer_id
"""),
]


def largest_difference(ctx, sql, reference):
    """Whether the integer columns equal the reference's, and the monetary values' largest gap."""
    import pyarrow as pa

    got = pa.Table.from_batches(ctx.sql(sql).collect())
    same = all(got[c].equals(reference[c]) for c in ["customer_id", "frequency", "recency", "T"])
    gap = max(abs(a - b) for a, b in zip(got["monetary_value"].to_pylist(), reference["monetary_value"].to_pylist()))
    return same, gap


def main():
    args = [a for a in sys.argv[1:] if a != "--alternatives"]
    alternatives = "--alternatives" in sys.argv
    lake, summary_path = args[0], args[1]
    runs = int(args[2]) if len(args) > 2 else 3
    summary = open(summary_path).read()
    ctx = SessionContext(SessionConfig().with_target_partitions(2))
    ctx.register_parquet("orders", lake)
    plain = (
        'SELECT customer_id, count(*), min("timestamp"), max("timestamp"), sum(amount) '
        "FROM orders GROUP BY customer_id"
    )
    days = (
        "SELECT customer_id, count(*), min(day), max(day), sum(spent) FROM ("
        "SELECT customer_id, date_trunc('day', \"timestamp\") AS day, sum(amount) AS spent "
        "FROM orders GROUP BY customer_id, date_trunc('day', \"timestamp\")) GROUP BY customer_id"
    )
    queries = [("plain GROUP BY", plain), ("two GROUP BYs", days), ("Mittari's summary", summary)]
    if alternatives:
        queries += ALTERNATIVES
    for run in range(1, runs + 1):
        for label, sql in queries:
            start = time.perf_counter()
            rows = sum(batch.num_rows for batch in ctx.sql(sql).collect())
            print(f"{label:18} run {run}: {time.perf_counter() - start:6.2f} s, {rows} rows", flush=True)
    if alternatives:
        import pyarrow as pa

        reference = pa.Table.from_batches(ctx.sql(summary).collect())
        for label, sql in ALTERNATIVES:
            same, gap = largest_difference(ctx, sql, reference)
            print(f"{label}: frequency, recency and T {'equal' if same else 'DIFFER'}; monetary values within {gap:.1e}")


if __name__ == "__main__":
    main()
