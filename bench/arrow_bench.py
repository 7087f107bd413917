#!/usr/bin/env python3
"""Arrow over gRPC against protobuf columns, as a pyarrow service meets them.

Starts `target/release/mittari serve` on an ephemeral loopback port and sends the same
10 000 000-row, 3-column transaction table (customer_id text, timestamp, amount) from a
pyarrow client through `ComputeStream`, in chunks of a million rows, in two encodings:

- arrow: each chunk an Arrow IPC stream (`Table.arrow_ipc`), written by pyarrow;
- protobuf: each chunk protobuf columns (`Table.columns`), built from the same arrays.

For each it times two calls, best of `--repeat`:

- transfer: the last row's amount is negative, so the server receives, decodes and checks
  every row and refuses the call without computing: the cost of getting the table in;
- compute: `clv model=historic` over the valid table, the whole call.

The client's encoding time is part of each (that is what a caller pays); it is also printed
alone. MB/s is the Arrow IPC size of the table over the time. Prints one JSON object per
measurement. Run through bench/arrow.sh.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from arrow_client import Client, ipc  # noqa: E402
from grpc_bench import start_server  # noqa: E402

CHUNK_ROWS = 1_000_000


def transactions(rows, seed=7):
    """Customers acquired over years, timestamps to the second, amounts in cents."""
    import random

    rng = random.Random(seed)
    customers = max(1, rows // 10)
    ids = pa.array([f"c{rng.randrange(customers):08d}" for _ in range(rows)])
    start = 1_420_070_400  # 2015-01-01
    seconds = pa.array([start + rng.randrange(10 * 365 * 86_400) for _ in range(rows)], pa.int64())
    stamps = seconds.cast(pa.timestamp("s")).cast(pa.timestamp("us"))
    amounts = pa.array([rng.randrange(100, 50_000) / 100 for _ in range(rows)])
    return pa.table({"customer_id": ids, "timestamp": stamps, "amount": amounts})


def protobuf_chunks(client, table):
    """The table as protobuf-column chunks (and the header schema they need)."""
    chunks = []
    micros = pc.cast(table.column("timestamp"), pa.int64())
    for offset in range(0, table.num_rows, CHUNK_ROWS):
        part = table.slice(offset, CHUNK_ROWS)
        chunk = client.table_class()
        column = chunk.columns.add(name="customer_id")
        column.string_values.values.extend(part.column("customer_id").to_pylist())
        column = chunk.columns.add(name="timestamp")
        column.timestamp_values.values.extend(micros.slice(offset, CHUNK_ROWS).to_pylist())
        column = chunk.columns.add(name="amount")
        column.double_values.values.extend(part.column("amount").to_pylist())
        chunks.append(chunk)
    return chunks


def stream_protobuf(client, metric, chunks, params):
    request_class, _ = client.classes["ComputeStream"]
    header = client.header_class(metric=metric)
    for name, type_name in [("customer_id", "DATA_TYPE_STRING"), ("timestamp", "DATA_TYPE_TIMESTAMP"), ("amount", "DATA_TYPE_DOUBLE")]:
        header.schema.add(name=name, type=client.header_class.DESCRIPTOR.fields_by_name["schema"].message_type.fields_by_name["type"].enum_type.values_by_name[type_name].number)
    client._params(header.parameters, params)

    def messages():
        yield request_class(header=header)
        for chunk in chunks:
            yield request_class(chunk=chunk)

    return client._stub("ComputeStream", True)(messages(), timeout=600)


def timed(repeat, work):
    best = None
    for _ in range(repeat):
        started = time.perf_counter()
        outcome = work()
        elapsed = time.perf_counter() - started
        best = elapsed if best is None or elapsed < best else best
    return best, outcome


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--binary", default="target/release/mittari")
    args = parser.parse_args()

    server, address = start_server(args.binary)
    try:
        client = Client(address)
        table = transactions(args.rows)
        bad = table.set_column(
            2, "amount", pc.if_else(pa.array([i == args.rows - 1 for i in range(args.rows)]), -1.0, table.column("amount"))
        )
        ipc_bytes = len(ipc(table))
        params = {"model": "historic"}
        report = lambda name, seconds, **more: print(
            json.dumps({"measure": name, "rows": args.rows, "seconds": round(seconds, 3),
                        "MB_per_s": round(ipc_bytes / seconds / 1e6, 1), **more}),
            flush=True,
        )
        print(json.dumps({"rows": args.rows, "arrow_ipc_bytes": ipc_bytes}), flush=True)

        def refused(call):
            try:
                call()
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
                return
            raise AssertionError("the negative amount was accepted")

        encode, _ = timed(args.repeat, lambda: [ipc(table.slice(o, CHUNK_ROWS)) for o in range(0, args.rows, CHUNK_ROWS)])
        report("arrow_client_encode", encode)
        seconds, _ = timed(args.repeat, lambda: refused(lambda: client.compute_stream(
            "clv", [ipc(bad.slice(o, CHUNK_ROWS)) for o in range(0, args.rows, CHUNK_ROWS)], params)))
        report("arrow_transfer", seconds)
        seconds, response = timed(args.repeat, lambda: client.compute_stream(
            "clv", [ipc(table.slice(o, CHUNK_ROWS)) for o in range(0, args.rows, CHUNK_ROWS)], params, arrow_results=True))
        report("arrow_compute_clv_historic", seconds, customers={s.name: s.value for s in response.results.scalars}["customers"])

        encode, _ = timed(1, lambda: protobuf_chunks(client, table))
        report("protobuf_client_encode", encode)
        seconds, _ = timed(1, lambda: refused(lambda: stream_protobuf(client, "clv", protobuf_chunks(client, bad), params)))
        report("protobuf_transfer", seconds)
        seconds, _ = timed(1, lambda: stream_protobuf(client, "clv", protobuf_chunks(client, table), params))
        report("protobuf_compute_clv_historic", seconds)
    finally:
        server.kill()


if __name__ == "__main__":
    main()
