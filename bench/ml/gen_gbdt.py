"""Makes the inputs of `bench/ml.sh gbdt` (deterministic; written once).

    python gen_gbdt.py OUTDIR [SHARED_DATA_DIR]

Writes OUTDIR/gbdt-<VERSION>/ and prints that folder's path as the last line
of stdout. Nothing is rewritten while the folder exists: change VERSION when
the data change.

synth_train.parquet / synth_test.parquet   200,000 / 50,000 rows x 51 columns
    sklearn make_classification(n_samples=250_000, n_features=46,
    n_informative=12, n_redundant=8, random_state=42, shuffle=False), rows
    then shuffled with seed 42. Columns f0..f45 (f0..f11 informative,
    f12..f19 redundant, f20..f45 noise), then four string categoricals
    cat_5, cat_20, cat_100, cat_1000 (cardinality in the name) derived from
    informative features with some noise so that they carry signal, with
    level names in a random order (their sort order says nothing), then
    label `y` (int64 0/1). About 2 % NaN in six numeric columns
    (f0, f3, f7, f14, f25, f40). Categoricals are plain strings (no
    dictionary type): each reader decides how to treat them.

flights_train.parquet / flights_test.parquet   261,876 / 65,470 rows x 16
    The real NYC flights 2013 rows (shared/data/nyc_flights_2013.csv.gz),
    sorted (stable) by scheduled departure (year, month, day, hour, minute):
    the file itself is in month order 1, 10, 11, 12, 2, ..., 9. The first 80 %
    of rows are train (1 Jan to 19 Oct 14:50), the rest test. Target
    `arr_delay` (last column). `dep_time` and `dep_delay` are kept (known at
    departure; they make the task easier but are the same for both sides).
    `time_hour` is dropped: it is year/month/day/hour again, in UTC, as a
    string. carrier, tailnum, origin, dest are strings.
"""
import os
import shutil
import sys

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

VERSION = "v1"

out = os.path.join(sys.argv[1], f"gbdt-{VERSION}")
shared = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")

if os.path.exists(os.path.join(out, ".complete")):
    print(out)
    sys.exit(0)

tmp = out + ".tmp"
shutil.rmtree(tmp, ignore_errors=True)
os.makedirs(tmp)

# --- synthetic binary set --------------------------------------------------
X, y = make_classification(
    n_samples=250_000,
    n_features=46,
    n_informative=12,
    n_redundant=8,
    n_repeated=0,
    n_classes=2,
    flip_y=0.01,  # the default: 1 % of labels random
    shuffle=False,  # keeps informative features first; rows shuffled below
    random_state=42,
)
rng = np.random.default_rng(42)
order = rng.permutation(len(y))
X, y = X[order], y[order]
df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])


def qbin(v, k):
    """Quantile bin index 0..k-1 of v."""
    edges = np.quantile(v, np.linspace(0, 1, k + 1)[1:-1])
    return np.searchsorted(edges, v)


def named(codes, k, prefix, noise):
    """Replace a fraction `noise` of codes by random ones, then map code ->
    string level through a random permutation (so names' order is meaningless)."""
    codes = codes.copy()
    flip = rng.random(len(codes)) < noise
    codes[flip] = rng.integers(0, k, flip.sum())
    perm = rng.permutation(k)
    width = len(str(k - 1))
    names = np.array([f"{prefix}{p:0{width}d}" for p in perm])
    return names[codes]


# cat_5: bins of a mix of two informative features (signal beyond either one).
df["cat_5"] = named(qbin(X[:, 0] + X[:, 5], 5), 5, "a", 0.10)
# cat_20: bins of an informative feature's product with another.
df["cat_20"] = named(qbin(X[:, 1] * X[:, 2], 20), 20, "b", 0.15)
# cat_100: 10 bins of one feature x 10 bins of another (an interaction).
df["cat_100"] = named(qbin(X[:, 3], 10) * 10 + qbin(X[:, 4], 10), 100, "c", 0.20)
# cat_1000: 10 bins of an informative feature x 100 random groups: each level
# is rare (~250 rows) and only partly informative.
df["cat_1000"] = named(qbin(X[:, 6] - X[:, 7], 10) * 100 + rng.integers(0, 100, len(y)), 1000, "d", 0.25)

# Missing values after the categoricals are derived (they see the full values).
for col in ["f0", "f3", "f7", "f14", "f25", "f40"]:
    df.loc[rng.random(len(df)) < 0.02, col] = np.nan

df["y"] = y.astype(np.int64)
df.iloc[:200_000].reset_index(drop=True).to_parquet(os.path.join(tmp, "synth_train.parquet"), engine="pyarrow", index=False)
df.iloc[200_000:].reset_index(drop=True).to_parquet(os.path.join(tmp, "synth_test.parquet"), engine="pyarrow", index=False)

# --- flights regression (time-ordered split) ------------------------------
fl = pd.read_csv(os.path.join(shared, "nyc_flights_2013.csv.gz"))
# The file is NOT in time order: its months run 1, 10, 11, 12, 2, ..., 9, and
# within a day rows follow the actual departure time. Sort (stable) by the
# scheduled departure: year, month, day, hour, minute.
fl = fl.sort_values(["year", "month", "day", "hour", "minute"], kind="stable")
fl = fl.drop(columns=["time_hour"])
assert fl.columns[-1] == "arr_delay"
cut = int(len(fl) * 0.8)
fl.iloc[:cut].reset_index(drop=True).to_parquet(os.path.join(tmp, "flights_train.parquet"), engine="pyarrow", index=False)
fl.iloc[cut:].reset_index(drop=True).to_parquet(os.path.join(tmp, "flights_test.parquet"), engine="pyarrow", index=False)

open(os.path.join(tmp, ".complete"), "w").close()
shutil.rmtree(out, ignore_errors=True)
os.rename(tmp, out)
print(out)
