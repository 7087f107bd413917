#!/usr/bin/env bash
# Scoring with a stored model, on a million customers shaped like real logs: the fit stored
# once, then the customers scored in process (the engine's own time, from its debug log) and
# end to end over gRPC (a CLI client sending Arrow IPC chunks, the server's audit line giving
# its side).
#
#   bench/score.sh [SUMMARY.csv|.parquet] [MODEL] [SPEND_MODEL]
#
# SUMMARY defaults to /tmp/clvbench/summary.parquet, else .csv (make it with
# `cargo bench -p mittari-models --bench fit -- simulate --shape=log 1000000 SUMMARY.csv LOG.csv 100000000`);
# MODEL defaults to bgnbd, SPEND_MODEL to none. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
summary=${1:-/tmp/clvbench/summary.parquet}
[ -e "$summary" ] || summary=/tmp/clvbench/summary.csv
model=${2:-bgnbd}
spend=${3:-none}
cargo build --release --workspace >/dev/null 2>&1
binary=target/release/mittari
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
store="sqlite://$work/models.db"

echo "--- fit ($model, spend $spend) on $summary"
/usr/bin/time -f "fit: %e s wall, %M KB peak" "$binary" model --store "$store" fit clv --name bench \
    --input "$summary" --param "model=$model" --param "spend_model=$spend" --format json >/dev/null

echo "--- scored in process (the engine's time, then the whole command's)"
for run in 1 2 3; do
    RUST_LOG=mittari_engine=debug NO_COLOR=1 /usr/bin/time -f "command: %e s wall, %M KB peak" \
        "$binary" model --store "$store" score bench --input "$summary" \
        --output "$work/scores.parquet" --format csv 2>&1 >/dev/null \
        | grep -E "scored|command:" | sed -E 's/.*(rows=[0-9]+) elapsed_ms=([0-9.]+).*/engine: \1 \2 ms/'
done

echo "--- scored over gRPC (Arrow IPC chunks of 250 000 rows; the client reads and writes Parquet)"
printf '[plugins]\ndir = "%s"\n[models]\nstore = "%s"\n' "$PWD/target/release" "$store" >"$work/mittari.toml"
NO_COLOR=1 "$binary" --config "$work/mittari.toml" serve --listen 127.0.0.1:0 2>"$work/log" >/dev/null &
server=$!
for _ in $(seq 100); do
    addr=$(sed -n 's/.*listening addr=\([0-9.:]*\).*/\1/p' "$work/log" | head -1)
    [ -n "$addr" ] && break
    sleep 0.1
done
for run in 1 2 3; do
    /usr/bin/time -f "client: %e s wall" "$binary" model score bench --input "$summary" \
        --server "http://$addr" --chunk-rows 250000 --output "$work/remote.parquet" --format csv 2>&1 >/dev/null \
        | grep -E "client:"
done
grep -E 'rpc="ScoreStream"' "$work/log" | sed -E 's/.*(rows=[0-9]+).*(elapsed_ms=[0-9.]+).*/server: \1 \2/'
