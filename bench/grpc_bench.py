#!/usr/bin/env python3
"""The gRPC service as its callers meet it, measured with a stock client (Python grpcio).

Starts `target/release/mittari serve` on an ephemeral loopback port and measures, against the
same server:

- latency: sequential unary calls, one at a time on one connection: a 10-row NPS `Compute`
  and `grpc.health.v1.Health/Check` (the bare tonic ceiling);
- throughput: 50 connections x 10 concurrent streams each, for a fixed time, of the same two
  calls.

With --score, also a stored model's scoring of one customer (ModelService/Score), after fitting
a BG/NBD + Gamma-Gamma model of 2 000 customers through ModelService/Fit; with --token, the
server requires a bearer token (made by `mittari token new`) and every call but the health
check sends it.

The client has no copy of the .proto files: it finds both services through server reflection.
Run it through bench/grpc.sh, which builds the server and the client's virtualenv. Prints one
JSON object per measurement.
"""
import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

NPS_REQUEST = {
    "metric": "nps",
    "input": {
        "columns": [
            {"name": "score", "int64Values": {"values": ["9", "10", "3", "7", "8", "10", "0", "9", "6", "10"]}}
        ]
    },
}


SCORE_REQUEST = {
    "model": "bench@1",
    "input": {
        "columns": [
            {"name": "frequency", "doubleValues": {"values": [3]}},
            {"name": "recency", "doubleValues": {"values": [20]}},
            {"name": "T", "doubleValues": {"values": [40]}},
            {"name": "monetary_value", "doubleValues": {"values": [35.5]}},
        ]
    },
}


def fit_messages(customers=2000):
    """A Fit stream: the header, then one chunk of `customers` summaries, deterministic."""
    columns = {"frequency": [], "recency": [], "T": [], "monetary_value": []}
    for i in range(customers):
        x = i % 7
        columns["frequency"].append(x)
        columns["recency"].append(30 - i % 11 if x else 0)
        columns["T"].append(39 - i % 3)
        columns["monetary_value"].append(20 + (i % 13) * 3.5 if x else 0)
    header = {
        "header": {
            "name": "bench",
            "input": {
                "metric": "clv",
                "parameters": {
                    "model": {"stringValue": "bgnbd"},
                    "spend_model": {"stringValue": "gamma_gamma"},
                },
                "schema": [{"name": name, "type": "DATA_TYPE_DOUBLE"} for name in columns],
            },
        }
    }
    chunk = {"chunk": {"columns": [{"name": n, "doubleValues": {"values": v}} for n, v in columns.items()]}}
    return [header, chunk]


def start_server(binary, token_config=None):
    """Starts the server on an ephemeral port, with its model store (and tokens) in a temporary
    directory; returns the process and its address."""
    import tempfile

    work = tempfile.mkdtemp(prefix="mittari-bench-")
    plugins = os.path.dirname(os.path.abspath(binary))
    with open(os.path.join(work, "mittari.toml"), "w") as config:
        config.write(f'[plugins]\ndir = "{plugins}"\n[models]\nstore = "sqlite://{work}/models.db"\n')
        config.write(token_config or "")
    server = subprocess.Popen(
        [binary, "--config", os.path.join(work, "mittari.toml"), "serve", "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    for line in server.stderr:
        found = re.search(r"listening addr=(\S+)", line)
        if found:
            # Keep reading its log (an audit line per request): a full pipe would block it.
            threading.Thread(target=lambda: server.stderr.read(), daemon=True).start()
            return server, found.group(1)
    server.kill()
    sys.exit("the server ended without reporting its address")


def methods(address, score, metadata):
    """(path, request bytes, response class, metadata) for Compute, Health/Check and, with
    `score`, ModelService/Score (after fitting the model it scores with), via reflection."""
    channel = grpc.insecure_channel(address)
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    calls = {}
    wanted = [
        ("compute_nps_10_rows", "mittari.v1.MetricService", "Compute", NPS_REQUEST),
        ("health_check", "grpc.health.v1.Health", "Check", {}),
    ]
    if score:
        wanted.append(("score_one_customer", "mittari.v1.ModelService", "Score", SCORE_REQUEST))
        fit = pool.FindServiceByName("mittari.v1.ModelService").methods_by_name["Fit"]
        fit_class = message_factory.GetMessageClass(fit.input_type)
        fit_response = message_factory.GetMessageClass(fit.output_type)
        stub = channel.stream_unary(
            "/mittari.v1.ModelService/Fit",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=fit_response.FromString,
        )
        messages = [json_format.ParseDict(m, fit_class()) for m in fit_messages()]
        stub(iter(messages), timeout=120, metadata=metadata)
    for name, service, method, request in wanted:
        descriptor = pool.FindServiceByName(service).methods_by_name[method]
        request_class = message_factory.GetMessageClass(descriptor.input_type)
        response_class = message_factory.GetMessageClass(descriptor.output_type)
        payload = json_format.ParseDict(request, request_class()).SerializeToString()
        # The health check is open: no token, as load balancers call it.
        call_metadata = None if service.startswith("grpc.health") else metadata
        calls[name] = (f"/{service}/{method}", payload, response_class, call_metadata)
    channel.close()
    return calls


def latency(address, path, payload, response_class, metadata, calls):
    channel = grpc.insecure_channel(address)
    stub = channel.unary_unary(
        path,
        request_serializer=lambda b: b,
        response_deserializer=response_class.FromString,
    )
    for _ in range(200):
        stub(payload, timeout=10, metadata=metadata)
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        stub(payload, timeout=10, metadata=metadata)
        samples.append(time.perf_counter() - started)
    channel.close()
    samples.sort()
    at = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1e3
    return {
        "calls": calls,
        "p50_ms": round(at(0.50), 3),
        "p90_ms": round(at(0.90), 3),
        "p99_ms": round(at(0.99), 3),
        "mean_ms": round(statistics.fmean(samples) * 1e3, 3),
    }


async def throughput(address, path, payload, response_class, metadata, connections, streams, seconds):
    # A channel per connection: without a local subchannel pool grpcio would share one.
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(connections)
    ]
    stubs = [
        c.unary_unary(path, request_serializer=lambda b: b, response_deserializer=response_class.FromString)
        for c in channels
    ]
    for stub in stubs:
        await stub(payload, timeout=10, metadata=metadata)
    done = 0
    failed = 0
    stop = time.monotonic() + seconds

    async def worker(stub):
        nonlocal done, failed
        while time.monotonic() < stop:
            try:
                await stub(payload, timeout=10, metadata=metadata)
                done += 1
            except grpc.aio.AioRpcError:
                failed += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(stub) for stub in stubs for _ in range(streams)))
    elapsed = time.monotonic() - started
    for c in channels:
        await c.close()
    return {
        "connections": connections,
        "streams_per_connection": streams,
        "seconds": round(elapsed, 2),
        "requests": done,
        "failed": failed,
        "requests_per_second": round(done / elapsed),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/mittari")
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per method")
    parser.add_argument("--seconds", type=float, default=10, help="per throughput run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--score", action="store_true", help="also score one customer with a stored model")
    parser.add_argument("--token", action="store_true", help="the server requires a token; calls send it")
    args = parser.parse_args()
    token_config, metadata = None, None
    if args.token:
        made = subprocess.run(
            [args.binary, "token", "new", "bench", "--scope", "compute", "--scope", "models"],
            capture_output=True, text=True, check=True,
        )
        token = [line for line in made.stderr.splitlines() if line.startswith("mittari_")][0]
        token_config, metadata = made.stdout, (("authorization", f"Bearer {token}"),)
    server, address = start_server(args.binary, token_config)
    try:
        calls = methods(address, args.score, metadata)
        for name, (path, payload, response_class, call_metadata) in calls.items():
            result = latency(address, path, payload, response_class, call_metadata, args.calls)
            print(json.dumps({"measure": "sequential_latency", "call": name, **result}), flush=True)
        ceiling = None
        for name in ["health_check", *(n for n in calls if n != "health_check")]:
            path, payload, response_class, call_metadata = calls[name]
            result = asyncio.run(
                throughput(
                    address, path, payload, response_class, call_metadata,
                    args.connections, args.streams, args.seconds,
                )
            )
            if name == "health_check":
                ceiling = result["requests_per_second"]
            else:
                result["share_of_health_check"] = round(result["requests_per_second"] / ceiling, 3)
            print(json.dumps({"measure": "throughput", "call": name, **result}), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
