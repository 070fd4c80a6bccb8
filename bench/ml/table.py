"""Prints bench/ml.sh's markdown tables from its results file (JSON lines).

    python table.py gbdt|automl RESULTS.jsonl

Each line: {"dataset", "trees"|"budget", "rep", "side", "result": {...} or
null, "error": "..."}. gbdt: per (dataset, trees, side) the median over
repetitions of fit seconds (with their range), construct seconds and predict rows/s; the metric
is the median too (it is deterministic for a fixed seed). The ratio and the
metric delta are kiln against LightGBM on the same files.
"""
import json
import statistics
import sys
from collections import OrderedDict

mode, path = sys.argv[1], sys.argv[2]
rows = [json.loads(line) for line in open(path) if line.strip()]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


if mode == "gbdt":
    groups = OrderedDict()
    for r in rows:
        groups.setdefault((r["dataset"], r["trees"]), OrderedDict()).setdefault(r["side"], []).append(r)
    print("| dataset | trees | side | fit s | ratio kiln/lgbm | metric | metric delta % | predict rows/s | construct s | runs (fit s range) |")
    print("|---|---:|---|---:|---:|---|---:|---:|---:|---|")
    for (dataset, trees), sides in groups.items():
        summary = {}
        for side, runs in sides.items():
            ok = [r["result"] for r in runs if r.get("result")]
            if not ok:
                summary[side] = {"error": runs[-1].get("error", "failed"), "n": 0}
                continue
            # lgbm.py says "auc"; accept "roc_auc" too (the same number).
            for o in ok:
                if "roc_auc" in o and "auc" not in o:
                    o["auc"] = o["roc_auc"]
            metric = "auc" if "auc" in ok[0] else "rmse"
            summary[side] = {
                "fit": med([o.get("fit_seconds") for o in ok]),
                "lo": min(o["fit_seconds"] for o in ok),
                "hi": max(o["fit_seconds"] for o in ok),
                "construct": med([o.get("construct_seconds") for o in ok]),
                "rps": med([o.get("rows_per_second") for o in ok]),
                "metric_name": metric,
                "metric": med([o.get(metric) for o in ok]),
                "n": len(ok),
            }
        base = summary.get("lightgbm")
        for side, s in summary.items():
            if "error" in s:
                print(f"| {dataset} | {trees} | {side} | {s['error']} | | | | | | 0 |")
                continue
            ratio = delta = None
            if base and "error" not in base and side != "lightgbm":
                ratio = s["fit"] / base["fit"]
                if s["metric_name"] == base["metric_name"]:
                    delta = 100 * (s["metric"] - base["metric"]) / base["metric"]
            print(
                f"| {dataset} | {trees} | {side} | {fmt(s['fit'], '.2f')} | "
                f"{fmt(ratio, '.2f') if side != 'lightgbm' else '1.00'} | "
                f"{s['metric_name']} {fmt(s['metric'], '.4f')} | "
                f"{fmt(delta, '+.2f') if side != 'lightgbm' else '—'} | "
                f"{fmt(s['rps'], ',.0f')} | {fmt(s['construct'], '.2f')} | "
                f"{s['n']} ({s['lo']:.2f}–{s['hi']:.2f}) |"
            )
elif mode == "automl":
    groups = OrderedDict()
    for r in rows:
        groups.setdefault((r["dataset"], r["budget"]), []).append(r)
    print("| dataset | budget s | side | wall s | test score | winner |")
    print("|---|---:|---|---:|---|---|")
    for (dataset, budget), runs in groups.items():
        scores = {}
        for r in runs:
            if r.get("result"):
                scores[r["side"]] = r["result"]["test_score"]
        winner = "—"
        if len(scores) == 2:
            metric = runs[0]["metric"]
            (s1, v1), (s2, v2) = scores.items()
            if v1 == v2:
                winner = "tie"
            elif (v1 > v2) == (metric == "roc_auc"):
                winner = s1
            else:
                winner = s2
        for r in runs:
            res = r.get("result")
            if not res:
                print(f"| {dataset} | {budget} | {r['side']} | {r.get('error', 'failed')} | | |")
                continue
            extra = f" ({res['best_estimator']})" if res.get("best_estimator") else ""
            print(
                f"| {dataset} | {budget} | {r['side']} | {res['wall_seconds']:.1f} | "
                f"{r['metric']} {res['test_score']:.4f}{extra} | {winner} |"
            )
else:
    sys.exit(f"unknown mode {mode}")
