"""DataFusion's floor for the RFM summary: the plain GROUP BY (count, first and last instant,
sum of amounts per customer), the least a summary of distinct periods needs (a GROUP BY of
customer and day, then of customer), against the summary query Mittari runs in DataFusion
(`mittari sql rfm --dialect datafusion`), both in DataFusion's Python binding of the same
major version as Mittari's (55), two partitions (the two cores), over the same Parquet
files, in one process, alternating. Prints seconds per run and the rows returned.

Usage: datafusion_floor.py LAKE_DIR SUMMARY.sql [RUNS]   (needs datafusion==55.*)
"""
import sys
import time

from datafusion import SessionConfig, SessionContext


def main():
    lake, summary_path = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
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
    for run in range(1, runs + 1):
        for label, sql in [
            ("plain GROUP BY", plain),
            ("two GROUP BYs", days),
            ("Mittari's summary", summary),
        ]:
            start = time.perf_counter()
            rows = sum(batch.num_rows for batch in ctx.sql(sql).collect())
            print(f"{label:18} run {run}: {time.perf_counter() - start:6.2f} s, {rows} rows", flush=True)


if __name__ == "__main__":
    main()
