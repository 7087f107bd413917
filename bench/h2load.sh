#!/usr/bin/env bash
# Throughput of the gRPC server from h2load (nghttp2-client), which unlike a Python client does
# not saturate before the server: a 10-row NPS Compute, a stored model's scoring of one customer
# (ModelService/Score, after fitting a BG/NBD + Gamma-Gamma model of 2 000 customers) and
# grpc.health.v1.Health/Check (the bare tonic ceiling) against the same server, each for a
# fixed number of calls.
#
#   bench/h2load.sh [BINARY] [CALLS] [CONNECTIONS] [STREAMS]
#
# BINARY defaults to target/release/mittari (build it with `cargo build --release --workspace`);
# the server loads the plugins beside it. Not part of CI. Needs h2load (Debian: nghttp2-client).
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/release/mittari}
calls=${2:-200000}
connections=${3:-10}
streams=${4:-10}
command -v h2load >/dev/null || { echo "h2load is missing (apt-get install nghttp2-client)" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

# The server's model store in the scratch directory, not the working one.
printf '[plugins]\ndir = "%s"\n[models]\nstore = "sqlite://%s/models.db"\n' \
    "$(cd "$(dirname "$binary")" && pwd)" "$work" >"$work/mittari.toml"
NO_COLOR=1 "$binary" --config "$work/mittari.toml" serve --listen 127.0.0.1:0 2>"$work/log" >/dev/null &
server=$!
for _ in $(seq 100); do
    addr=$(sed -n 's/.*listening addr=\([0-9.:]*\).*/\1/p' "$work/log" | head -1)
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { cat "$work/log" >&2; exit 1; }

# gRPC frames (flag, big-endian length, protobuf): an empty HealthCheckRequest, and
# ComputeRequest{metric: "nps", input: {columns: [{name: "score", int64_values: [10 scores]}]}}.
python3 - "$work" <<'PY'
import struct, sys
work = sys.argv[1]
def field(number, payload):
    return bytes([number << 3 | 2, len(payload)]) + payload
scores = bytes([10, 9, 8, 7, 3, 10, 0, 6, 9, 10])
column = field(1, b"score") + field(2, field(1, scores))
request = field(1, b"nps") + field(3, field(1, column))
def double(value):
    return struct.pack("<d", value)
score_columns = b"".join(
    field(1, field(1, name.encode()) + field(3, field(1, double(value))))
    for name, value in [("frequency", 3), ("recency", 20), ("T", 40), ("monetary_value", 35.5)]
)
score = field(1, b"bench@1") + field(3, score_columns)
with open(f"{work}/summary.csv", "w") as out:
    out.write("frequency,recency,T,monetary_value\n")
    for i in range(2000):
        x = i % 7
        out.write(f"{x},{30 - i % 11 if x else 0},{39 - i % 3},{20 + (i % 13) * 3.5 if x else 0}\n")
for name, message in [("health", b""), ("compute", request), ("score", score)]:
    with open(f"{work}/{name}.bin", "wb") as out:
        out.write(b"\x00" + struct.pack(">I", len(message)) + message)
PY

run() {
    h2load -n "$calls" -c "$connections" -m "$streams" \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        -d "$work/$2.bin" "http://$addr$1" | grep -E "^finished in|^requests:|^status codes:"
}
echo "server: $binary at $addr; $calls calls, $connections connections x $streams streams"
echo "--- grpc.health.v1.Health/Check"
run /grpc.health.v1.Health/Check health
echo "--- mittari.v1.MetricService/Compute (nps, 10 rows)"
run /mittari.v1.MetricService/Compute compute
"$binary" model fit clv --name bench --input "$work/summary.csv" --param model=bgnbd \
    --param spend_model=gamma_gamma --server "http://$addr" >/dev/null 2>&1
echo "--- mittari.v1.ModelService/Score (one customer, bench@1: BG/NBD + Gamma-Gamma)"
run /mittari.v1.ModelService/Score score
# h2load counts HTTP statuses; a gRPC status is in the trailers. The audit log says how the
# computations ended.
computed=$(grep -c 'computed metric' "$work/log" || true)
refused=$(grep -c 'computation refused or failed' "$work/log" || true)
scored=$(grep 'rpc="Score"' "$work/log" | grep -c 'computed metric' || true)
echo "computations per the server's audit log: $computed answered ($scored of them scores), $refused refused or failed"
