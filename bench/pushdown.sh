#!/usr/bin/env bash
# The RFM summary pushed down against the rows read. Generates a transaction log shaped like a
# shop's (bench/pushdown_log.py: ROWS rows, default 5 000 000; customers acquired over six
# years; timestamps to the second), loads it into a throwaway PostgreSQL cluster on a free
# loopback port and writes it as 8 Parquet files, then times `mittari compute clv
# --param model=bgnbd` both ways on each: the summary computed where the data is, and the rows
# read and summarized by Mittari (--no-pushdown). Release build; a few minutes; not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-5000000}
cargo build --release --workspace
venv=target/arrow-bench-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check grpcio==1.85.1 grpcio-reflection==1.85.1 googleapis-common-protos pyarrow
fi
bin=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d /tmp/mittari-pushdown.XXXXXX)
chmod 755 "$work"
as_owner() {
    # PostgreSQL refuses to run as root.
    if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}
cleanup() {
    as_owner "$bin/pg_ctl" -D "$work/db" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

"$venv/bin/python" bench/pushdown_log.py "$rows" "$work"
mkdir "$work/db"
[ "$(id -u)" = 0 ] && chown nobody "$work/db"
as_owner "$bin/initdb" -D "$work/db" -U mittari --auth=trust >/dev/null
port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_owner "$bin/pg_ctl" -D "$work/db" -l "$work/db/log" -w \
    -o "-p $port -k '' -c listen_addresses=127.0.0.1 -c shared_buffers=1GB -c work_mem=256MB" start >/dev/null
url="postgres://mittari@127.0.0.1:$port/postgres"
psql "$url" -q -c "CREATE TABLE orders (customer_id text, timestamp timestamptz, amount numeric(12, 2))" \
    -c "\\copy orders FROM '$work/log.csv' (FORMAT csv, HEADER)" -c "VACUUM ANALYZE orders"

mittari=target/release/mittari
measure() {
    local label=$1
    shift
    for run in 1 2; do
        local measured
        if ! /usr/bin/time -o "$work/time" -f '%e %M' "$mittari" compute clv --param model=bgnbd \
            --param time_unit=day --param top=1 "$@" >/dev/null 2>"$work/stderr"; then
            printf '%-44s run %d: failed: %s\n' "$label" "$run" "$(grep -v INFO "$work/stderr" | tr '\n' ' ')"
            continue
        fi
        measured=$(cat "$work/time")
        printf '%-44s run %d: %6.2f s, peak memory %5d MB\n' "$label" "$run" "${measured% *}" "$((${measured#* } / 1024))"
    done
}
echo "log: $rows rows, $(wc -c <"$work/log.csv") bytes as CSV"
measure "PostgreSQL, summary in the database" --input "$url" --table orders --pushdown always
measure "PostgreSQL, rows read (--no-pushdown)" --input "$url" --table orders --no-pushdown
measure "Parquet pattern, summary in DataFusion" --input "$work/lake/*.parquet" --pushdown always
measure "Parquet pattern, rows read (--no-pushdown)" --input "$work/lake/*.parquet" --no-pushdown
measure "one Parquet file, rows read" --input "$work/log.parquet"
