#!/usr/bin/env bash
# Arrow over gRPC against protobuf columns (bench/arrow_bench.py): builds Mittari in release
# mode, installs grpcio and pyarrow in a throwaway virtualenv under target/, and sends a
# 10 000 000-row table from a pyarrow client both ways. A few minutes; not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
venv=target/arrow-bench-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check grpcio==1.85.1 grpcio-reflection==1.85.1 googleapis-common-protos pyarrow
fi
exec "$venv/bin/python" bench/arrow_bench.py "$@"
