"""Fixed 80/20 train/test splits of the 8 real data sets, for `bench/ml.sh automl`.

    python split_real.py OUTDIR [SHARED_DATA_DIR]

Writes OUTDIR/real-<VERSION>/<dataset>/{train,test}.csv and
OUTDIR/real-<VERSION>/tasks.json, and prints that folder's path as the last
line of stdout. Nothing is rewritten while the folder exists: change VERSION
when a split changes.

Both files keep the source's columns (less `drop`, empty for every set) and
its CSV conventions (empty field = missing). Splits:

  time-ordered (last 20 % of rows are test): bikeshare_hourly, rainfall_drift,
      nyc_flights_2013 (sorted stably by scheduled departure first: the file
      is in month order 1, 10, 11, 12, 2, ..., 9), cdnow_transactions (sorted
      stably by date first, split at a date boundary so no day is in both;
      plain regression on amount_usd per transaction, no aggregation)
  group split by person_id (20 % of persons test, seed 0): rand_hie_visits
  stratified random (seed 0): pima_diabetes, lending_club, credit_scoring

tasks.json: {dataset: {"target", "task": "binary"|"regression",
"metric": "roc_auc"|"rmse", "positive" (binary: the class whose probability
is scored), "split", "drop": [...] (already removed from the CSVs),
"train_rows", "test_rows"}}. rand_hie's count target is scored as plain
regression with RMSE.
"""
import json
import os
import shutil
import sys

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, train_test_split

VERSION = "v1"

out = os.path.join(sys.argv[1], f"real-{VERSION}")
shared = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")

if os.path.exists(os.path.join(out, "tasks.json")):
    print(out)
    sys.exit(0)

# name: (file, target, task, metric, positive class, split, columns to drop)
SETS = {
    "pima_diabetes": ("pima_diabetes.csv", "diabetes", "binary", "roc_auc", "pos", "stratified", []),
    "rand_hie_visits": ("rand_hie_visits.csv", "md_visits", "regression", "rmse", None, "group:person_id", []),
    "lending_club": ("lending_club.csv", "loan_status", "binary", "roc_auc", "bad", "stratified", []),
    "credit_scoring": ("credit_scoring.csv", "credit_status", "binary", "roc_auc", "bad", "stratified", []),
    "bikeshare_hourly": ("bikeshare_hourly.csv", "bikers", "regression", "rmse", None, "time", []),
    "cdnow_transactions": ("cdnow_transactions.csv", "amount_usd", "regression", "rmse", None, "time:date", []),
    "nyc_flights_2013": ("nyc_flights_2013.csv.gz", "arr_delay", "regression", "rmse", None,
                         "time:year,month,day,hour,minute", []),
    "rainfall_drift": ("rainfall_drift.csv", "rain", "binary", "roc_auc", 1, "time", []),
}

tmp = out + ".tmp"
shutil.rmtree(tmp, ignore_errors=True)
os.makedirs(tmp)
tasks = {}
for name, (file, target, task, metric, positive, split, drop) in SETS.items():
    # Read every column as text so values are written back exactly as they came.
    df = pd.read_csv(os.path.join(shared, file), dtype=str, keep_default_na=False)
    assert df.columns[-1] == target, (name, df.columns[-1])
    df = df.drop(columns=drop)
    n = len(df)
    if split == "time":
        cut = int(n * 0.8)
        tr, te = df.iloc[:cut], df.iloc[cut:]
    elif split == "time:date":
        df = df.sort_values("date", kind="stable")  # ISO dates sort as text
        cut_date = df["date"].iloc[int(n * 0.8)]
        tr, te = df[df["date"] < cut_date], df[df["date"] >= cut_date]
    elif split.startswith("time:"):
        keys = split[5:].split(",")
        order = df[keys].astype(int).sort_values(keys, kind="stable").index
        df = df.loc[order]
        cut = int(n * 0.8)
        tr, te = df.iloc[:cut], df.iloc[cut:]
    elif split.startswith("group:"):
        groups = df[split[6:]]
        tri, tei = next(GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=0).split(df, groups=groups))
        tr, te = df.iloc[np.sort(tri)], df.iloc[np.sort(tei)]
        assert not set(tr[split[6:]]) & set(te[split[6:]])
    elif split == "stratified":
        tr, te = train_test_split(df, test_size=0.2, random_state=0, stratify=df[target])
        tr, te = tr.sort_index(), te.sort_index()
    else:
        raise ValueError(split)
    os.makedirs(os.path.join(tmp, name))
    tr.to_csv(os.path.join(tmp, name, "train.csv"), index=False)
    te.to_csv(os.path.join(tmp, name, "test.csv"), index=False)
    tasks[name] = {
        "target": target,
        "task": task,
        "metric": metric,
        "positive": positive if positive is None else str(positive),
        "split": split,
        "drop": drop,
        "train_rows": len(tr),
        "test_rows": len(te),
    }

with open(os.path.join(tmp, "tasks.json"), "w") as f:
    json.dump(tasks, f, indent=2)
    f.write("\n")
shutil.rmtree(out, ignore_errors=True)
os.rename(tmp, out)
print(out)
