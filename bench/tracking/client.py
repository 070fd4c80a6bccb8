"""The MLflow tracking benchmark's client: one side per call, then a report.

    client.py run --side mlflow --work DIR --out mlflow.json [--mlflow-bin PATH]
    client.py run --side kiln   --work DIR --out kiln.json   --kiln-bin PATH
    client.py report --json OUT.json mlflow.json [kiln.json]

`run` starts the server itself (so start-up is timed from the spawn), drives
it with the official client (`MlflowClient`, the same calls for both sides),
stops it, starts it again on the now-full store, and writes the figures as
JSON. `report` prints the markdown table and writes the combined JSON.
bench/tracking/README.md says what each figure is and how it is made.
"""

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# A server under test that errs should fail the figure, not be retried for minutes.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import procs  # noqa: E402
from procs import free_port, tail, tree_cpu_s, tree_pids  # noqa: E402

N_CREATE = 200
N_LOG_METRIC = 1000
BATCHES, BATCH_SIZE = 10, 1000
N_SEARCH_RUNS = 10_000
SEARCH_REPS = 5
SEARCH_FILTER = "metrics.m > 0.5"
SEARCH_ORDER = ["metrics.m DESC"]
SEARCH_MAX = 1000
T0 = 1_700_000_000_000
POPULATE_THREADS = 8


def log(msg):
    print(f"[bench tracking] {msg}", file=sys.stderr, flush=True)








def tree_memory_mib(root):
    """Memory of the server's whole process tree, MiB: the sum of VmRSS (shared
    pages counted in every process) and the sum of Pss (shared pages split
    between the processes that map them), and the process count."""
    rss_kb = pss_kb = procs = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss_kb += int(line.split()[1])
                        procs += 1
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss_kb += int(line.split()[1])
        except OSError:
            pass
    return round(rss_kb / 1024, 1), round(pss_kb / 1024, 1), procs


class Server:
    def __init__(self, side, work, args):
        self.side, self.work, self.args = side, work, args
        self.proc = None
        self.port = None

    def command(self):
        if self.side == "mlflow":
            return [self.args.mlflow_bin, "server",
                    "--backend-store-uri", f"sqlite:///{self.work}/mlflow.db",
                    "--artifacts-destination", f"{self.work}/artifacts",
                    "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"], self.work
        return [self.args.kiln_bin, "server", "--host", "127.0.0.1", "--port", str(self.port)], self.project

    def prepare(self):
        os.makedirs(self.work, exist_ok=True)
        if self.side == "kiln":
            self.project = os.path.join(self.work, "project")
            r = subprocess.run([self.args.kiln_bin, "init", self.project], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"kiln init failed: {r.stderr.strip() or r.stdout.strip()}")

    def start(self, label):
        self.port = free_port()
        cmd, cwd = self.command()
        logf = open(os.path.join(self.work, f"server-{label}.log"), "wb")
        t = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        url = f"http://127.0.0.1:{self.port}/health"
        deadline = t + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.side} server exited with {self.proc.returncode} before /health "
                                   f"answered; see {logf.name}: {tail(logf.name)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{self.side} server: no 200 on /health after 300 s")
            time.sleep(0.02)
        took = time.perf_counter() - t
        self.uri = f"http://127.0.0.1:{self.port}"
        mlflow.set_tracking_uri(self.uri)
        return took

    def stop(self):
        procs.stop_group(self.proc)




def search_data():
    rng = random.Random(42)
    return [(i, rng.random()) for i in range(N_SEARCH_RUNS)]


def populate_mlflow_sqlite(db, exp_id):
    """Writes the 10,000 runs straight into MLflow's SQLite store (the schema the
    server created), as its create_run + log_batch would: runs, tags
    (mlflow.runName, mlflow.user, t), params (p), metrics and latest_metrics (m)."""
    runs, tags, params, metrics, latest = [], [], [], [], []
    for i, v in search_data():
        rid = uuid.UUID(int=random.Random(i).getrandbits(128)).hex
        name = f"r{i:05d}"
        runs.append((rid, name, "UNKNOWN", "", "", "bench", "RUNNING", T0 + i, None, "",
                     "active", f"mlflow-artifacts:/{exp_id}/{rid}/artifacts", int(exp_id)))
        tags += [("mlflow.runName", name, rid), ("mlflow.user", "bench", rid),
                 ("t", "even" if i % 2 == 0 else "odd", rid)]
        params.append(("p", str(i % 10), rid))
        metrics.append(("m", v, T0 + i, rid, 0, 0))
        latest.append(("m", v, T0 + i, 0, 0, rid))
    con = sqlite3.connect(db, timeout=60)
    with con:
        con.executemany("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
                        "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, "
                        "experiment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", runs)
        con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)", tags)
        con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)", params)
        con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                        "VALUES (?,?,?,?,?,?)", metrics)
        con.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                        "VALUES (?,?,?,?,?,?)", latest)
    con.close()


def populate_api(client, exp_id):
    """The 10,000 runs through the REST API: create_run (with the tag) then one
    log_batch (metric m, param p) per run, 8 client threads."""
    def one(item):
        i, v = item
        c = clients[i % POPULATE_THREADS]
        r = c.create_run(exp_id, start_time=T0 + i, run_name=f"r{i:05d}",
                         tags={"t": "even" if i % 2 == 0 else "odd", "mlflow.user": "bench"})
        c.log_batch(r.info.run_id, metrics=[Metric("m", v, T0 + i, 0)], params=[Param("p", str(i % 10))])
    clients = [MlflowClient() for _ in range(POPULATE_THREADS)]
    with ThreadPoolExecutor(POPULATE_THREADS) as pool:
        list(pool.map(one, search_data()))


def per_cpu(n, cpu_s):
    """Operations per server CPU-second; the clock tick (10 ms) bounds the
    resolution, so a phase that used less than a tick counts as one tick."""
    return round(n / max(cpu_s, 1 / os.sysconf("SC_CLK_TCK")), 1)


def run_side(a):
    res = {"side": a.side, "ok": False, "figures": {}, "notes": {}}
    fig = res["figures"]
    work = os.path.abspath(a.work)
    srv = Server(a.side, work, a)
    try:
        srv.prepare()
        log(f"{a.side}: starting the server (fresh store)")
        fig["startup_fresh_s"] = round(srv.start("fresh"), 3)
        log(f"{a.side}: /health answered after {fig['startup_fresh_s']} s")
        time.sleep(2)
        fig["rss_idle_mib"], fig["pss_idle_mib"], fig["processes"] = tree_memory_mib(srv.proc.pid)
        client = MlflowClient()

        # Runs created per second.
        exp = client.create_experiment(f"bench-create-{uuid.uuid4().hex[:8]}")
        t = time.perf_counter()
        cpu = tree_cpu_s(srv.proc.pid)
        for _ in range(N_CREATE):
            client.create_run(exp)
        fig["create_runs_per_s"] = round(N_CREATE / (time.perf_counter() - t), 1)
        fig["create_runs_per_cpu_s"] = per_cpu(N_CREATE, tree_cpu_s(srv.proc.pid) - cpu)
        log(f"{a.side}: {fig['create_runs_per_s']} runs/s")

        # Metric points per second, one log_metric call per point.
        rid = client.create_run(exp).info.run_id
        t = time.perf_counter()
        cpu = tree_cpu_s(srv.proc.pid)
        for i in range(N_LOG_METRIC):
            client.log_metric(rid, "single", float(i) * 0.5, step=i)
        fig["log_metric_points_per_s"] = round(N_LOG_METRIC / (time.perf_counter() - t), 1)
        fig["log_metric_points_per_cpu_s"] = per_cpu(N_LOG_METRIC, tree_cpu_s(srv.proc.pid) - cpu)
        log(f"{a.side}: {fig['log_metric_points_per_s']} points/s (log_metric)")

        # Metric points per second through log_batch (10 x 1,000).
        now = int(time.time() * 1000)
        batches = [[Metric("batch", float(b * BATCH_SIZE + i), now + b * BATCH_SIZE + i, b * BATCH_SIZE + i)
                    for i in range(BATCH_SIZE)] for b in range(BATCHES)]
        t = time.perf_counter()
        cpu = tree_cpu_s(srv.proc.pid)
        for ms in batches:
            client.log_batch(rid, metrics=ms)
        fig["log_batch_points_per_s"] = round(BATCHES * BATCH_SIZE / (time.perf_counter() - t), 1)
        fig["log_batch_points_per_cpu_s"] = per_cpu(BATCHES * BATCH_SIZE, tree_cpu_s(srv.proc.pid) - cpu)
        log(f"{a.side}: {fig['log_batch_points_per_s']} points/s (log_batch)")

        # Reading the 10,000-point history back (also checks nothing was lost).
        t = time.perf_counter()
        hist = client.get_metric_history(rid, "batch")
        fig["history_read_10k_ms"] = round((time.perf_counter() - t) * 1000, 1)
        single = client.get_metric_history(rid, "single")
        if len(hist) != BATCHES * BATCH_SIZE or len(single) != N_LOG_METRIC:
            raise RuntimeError(f"history lost points: batch {len(hist)}/{BATCHES * BATCH_SIZE}, "
                               f"single {len(single)}/{N_LOG_METRIC}")

        # Search over 10,000 runs.
        sexp = client.create_experiment(f"bench-search-{uuid.uuid4().hex[:8]}")
        t = time.perf_counter()
        if a.side == "mlflow":
            populate_mlflow_sqlite(os.path.join(work, "mlflow.db"), sexp)
            res["notes"]["populate_method"] = "sqlite3 INSERTs into MLflow's own schema"
        else:
            populate_api(client, sexp)
            res["notes"]["populate_method"] = f"REST API, create_run + log_batch, {POPULATE_THREADS} threads"
        fig["populate_10k_s"] = round(time.perf_counter() - t, 2)
        log(f"{a.side}: populated {N_SEARCH_RUNS} runs in {fig['populate_10k_s']} s")
        want = sorted((v for _, v in search_data() if v > 0.5), reverse=True)[:SEARCH_MAX]
        times = []
        cpus = []
        for rep in range(SEARCH_REPS + 1):  # the first is a warm-up, not counted
            cpu = tree_cpu_s(srv.proc.pid)
            t = time.perf_counter()
            runs = client.search_runs([sexp], filter_string=SEARCH_FILTER, order_by=SEARCH_ORDER,
                                      max_results=SEARCH_MAX)
            dt = time.perf_counter() - t
            if rep:
                times.append(dt)
                cpus.append(tree_cpu_s(srv.proc.pid) - cpu)
            got = [r.data.metrics["m"] for r in runs]
            if got != want:
                raise RuntimeError(f"search returned {len(got)} runs, not the expected top {len(want)} "
                                   f"in order (first got {got[:3]}, want {want[:3]})")
            if rep == 0:
                res["notes"]["search_top_run_name"] = runs[0].info.run_name
        fig["search_10k_ms"] = round(statistics.median(times) * 1000, 1)
        fig["search_10k_server_cpu_ms"] = round(statistics.median(cpus) * 1000, 1)
        res["notes"]["search_ms_all"] = [round(x * 1000, 1) for x in times]
        log(f"{a.side}: search median {fig['search_10k_ms']} ms")

        fig["rss_after_load_mib"], fig["pss_after_load_mib"], _ = tree_memory_mib(srv.proc.pid)
        srv.stop()
        log(f"{a.side}: restarting on the full store")
        fig["startup_existing_s"] = round(srv.start("restart"), 3)
        count = len(MlflowClient().search_runs([sexp], max_results=1))
        if count != 1:
            raise RuntimeError("after restart the search experiment is empty")
        res["ok"] = True
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {e}"
        log(f"{a.side}: FAILED: {res['error']}")
    finally:
        srv.stop()
    res["notes"]["mlflow_client"] = mlflow.__version__
    if a.side == "mlflow":
        res["notes"]["mlflow_job_execution"] = os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION",
                                                             "true (default)")
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    return 0 if res["ok"] else 1


ROWS = [  # key, label, better ("lower"/"higher"), unit format
    ("startup_fresh_s", "start-up, fresh store (spawn → 200 on /health), s", "lower", "{:.2f}"),
    ("startup_existing_s", "start-up, store with the 10,200 runs, s", "lower", "{:.2f}"),
    ("create_runs_per_s", "runs created per second (200 × create_run)", "higher", "{:,.0f}"),
    ("log_metric_points_per_s", "metric points/s, 1,000 × log_metric", "higher", "{:,.0f}"),
    ("log_batch_points_per_s", "metric points/s, 10 × log_batch of 1,000", "higher", "{:,.0f}"),
    ("create_runs_per_cpu_s", "runs created per server CPU-second", "higher", "{:,.0f}"),
    ("log_metric_points_per_cpu_s", "log_metric points per server CPU-second", "higher", "{:,.0f}"),
    ("log_batch_points_per_cpu_s", "log_batch points per server CPU-second", "higher", "{:,.0f}"),
    ("search_10k_server_cpu_ms", "search over 10,000 runs, server CPU, ms", "lower", "{:,.1f}"),
    ("history_read_10k_ms", "get_metric_history of 10,000 points, ms", "lower", "{:,.1f}"),
    ("search_10k_ms", "search_runs over 10,000 runs → top 1,000 (median of 5), ms", "lower", "{:,.1f}"),
    ("rss_idle_mib", "server RSS idle after start-up (VmRSS, process tree), MiB", "lower", "{:,.1f}"),
    ("rss_after_load_mib", "server RSS after the load (VmRSS, process tree), MiB", "lower", "{:,.1f}"),
    ("pss_idle_mib", "server PSS idle after start-up (process tree), MiB", "lower", "{:,.1f}"),
    ("pss_after_load_mib", "server PSS after the load (process tree), MiB", "lower", "{:,.1f}"),
    ("processes", "server processes", "lower", "{:d}"),
]


def report(a):
    sides = {}
    for path in a.results:
        with open(path) as f:
            r = json.load(f)
        sides[r["side"]] = r

    def cell(side, key, fmt):
        r = sides.get(side)
        if r is None:
            return "not run"
        v = r["figures"].get(key)
        if v is None:
            return "failed" if "error" in r else "—"
        return fmt.format(v)

    lines = ["| metric | mlflow | kiln | ratio |", "|---|---:|---:|---:|"]
    rows = []
    for key, label, better, fmt in ROWS:
        m = sides.get("mlflow", {}).get("figures", {}).get(key)
        k = sides.get("kiln", {}).get("figures", {}).get(key)
        ratio = None
        if m and k:
            ratio = (k / m) if better == "higher" else (m / k)
        rows.append({"metric": key, "label": label, "better": better, "mlflow": m, "kiln": k,
                     "ratio": round(ratio, 2) if ratio else None})
        lines.append(f"| {label} | {cell('mlflow', key, fmt)} | {cell('kiln', key, fmt)} | "
                     f"{f'{ratio:.1f}×' if ratio else '—'} |")
    print("\n".join(lines))
    print("\nratio: how many times better kiln is (mlflow ÷ kiln for times and memory, "
          "kiln ÷ mlflow for rates).")
    for side, r in sides.items():
        if "error" in r:
            print(f"\n{side} failed: {r['error']}")
        jobs = r.get("notes", {}).get("mlflow_job_execution")
        if jobs:
            print(f"\nmlflow: MLFLOW_SERVER_ENABLE_JOB_EXECUTION={jobs}.")
        pm = r.get("notes", {}).get("populate_method")
        if pm:
            print(f"\n{side}: 10,000 search runs written by {pm} in "
                  f"{r['figures'].get('populate_10k_s', '?')} s (not compared).")
    out = {
        "benchmark": "tracking",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "rows": rows,
        "sides": sides,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(out, f, indent=2)
    print(f"\n(JSON: {a.json})")
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--side", choices=["mlflow", "kiln"], required=True)
    r.add_argument("--work", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--mlflow-bin", default=os.path.join(os.path.dirname(sys.executable), "mlflow"))
    r.add_argument("--kiln-bin")
    p = sub.add_parser("report")
    p.add_argument("--json", required=True)
    p.add_argument("results", nargs="+")
    a = ap.parse_args()
    if a.cmd == "run":
        if a.side == "kiln" and not a.kiln_bin:
            ap.error("--kiln-bin is required for --side kiln")
        return run_side(a)
    return report(a)


if __name__ == "__main__":
    sys.exit(main())
