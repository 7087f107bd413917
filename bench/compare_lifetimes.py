"""Mittari against Python's lifetimes on the same data, same machine, same run.

Run through bench/run.sh, which builds Mittari in release mode and installs lifetimes in a
throwaway virtualenv. Not part of CI: it takes minutes and needs PyPI.

Measures, for 1 000 000 simulated customers (BG/NBD and Gamma-Gamma at CDNOW-like
parameters, daily purchases over 39 weeks):
  - the fits alone: BG/NBD, Pareto/NBD, Gamma-Gamma (Mittari: median of 3 runs);
  - the RFM summary of a 1 000 000-row transaction log;
  - the whole `mittari compute` process, CSV reading included;
  - peak memory of fitting 10 000 000 customers.
and checks that the estimates agree to 4 significant digits.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import lifetimes
import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter
from lifetimes.utils import summary_data_from_transaction_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MITTARI = os.path.join(ROOT, "target", "release", "mittari")


def bench(*args):
    """Runs the Rust bench binary and returns its JSON lines."""
    out = subprocess.run(
        ["cargo", "bench", "-q", "-p", "mittari-models", "--bench", "fit", "--", *args],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def whole_process(*args, runs=3):
    """Wall time (median of `runs`) and peak RSS (MiB) of `mittari compute` run as the issue
    writes it: the default report (parameters, top customers), output discarded."""
    results = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", MITTARI, "compute", *args],
            cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        seconds = time.perf_counter() - start
        results.append((seconds, int(proc.stderr.strip().splitlines()[-1]) / 1024))
    results.sort()
    return results[len(results) // 2]


def timed(f):
    start = time.perf_counter()
    value = f()
    return time.perf_counter() - start, value


def same_to_4_digits(a, b):
    return all(float(f"{x:.4g}") == float(f"{y:.4g}") for x, y in zip(a, b))


def relative_gap(a, b):
    return max(abs(x - y) / abs(y) for x, y in zip(a, b))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    parser.add_argument("--memory-customers", type=int, default=10_000_000)
    parser.add_argument("--skip-pareto", action="store_true", help="skip lifetimes' slow Pareto/NBD fit")
    args = parser.parse_args()
    work = os.path.join(ROOT, "target", "bench")
    os.makedirs(work, exist_ok=True)
    summary = os.path.join(work, "summary.csv")
    log = os.path.join(work, "log.csv")

    print(f"# machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"lifetimes {lifetimes.__version__}, numpy {np.__version__}, pandas {pd.__version__}", flush=True)
    bench("simulate", str(args.customers), summary, log, str(args.log_rows))
    rust = {r["model"]: r for r in bench("fit", summary) if r["step"] == "fit"}
    rust_rfm = bench("rfm", log)[0]

    data = pd.read_csv(summary)
    rows = []

    def compare(name, lifetimes_seconds, lifetimes_params, rust_result):
        speedup = lifetimes_seconds / rust_result["seconds"]
        agree = same_to_4_digits(rust_result["params"], lifetimes_params)
        gap = relative_gap(rust_result["params"], lifetimes_params)
        rows.append((name, lifetimes_seconds, rust_result["seconds"], speedup, agree, gap))
        print(f"{name}: lifetimes {lifetimes_seconds:.2f} s, mittari {rust_result['seconds']:.3f} s, "
              f"{speedup:.0f}x; lifetimes {np.round(lifetimes_params, 6).tolist()} "
              f"mittari {np.round(rust_result['params'], 6).tolist()}; 4 digits equal: {agree}", flush=True)

    seconds, bg = timed(lambda: BetaGeoFitter().fit(data.frequency, data.recency, data["T"]))
    compare("BG/NBD fit", seconds, [bg.params_[k] for k in ("r", "alpha", "a", "b")], rust["bgnbd"])

    repeat = data[data.frequency > 0]
    seconds, gg = timed(lambda: GammaGammaFitter().fit(repeat.frequency, repeat.monetary_value))
    compare("Gamma-Gamma fit", seconds, [gg.params_[k] for k in ("p", "q", "v")], rust["gamma_gamma"])

    if not args.skip_pareto:
        seconds, pn = timed(lambda: ParetoNBDFitter().fit(data.frequency, data.recency, data["T"]))
        compare("Pareto/NBD fit", seconds, [pn.params_[k] for k in ("r", "alpha", "s", "beta")], rust["pareto_nbd"])

    transactions = pd.read_csv(log, parse_dates=["timestamp"])
    seconds, _ = timed(lambda: summary_data_from_transaction_data(
        transactions, "customer_id", "timestamp", monetary_value_col="amount", freq="D"))
    rows.append(("RFM summary", seconds, rust_rfm["seconds"], seconds / rust_rfm["seconds"], None, None))
    print(f"RFM summary of {rust_rfm['rows']} rows: lifetimes {seconds:.2f} s, mittari {rust_rfm['seconds']:.3f} s", flush=True)

    print("\n| measurement | lifetimes (s) | Mittari (s) | speed-up | estimates equal to 4 digits | largest relative difference |")
    print("| --- | ---: | ---: | ---: | --- | ---: |")
    for name, lt, mt, speedup, agree, gap in rows:
        agree_text = "" if agree is None else ("yes" if agree else "no")
        gap_text = "" if gap is None else f"{gap:.1e}"
        print(f"| {name} | {lt:.2f} | {mt:.3f} | {speedup:.0f}× | {agree_text} | {gap_text} |")

    # lifetimes doing the whole job of `mittari compute clv --param model=bgnbd`: read the CSV,
    # fit, predict P(alive) and expected purchases over the default 52-week horizon for every
    # customer, rank them.
    def lifetimes_whole_bgnbd():
        frame = pd.read_csv(summary)
        model = BetaGeoFitter().fit(frame.frequency, frame.recency, frame["T"])
        frame["p_alive"] = model.conditional_probability_alive(frame.frequency, frame.recency, frame["T"])
        frame["expected_purchases"] = model.conditional_expected_number_of_purchases_up_to_time(
            52, frame.frequency, frame.recency, frame["T"])
        return frame.sort_values("expected_purchases", ascending=False)
    lifetimes_whole, _ = timed(lifetimes_whole_bgnbd)
    print(f"lifetimes, whole BG/NBD job (read CSV, fit, predict every customer, rank): {lifetimes_whole:.2f} s", flush=True)

    print("\nWhole process, `mittari compute clv` (CSV reading, fit, predictions for every customer):")
    bg_total = rows[0][1] + rows[1][1]
    for label, extra, reference in [
        ("bgnbd, summary input", ["--param", "model=bgnbd", "--input", summary],
         (lifetimes_whole, "lifetimes' whole job")),
        ("bgnbd + gamma_gamma, summary input", ["--param", "model=bgnbd", "--param", "spend_model=gamma_gamma", "--input", summary],
         (bg_total, "lifetimes' two fits alone")),
        ("pareto_nbd, summary input", ["--param", "model=pareto_nbd", "--input", summary], None),
        ("bgnbd, transaction log input", ["--param", "model=bgnbd", "--param", "time_unit=day", "--input", log], None),
    ]:
        seconds, rss = whole_process("clv", *extra)
        versus = f"; {reference[1]} {reference[0]:.1f} s ({reference[0] / seconds:.0f}×)" if reference else ""
        print(f"- {label}: {seconds:.2f} s, peak {rss:.0f} MiB{versus}")

    if args.memory_customers:
        big = os.path.join(work, "summary_big.csv")
        bench("simulate", str(args.memory_customers), big, os.path.join(work, "log_unused.csv"), "0")
        fit = [r for r in bench("fit", big, "bgnbd") if r["step"] == "fit"][0]
        seconds, rss = whole_process("clv", "--param", "model=bgnbd", "--param", "spend_model=gamma_gamma", "--input", big, runs=1)
        print(f"\n{args.memory_customers} customers: BG/NBD fit {fit['seconds']:.2f} s, bench peak {fit['peak_rss_mib']:.0f} MiB; "
              f"whole `mittari compute clv` {seconds:.1f} s, peak {rss:.0f} MiB")


if __name__ == "__main__":
    main()
