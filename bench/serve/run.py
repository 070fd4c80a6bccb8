"""The serving benchmark's runner: starts each server, checks its answers,
loads it with wrk, and prints the table.

    run.py --work DIR --out serve.json --kiln-bin K --bench-bin B --mlflow-bin M
           [--duration 10] [--only floor,kiln,mlflow]

DIR is what prepare.py wrote (model.txt, mlflow-model/, one.json,
batch.json, expected.json). Sides, one after the other on the same machine:

  floor   `kiln-bench hello --port P`: axum answering a fixed prediction
  kiln    `kiln serve lc@1 --port P` in a project where `kiln models import`
          registered model.txt (defaults: every prediction logged), then
          once more with `--sample 0` for one run at c=32, and twice for the
          memory per model (1 deployment, then 4 of the same model)
  mlflow  `mlflow models serve -m DIR/mlflow-model --env-manager local`

bench/serve/README.md says what each figure is and how it is measured.
"""

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import procs  # noqa: E402
from procs import free_port, tail, tree_cpu_s, tree_pids  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "post.lua")
WARMUP_S = 2
CONCURRENCY = [1, 8, 32]
BATCH_CONCURRENCY = 8
TOLERANCE = 1e-6
MODELS_FOR_MEMORY = 4
# The kiln --sample 0 runs, and the run of the others they compare with.
SAMPLE0 = {"c32_sample0": "c32", "batch_sample0": "batch",
           "rss_after_load_sample0_mib": "rss_after_load_mib"}


def log(msg):
    print(f"[bench serve] {msg}", file=sys.stderr, flush=True)








def tree_memory(root):
    """Sum of VmRSS over the process tree (MiB), and the number of processes."""
    rss_kb = procs = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss_kb += int(line.split()[1])
                        procs += 1
        except OSError:
            pass
    return round(rss_kb / 1024, 1), procs




def post(url, body, timeout=30):
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


class Server:
    """One server process (and its children), started in its own session so
    that stopping it stops the whole tree."""

    def __init__(self, name, cmd, cwd, work, env=None):
        self.name, self.cmd, self.cwd, self.work, self.env = name, cmd, cwd, work, env
        self.proc = None

    def start(self, first_body, path="/invocations", timeout=180):
        """Spawns the server and polls POST `path` with `first_body` every
        20 ms; returns the seconds from the spawn to the first 200."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [a.replace("{PORT}", str(self.port)) for a in self.cmd]
        self.log = os.path.join(self.work, f"{self.name}.log")
        logf = open(self.log, "wb")
        t = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, stdout=logf, stderr=subprocess.STDOUT,
                                     env=self.env, start_new_session=True)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before answering; "
                                   f"see {self.log}: {tail(self.log)}")
            try:
                status, _ = post(self.url + path, first_body, timeout=5)
                if status == 200:
                    return time.perf_counter() - t
            except (OSError, urllib.error.HTTPError):
                pass
            if time.perf_counter() - t > timeout:
                raise RuntimeError(f"{self.name}: no answer after {timeout} s; see {self.log}")
            time.sleep(0.02)

    def stop(self):
        procs.stop_group(self.proc)


def wrk(url, body_path, connections, duration):
    """One wrk run; returns its figures (from post.lua's done()) and wrk's own CPU."""
    # One wrk thread: it shares the 2 cores with the server, and one thread
    # sends far more than any of these servers answers.
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
           "--latency", "-s", LUA, url + "/invocations"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "BODY": body_path},
                       timeout=duration + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = re.search(r"^WRK_JSON (\{.*\})$", r.stdout, re.M)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stderr.strip() or r.stdout[-500:]}")
    out = json.loads(m.group(1))
    out["wrk_cpu_s"] = round((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), 2)
    return out


def load(srv, body_path, connections, duration, rows_per_request=1):
    """A warm-up of WARMUP_S, then the measured run with the server's CPU
    time read before and after."""
    wrk(srv.url, body_path, connections, WARMUP_S)
    cpu0 = tree_cpu_s(srv.proc.pid)
    w = wrk(srv.url, body_path, connections, duration)
    cpu = tree_cpu_s(srv.proc.pid) - cpu0
    secs = w["duration_us"] / 1e6
    ok = w["requests"] - w["non2xx"]
    fig = {
        "connections": connections,
        "requests": w["requests"],
        "requests_per_s": round(ok / secs, 1),
        "rows_per_s": round(ok * rows_per_request / secs, 1) if rows_per_request else None,
        "p50_ms": round(w["p50_us"] / 1000, 3),
        "p90_ms": round(w["p90_us"] / 1000, 3),
        "p99_ms": round(w["p99_us"] / 1000, 3),
        "max_ms": round(w["max_us"] / 1000, 3),
        "non2xx": w["non2xx"],
        "socket_errors": w["connect_errors"] + w["read_errors"] + w["write_errors"] + w["timeouts"],
        "server_cpu_s": round(cpu, 2),
        # The clock tick (10 ms) bounds the resolution of the numerator.
        "cpu_ms_per_request": round(cpu * 1000 / ok, 4) if ok else None,
        "server_cores_busy": round(cpu / secs, 2),
        "wrk_cpu_s": w["wrk_cpu_s"],
    }
    return fig


def close(a, b):
    return len(a) == len(b) and all(abs(float(x) - float(y)) <= TOLERANCE for x, y in zip(a, b))


def check_answers(side, srv, work, expected, notes):
    """Both servers must give LightGBM's own answers for the request rows
    before anything is timed."""
    one = open(os.path.join(work, "one.json"), "rb").read()
    batch = open(os.path.join(work, "batch.json"), "rb").read()
    got_one = json.loads(post(srv.url + "/invocations", one)[1])["predictions"]
    got = json.loads(post(srv.url + "/invocations", batch)[1])["predictions"]
    if len(got_one) != 1 or len(got) != len(expected["batch"]):
        raise RuntimeError(f"{side}: /invocations answered {len(got_one)} and {len(got)} predictions "
                           f"for 1 and {len(expected['batch'])} rows")
    if all(isinstance(v, (int, float)) for v in got):
        if not close(got, expected["batch"]) or not close(got_one, expected["one"]):
            worst = max(abs(float(x) - y) for x, y in zip(got, expected["batch"]))
            raise RuntimeError(f"{side}: /invocations differs from LightGBM by up to {worst:g}")
        notes["invocations_answer"] = "probabilities (matching LightGBM to 1e-6)"
        return
    raise RuntimeError(f"{side}: /invocations answered {got[:3]!r}…, not LightGBM's probabilities")


def measure_side(side, srv, a, work, expected, fig, notes):
    one_path = os.path.join(work, "one.json")
    batch_path = os.path.join(work, "batch.json")
    one = open(one_path, "rb").read()
    log(f"{side}: starting")
    fig["cold_start_s"] = round(srv.start(one), 3)
    log(f"{side}: first prediction after {fig['cold_start_s']} s")
    if side != "floor":
        check_answers(side, srv, work, expected, notes)
    time.sleep(1)
    fig["rss_idle_mib"], fig["processes"] = tree_memory(srv.proc.pid)
    for c in CONCURRENCY:
        r = load(srv, one_path, c, a.duration)
        fig[f"c{c}"] = r
        log(f"{side}: c={c}: {r['requests_per_s']:,.0f} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
            f"{r['cpu_ms_per_request']} ms CPU/request")
    # The floor reads the rows but predicts nothing: no rows/s for it.
    rows = None if side == "floor" else len(expected["batch"])
    r = load(srv, batch_path, BATCH_CONCURRENCY, a.duration, rows_per_request=rows)
    fig["batch"] = r
    log(f"{side}: batch of {len(expected['batch'])}, c={BATCH_CONCURRENCY}: "
        f"{r['requests_per_s']:,.1f} req/s, "
        f"p99 {r['p99_ms']} ms")
    fig["rss_after_load_mib"], _ = tree_memory(srv.proc.pid)


def run_floor(a, work, expected):
    res = {"side": "floor", "ok": False, "figures": {}, "notes": {}}
    srv = Server("floor", [a.bench_bin, "hello", "--port", "{PORT}"], work, work)
    try:
        measure_side("floor", srv, a, work, expected, res["figures"], res["notes"])
        res["ok"] = True
    except Exception as e:  # noqa: BLE001 - a failed side is reported, the others still run
        res["error"] = f"{type(e).__name__}: {e}"
        log(f"floor: FAILED: {res['error']}")
    finally:
        srv.stop()
    return res


def kiln(a, *args, cwd):
    r = subprocess.run([a.kiln_bin, *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kiln {' '.join(args)} failed: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def run_kiln(a, work, expected):
    res = {"side": "kiln", "ok": False, "figures": {}, "notes": {}}
    fig, notes = res["figures"], res["notes"]
    project = os.path.join(work, "kiln")
    one_path = os.path.join(work, "one.json")
    one = open(one_path, "rb").read()
    serve = [a.kiln_bin, "serve", "--host", "127.0.0.1", "--port", "{PORT}"]
    srv = None
    try:
        notes["version"] = kiln(a, "--version", cwd=work).strip()
        shutil.rmtree(project, ignore_errors=True)
        kiln(a, "init", "-q", project, cwd=work)
        kiln(a, "models", "import", "lc", os.path.join(work, "model.txt"), "-q", cwd=project)
        srv = Server("kiln", serve + ["lc@1"], project, work)
        measure_side("kiln", srv, a, work, expected, fig, notes)
        srv.stop()

        # The same c=32 run without the prediction log.
        srv = Server("kiln-sample0", serve + ["--sample", "0", "lc@1"], project, work)
        srv.start(one)
        r = load(srv, one_path, 32, a.duration)
        fig["c32_sample0"] = r
        log(f"kiln --sample 0: c=32: {r['requests_per_s']:,.0f} req/s, p99 {r['p99_ms']} ms, "
            f"{r['cpu_ms_per_request']} ms CPU/request")
        r = load(srv, os.path.join(work, "batch.json"), BATCH_CONCURRENCY, a.duration,
                 rows_per_request=len(expected["batch"]))
        fig["batch_sample0"] = r
        fig["rss_after_load_sample0_mib"], _ = tree_memory(srv.proc.pid)
        log(f"kiln --sample 0: batch, c={BATCH_CONCURRENCY}: {r['requests_per_s']:,.1f} req/s, "
            f"{r['cpu_ms_per_request']} ms CPU/request")
        srv.stop()

        # Memory per loaded model: the same model under 1, then N deployment
        # names (each deployment loads its own copy), after one request each.
        rss = {}
        for n in (1, MODELS_FOR_MEMORY):
            names = [f"m{i}" for i in range(n)]
            srv = Server(f"kiln-{n}models", serve + [f"{m}=lc@1" for m in names], project, work)
            # With several deployments, /invocations needs ?deployment=.
            srv.start(one, path=f"/invocations?deployment={names[0]}")
            for m in names:
                post(f"{srv.url}/invocations?deployment={m}", one)
            time.sleep(1)
            rss[n], _ = tree_memory(srv.proc.pid)
            srv.stop()
        fig["rss_1_model_mib"] = rss[1]
        fig[f"rss_{MODELS_FOR_MEMORY}_models_mib"] = rss[MODELS_FOR_MEMORY]
        fig["memory_per_model_mib"] = round((rss[MODELS_FOR_MEMORY] - rss[1]) / (MODELS_FOR_MEMORY - 1), 2)
        res["ok"] = True
    except Exception as e:  # noqa: BLE001
        res["error"] = f"{type(e).__name__}: {e}"
        log(f"kiln: FAILED: {res['error']}")
    finally:
        if srv:
            srv.stop()
    return res


def run_mlflow(a, work, expected):
    res = {"side": "mlflow", "ok": False, "figures": {}, "notes": {}}
    env = {**os.environ, "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
    # The venv's bin first: `mlflow models serve` runs `uvicorn` from PATH.
    env["PATH"] = os.path.dirname(a.mlflow_bin) + os.pathsep + env.get("PATH", "")
    workers = env.get("MLFLOW_MODELS_WORKERS")
    cmd = [a.mlflow_bin, "models", "serve", "-m", os.path.join(work, "mlflow-model"),
           "--env-manager", "local", "--host", "127.0.0.1", "--port", "{PORT}"]
    res["notes"]["workers"] = f"{workers} (MLFLOW_MODELS_WORKERS)" if workers else "1 (the default)"
    srv = Server("mlflow", cmd, work, work, env=env)
    try:
        measure_side("mlflow", srv, a, work, expected, res["figures"], res["notes"])
        # MLflow serves one model per server: each more model is another tree like this one.
        res["figures"]["memory_per_model_mib"] = res["figures"]["rss_idle_mib"]
        res["ok"] = True
    except Exception as e:  # noqa: BLE001
        res["error"] = f"{type(e).__name__}: {e}"
        log(f"mlflow: FAILED: {res['error']}")
    finally:
        srv.stop()
    res["notes"]["version"] = expected.get("mlflow")
    return res


ROWS = [  # label, path in figures, better, format
    ("cold start: spawn → first prediction, s", ("cold_start_s",), "lower", "{:.3f}"),
    ("1 row, c=1: requests/s", ("c1", "requests_per_s"), "higher", "{:,.0f}"),
    ("1 row, c=1: p50 latency, ms", ("c1", "p50_ms"), "lower", "{:.3f}"),
    ("1 row, c=1: p99 latency, ms", ("c1", "p99_ms"), "lower", "{:.3f}"),
    ("1 row, c=8: requests/s", ("c8", "requests_per_s"), "higher", "{:,.0f}"),
    ("1 row, c=8: p50 latency, ms", ("c8", "p50_ms"), "lower", "{:.3f}"),
    ("1 row, c=8: p90 latency, ms", ("c8", "p90_ms"), "lower", "{:.3f}"),
    ("1 row, c=8: p99 latency, ms", ("c8", "p99_ms"), "lower", "{:.3f}"),
    ("1 row, c=32: requests/s", ("c32", "requests_per_s"), "higher", "{:,.0f}"),
    ("1 row, c=32: p50 latency, ms", ("c32", "p50_ms"), "lower", "{:.3f}"),
    ("1 row, c=32: p99 latency, ms", ("c32", "p99_ms"), "lower", "{:.3f}"),
    ("1 row, c=32: server CPU per request, ms", ("c32", "cpu_ms_per_request"), "lower", "{:.4f}"),
    ("1 row, c=32, kiln --sample 0: requests/s", ("c32_sample0", "requests_per_s"), "higher", "{:,.0f}"),
    ("1 row, c=32, kiln --sample 0: p99, ms", ("c32_sample0", "p99_ms"), "lower", "{:.3f}"),
    ("1 row, c=32, kiln --sample 0: CPU/request, ms", ("c32_sample0", "cpu_ms_per_request"), "lower",
     "{:.4f}"),
    ("1,000 rows, c=8: requests/s", ("batch", "requests_per_s"), "higher", "{:,.1f}"),
    ("1,000 rows, c=8: rows/s", ("batch", "rows_per_s"), "higher", "{:,.0f}"),
    ("1,000 rows, c=8: p50 latency, ms", ("batch", "p50_ms"), "lower", "{:.2f}"),
    ("1,000 rows, c=8: p99 latency, ms", ("batch", "p99_ms"), "lower", "{:.2f}"),
    ("1,000 rows, c=8: server CPU per request, ms", ("batch", "cpu_ms_per_request"), "lower", "{:.3f}"),
    ("1,000 rows, c=8, kiln --sample 0: rows/s", ("batch_sample0", "rows_per_s"), "higher", "{:,.0f}"),
    ("1,000 rows, c=8, kiln --sample 0: CPU/request, ms", ("batch_sample0", "cpu_ms_per_request"), "lower",
     "{:.3f}"),
    ("RSS idle after start (process tree), MiB", ("rss_idle_mib",), "lower", "{:,.1f}"),
    ("RSS after the load (process tree), MiB", ("rss_after_load_mib",), "lower", "{:,.1f}"),
    ("RSS after c=32 and batch runs, kiln --sample 0, MiB", ("rss_after_load_sample0_mib",), "lower",
     "{:,.1f}"),
    ("memory per loaded model, MiB", ("memory_per_model_mib",), "lower", "{:,.2f}"),
    ("server processes", ("processes",), "lower", "{:d}"),
]


def get(res, path):
    v = (res or {}).get("figures", {})
    for p in path:
        if not isinstance(v, dict):
            return None
        v = v.get(p)
    return v


def machine():
    try:
        wrk_v = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    except OSError:
        wrk_v = ""
    return {**procs.machine(), "wrk": wrk_v.strip()}


times = procs.times


def report(a, sides, expected):
    m, k, f = sides.get("mlflow"), sides.get("kiln"), sides.get("floor")

    def cell(res, path, fmt):
        if res is None:
            return "not run"
        v = get(res, path)
        if v is None:
            return "failed" if "error" in res else "—"
        return fmt.format(v)

    def ratio(x, y, better):
        if not x or not y:
            return None
        return x / y if better == "higher" else y / x

    lines = ["| metric | mlflow | kiln | floor | kiln/mlflow | kiln/floor |",
             "|---|---:|---:|---:|---:|---:|"]
    rows = []
    for label, path, better, fmt in ROWS:
        mv, kv, fv = get(m, path), get(k, path), get(f, path)
        if path[0] in SAMPLE0:
            # kiln only; compared with the others' same run (no log there to switch off).
            mv, fv = get(m, (SAMPLE0[path[0]],) + path[1:]), get(f, (SAMPLE0[path[0]],) + path[1:])
        r_m, r_f = ratio(kv, mv, better), ratio(kv, fv, better)
        rows.append({"metric": ".".join(path), "label": label, "better": better, "mlflow": mv, "kiln": kv,
                     "floor": fv, "kiln_vs_mlflow": round(r_m, 3) if r_m else None,
                     "kiln_vs_floor": round(r_f, 3) if r_f else None})
        mc = fmt.format(mv) if mv is not None else cell(m, path, fmt)
        fc = fmt.format(fv) if fv is not None else cell(f, path, fmt)
        if path[0] in SAMPLE0:
            # Their figure for the same run again, in brackets: what the ratios compare with.
            mc = f"({mc})" if mv is not None else mc
            fc = f"({fc})" if fv is not None else fc
        lines.append(f"| {label} | {mc} | {cell(k, path, fmt)} | {fc} | {times(r_m)} | {times(r_f)} |")
    print("\n".join(lines))
    print("\nkiln/mlflow and kiln/floor: how many times better kiln is (a rate ÷ the other's; "
          "the other's time or memory ÷ kiln's). The `kiln --sample 0` rows compare with the "
          "others' figures for the same load (in brackets). Load: wrk -t1, on the same 2 cores as "
          "the server.")

    targets = {}
    rm = ratio(get(k, ("c32", "requests_per_s")), get(m, ("c32", "requests_per_s")), "higher")
    if rm:
        targets["throughput_c32_vs_mlflow_ge_200x"] = {"value": round(rm, 1), "met": rm >= 200}
    p99 = get(k, ("c8", "p99_ms"))
    if p99 is not None:
        targets["p99_c8_under_2ms"] = {"value": p99, "met": p99 < 2}
    rf = ratio(get(k, ("c32", "requests_per_s")), get(f, ("c32", "requests_per_s")), "higher")
    if rf:
        targets["throughput_c32_ge_half_floor"] = {"value": round(rf, 2), "met": rf >= 0.5}
    cs = get(k, ("cold_start_s",))
    if cs is not None:
        targets["cold_start_under_1s"] = {"value": cs, "met": cs < 1}
    if targets:
        print("\ntargets (kiln): " + "; ".join(
            f"{name} {'met' if t['met'] else 'NOT met'} ({t['value']})" for name, t in targets.items()))
    busy = [f"{name} {get(res, ('c32', 'server_cores_busy'))} + "
            f"{round(get(res, ('c32', 'wrk_cpu_s')) / a.duration, 2)}"
            for name, res in sides.items() if get(res, ("c32", "server_cores_busy")) is not None]
    if busy:
        print("\ncores busy during the c=32 run, server + wrk (of 2): " + ", ".join(busy) + ".")
    for name, res in sides.items():
        if "error" in res:
            print(f"\n{name} failed: {res['error']}")
    if k and k.get("notes", {}).get("invocations_answer"):
        print(f"\nkiln /invocations answers {k['notes']['invocations_answer']}.")
    if m and m.get("notes"):
        print(f"\nmlflow: {m['notes'].get('workers', '?')} uvicorn worker(s); "
              f"/invocations answers {m['notes'].get('invocations_answer', '?')}.")
    if k and get(k, ("rss_1_model_mib",)) is not None:
        print(f"\nkiln memory per model: (RSS with {MODELS_FOR_MEMORY} deployments of the model "
              f"{get(k, (f'rss_{MODELS_FOR_MEMORY}_models_mib',))} MiB − RSS with 1 "
              f"{get(k, ('rss_1_model_mib',))} MiB) ÷ {MODELS_FOR_MEMORY - 1}; mlflow: one server per "
              "model, so its whole idle tree.")
    out = {
        "benchmark": "serve",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "duration_s": a.duration,
        "warmup_s": WARMUP_S,
        "machine": machine(),
        "model": {key: expected.get(key) for key in ("trees", "rows_trained", "positives", "columns",
                                                     "lightgbm", "mlflow", "pandas")},
        "rows": rows,
        "targets": targets,
        "sides": sides,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(out, fh, indent=2)
    print(f"\n(JSON: {a.out})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--kiln-bin", required=True)
    ap.add_argument("--bench-bin", required=True)
    ap.add_argument("--mlflow-bin", required=True)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--only", default="floor,kiln,mlflow")
    a = ap.parse_args()
    work = os.path.abspath(a.work)
    # The servers run in other directories.
    a.kiln_bin, a.bench_bin, a.mlflow_bin = (os.path.abspath(b) for b in (a.kiln_bin, a.bench_bin,
                                                                         a.mlflow_bin))
    with open(os.path.join(work, "expected.json")) as fh:
        expected = json.load(fh)
    sides = {}
    for side in a.only.split(","):
        run = {"floor": run_floor, "kiln": run_kiln, "mlflow": run_mlflow}[side]
        sides[side] = run(a, work, expected)
    report(a, sides, expected)
    return 0 if any(r["ok"] for r in sides.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
