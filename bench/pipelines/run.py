#!/usr/bin/env python3
"""Drives bench/pipelines.sh: times kiln's pipeline runner (and DVC's) on
100-step no-op DAGs and writes one JSON line per timed run; `report` turns
those lines into the markdown table. Standard library only.

  run.py run --kiln-bin K --work DIR --out FILE [--sides local,sqlite,postgres,dvc]
             [--reps N] [--dvc-reps N] [--dvc-bin D] [--postgres URL --s3 URL]
  run.py report FILE

Each side runs one warm-up of every measurement, then --reps (DVC:
--dvc-reps) timed rounds,
the measurements interleaved within a round. A timed run is checked: every
step must have run (or, for the cached figures, been reused), or the side
stops with the tool's output.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

STEPS = 100
DAGS = ("chain", "fan")
TIMEOUT = 600


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- the DAGs -----------------------------------------------------------------

def dag(shape):
    """[(name, needs)] for a 100-step chain or fan-out (root, 98, join)."""
    names = [f"s{i:03d}" for i in range(STEPS)]
    if shape == "chain":
        return [(n, [names[i - 1]] if i else []) for i, n in enumerate(names)]
    middle = names[1:-1]
    return [(names[0], [])] + [(n, [names[0]]) for n in middle] + [(names[-1], middle)]


def kiln_yaml(project):
    out = [f"project: {project}", "pipelines:"]
    for shape in DAGS:
        for pipeline, cache in ((shape, False), (f"{shape}_cached", True)):
            out += [f"  {pipeline}:", "    steps:"]
            for name, needs in dag(shape):
                fields = ['run: "true"']
                if not cache:
                    fields.append("cache: false")
                if needs:
                    fields.append(f"needs: [{', '.join(needs)}]")
                out.append(f"      {name}: {{ {', '.join(fields)} }}")
    return "\n".join(out) + "\n"


def dvc_yaml(shape):
    # DVC chains stages through files: each stage writes its own out (`echo`,
    # a shell built-in like `true`, so no extra process) and depends on the
    # outs of the stages it needs. Outs are not cached (`cache: false`), the
    # least work DVC can be asked to do per stage.
    out = ["stages:"]
    for name, needs in dag(shape):
        out += [f"  {name}:", f"    cmd: echo {name} > {name}.out"]
        if needs:
            out.append("    deps:")
            out += [f"      - {n}.out" for n in needs]
        out += ["    outs:", f"      - {name}.out:", "          cache: false"]
    return "\n".join(out) + "\n"


# ---- processes ----------------------------------------------------------------

def call(cmd, cwd, env, check=True):
    """Runs cmd; returns (wall seconds, stdout, stderr)."""
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    wall = time.perf_counter() - t
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return wall, p.stdout, p.stderr


def settle():
    # No writeback of earlier runs' dirty pages during the next measurement.
    os.sync()


class Results:
    def __init__(self, path):
        self.f = open(path, "a")

    def add(self, **row):
        self.f.write(json.dumps(row) + "\n")
        self.f.flush()
        extra = ""
        if row.get("claim_ms"):
            c = sorted(row["claim_ms"])
            extra = f", claim median {statistics.median(c):.0f} ms, max {c[-1]} ms"
        log(f"  rep {row['rep']}, {row['runner']} {row['store']} {row['dag']} {row['mode']}: "
            f"{row['wall_s']:.3f} s{extra}")


# ---- kiln ---------------------------------------------------------------------

class Kiln:
    def __init__(self, bin, root, store):
        self.bin, self.root, self.store = bin, root, store
        self.env = dict(os.environ, NO_COLOR="1", KILN_USER="bench")
        for v in ("KILN_STORE", "KILN_OBJECTS", "KILN_PROJECT", "KILN_LOG", "RUST_LOG"):
            self.env.pop(v, None)
        os.makedirs(root)
        if store == "postgres+s3":
            self.env["KILN_STORE"] = store_urls["postgres"]
            self.env["KILN_OBJECTS"] = store_urls["s3"]
        call([bin, "init", "-q"], root, self.env)
        self.project = next(
            l.split(":", 1)[1].strip()
            for l in open(os.path.join(root, "kiln.yaml"))
            if l.startswith("project:")
        )
        with open(os.path.join(root, "kiln.yaml"), "w") as f:
            f.write(kiln_yaml(self.project))
        # Workers get the stores spelled out, as on another machine.
        self.worker_env = dict(self.env, KILN_PROJECT=self.project)
        if store == "sqlite":
            self.worker_env["KILN_STORE"] = f"sqlite://{root}/.kiln/kiln.db"
            self.worker_env["KILN_OBJECTS"] = f"file://{root}/.kiln/objects"
        self.workers = []

    def run(self, pipeline, *flags):
        """Times `kiln run PIPELINE --json`; returns (wall, parsed output)."""
        settle()
        wall, out, _ = call([self.bin, "run", pipeline, "--json", *flags], self.root, self.env)
        return wall, json.loads(out)

    def show(self, run_id):
        _, out, _ = call([self.bin, "pipelines", "show", run_id, "--json"], self.root, self.env)
        return json.loads(out)

    def start_workers(self, n, poll):
        for i in range(1, n + 1):
            d = os.path.join(self.root + "-workers", f"w{i}")
            os.makedirs(d, exist_ok=True)
            logf = open(os.path.join(d, "worker.log"), "w")
            p = subprocess.Popen(
                [self.bin, "worker", "--project", self.project, "--name", f"w{i}",
                 "--lease", "1s", "--poll", poll],
                cwd=d, env=self.worker_env, stdout=subprocess.DEVNULL, stderr=logf,
            )
            self.workers.append((p, logf, d))

    def stop_workers(self):
        for p, logf, _ in self.workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, logf, _ in self.workers:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            logf.close()
        self.workers = []

    def worker_logs(self):
        tails = []
        for _, _, d in self.workers:
            with open(os.path.join(d, "worker.log")) as f:
                tails.append(f"{d}:\n" + "".join(f.readlines()[-10:]))
        return "\n".join(tails)


def expect(result, status, what):
    got = [s["status"] for s in result["steps"]]
    bad = [s for s in got if s != status]
    if len(got) != STEPS or bad:
        raise RuntimeError(f"{what}: expected {STEPS} steps {status}, got "
                           f"{len(got)} steps, {len(bad)} not {status} ({sorted(set(bad))})")


def span_s(result):
    r = result["run"]
    return (r["finished_at"] - r["created_at"]) / 1000 if r.get("finished_at") else None


def local_side(args, results):
    k = Kiln(args.kiln_bin, os.path.join(args.work, "local"), "sqlite")
    plan = [(d, m) for d in DAGS for m in ("run", "cached")]
    for rep in range(0, args.reps + 1):  # rep 0: warm-up (fills the cache of *_cached)
        for shape, mode in plan:
            pipeline = shape if mode == "run" else f"{shape}_cached"
            wall, out = k.run(pipeline)
            if rep == 0:
                continue
            expect(out, "succeeded" if mode == "run" else "cached", f"kiln run {pipeline}")
            results.add(runner="kiln", store="sqlite", dag=shape, mode=mode, rep=rep,
                        wall_s=wall, span_s=span_s(out), steps=STEPS, jobs=os.cpu_count())


def remote_side(args, results, store):
    k = Kiln(args.kiln_bin, os.path.join(args.work, f"remote-{store.replace('+', '-')}"), store)
    k.start_workers(args.workers, args.poll)
    try:
        for rep in range(0, args.reps + 1):  # rep 0: warm-up
            for shape in DAGS:
                wall, out = k.run(shape, "--remote")
                if rep == 0:
                    continue
                expect(out, "succeeded", f"kiln run {shape} --remote")
                shown = k.show(out["run"]["id"])
                claim = [s["started_at"] - s["queued_at"] for s in shown["steps"]]
                # From the last needed step's finish to this step's queueing:
                # the runner noticing a finish and queueing what it unblocks
                # (with --remote every ready step is queued at once).
                done = {s["step"]: s["finished_at"] for s in shown["steps"]}
                needs = dict(dag(shape))
                handoff = [s["queued_at"] - max(done[n] for n in needs[s["step"]])
                           for s in shown["steps"] if needs[s["step"]]]
                workers = sorted({s["worker"] for s in shown["steps"]})
                results.add(runner="kiln --remote", store=store, dag=shape, mode="run", rep=rep,
                            wall_s=wall, span_s=span_s(out), steps=STEPS, claim_ms=claim, handoff_ms=handoff,
                            workers=workers, poll=args.poll)
    except Exception:
        log(k.worker_logs())
        raise
    finally:
        k.stop_workers()


def dvc_side(args, results):
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    dirs = {}
    for shape in DAGS:
        d = os.path.join(args.work, f"dvc-{shape}")
        os.makedirs(d)
        call([args.dvc_bin, "init", "-q", "--no-scm"], d, env)
        call([args.dvc_bin, "config", "core.analytics", "false"], d, env)
        with open(os.path.join(d, "dvc.yaml"), "w") as f:
            f.write(dvc_yaml(shape))
        dirs[shape] = d
    plan = [(d, m) for d in DAGS for m in ("run", "cached")]
    for rep in range(0, args.dvc_reps + 1):  # rep 0: warm-up (writes dvc.lock)
        for shape, mode in plan:
            cmd = [args.dvc_bin, "repro"] + (["--force"] if mode == "run" else [])
            settle()
            wall, out, _ = call(cmd, dirs[shape], env)
            if rep == 0:
                continue
            ran = out.count("Running stage")
            skipped = out.count("didn't change, skipping")
            want = (STEPS, 0) if mode == "run" else (0, STEPS)
            if (ran, skipped) != want:
                raise RuntimeError(f"dvc repro {mode}: {ran} stages ran, {skipped} skipped:\n{out[-2000:]}")
            results.add(runner="dvc repro", store="dvc", dag=shape, mode=mode, rep=rep,
                        wall_s=wall, steps=STEPS)


store_urls = {}


def cmd_run(args):
    sides = args.sides.split(",")
    store_urls.update(postgres=args.postgres, s3=args.s3)
    results = Results(args.out)
    failed = []
    for side in sides:
        log(f"{side}...")
        try:
            if side == "local":
                local_side(args, results)
            elif side == "sqlite":
                remote_side(args, results, "sqlite")
            elif side == "postgres":
                remote_side(args, results, "postgres+s3")
            elif side == "dvc":
                dvc_side(args, results)
        except Exception as e:  # one side failing leaves the others' figures
            log(f"{side} failed: {e}")
            failed.append(side)
    if failed:
        log(f"failed sides: {', '.join(failed)}")
    return 1 if failed else 0


# ---- report -------------------------------------------------------------------

def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q * (len(v) - 1))))]


def cmd_report(args):
    rows = [json.loads(l) for l in open(args.file) if l.strip()]
    if not rows:
        print("no results")
        return 1
    groups = {}
    for r in rows:
        groups.setdefault((r["runner"], r["store"], r["dag"], r["mode"]), []).append(r)
    reps = max(len(g) for g in groups.values())
    here = os.path.dirname(os.path.abspath(__file__))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=here).stdout.strip()
    if commit and subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, cwd=here).stdout.strip():
        commit += " with uncommitted changes"
    print(f"100 no-op steps (`true`), {os.cpu_count()} cores, median of {reps} runs after a warm-up"
          f"{f', kiln at {commit}' if commit else ''}\n")
    print("| DAG | runner | store | steps | wall s (min–max) | per step ms | claim latency median / p95 ms | needs done → queued, median / p95 ms |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    labels = {"chain": "chain of 100", "fan": "fan-out 1 → 98 → 1"}
    order = [("kiln", "sqlite"), ("kiln --remote", "sqlite"), ("kiln --remote", "postgres+s3"), ("dvc repro", "dvc")]
    store_label = {"sqlite": "SQLite + folder", "postgres+s3": "PostgreSQL + S3 (moto)", "dvc": "files"}
    summary = {}
    for shape in DAGS:
        for runner, store in order:
            for mode in ("run", "cached"):
                g = groups.get((runner, store, shape, mode))
                if not g:
                    continue
                walls = [r["wall_s"] for r in g]
                med = statistics.median(walls)
                summary[(runner, store, shape, mode)] = med
                what = "all run" if mode == "run" else "all cached"
                if runner == "dvc repro":
                    what = "all run (`--force`)" if mode == "run" else "all unchanged"
                if runner == "kiln --remote":
                    what += f", {len(g[0].get('workers', []))} workers, poll {g[0].get('poll')}"
                claim = handoff = ""
                if any(r.get("handoff_ms") for r in g):
                    h = [x for r in g for x in r["handoff_ms"]]
                    handoff = f"{statistics.median(h):.0f} / {pct(h, 0.95):.0f}"
                if any(r.get("claim_ms") for r in g):
                    c = [x for r in g for x in r["claim_ms"]]
                    claim = f"{statistics.median(c):.0f} / {pct(c, 0.95):.0f}"
                    summary[(runner, store, shape, "claim")] = (statistics.median(c), pct(c, 0.95), max(c))
                print(f"| {labels[shape]} | {runner} | {store_label[store]} | {what} | "
                      f"{med:.3f} ({min(walls):.3f}–{max(walls):.3f}) | {med * 1000 / STEPS:.1f} | {claim} | {handoff} |")
    print()
    for shape in DAGS:
        s = summary.get(("kiln", "sqlite", shape, "run"))
        if s is not None:
            print(f"- 100 local no-op steps, {labels[shape]}: {s:.3f} s "
                  f"(target: under 1 s, {'met' if s < 1 else 'missed'})")
    # Claim latency is measured on the chain, where one step is queued at a
    # time and a worker is free: in the fan-out, started − queued is mostly
    # the wait behind the other 97 steps for one of the two workers.
    for store in ("sqlite", "postgres+s3"):
        c = [x for r in rows if r["runner"] == "kiln --remote" and r["store"] == store
             and r["dag"] == "chain" for x in r["claim_ms"]]
        if c:
            p95 = pct(c, 0.95)
            print(f"- worker claim latency (a free worker), {store_label[store]}: median "
                  f"{statistics.median(c):.0f} ms, p95 {p95:.0f} ms, max {max(c)} ms over {len(c)} steps "
                  f"(target: under 50 ms, {'met' if p95 < 50 else 'missed'} at p95)")
    for shape in DAGS:
        k, d = summary.get(("kiln", "sqlite", shape, "run")), summary.get(("dvc repro", "dvc", shape, "run"))
        if k and d:
            print(f"- {labels[shape]}: dvc repro --force / kiln run = {d / k:.1f}x")
        k, d = summary.get(("kiln", "sqlite", shape, "cached")), summary.get(("dvc repro", "dvc", shape, "cached"))
        if k and d:
            print(f"- {labels[shape]}, nothing to do: dvc repro / kiln run = {d / k:.1f}x")
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--kiln-bin", required=True)
    r.add_argument("--dvc-bin")
    r.add_argument("--work", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--sides", default="local,sqlite,postgres,dvc")
    r.add_argument("--reps", type=int, default=5)
    r.add_argument("--dvc-reps", type=int, default=3)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--poll", default="25ms")
    r.add_argument("--postgres")
    r.add_argument("--s3")
    p = sub.add_parser("report")
    p.add_argument("file")
    args = ap.parse_args()
    if args.cmd == "run":
        return cmd_run(args)
    return cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
