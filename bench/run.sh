#!/usr/bin/env bash
# Mittari against lifetimes: builds Mittari in release mode, installs lifetimes 0.11.3 in a
# throwaway virtualenv under target/, and runs bench/compare_lifetimes.py with any arguments
# given here. Takes several minutes (lifetimes' Pareto/NBD fit is slow); not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
cargo bench -p mittari-models --bench fit --no-run
venv=target/bench-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet lifetimes==0.11.3 pandas==3.1.1 numpy==2.4.6 scipy==1.17.1 autograd==1.9.1
fi
exec "$venv/bin/python" bench/compare_lifetimes.py "$@"
