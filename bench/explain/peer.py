"""The peers' side of bench/explain.sh: explains every row of DATA with
MODEL and prints one JSON line.

    peer.py --side pred_contrib|shap_path|shap_interventional \
        --model model.txt --data explain.parquet --threads 2 \
        [--background 100] [--single K]

* pred_contrib: LightGBM's `Booster.predict(X, pred_contrib=True,
  num_threads=T)`: path-dependent TreeSHAP in C++, multi-threaded.
* shap_path: `shap.TreeExplainer(booster).shap_values(X)` (shap 0.51.0):
  for a LightGBM model shap hands path-dependent values to pred_contrib.
* shap_interventional: `shap.TreeExplainer(booster, background,
  feature_perturbation="interventional").shap_values(X)`: shap's own C++
  against `--background` rows spread over DATA (as kiln-bench takes them).

The reading of DATA is not timed; the explainer's construction is. With
`--single K` it also times K one-row calls (the median, in microseconds):
what one served prediction's explanation costs each peer.
"""

import argparse
import json
import time

import numpy as np
import pandas as pd

p = argparse.ArgumentParser()
p.add_argument("--side", required=True)
p.add_argument("--model", required=True)
p.add_argument("--data", required=True)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--background", type=int, default=100)
p.add_argument("--single", type=int, default=0)
a = p.parse_args()

import lightgbm as lgb  # noqa: E402

X = pd.read_parquet(a.data).to_numpy(dtype=np.float64)
n = len(X)
booster = lgb.Booster(model_file=a.model, params={"num_threads": a.threads})


def explainer():
    if a.side == "pred_contrib":
        return lambda x: booster.predict(x, pred_contrib=True, num_threads=a.threads)
    import shap

    if a.side == "shap_path":
        e = shap.TreeExplainer(booster)
    else:
        picks = [i * n // a.background for i in range(a.background)]
        e = shap.TreeExplainer(booster, X[picks], feature_perturbation="interventional")
    return lambda x: e.shap_values(x, check_additivity=False)


start = time.perf_counter()
f = explainer()
values = np.asarray(f(X))
seconds = time.perf_counter() - start
single = []
for i in range(a.single):
    t = time.perf_counter()
    f(X[i % n : i % n + 1])
    single.append((time.perf_counter() - t) * 1e6)
print(
    json.dumps(
        {
            "side": a.side,
            "rows": n,
            "seconds": round(seconds, 4),
            "checksum": float(np.nansum(values[:, : X.shape[1]] if values.ndim == 2 else values)),
            "single_explain_us": round(float(np.median(single)), 1) if single else 0.0,
        }
    )
)
