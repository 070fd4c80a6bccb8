"""Many concurrent MLflow clients writing at once; checks no point is lost.

    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 python tests/mlflow/concurrent_writes.py \
        [--workers 32] [--points 50] [--batch 200] [--mode thread|process]

Each worker has its own MlflowClient, creates its own run in one shared
experiment, logs --points single metric points (`client.log_metric`, key
"single") and one `client.log_batch` of --batch points (key "batch"), then
ends the run. All workers start together (a barrier). Afterwards every run's
history is read back with `get_metric_history` and compared point by point
(step, value, timestamp). Prints one JSON summary line on stdout; exits 1 if
any point is missing, duplicated or wrong, or any worker failed.
"""

import os
import sys

# This file is named like the standard library's `concurrent` package, which
# mlflow (and this script) import: drop the script's own folder from the
# module search path before importing anything else.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

# MLflow prints "View run … at: URL" to stdout when a run ends; stdout is
# kept for the one JSON line.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# The client retries 429/5xx with exponential back-off (7 times by default),
# which turns a server error into a long hang: fail fast instead.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")

import argparse  # noqa: E402
import json
import multiprocessing
import secrets
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric  # noqa: E402

T0 = 1_700_000_000_000  # fixed base timestamp (ms), so expected points are exact


def expected(worker, points, batch):
    single = [(s, float(worker * 100_000 + s) + 0.25, T0 + worker * 10_000 + s) for s in range(points)]
    bat = [(s, float(worker) + s / 1024.0, T0 + worker * 10_000 + 5_000 + s) for s in range(batch)]
    return single, bat


def work(args):
    worker, exp_id, points, batch, barrier = args
    try:
        client = MlflowClient()
        if barrier is not None:
            barrier.wait(timeout=120)
        t = time.perf_counter()
        run = client.create_run(exp_id, run_name=f"w{worker}")
        rid = run.info.run_id
        single, bat = expected(worker, points, batch)
        for step, value, ts in single:
            client.log_metric(rid, "single", value, timestamp=ts, step=step)
        client.log_batch(rid, metrics=[Metric("batch", v, ts, s) for s, v, ts in bat])
        client.set_terminated(rid)
        return {"worker": worker, "run_id": rid, "seconds": time.perf_counter() - t}
    except Exception as e:  # reported, and counted as a failure
        return {"worker": worker, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}


def check(client, res, points, batch):
    problems = []
    single, bat = expected(res["worker"], points, batch)
    got_n = 0
    for key, want in (("single", single), ("batch", bat)):
        hist = client.get_metric_history(res["run_id"], key)
        got_n += len(hist)
        got = sorted((m.step, m.value, m.timestamp) for m in hist)
        if got != sorted(want):
            missing = sorted(set(want) - set(got))
            extra = sorted(set(got) - set(want))
            problems.append(f"run {res['run_id']} key {key}: {len(got)} points, want {len(want)}; "
                            f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}, "
                            f"unexpected/duplicate {extra[:5] or (len(got) - len(set(got)))}")
    run = client.get_run(res["run_id"])
    if run.info.status != "FINISHED":
        problems.append(f"run {res['run_id']}: status {run.info.status}")
    last = run.data.metrics
    if points and last.get("single") != single[-1][1]:
        problems.append(f"run {res['run_id']}: latest single {last.get('single')} != {single[-1][1]}")
    if batch and last.get("batch") != bat[-1][1]:
        problems.append(f"run {res['run_id']}: latest batch {last.get('batch')} != {bat[-1][1]}")
    return got_n, problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=int(os.environ.get("KILN_MLFLOW_WORKERS", 32)))
    ap.add_argument("--points", type=int, default=50, help="single log_metric calls per run")
    ap.add_argument("--batch", type=int, default=200, help="points in the one log_batch per run")
    ap.add_argument("--mode", choices=["thread", "process"], default="thread")
    a = ap.parse_args()
    if a.batch > 1000:
        sys.exit("--batch: MLflow allows at most 1000 metrics per log_batch")

    client = MlflowClient()
    exp_id = client.create_experiment(f"concurrent-{secrets.token_hex(4)}")
    t = time.perf_counter()
    if a.mode == "thread":
        barrier = threading.Barrier(a.workers)
        with ThreadPoolExecutor(max_workers=a.workers) as pool:
            results = list(pool.map(work, [(w, exp_id, a.points, a.batch, barrier) for w in range(a.workers)]))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Manager() as mgr:
            barrier = mgr.Barrier(a.workers)
            with ctx.Pool(a.workers) as pool:
                results = pool.map(work, [(w, exp_id, a.points, a.batch, barrier) for w in range(a.workers)])
    write_s = time.perf_counter() - t

    errors = [r for r in results if "error" in r]
    for r in errors:
        print(f"concurrent_writes.py: worker {r['worker']} failed: {r['error']}\n{r['trace']}", file=sys.stderr)
    problems, received = [], 0
    for r in results:
        if "error" not in r:
            n, p = check(client, r, a.points, a.batch)
            received += n
            problems.extend(p)
    runs = client.search_runs([exp_id], max_results=1000)
    if len(runs) != a.workers - len(errors):
        problems.append(f"search_runs found {len(runs)} runs, want {a.workers - len(errors)}")
    for p in problems:
        print(f"concurrent_writes.py: {p}", file=sys.stderr)

    want_points = a.workers * (a.points + a.batch)
    summary = {
        "experiment_id": exp_id,
        "mode": a.mode,
        "workers": a.workers,
        "points_per_run": a.points,
        "batch_points_per_run": a.batch,
        "runs_ok": a.workers - len(errors),
        "worker_errors": len(errors),
        "expected_points": want_points,
        "received_points": received,
        "lost_points": want_points - received,
        "problems": len(problems),
        "first_error": (errors[0]["error"] if errors else problems[0] if problems else None),
        "write_seconds": round(write_s, 3),
        "requests_per_second": round(a.workers * (a.points + 3) / write_s, 1),
    }
    print(json.dumps(summary, sort_keys=True), flush=True)
    sys.exit(1 if errors or problems else 0)


if __name__ == "__main__":
    main()
