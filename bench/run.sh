#!/usr/bin/env bash
# Mittari against lifetimes and PyMC-Marketing: builds Mittari in release mode, installs
# lifetimes 0.11.3 and PyMC-Marketing 0.19.2 in two throwaway virtualenvs under target/ (their
# dependencies conflict), and runs bench/compare_lifetimes.py with any arguments given here.
# Takes many minutes (the peers' Pareto/NBD fits are slow, so they fit the first 20 000
# customers; --skip-pareto leaves them out); not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
cargo bench -p mittari-models --bench fit --no-run
venv=target/bench-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet lifetimes==0.11.3 pandas==3.1.1 numpy==2.4.6 scipy==1.17.1 autograd==1.9.1
fi
pymc=target/bench-venv-pymc
if [ ! -x "$pymc/bin/python" ]; then
    python3 -m venv "$pymc"
    "$pymc/bin/pip" install --quiet pymc-marketing==0.19.2
fi
exec "$venv/bin/python" bench/compare_lifetimes.py "$@"
