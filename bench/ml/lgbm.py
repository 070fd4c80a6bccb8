"""The peer side of `bench/ml.sh gbdt`: LightGBM (or XGBoost hist) on Parquet.

    python lgbm.py --train F --test F --target COL --objective binary|regression
                   --trees N --leaves L --lr X --threads 2 --max-bin 255
                   --min-child-samples 20 [--impl lightgbm|xgboost]

Same flags as `kiln-bench gbdt`. Reads both files with pandas (not timed),
turns string columns into pandas `category` (LightGBM's and XGBoost's native
categorical handling; the test set gets the train set's categories), then:

  fit_seconds        Dataset construction (binning) + boosting, as a user of
                     lgb.train experiences it
  construct_seconds  the Dataset construction part alone
  predict_seconds    predicting the whole test set (num_threads as given)

and prints one JSON line:
  {"side": "lightgbm", "fit_seconds": .., "construct_seconds": ..,
   "predict_seconds": .., "rows_per_second": .., "auc"|"rmse": .., ...}
rows_per_second is test rows / predict_seconds.

LightGBM parameters: exactly the flags (objective, num_iterations, num_leaves,
learning_rate, num_threads, max_bin, min_data_in_leaf), verbose=-1; all else
is LightGBM's default (force_col_wise/row_wise chosen by LightGBM, not
deterministic mode).

XGBoost (--impl xgboost): tree_method=hist, grow_policy=lossguide,
max_leaves=L, max_depth=0 (unlimited, like LightGBM's leaf-wise growth),
eta, nthread, max_bin; QuantileDMatrix with enable_categorical=True.
--min-child-samples has no XGBoost equivalent (min_child_weight is a hessian
sum) and is not passed: XGBoost's default min_child_weight=1 applies.
"""
import argparse
import json
import time

import numpy as np
import pandas as pd

p = argparse.ArgumentParser()
p.add_argument("--train", required=True)
p.add_argument("--test", required=True)
p.add_argument("--target", required=True)
p.add_argument("--objective", choices=["binary", "regression"], required=True)
p.add_argument("--trees", type=int, required=True)
p.add_argument("--leaves", type=int, default=31)
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--max-bin", type=int, default=255)
p.add_argument("--min-child-samples", type=int, default=20)
p.add_argument("--impl", choices=["lightgbm", "xgboost"], default="lightgbm")
a = p.parse_args()

train = pd.read_parquet(a.train)
test = pd.read_parquet(a.test)
y_train = train.pop(a.target).to_numpy()
y_test = test.pop(a.target).to_numpy()
cats = [c for c in train.columns if train[c].dtype == object or str(train[c].dtype) in ("string", "str")]
for c in cats:
    train[c] = train[c].astype("category")
    test[c] = pd.Categorical(test[c], categories=train[c].cat.categories)


def score(pred):
    if a.objective == "binary":
        from sklearn.metrics import roc_auc_score
        return {"auc": round(float(roc_auc_score(y_test, pred)), 6)}
    return {"rmse": round(float(np.sqrt(np.mean((pred - y_test) ** 2))), 6)}


if a.impl == "lightgbm":
    import lightgbm as lgb

    params = {
        "objective": a.objective,
        "num_iterations": a.trees,
        "num_leaves": a.leaves,
        "learning_rate": a.lr,
        "num_threads": a.threads,
        "max_bin": a.max_bin,
        "min_data_in_leaf": a.min_child_samples,
        "verbose": -1,
    }
    t0 = time.perf_counter()
    ds = lgb.Dataset(train, label=y_train, params=params, categorical_feature="auto", free_raw_data=True)
    ds.construct()
    t1 = time.perf_counter()
    booster = lgb.train(params, ds)
    t2 = time.perf_counter()
    pred = booster.predict(test, num_threads=a.threads)
    t3 = time.perf_counter()
    version = lgb.__version__
else:
    import xgboost as xgb

    params = {
        "objective": "binary:logistic" if a.objective == "binary" else "reg:squarederror",
        "tree_method": "hist",
        "grow_policy": "lossguide",
        "max_leaves": a.leaves,
        "max_depth": 0,
        "eta": a.lr,
        "nthread": a.threads,
        "max_bin": a.max_bin,
        "verbosity": 0,
    }
    t0 = time.perf_counter()
    ds = xgb.QuantileDMatrix(train, label=y_train, enable_categorical=True, max_bin=a.max_bin, nthread=a.threads)
    t1 = time.perf_counter()
    booster = xgb.train(params, ds, num_boost_round=a.trees)
    t2 = time.perf_counter()
    pred = booster.predict(xgb.DMatrix(test, enable_categorical=True, nthread=a.threads))
    t3 = time.perf_counter()
    version = xgb.__version__

out = {
    "side": a.impl,
    "version": version,
    "fit_seconds": round(t2 - t0, 4),
    "construct_seconds": round(t1 - t0, 4),
    "predict_seconds": round(t3 - t2, 4),
    "rows_per_second": round(len(test) / (t3 - t2), 1),
    **score(pred),
    "train_rows": len(train),
    "test_rows": len(test),
    "features": train.shape[1],
    "categorical": len(cats),
}
print(json.dumps(out))
