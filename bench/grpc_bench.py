#!/usr/bin/env python3
"""The gRPC service as its callers meet it, measured with a stock client (Python grpcio).

Starts `target/release/mittari serve` on an ephemeral loopback port and measures, against the
same server:

- latency: sequential unary calls, one at a time on one connection: a 10-row NPS `Compute`
  and `grpc.health.v1.Health/Check` (the bare tonic ceiling);
- throughput: 50 connections x 10 concurrent streams each, for a fixed time, of the same two
  calls.

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


def start_server(binary):
    """Starts the server on an ephemeral port; returns the process and its address."""
    server = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0"],
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


def methods(address):
    """(path, request bytes, response class) for Compute and Health/Check, via reflection."""
    channel = grpc.insecure_channel(address)
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    calls = {}
    for name, service, method, request in [
        ("compute_nps_10_rows", "mittari.v1.MetricService", "Compute", NPS_REQUEST),
        ("health_check", "grpc.health.v1.Health", "Check", {}),
    ]:
        descriptor = pool.FindServiceByName(service).methods_by_name[method]
        request_class = message_factory.GetMessageClass(descriptor.input_type)
        response_class = message_factory.GetMessageClass(descriptor.output_type)
        payload = json_format.ParseDict(request, request_class()).SerializeToString()
        calls[name] = (f"/{service}/{method}", payload, response_class)
    channel.close()
    return calls


def latency(address, path, payload, response_class, calls):
    channel = grpc.insecure_channel(address)
    stub = channel.unary_unary(
        path,
        request_serializer=lambda b: b,
        response_deserializer=response_class.FromString,
    )
    for _ in range(200):
        stub(payload, timeout=10)
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        stub(payload, timeout=10)
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


async def throughput(address, path, payload, response_class, connections, streams, seconds):
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
        await stub(payload, timeout=10)
    done = 0
    failed = 0
    stop = time.monotonic() + seconds

    async def worker(stub):
        nonlocal done, failed
        while time.monotonic() < stop:
            try:
                await stub(payload, timeout=10)
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
    args = parser.parse_args()
    server, address = start_server(args.binary)
    try:
        calls = methods(address)
        for name, (path, payload, response_class) in calls.items():
            result = latency(address, path, payload, response_class, args.calls)
            print(json.dumps({"measure": "sequential_latency", "call": name, **result}), flush=True)
        ceiling = None
        for name in ["health_check", "compute_nps_10_rows"]:
            path, payload, response_class = calls[name]
            result = asyncio.run(
                throughput(address, path, payload, response_class, args.connections, args.streams, args.seconds)
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
