#!/usr/bin/env bash
# The gRPC service against a stock client: builds Mittari in release mode, installs grpcio in a
# throwaway virtualenv under target/, and runs bench/grpc_bench.py with any arguments given
# here (sequential latency, then throughput at 50 connections x 10 streams, of a small Compute
# and of the health check). About a minute; not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
venv=target/grpc-bench-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check grpcio==1.85.1 grpcio-reflection==1.85.1
fi
exec "$venv/bin/python" bench/grpc_bench.py "$@"
