"""A transaction log for bench/pushdown.sh: ROWS rows, about one customer per five rows,
customers acquired over six years, each buying over up to two years, timestamps to the
second, amounts in cents. Written as DIR/log.csv, DIR/log.parquet and 8 files DIR/lake/*.parquet.

Usage: pushdown_log.py ROWS DIR
"""
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as csv
import pyarrow.parquet as pq


def main():
    rows, out = int(sys.argv[1]), sys.argv[2]
    customers = max(rows // 5, 1)
    rng = __import__("random").Random(7)
    start = 1_546_300_800  # 2019-01-01, seconds
    six_years, two_years = 6 * 365 * 86_400, 2 * 365 * 86_400
    first = [start + rng.randrange(six_years) for _ in range(customers)]
    who = [rng.randrange(customers) for _ in range(rows)]
    seconds = [first[c] + rng.randrange(two_years) for c in who]
    cents = [rng.randrange(100, 50_000) for _ in range(rows)]
    table = pa.table(
        {
            "customer_id": pa.array([f"c{c:08d}" for c in who]),
            "timestamp": pc.multiply(pa.array(seconds, pa.int64()), 1_000_000).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "amount": pc.divide(pa.array(cents, pa.float64()), 100.0),
        }
    )
    csv.write_csv(table, os.path.join(out, "log.csv"))
    pq.write_table(table, os.path.join(out, "log.parquet"))
    os.makedirs(os.path.join(out, "lake"))
    part = (rows + 7) // 8
    for i in range(8):
        pq.write_table(
            table.slice(i * part, part), os.path.join(out, "lake", f"part-{i}.parquet")
        )


if __name__ == "__main__":
    main()
