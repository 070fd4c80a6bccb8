"""Trains the model both servers load and writes the request bodies.

    prepare.py --data lending_club.csv --work DIR

Reads lending_club.csv, keeps the numeric columns (the categorical ones,
term, sub_grade, addr_state, verification_status and emp_length, are
dropped so that both servers take the same float inputs), target
loan_status (bad = 1), and fits `lightgbm.train` (binary, 200 trees, 31
leaves, fixed seed, 2 threads). Writes, under DIR:

  model.txt        the booster in LightGBM's text format (kiln imports it)
  mlflow-model/    the same booster saved by `mlflow.lightgbm.save_model`
  one.json         {"dataframe_split": {"columns": [...], "data": [[row]]}}, one row
  batch.json       the same with 1,000 rows
  expected.json    LightGBM's own probabilities for those rows, and the model facts
"""

import argparse
import json
import os
import sys
import time

import lightgbm as lgb
import mlflow
import mlflow.lightgbm
import pandas as pd
from mlflow.models import infer_signature

CATEGORICAL = ["term", "sub_grade", "addr_state", "verification_status", "emp_length"]
TARGET = "loan_status"
TREES, LEAVES, SEED = 200, 31, 42
BATCH_ROWS = 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)

    df = pd.read_csv(a.data)
    y = (df[TARGET] == "bad").astype(int)
    # Floats throughout: the MLflow signature then says double for every
    # column, and both servers get the same JSON numbers.
    X = df.drop(columns=CATEGORICAL + [TARGET]).astype("float64")
    t = time.perf_counter()
    booster = lgb.train(
        {"objective": "binary", "num_leaves": LEAVES, "learning_rate": 0.05, "seed": SEED,
         "deterministic": True, "num_threads": 2, "verbose": -1},
        lgb.Dataset(X, label=y),
        num_boost_round=TREES,
    )
    fit_s = time.perf_counter() - t
    booster.save_model(os.path.join(a.work, "model.txt"))
    out = os.path.join(a.work, "mlflow-model")
    if os.path.exists(out):
        import shutil
        shutil.rmtree(out)
    mlflow.lightgbm.save_model(booster, out, signature=infer_signature(X, booster.predict(X.head(5))))

    # The request rows: the first 1,000 of the file (the first is the single row).
    rows = X.head(BATCH_ROWS)
    cols = list(X.columns)
    def body(frame):
        return {"dataframe_split": {"columns": cols, "data": frame.values.tolist()}}
    with open(os.path.join(a.work, "one.json"), "w") as f:
        json.dump(body(rows.head(1)), f)
    with open(os.path.join(a.work, "batch.json"), "w") as f:
        json.dump(body(rows), f)
    probs = booster.predict(rows).tolist()
    with open(os.path.join(a.work, "expected.json"), "w") as f:
        json.dump({"columns": cols, "one": probs[:1], "batch": probs, "trees": booster.num_trees(),
                   "rows_trained": len(X), "positives": int(y.sum()), "fit_s": round(fit_s, 2),
                   "lightgbm": lgb.__version__, "mlflow": mlflow.__version__,
                   "pandas": pd.__version__}, f)
    print(f"[bench serve] model: {booster.num_trees()} trees on {len(X)} rows x {len(cols)} numeric "
          f"columns ({int(y.sum())} bad) in {fit_s:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
