#!/usr/bin/env python3
"""Batch scoring with a stored model over gRPC, from a pyarrow client: end to end, customers
per second.

Starts `target/release/mittari serve` on an ephemeral loopback port, fits a model to a summary
file through ModelService/Fit (Arrow chunks), then scores every customer of the same file
again through ModelService/Score: the table cut into requests of `--batch` customers, Arrow
IPC in and out, `--concurrency` requests in flight. The time counts the client's Arrow
encoding, the server's decoding, scoring and encoding, and the client's decoding of every
result table. Prints one JSON object per measurement.

    bench/score_bench.py SUMMARY.parquet [--batch 100000] [--concurrency 2] [--repeat 3]
"""
import argparse
import concurrent.futures
import json
import sys
import time
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from arrow_client import OPTIONS, ipc  # noqa: E402
from grpc_bench import start_server  # noqa: E402

SERVICE = "mittari.v1.ModelService"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary")
    parser.add_argument("--binary", default="target/release/mittari")
    parser.add_argument("--model", default="bgnbd")
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    table = pq.read_table(args.summary)
    server, address = start_server(args.binary)
    try:
        channel = grpc.insecure_channel(address, options=OPTIONS)
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        service = pool.FindServiceByName(SERVICE)
        cls = lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"mittari.v1.{name}"))
        arrow = pool.FindEnumTypeByName("mittari.v1.TableEncoding").values_by_name["TABLE_ENCODING_ARROW_IPC"].number
        fit_method = service.methods_by_name["Fit"]
        fit = channel.stream_unary(
            f"/{SERVICE}/Fit",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message_factory.GetMessageClass(fit_method.output_type).FromString,
        )
        Request, Header, Table, Value = cls("FitRequest"), cls("FitHeader"), cls("Table"), cls("Value")
        header = Header(name="bench")
        header.input.metric = "clv"
        header.input.parameters["model"].CopyFrom(Value(string_value=args.model))
        messages = [Request(header=header)] + [
            Request(chunk=Table(arrow_ipc=ipc(table.slice(o, 250_000))))
            for o in range(0, table.num_rows, 250_000)
        ]
        started = time.perf_counter()
        fitted = fit(iter(messages), timeout=600)
        print(json.dumps({"measure": "fit", "customers": table.num_rows,
                          "seconds": round(time.perf_counter() - started, 3),
                          "version": fitted.model.version}), flush=True)

        score_method = service.methods_by_name["Score"]
        score = channel.unary_unary(
            f"/{SERVICE}/Score",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message_factory.GetMessageClass(score_method.output_type).FromString,
        )
        ScoreRequest = message_factory.GetMessageClass(score_method.input_type)

        def one(offset):
            request = ScoreRequest(model="bench@1", result_encoding=arrow,
                                   input=Table(arrow_ipc=ipc(table.slice(offset, args.batch))))
            response = score(request, timeout=600)
            customers = next(t for t in response.results.tables if t.name == "customers")
            return pa.ipc.open_stream(customers.table.arrow_ipc).read_all().num_rows

        for run in range(args.repeat):
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.concurrency) as workers:
                scored = sum(workers.map(one, range(0, table.num_rows, args.batch)))
            seconds = time.perf_counter() - started
            assert scored == table.num_rows, (scored, table.num_rows)
            print(json.dumps({"measure": "batch_score", "run": run + 1, "customers": scored,
                              "batch": args.batch, "concurrency": args.concurrency,
                              "seconds": round(seconds, 3),
                              "customers_per_second": round(scored / seconds)}), flush=True)
        channel.close()
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
