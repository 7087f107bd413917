"""A transaction log in time order, shaped like a shop's export: ROWS purchases of CUSTOMERS
customers acquired over six years, each buying over up to two years after their first
purchase, timestamps to the second, amounts in cents, sorted by timestamp (customers
interleaved, as a log exported by time has them). Written as OUT (CSV, unquoted, ISO 8601
timestamps with a Z) in slices, so memory holds the columns (about 40 bytes a row), not the
text.

Usage: sorted_log.py ROWS CUSTOMERS OUT.csv   (needs numpy and pyarrow)
"""
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as csv


def main():
    rows, customers, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rng = np.random.default_rng(7)
    start = 1_546_300_800  # 2019-01-01, seconds
    six_years, two_years = 6 * 365 * 86_400, 2 * 365 * 86_400
    first = start + rng.integers(0, six_years, customers, dtype=np.int64)
    who = rng.integers(0, customers, rows, dtype=np.int64)
    seconds = first[who] + rng.integers(0, two_years, rows, dtype=np.int64)
    del first
    order = np.argsort(seconds, kind="stable")
    who, seconds = who[order], seconds[order]
    del order
    cents = rng.integers(100, 50_000, rows, dtype=np.int64)
    options = csv.WriteOptions(quoting_style="none")
    step = 5_000_000
    with csv.CSVWriter(out, pa.schema([("customer_id", pa.string()), ("timestamp", pa.timestamp("s", tz="UTC")), ("amount", pa.float64())]), write_options=options) as writer:
        for at in range(0, rows, step):
            ids = np.char.add("c", who[at : at + step].astype(str))
            writer.write_table(
                pa.table(
                    {
                        "customer_id": pa.array(ids),
                        "timestamp": pa.array(seconds[at : at + step], pa.int64()).cast(pa.timestamp("s", tz="UTC")),
                        "amount": pa.array(cents[at : at + step] / 100.0),
                    }
                )
            )


if __name__ == "__main__":
    main()
