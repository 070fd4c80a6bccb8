"""Evidently's side of bench/drift.sh: its data drift preset on two Parquet files.

    python evidently_run.py REFERENCE.parquet CURRENT.parquet

Reads both files with pyarrow into pandas, declares every `num_*` column
numerical and every `cat_*` column categorical (nothing left to Evidently's
type inference), runs `Report([DataDriftPreset()], include_tests=True)` with
the preset's defaults, and prints one JSON object on stdout: per column the
method Evidently chose, its score and threshold, and its own verdict (the
column's "Value Drift" test failed = drift detected), in the shape the other
sides print. Progress goes to stderr.

Evidently's defaults (evidently/legacy/calculations/stattests/registry.py,
`_get_default_stattest`): above 1,000 reference rows, numerical columns with
more than 5 distinct values get the Wasserstein distance normed by the
reference's standard deviation, categorical columns (and numerical ones with
at most 5 values) the Jensen-Shannon distance (natural log) of the category
shares; drift when the score >= 0.1. At 1,000 rows or fewer it uses KS /
chi-squared / z p-values < 0.05 instead.
"""
import json
import sys
import time

t0 = time.perf_counter()
import pyarrow.parquet as pq  # noqa: E402
from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402
import evidently  # noqa: E402

t_import = time.perf_counter() - t0


def main():
    ref_path, cur_path = sys.argv[1], sys.argv[2]
    t = time.perf_counter()
    ref = pq.read_table(ref_path).to_pandas()
    cur = pq.read_table(cur_path).to_pandas()
    t_read = time.perf_counter() - t
    num = [c for c in ref.columns if c.startswith("num_")]
    cat = [c for c in ref.columns if c.startswith("cat_")]
    definition = DataDefinition(numerical_columns=num, categorical_columns=cat)

    t = time.perf_counter()
    report = Report([DataDriftPreset()], include_tests=True)
    snapshot = report.run(Dataset.from_pandas(cur, data_definition=definition),
                          Dataset.from_pandas(ref, data_definition=definition))
    result = snapshot.dict()
    t_report = time.perf_counter() - t

    status = {}  # metric id -> its test's status ("FAIL" = drift detected)
    for test in result["tests"]:
        status[test["metric_config"]["metric_id"]] = test["status"]
    columns, count = [], None
    for m in result["metrics"]:
        cfg = m["config"]
        if cfg["type"].endswith(":DriftedColumnsCount"):
            count = m["value"]
            continue
        if not cfg["type"].endswith(":ValueDrift"):
            continue
        name = cfg["column"]
        verdict = status.get(m["id"])
        columns.append({
            "column": name,
            "kind": "numeric" if name in num else "categorical",
            "test": cfg["method"],
            "statistic": m["value"],
            "p_value": None,
            "threshold": cfg["threshold"],
            # Evidently's own verdict; without a test result, its rule for
            # the distance methods it picks here (score >= threshold).
            "drifted": verdict == "FAIL" if verdict is not None else m["value"] >= cfg["threshold"],
        })
    out = {
        "side": "evidently",
        "version": evidently.__version__,
        "reference": {"source": ref_path, "rows": len(ref)},
        "current": {"source": cur_path, "rows": len(cur)},
        "columns_checked": len(columns),
        "drifted_columns": sum(c["drifted"] for c in columns),
        "evidently_drifted_columns_count": count,
        "columns": columns,
        "phases_s": {"import": round(t_import, 3), "read": round(t_read, 3), "report": round(t_report, 3)},
        "seconds": round(t_read + t_report, 3),
    }
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
