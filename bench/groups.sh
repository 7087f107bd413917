#!/usr/bin/env bash
# Group-by with many groups: NPS by customer id over generated CSVs of three shapes, through
# the embedded CLI and through a local server, reporting wall time and peak resident memory
# (GNU time). Builds Mittari in release mode; data goes to target/bench-groups. About a
# minute; not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
bin=target/release/mittari
data=target/bench-groups
mkdir -p "$data"
# name, rows, distinct ids: every id distinct at 100k and 1M; 1M rows over 100k ids.
shapes=("groups100k 100000 100000" "rows1m_groups100k 1000000 100000" "groups1m 1000000 1000000")
for shape in "${shapes[@]}"; do
    read -r name rows ids <<<"$shape"
    [ -s "$data/$name.csv" ] && continue
    awk -v rows="$rows" -v ids="$ids" 'BEGIN {
        srand(7); print "customer,score";
        for (i = 0; i < rows; i++) {
            id = (rows == ids) ? i : int(rand() * ids);
            printf "c%07d,%d\n", id, int(rand() * 11)
        }
    }' >"$data/$name.csv"
done
measure() { /usr/bin/time -f "%e s, %M KB" "$@" 2>&1 >/dev/null | tail -1; }
export MITTARI__SERVER__MAX_GROUPS=2000000 MITTARI__SERVER__MAX_MESSAGE_BYTES=1073741824
echo "startup (10 rows): $(head -11 "$data/groups100k.csv" >"$data/ten.csv"; measure $bin compute nps --input "$data/ten.csv" --format csv)"
for shape in "${shapes[@]}"; do
    read -r name _ <<<"$shape"
    echo "$name embedded: $(measure $bin compute nps --input "$data/$name.csv" --group-by customer --format csv)"
done
port=50999
/usr/bin/time -f "server peak: %M KB" -o "$data/server.time" $bin serve --listen "127.0.0.1:$port" 2>"$data/server.log" &
server=$!
# GNU time ignores SIGINT while it waits: signal the server itself.
stop() { pkill -INT -P $server 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq 50); do grep -q listening "$data/server.log" && break; sleep 0.2; done
for shape in "${shapes[@]}"; do
    read -r name _ <<<"$shape"
    echo "$name over gRPC (CLI): $(measure $bin compute nps --server "http://127.0.0.1:$port" --input "$data/$name.csv" --group-by customer --format csv)"
done
stop
wait $server || true
cat "$data/server.time"
