"""Makes the inputs of bench/drift.sh (deterministic; cached by this file's hash).

    python gen.py OUTDIR SIZE [SIZE ...]        # SIZE: 100k or 1M

For each SIZE, writes OUTDIR/SIZE/reference.parquet, current.parquet and
truth.json, and prints the folder's path, one line per SIZE. A folder is
reused when its `.complete` stamp holds this file's SHA-256 (any edit here
regenerates the data); otherwise it is written again.

Both tables: SIZE rows x 25 columns, num_00..num_19 (float64, or int64 for
the two count columns) then cat_0..cat_4 (plain UTF-8 strings). Every column
is drawn independently with numpy's PCG64 from a seed derived from
(SEED, size, table, column), so the current table is fresh draws from the
same distributions (never a copy of reference rows) wherever no drift is
injected, and a detector with false alarms shows them.

    num_00  normal(0, 1)
    num_01  normal(50, 10), 2 % nulls
    num_02  lognormal(0, 1)
    num_03  normal(0, 1)                      DRIFT: mean + 0.5 sd
    num_04  uniform(0, 1)
    num_05  exponential(scale 2)
    num_06  bimodal: 40 % normal(-2, 0.5), 60 % normal(3, 1)
    num_07  poisson(3), int64 (a count: 0..~15, many ties)
    num_08  normal(10, 2)                     DRIFT: sd x 1.5, same mean
    num_09  uniform(-5, 5), 2 % nulls
    num_10  lognormal(1, 0.25)
    num_11  lognormal(0, 0.5)                 DRIFT: tail: values above the
            distribution's 90th percentile (exp(0.5 * 1.2816)) are x 1.5;
            the lower 90 % is untouched
    num_12  exponential(scale 1)
    num_13  normal(-3, 0.1)
    num_14  normal(100, 15)                   DRIFT: mean + 0.05 sd (+0.75),
            subtle: Evidently's normed Wasserstein is ~0.05 < 0.1
    num_15  poisson(20), int64, 2 % nulls
    num_16  bimodal: 50 % normal(0, 1), 50 % normal(6, 1)
    num_17  normal(0, 5), 2 % nulls
    num_18  gamma(shape 2, scale 2)
    num_19  student t(5)
    cat_0   3 categories, zipf-ish shares (p_k ~ 1 / k^1.1)
    cat_1   12 categories; `cat_1_02` exactly 10 %, the rest zipf-ish
            sharing 90 %                      DRIFT: `cat_1_02` 10 % -> 20 %,
            taken from the most common, `cat_1_00` (35.7 % -> 25.7 %)
    cat_2   50 categories, zipf-ish, 2 % nulls
    cat_3   8 categories, zipf-ish            DRIFT: a new category
            `cat_3_new` in 3 % of rows, the others scaled by 0.97
    cat_4   25 categories, zipf-ish

Nulls are drawn at 2 % in both tables (no drift in the null rate). truth.json
lists the six drifted columns, how each drifted, and the realised effect
(means, sds, shares) measured on the written tables.
"""
import hashlib
import json
import os
import shutil
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20251126
SIZES = {"100k": 100_000, "1M": 1_000_000}
NULL_SHARE = 0.02
LN11_P90 = float(np.exp(0.5 * 1.2815515655446004))  # 90th percentile of lognormal(0, 0.5)

# name -> (kind, how it is drawn, nulls?)
NUMERIC = {
    "num_00": ("normal", (0.0, 1.0), False),
    "num_01": ("normal", (50.0, 10.0), True),
    "num_02": ("lognormal", (0.0, 1.0), False),
    "num_03": ("normal", (0.0, 1.0), False),
    "num_04": ("uniform", (0.0, 1.0), False),
    "num_05": ("exponential", (2.0,), False),
    "num_06": ("bimodal", (0.4, -2.0, 0.5, 3.0, 1.0), False),
    "num_07": ("poisson", (3.0,), False),
    "num_08": ("normal", (10.0, 2.0), False),
    "num_09": ("uniform", (-5.0, 5.0), True),
    "num_10": ("lognormal", (1.0, 0.25), False),
    "num_11": ("lognormal", (0.0, 0.5), False),
    "num_12": ("exponential", (1.0,), False),
    "num_13": ("normal", (-3.0, 0.1), False),
    "num_14": ("normal", (100.0, 15.0), False),
    "num_15": ("poisson", (20.0,), True),
    "num_16": ("bimodal", (0.5, 0.0, 1.0, 6.0, 1.0), False),
    "num_17": ("normal", (0.0, 5.0), True),
    "num_18": ("gamma", (2.0, 2.0), False),
    "num_19": ("t", (5.0,), False),
}
CATEGORICAL = {"cat_0": (3, False), "cat_1": (12, False), "cat_2": (50, True),
               "cat_3": (8, False), "cat_4": (25, False)}

TRUTH = {
    "num_03": {"kind": "numeric", "drift": "mean shift", "how": "normal(0, 1) -> normal(0.5, 1): mean + 0.5 sd"},
    "num_08": {"kind": "numeric", "drift": "variance change",
               "how": "normal(10, 2) -> normal(10, 3): sd x 1.5, same mean"},
    "num_11": {"kind": "numeric", "drift": "tail change",
               "how": f"lognormal(0, 0.5): values above its 90th percentile ({LN11_P90:.4f}) x 1.5; lower 90 % unchanged"},
    "num_14": {"kind": "numeric", "drift": "subtle mean shift",
               "how": "normal(100, 15) -> normal(100.75, 15): mean + 0.05 sd"},
    "cat_1": {"kind": "categorical", "drift": "category frequency change",
              "how": "share of cat_1_02 10 % -> 20 %, taken from cat_1_00 (35.7 % -> 25.7 %); the other 10 unchanged"},
    "cat_3": {"kind": "categorical", "drift": "new category",
              "how": "new category cat_3_new in 3 % of rows, the other 8 scaled by 0.97"},
}


def rng_for(size, table, column):
    key = f"{size}/{table}/{column}".encode()
    return np.random.default_rng([SEED, int.from_bytes(hashlib.sha256(key).digest()[:8], "little")])


def draw_numeric(rng, kind, p, n):
    if kind == "normal":
        return rng.normal(p[0], p[1], n)
    if kind == "lognormal":
        return rng.lognormal(p[0], p[1], n)
    if kind == "uniform":
        return rng.uniform(p[0], p[1], n)
    if kind == "exponential":
        return rng.exponential(p[0], n)
    if kind == "bimodal":
        w, m1, s1, m2, s2 = p
        first = rng.random(n) < w
        return np.where(first, rng.normal(m1, s1, n), rng.normal(m2, s2, n))
    if kind == "poisson":
        return rng.poisson(p[0], n).astype(np.int64)
    if kind == "gamma":
        return rng.gamma(p[0], p[1], n)
    if kind == "t":
        return rng.standard_t(p[0], n)
    raise ValueError(kind)


def zipf_shares(k):
    w = 1.0 / np.arange(1, k + 1) ** 1.1
    return w / w.sum()


def cat_shares(column, table):
    k, _ = CATEGORICAL[column]
    names = [f"{column}_{i:02d}" for i in range(k)]
    p = zipf_shares(k)
    if column == "cat_1":
        # cat_1_02 is set to 10 %, the others share 90 % in zipf proportions;
        # the current table moves 10 points from the most common category to
        # it. (Scaling all the others down instead puts Evidently's
        # Jensen-Shannon distance at 0.0998, a coin flip against its 0.1.)
        rest = np.delete(p, 2)
        p = np.insert(rest / rest.sum() * 0.9, 2, 0.10)
        if table == "current":
            p[2] += 0.10
            p[0] -= 0.10
    if column == "cat_3" and table == "current":
        names.append("cat_3_new")
        p = np.append(p * 0.97, 0.03)
    return names, p


def column(size, table, name, n):
    rng = rng_for(size, table, name)
    if name in NUMERIC:
        kind, p, nulls = NUMERIC[name]
        if table == "current" and name == "num_03":
            p = (0.5, 1.0)
        elif table == "current" and name == "num_08":
            p = (10.0, 3.0)
        elif table == "current" and name == "num_14":
            p = (100.75, 15.0)
        x = draw_numeric(rng, kind, p, n)
        if table == "current" and name == "num_11":
            x = np.where(x > LN11_P90, x * 1.5, x)
        mask = rng.random(n) < NULL_SHARE if nulls else None
        return pa.array(x, mask=mask)
    names, p = cat_shares(name, table)
    idx = rng.choice(len(names), size=n, p=p)
    values = np.array(names, dtype=object)[idx]
    mask = rng.random(n) < NULL_SHARE if CATEGORICAL[name][1] else None
    return pa.array(values, type=pa.string(), mask=mask)


def realised(ref, cur):
    """The effect actually present in the written tables, per drifted column."""
    out = {}
    for name in TRUTH:
        r, c = ref.column(name), cur.column(name)
        if name in NUMERIC:
            rv = r.drop_null().to_numpy().astype(float)
            cv = c.drop_null().to_numpy().astype(float)
            out[name] = {"reference_mean": float(rv.mean()), "current_mean": float(cv.mean()),
                         "reference_sd": float(rv.std()), "current_sd": float(cv.std()),
                         "mean_shift_in_reference_sd": float((cv.mean() - rv.mean()) / rv.std()),
                         "reference_p99": float(np.quantile(rv, 0.99)), "current_p99": float(np.quantile(cv, 0.99))}
        else:
            def shares(col):
                vc = col.value_counts().to_pylist()
                total = sum(d["counts"] for d in vc)
                return {d["values"]: round(d["counts"] / total, 5) for d in sorted(vc, key=lambda d: str(d["values"]))}
            out[name] = {"reference_shares": shares(r), "current_shares": shares(c)}
    return out


def generate(folder, size, n, digest):
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    tables = {}
    names = list(NUMERIC) + list(CATEGORICAL)
    for table in ("reference", "current"):
        t = pa.table({name: column(size, table, name, n) for name in names})
        pq.write_table(t, os.path.join(tmp, f"{table}.parquet"))
        tables[table] = t
    truth = {
        "generator": "bench/drift/gen.py", "generator_sha256": digest, "seed": SEED, "rows": n,
        "columns": {"numeric": list(NUMERIC), "categorical": list(CATEGORICAL)},
        "drifted": TRUTH,
        "not_drifted": [c for c in names if c not in TRUTH],
        "realised": realised(tables["reference"], tables["current"]),
    }
    with open(os.path.join(tmp, "truth.json"), "w") as f:
        json.dump(truth, f, indent=2)
    with open(os.path.join(tmp, ".complete"), "w") as f:
        f.write(digest + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(tmp, folder)


def main():
    if len(sys.argv) < 3 or any(s not in SIZES for s in sys.argv[2:]):
        sys.exit(f"usage: gen.py OUTDIR {{{'|'.join(SIZES)}}} ...")
    out = sys.argv[1]
    with open(os.path.abspath(__file__), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    for size in sys.argv[2:]:
        folder = os.path.join(out, size)
        stamp = os.path.join(folder, ".complete")
        fresh = os.path.exists(stamp) and open(stamp).read().strip() == digest
        if not fresh:
            print(f"generating {size} rows into {folder}...", file=sys.stderr, flush=True)
            generate(folder, size, SIZES[size], digest)
        print(folder)


if __name__ == "__main__":
    main()
