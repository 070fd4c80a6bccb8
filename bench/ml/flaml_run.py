"""The peer side of `bench/ml.sh automl`: FLAML AutoML on a train/test CSV pair.

    python flaml_run.py --train F --test F --target T --task binary|regression
                        --metric roc_auc|rmse --budget S --threads 2 --seed 0
                        [--positive LABEL]

Reads both CSVs with pandas (not timed). Text columns that parse entirely as
ISO dates or date-times become datetime64 (FLAML expands those into
year/month/day/hour/... features itself; as a category, a timestamp column is
all-unique and FLAML drops it); other text columns become `category`, the
test set getting the train set's categories. Then, timed as wall_seconds:

    AutoML().fit(X, y, task="classification"|"regression", time_budget=S,
                 metric=..., n_jobs=threads, seed=seed, verbose=0)

FLAML may run past its budget; wall_seconds is the truth. test_score is
ROC AUC of the positive class's probability (default: the larger label, as
sklearn does) or RMSE, on the test file. Prints one JSON line:
  {"side": "flaml", "wall_seconds": .., "test_score": .., "best_estimator": ..}
"""
import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd

p = argparse.ArgumentParser()
p.add_argument("--train", required=True)
p.add_argument("--test", required=True)
p.add_argument("--target", required=True)
p.add_argument("--task", choices=["binary", "regression"], required=True)
p.add_argument("--metric", choices=["roc_auc", "rmse"], required=True)
p.add_argument("--budget", type=float, required=True)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--positive", default=None)
p.add_argument("--split", default=None, help="time, or group:COLUMN (validation like the test split)")
a = p.parse_args()

warnings.filterwarnings("ignore")
train = pd.read_csv(a.train)
test = pd.read_csv(a.test)
y_train = train.pop(a.target)
y_test = test.pop(a.target)
dates, cats = [], []
for c in train.columns:
    if train[c].dtype != object:
        continue
    col = train[c].dropna()
    ok = len(col) > 0 and bool(col.str.match(r"^\d{4}-\d{2}-\d{2}").all())
    if ok:
        try:
            pd.to_datetime(col, format="ISO8601")
        except (ValueError, TypeError):
            ok = False
    if ok:
        dates.append(c)
        for df in (train, test):
            d = pd.to_datetime(df[c], format="ISO8601")
            df[c] = d.dt.tz_convert(None) if d.dt.tz is not None else d
    else:
        cats.append(c)
        train[c] = train[c].astype("category")
        test[c] = pd.Categorical(test[c], categories=train[c].cat.categories)

from flaml import AutoML  # noqa: E402  (import after argument errors)
import flaml  # noqa: E402

split = {}
if a.split == "time":
    split = {"split_type": "time"}  # the training file is in time order
elif a.split and a.split.startswith("group:"):
    split = {"split_type": "group", "groups": train[a.split.split(":", 1)[1]].to_numpy()}

automl = AutoML()
t0 = time.perf_counter()
automl.fit(
    train,
    y_train,
    **split,
    task="classification" if a.task == "binary" else "regression",
    time_budget=a.budget,
    metric=a.metric,
    n_jobs=a.threads,
    seed=a.seed,
    verbose=0,
)
wall = time.perf_counter() - t0

if a.task == "binary":
    from sklearn.metrics import roc_auc_score

    classes = [str(c) for c in automl.classes_]
    pos = a.positive if a.positive is not None else classes[-1]
    proba = automl.predict_proba(test)[:, classes.index(pos)]
    score = float(roc_auc_score(y_test.astype(str) == pos, proba))
else:
    pred = automl.predict(test)
    score = float(np.sqrt(np.mean((np.asarray(pred, dtype=float) - y_test.to_numpy(dtype=float)) ** 2)))

print(json.dumps({
    "side": "flaml",
    "version": flaml.__version__,
    "budget": a.budget,
    "wall_seconds": round(wall, 3),
    "test_score": round(score, 6),
    "metric": a.metric,
    "best_estimator": automl.best_estimator,
    "best_config": automl.best_config,
    "best_val_loss": automl.best_loss,
    "date_columns": dates,
    "categorical_columns": cats,
}))
