"""Mittari against Python's lifetimes on the same data, same machine, same run.

Run through bench/run.sh, which builds Mittari in release mode and installs lifetimes in a
throwaway virtualenv. Not part of CI: it takes minutes and needs PyPI.

Measures, for 1 000 000 simulated customers (BG/NBD and Gamma-Gamma at CDNOW-like
parameters) in each data shape of the fit bench (`day`: purchases on days over 39 weeks;
`log`: timestamps to the second, acquisition over three years, observation over four):
  - the fits: BG/NBD, Gamma-Gamma, Pareto/NBD (the peers' on the first --pareto-customers
    customers, which Mittari also fits alone); lifetimes and PyMC-Marketing (`fit(method="map")`,
    in its own virtualenv, through bench/pymc_fit.py) as a user runs them, reading the CSV
    included; Mittari's fit alone (median of 3 runs);
  - the RFM summary of a 1 000 000-row transaction log;
  - the whole `mittari compute clv` process, CSV reading included, in each output format;
and reports the largest relative difference between the estimates.
"""

import argparse
import json
import os
import platform
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
PYMC_PYTHON = os.path.join(ROOT, "target", "bench-venv-pymc", "bin", "python")


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


def relative_gap(a, b):
    return max(abs(x - y) / abs(y) for x, y in zip(a, b))


def pymc(summary, models):
    """PyMC-Marketing's MAP fits (bench/pymc_fit.py in its own virtualenv), or {} without it."""
    if not os.path.exists(PYMC_PYTHON):
        print("# PyMC-Marketing's virtualenv is missing: run through bench/run.sh", flush=True)
        return {}
    script = os.path.join(ROOT, "bench", "pymc_fit.py")
    # PyTensor compiles each model's graph on first use and caches it: warm the cache on a
    # small file, so the timed run measures fitting as a user's second session would.
    warm = summary + ".head.csv"
    with open(summary) as source, open(warm, "w") as head:
        head.writelines(line for _, line in zip(range(2001), source))
    subprocess.run([PYMC_PYTHON, script, warm, models], cwd=ROOT, check=True, capture_output=True)
    out = subprocess.run(
        [PYMC_PYTHON, script, summary, models],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return {r["model"]: r for r in (json.loads(l) for l in out.splitlines() if l.startswith("{"))}


def one_shape(args, shape, work):
    summary = os.path.join(work, f"{shape}_summary.csv")
    log = os.path.join(work, f"{shape}_log.csv")
    bench("simulate", f"--shape={shape}", str(args.customers), summary, log, str(args.log_rows))
    measured = bench("fit", summary, "bgnbd,mbgnbd,pareto_nbd,gamma_gamma" if not args.skip_pareto else "bgnbd,mbgnbd,gamma_gamma")
    rust = {r["model"]: r for r in measured if r["step"] == "fit"}
    for r in measured:
        if r["step"] == "merge":
            print(f"mittari {r['model']}: merging (or deciding not to) {r['seconds']:.3f} s, fit {r['fit_seconds']:.3f} s, "
                  f"{rust[r['model']]['evaluations']} evaluations", flush=True)
    rust_rfm = bench("rfm", log)[0]
    data = pd.read_csv(summary)
    distinct = len(data[["frequency", "recency", "T"]].drop_duplicates())
    print(f"\n## shape {shape}: {len(data)} customers, {distinct} distinct histories", flush=True)
    # The peers' Pareto/NBD fits run on a head of the file, below.
    peers = pymc(summary, "bgnbd,gamma_gamma")
    rows = []

    def compare(name, lifetimes_seconds, lifetimes_params, ours, peer):
        rows.append((name, lifetimes_seconds, peer["seconds"] if peer else None, ours["seconds"],
                     relative_gap(ours["params"], lifetimes_params),
                     relative_gap(ours["params"], peer["params"]) if peer else None))
        print(f"{name}: lifetimes {lifetimes_seconds:.2f} s {np.round(lifetimes_params, 6).tolist()}; "
              f"PyMC-Marketing {peer['seconds'] if peer else float('nan'):.2f} s "
              f"{np.round(peer['params'], 6).tolist() if peer else ''}; "
              f"mittari {ours['seconds']:.3f} s {np.round(ours['params'], 6).tolist()} "
              f"({ours['iterations']} iterations, {ours['evaluations']} evaluations)", flush=True)

    # lifetimes as a user runs it: read the CSV, then fit.
    def lifetimes_bgnbd():
        frame = pd.read_csv(summary)
        return BetaGeoFitter().fit(frame.frequency, frame.recency, frame["T"])
    seconds, bg = timed(lifetimes_bgnbd)
    compare("BG/NBD", seconds, [bg.params_[k] for k in ("r", "alpha", "a", "b")],
            rust["bgnbd"], peers.get("bgnbd"))

    def lifetimes_gg():
        frame = pd.read_csv(summary)
        repeat = frame[frame.frequency > 0]
        return GammaGammaFitter().fit(repeat.frequency, repeat.monetary_value)
    gg_seconds, gg = timed(lifetimes_gg)
    compare("Gamma-Gamma", gg_seconds, [gg.params_[k] for k in ("p", "q", "v")],
            rust["gamma_gamma"], peers.get("gamma_gamma"))

    if not args.skip_pareto:
        # The peers' Pareto/NBD fits take minutes per 100 000 customers (PyMC's MAP 8-11 s
        # for 20 000), so all three fit the same first customers of the file; Mittari's fit of
        # the whole file is printed beside.
        head = os.path.join(work, f"{shape}_summary_pareto.csv")
        with open(summary) as source, open(head, "w") as out:
            out.writelines(line for _, line in zip(range(args.pareto_customers + 1), source))
        ours = next(r for r in bench("fit", head, "pareto_nbd") if r["step"] == "fit")
        peer = pymc(head, "pareto_nbd").get("pareto_nbd")

        def lifetimes_pareto():
            frame = pd.read_csv(head)
            return ParetoNBDFitter().fit(frame.frequency, frame.recency, frame["T"])
        seconds, pn = timed(lifetimes_pareto)
        compare(f"Pareto/NBD, first {args.pareto_customers} customers", seconds,
                [pn.params_[k] for k in ("r", "alpha", "s", "beta")], ours, peer)
        whole = rust["pareto_nbd"]
        print(f"Pareto/NBD, all {len(data)} customers: mittari {whole['seconds']:.3f} s "
              f"({whole['iterations']} iterations, {whole['evaluations']} evaluations)", flush=True)

    transactions = pd.read_csv(log, parse_dates=["timestamp"])
    seconds, _ = timed(lambda: summary_data_from_transaction_data(
        transactions, "customer_id", "timestamp", monetary_value_col="amount", freq="D"))
    print(f"RFM summary of {rust_rfm['rows']} rows: lifetimes {seconds:.2f} s, mittari {rust_rfm['seconds']:.3f} s", flush=True)

    mbg = rust["mbgnbd"]
    print(f"MBG/NBD: mittari {mbg['seconds']:.3f} s ({mbg['iterations']} iterations, {mbg['evaluations']} evaluations)", flush=True)
    print(f"\n| fit ({shape} shape, read + fit for the peers) | lifetimes (s) | PyMC-Marketing MAP (s) | Mittari fit (s) | vs lifetimes | vs PyMC | largest relative difference: lifetimes, PyMC |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, lt, pm, mt, gap_lt, gap_pm in rows:
        pm_text = f"{pm:.2f}" if pm is not None else "—"
        versus_pm = f"{pm / mt:.0f}×" if pm is not None else "—"
        gap_pm_text = f"{gap_pm:.1e}" if gap_pm is not None else "—"
        print(f"| {name} | {lt:.2f} | {pm_text} | {mt:.3f} | {lt / mt:.0f}× | {versus_pm} | {gap_lt:.1e}, {gap_pm_text} |")

    lifetimes_bg = rows[0][1]
    print(f"\nWhole process, `mittari compute clv` ({shape} shape), median of 3:")
    for label, extra, reference in [
        ("bgnbd (default report)", ["--param", "model=bgnbd", "--input", summary],
         (lifetimes_bg, "lifetimes' read + fit")),
        ("bgnbd + gamma_gamma", ["--param", "model=bgnbd", "--param", "spend_model=gamma_gamma", "--input", summary],
         (lifetimes_bg + gg_seconds, "lifetimes' two reads + fits")),
        ("bgnbd, --format json", ["--param", "model=bgnbd", "--format", "json", "--input", summary], None),
        ("bgnbd, --format csv", ["--param", "model=bgnbd", "--format", "csv", "--input", summary], None),
        ("bgnbd, --output FILE.parquet", ["--param", "model=bgnbd", "--input", summary,
                                          "--output", os.path.join(work, "customers.parquet")], None),
    ]:
        seconds, rss = whole_process("clv", *extra)
        versus = f"; {reference[1]} {reference[0]:.1f} s ({reference[0] / seconds:.1f}×)" if reference else ""
        print(f"- {label}: {seconds:.2f} s, peak {rss:.0f} MiB{versus}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    parser.add_argument("--shapes", default="day,log", help="data shapes to measure: day, log or both")
    parser.add_argument("--skip-pareto", action="store_true", help="skip the slow Pareto/NBD fits of the peers")
    parser.add_argument("--pareto-customers", type=int, default=20_000,
                        help="customers (the file's first) in the Pareto/NBD comparison with the peers")
    args = parser.parse_args()
    work = os.path.join(ROOT, "target", "bench")
    os.makedirs(work, exist_ok=True)
    print(f"# machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"lifetimes {lifetimes.__version__}, numpy {np.__version__}, pandas {pd.__version__}", flush=True)
    for shape in args.shapes.split(","):
        one_shape(args, shape, work)


if __name__ == "__main__":
    main()
