"""Scoring a million customers with a saved BG/NBD model: Mittari beside lifetimes.

    target/bench-venv/bin/python bench/score_peers.py [SUMMARY.csv] [BINARY]

(bench/run.sh makes target/bench-venv with lifetimes 0.11.3.) SUMMARY defaults to
/tmp/clvbench/summary.csv (frequency, recency, T in weeks, monetary_value: make it with
`cargo bench -p mittari-models --bench fit -- simulate --shape=log 1000000 SUMMARY LOG 100000000`),
BINARY to target/release/mittari. Not part of CI.

Both sides fit once and keep the fit (Mittari in a SQLite model store, lifetimes with
`save_model`), then load it and score every customer: P(alive) and expected purchases over 52
weeks. lifetimes is given Mittari's fitted parameters before it scores, so the two answer the
same question and their predictions are compared customer by customer; its own fit is timed
beside Mittari's. Times are wall clock on this machine, best of three runs for the scoring.
"""

import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter

HORIZON = 52.0


def best_of(runs, f):
    best = None
    for _ in range(runs):
        start = time.perf_counter()
        value = f()
        elapsed = time.perf_counter() - start
        if best is None or elapsed < best[0]:
            best = (elapsed, value)
    return best


def main():
    summary_path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/clvbench/summary.csv"
    binary = sys.argv[2] if len(sys.argv) > 2 else "target/release/mittari"
    summary = pd.read_csv(summary_path)
    customers = len(summary)
    f, r, t = summary["frequency"], summary["recency"], summary["T"]
    print(f"{customers} customers from {summary_path}")

    with tempfile.TemporaryDirectory() as work:
        store = f"sqlite://{work}/models.db"
        start = time.perf_counter()
        subprocess.run(
            [binary, "model", "--store", store, "fit", "clv", "--name", "bench",
             "--input", summary_path, "--param", "model=bgnbd", "--format", "json"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"mittari: fit and store (whole command) {time.perf_counter() - start:.2f} s")

        scores = f"{work}/scores.csv"

        def mittari_score():
            env = dict(os.environ, RUST_LOG="mittari_engine=debug", NO_COLOR="1")
            done = subprocess.run(
                [binary, "model", "--store", store, "score", "bench", "--input", summary_path,
                 "--output", scores, "--format", "json"],
                check=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            engine = float(re.search(r"scored .* elapsed_ms=([0-9.]+)", done.stderr).group(1))
            return engine, done.stdout

        whole, (engine_ms, stdout) = best_of(3, mittari_score)
        import json
        params = {k: json.loads(stdout)["results"][k] for k in ("r", "alpha", "a", "b")}
        print(f"mittari: load and score (whole command, reading {os.path.basename(summary_path)}, "
              f"writing every customer's scores) {whole:.2f} s; the engine's scoring "
              f"{engine_ms / 1000:.3f} s = {customers / engine_ms * 1000 / 1e6:.2f} M customers/s")

        fitter = BetaGeoFitter()
        fit_seconds, _ = best_of(1, lambda: fitter.fit(f, r, t))
        print(f"lifetimes: fit {fit_seconds:.2f} s (r {fitter.params_['r']:.4f}, alpha "
              f"{fitter.params_['alpha']:.4f}, a {fitter.params_['a']:.4f}, b {fitter.params_['b']:.4f}; "
              f"mittari: {params['r']:.4f}, {params['alpha']:.4f}, {params['a']:.4f}, {params['b']:.4f})")
        fitter.params_ = pd.Series(params)
        path = f"{work}/lifetimes.pkl"
        fitter.save_model(path)

        def lifetimes_score():
            loaded = BetaGeoFitter()
            loaded.load_model(path)
            alive = loaded.conditional_probability_alive(f, r, t)
            expected = loaded.conditional_expected_number_of_purchases_up_to_time(HORIZON, f, r, t)
            return np.asarray(alive), np.asarray(expected)

        seconds, (alive, expected) = best_of(3, lifetimes_score)
        print(f"lifetimes: load_model and score (P(alive), expected purchases; no file written) "
              f"{seconds:.3f} s = {customers / seconds / 1e6:.2f} M customers/s")

        # The scores come ranked by expected purchases: back into the input's order by id.
        ours = pd.read_csv(scores).set_index("customer_id").loc[summary["customer_id"]]
        for name, theirs in [("p_alive", alive), ("expected_purchases", expected)]:
            mine = ours[name].to_numpy()
            gap = np.max(np.abs(mine - theirs) / np.maximum(np.abs(theirs), 1e-12))
            print(f"largest relative difference in {name}: {gap:.2e}")
        print(f"mittari's engine takes {engine_ms / 1000 / seconds:.2f}x lifetimes' scoring time")


if __name__ == "__main__":
    main()
