"""Writes the inputs of bench/explain.sh into OUT (argv[1]), once:

* model.txt: a LightGBM 4.7.0 binary classifier, 200 trees of 31 leaves
  (learning rate 0.1, 2 threads), trained on 50,000 generated rows;
* explain.parquet: 10,000 other rows to explain, 20 numeric features
  (f0..f19), about 2 % missing in f3 and f7;
* done.json: what was written.

The target depends on the features non-linearly and through interactions,
so the trees are full (31 leaves, depth up to about 10).
"""

import json
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
if (out / "done.json").exists():
    print(out)
    sys.exit(0)

rng = np.random.default_rng(7)
m = 20


def rows(n):
    x = rng.normal(size=(n, m))
    logit = (
        1.5 * np.sin(x[:, 0])
        + x[:, 1] * x[:, 2]
        - 0.8 * np.abs(x[:, 3])
        + 0.5 * x[:, 4] ** 2
        + 0.7 * (x[:, 5] > 0.5) * x[:, 6]
        + 0.3 * x[:, 7:12].sum(axis=1)
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    for j in (3, 7):
        x[rng.random(n) < 0.02, j] = np.nan
    return pd.DataFrame(x, columns=[f"f{j}" for j in range(m)]), y


x_train, y_train = rows(50_000)
x_explain, _ = rows(10_000)
params = {
    "objective": "binary",
    "num_leaves": 31,
    "learning_rate": 0.1,
    "num_threads": 2,
    "verbose": -1,
    "seed": 7,
    "deterministic": True,
}
booster = lgb.train(params, lgb.Dataset(x_train, y_train), num_boost_round=200)
booster.save_model(str(out / "model.txt"))
x_explain.to_parquet(out / "explain.parquet", index=False)
(out / "done.json").write_text(
    json.dumps({"trees": booster.num_trees(), "rows": len(x_explain), "features": m})
)
print(out)
