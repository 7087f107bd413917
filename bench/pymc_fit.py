"""PyMC-Marketing's fits on a lifetimes-style summary CSV, for bench/compare_lifetimes.py.

Run with the interpreter of the PyMC-Marketing virtualenv that bench/run.sh makes (its
dependencies conflict with lifetimes', so it has its own). Prints one JSON line per model:
seconds (read + fit, `fit(method="map")`, the way its documentation starts), estimates.

    python bench/pymc_fit.py SUMMARY.csv [MODELS]     # MODELS: bgnbd,pareto_nbd,gamma_gamma
"""

import json
import sys
import time

import pandas as pd
import pymc_marketing
from pymc_marketing.clv import BetaGeoModel, GammaGammaModel, ParetoNBDModel


def estimates(model, names):
    posterior = model.idata.posterior
    return [float(posterior[name].values.ravel()[0]) for name in names]


def main():
    path = sys.argv[1]
    models = (sys.argv[2] if len(sys.argv) > 2 else "bgnbd,pareto_nbd,gamma_gamma").split(",")
    for name in models:
        start = time.perf_counter()
        data = pd.read_csv(path).rename(columns={"T": "T"})
        data = data.rename(columns={data.columns[0]: "customer_id"})
        if name == "bgnbd":
            model = BetaGeoModel(data=data[["customer_id", "frequency", "recency", "T"]])
            params = ("r", "alpha", "a", "b")
        elif name == "pareto_nbd":
            model = ParetoNBDModel(data=data[["customer_id", "frequency", "recency", "T"]])
            params = ("r", "alpha", "s", "beta")
        elif name == "gamma_gamma":
            repeat = data[data.frequency > 0]
            model = GammaGammaModel(data=repeat[["customer_id", "frequency", "monetary_value"]])
            params = ("p", "q", "v")
        else:
            raise SystemExit(f"unknown model {name}")
        model.fit(method="map", progressbar=False)
        seconds = time.perf_counter() - start
        print(json.dumps({
            "model": name,
            "seconds": seconds,
            "params": estimates(model, params),
            "version": pymc_marketing.__version__,
        }), flush=True)


if __name__ == "__main__":
    main()
