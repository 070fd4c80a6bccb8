"""The numpy/scipy floor of bench/drift.sh: what a plain, single-threaded
script computes for the same question, with the library calls anyone would
reach for.

    python floor.py REFERENCE.parquet CURRENT.parquet

Reads both files with `pyarrow.parquet.read_table`; nulls are dropped (and
counted). Per numeric column (`num_*`): `scipy.stats.ks_2samp` (two-sided,
asymptotic p at these sizes), PSI on 10 bins cut at the reference's deciles
(duplicate edges merged, shares floored at 1e-4), and
`scipy.stats.wasserstein_distance`. Per categorical column (`cat_*`): the
category counts (`pyarrow.compute.value_counts`), `scipy.stats.chi2_contingency`
on the 2 x k table of counts (categories seen in either table), PSI on the
category shares, and `scipy.spatial.distance.jensenshannon`. Verdict: the KS
or chi-squared p-value < 0.05 / 25 (Bonferroni over the 25 columns). Prints
one JSON object on stdout in the shape the other sides print.
"""
import json
import sys
import time

t0 = time.perf_counter()
import numpy as np  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from scipy import stats  # noqa: E402
from scipy.spatial import distance  # noqa: E402

t_import = time.perf_counter() - t0
ALPHA = 0.05
EPS = 1e-4


def psi(ref_share, cur_share):
    r = np.clip(ref_share, EPS, None)
    c = np.clip(cur_share, EPS, None)
    return float(np.sum((c - r) * np.log(c / r)))


def numeric(ref, cur):
    edges = np.unique(np.quantile(ref, np.linspace(0.1, 0.9, 9)))
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    ks = stats.ks_2samp(ref, cur)
    return {"test": "ks", "statistic": float(ks.statistic), "p_value": float(ks.pvalue),
            "psi": psi(r, c), "wasserstein": float(stats.wasserstein_distance(ref, cur)),
            "jensen_shannon": None, "new_categories": []}


def counts(arr):
    vc = pc.value_counts(arr.drop_null()).to_pylist()
    return {d["values"]: d["counts"] for d in vc}


def categorical(ref, cur):
    rc, cc = counts(ref), counts(cur)
    keys = sorted(set(rc) | set(cc))
    table = np.array([[rc.get(k, 0) for k in keys], [cc.get(k, 0) for k in keys]], dtype=float)
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    r, c = table[0] / table[0].sum(), table[1] / table[1].sum()
    return {"test": "chi2", "statistic": float(chi2), "p_value": float(p), "psi": psi(r, c),
            "wasserstein": None, "jensen_shannon": float(distance.jensenshannon(r, c)),
            "new_categories": [k for k in keys if k not in rc]}


def main():
    ref_path, cur_path = sys.argv[1], sys.argv[2]
    t = time.perf_counter()
    ref = pq.read_table(ref_path)
    cur = pq.read_table(cur_path)
    t_read = time.perf_counter() - t

    t = time.perf_counter()
    names = [n for n in ref.column_names if n.startswith(("num_", "cat_"))]
    threshold = ALPHA / len(names)
    columns = []
    for name in names:
        r, c = ref.column(name), cur.column(name)
        if name.startswith("num_"):
            row = numeric(r.drop_null().to_numpy().astype(np.float64),
                          c.drop_null().to_numpy().astype(np.float64))
            kind = "numeric"
        else:
            row = categorical(r, c)
            kind = "categorical"
        columns.append({"column": name, "kind": kind, **row, "threshold": threshold,
                        "drifted": row["p_value"] < threshold,
                        "reference": {"rows": len(r), "nulls": r.null_count},
                        "current": {"rows": len(c), "nulls": c.null_count}})
    t_compute = time.perf_counter() - t

    out = {
        "side": "floor",
        "reference": {"source": ref_path, "rows": ref.num_rows},
        "current": {"source": cur_path, "rows": cur.num_rows},
        "alpha": ALPHA,
        "columns_checked": len(columns),
        "drifted_columns": sum(c["drifted"] for c in columns),
        "columns": columns,
        "phases_s": {"import": round(t_import, 3), "read": round(t_read, 3), "compute": round(t_compute, 3)},
        "seconds": round(t_read + t_compute, 3),
    }
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
