"""The drift benchmark's runner: runs each side on the same files, one after
the other, measures each process, scores its verdicts against truth.json and
prints the tables.

    run.py --data 100k=DIR[,1M=DIR] --out drift.json --py PYTHON --kiln-bin K
           [--only kiln,floor,evidently] [--reps 3]

Each DIR is what gen.py wrote (reference.parquet, current.parquet,
truth.json). Sides, per size, in this order:

  kiln       `K monitor drift REF CUR --json` (its default threads: all cores)
  kiln-1t    the same with RAYON_NUM_THREADS=1 (run with kiln)
  floor      `PYTHON floor.py REF CUR` (numpy/scipy)
  evidently  `PYTHON evidently_run.py REF CUR` (DataDriftPreset)

kiln, kiln-1t and floor run --reps times (default 3; the table has the run
with the median wall time), Evidently once (about 10 minutes at 1M rows).
bench/drift/README.md says what each figure is and how it is measured.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import procs  # noqa: E402
from procs import machine, tail, tree_pids  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SIDES = ["kiln", "kiln-1t", "floor", "evidently"]
RSS_POLL_S = 0.05
# Evidently's method names, shortened for the per-column table.
SHORT = {"Wasserstein distance (normed)": "W/sd", "Jensen-Shannon distance": "JS"}


def log(msg):
    print(f"[bench drift] {msg}", file=sys.stderr, flush=True)


def children(pid):
    """Direct children of pid from /proc/PID/task/*/children; None when the
    kernel does not offer that file (then procs.tree_pids scans /proc)."""
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except FileNotFoundError:
        return None if not os.path.exists(f"/proc/{pid}") else []
    except OSError:
        return []
    return out


def tree_rss_kib(root):
    """Sum of VmRSS over the process tree (KiB), and the number of processes."""
    pids, frontier = [root], [root]
    while frontier:
        c = children(frontier.pop())
        if c is None:
            pids = tree_pids(root)
            break
        pids += c
        frontier += c
    rss = n = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                        n += 1
                        break
        except OSError:
            pass
    return rss, n


def warm(paths):
    """Reads the inputs once so that every side starts with them in the page
    cache (the first side would otherwise pay for the disk), then syncs."""
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 22):
                pass
    os.sync()


def measure(cmd, env, cwd, out_path, err_path):
    """Runs cmd to its end. Wall seconds from the spawn to its exit; CPU
    seconds (user + system) and the peak RSS from wait4's rusage of the
    child (its reaped descendants' CPU included); the peak of the summed RSS
    of its process tree, polled every 50 ms, in case it starts others."""
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        done = threading.Event()
        peak = {"tree_kib": 0, "procs": 0}

        def poll():
            while not done.is_set():
                rss, n = tree_rss_kib(p.pid)
                peak["tree_kib"] = max(peak["tree_kib"], rss)
                peak["procs"] = max(peak["procs"], n)
                done.wait(RSS_POLL_S)

        th = threading.Thread(target=poll, daemon=True)
        th.start()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        done.set()
        th.join()
        p.returncode = os.waitstatus_to_exitcode(status)
    rss_kib = max(ru.ru_maxrss, peak["tree_kib"])
    return {"exit_code": p.returncode, "wall_s": round(wall, 3),
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
            "user_s": round(ru.ru_utime, 3), "sys_s": round(ru.ru_stime, 3),
            "peak_rss_mib": round(rss_kib / 1024, 1),
            "max_rss_mib_wait4": round(ru.ru_maxrss / 1024, 1),
            "peak_tree_rss_mib_polled": round(peak["tree_kib"] / 1024, 1),
            "processes": max(peak["procs"], 1)}


def last_json(path):
    """The side's JSON: all of stdout (kiln pretty-prints), else its last
    line that parses as an object."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    try:
        out = json.loads(text)
        return out if isinstance(out, dict) else None
    except ValueError:
        pass
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    for ln in reversed(lines):
        try:
            return json.loads(ln)
        except ValueError:
            pass
    return None


def score(result, truth):
    """The side's verdicts against truth.json."""
    drifted = set(truth["drifted"])
    detected = [c["column"] for c in result.get("columns", []) if c.get("drifted")]
    checked = [c["column"] for c in result.get("columns", [])]
    return {"detected": detected,
            "hits": [c for c in detected if c in drifted],
            "missed": sorted(drifted - set(detected)),
            "false_alarms": [c for c in detected if c not in drifted],
            "columns_checked": len(checked),
            "unchecked": [c for c in truth["columns"]["numeric"] + truth["columns"]["categorical"]
                          if c not in checked]}


def side_cmd(side, a, ref, cur):
    env = dict(os.environ)
    if side in ("kiln", "kiln-1t"):
        env.pop("RAYON_NUM_THREADS", None)
        if side == "kiln-1t":
            env["RAYON_NUM_THREADS"] = "1"
        return [a.kiln_bin, "monitor", "drift", ref, cur, "--json"], env
    script = {"floor": "floor.py", "evidently": "evidently_run.py"}[side]
    return [a.py, os.path.join(HERE, script), ref, cur], env


def kiln_available(a):
    if not os.access(a.kiln_bin, os.X_OK):
        return f"{a.kiln_bin} not built"
    r = subprocess.run([a.kiln_bin, "monitor", "drift", "--help"], capture_output=True, text=True)
    if r.returncode != 0:
        return "`kiln monitor drift` not available in " + a.kiln_bin
    return None


def run_side(side, a, data, truth, work):
    ref, cur = os.path.join(data, "reference.parquet"), os.path.join(data, "current.parquet")
    cmd, env = side_cmd(side, a, ref, cur)
    reps = 1 if side == "evidently" else a.reps
    runs = []
    for i in range(reps):
        warm([ref, cur])
        out, err = os.path.join(work, f"{side}.{i}.out"), os.path.join(work, f"{side}.{i}.err")
        m = measure(cmd, env, work, out, err)
        result = last_json(out)
        # kiln: 0 = no drift, 1 = drift found, 2 = error; the Python sides: 0.
        ok_codes = (0, 1) if side.startswith("kiln") else (0,)
        if m["exit_code"] not in ok_codes or result is None:
            return {"error": f"exit code {m['exit_code']}; stderr: {tail(err, 600).strip()}",
                    "command": cmd}
        if side.startswith("kiln") and m["exit_code"] != (1 if result.get("drifted_columns") else 0):
            m["exit_code_note"] = (f"exit code {m['exit_code']} with drifted_columns = "
                                   f"{result.get('drifted_columns')}")
        log(f"{side} run {i + 1}/{reps}: {m['wall_s']} s wall, {m['cpu_s']} s CPU, "
            f"{m['peak_rss_mib']} MiB, {result.get('drifted_columns')} drifted")
        runs.append((m, result))
    walls = [m["wall_s"] for m, _ in runs]
    med = sorted(range(len(runs)), key=lambda j: walls[j])[(len(runs) - 1) // 2]
    m, result = runs[med]
    cols = result.pop("columns", [])
    return {**m, "command": cmd, "env": {"RAYON_NUM_THREADS": env.get("RAYON_NUM_THREADS")},
            "runs": [r for r, _ in runs], "wall_s_all": walls,
            "cpu_s_all": [r["cpu_s"] for r, _ in runs],
            "verdict": score({"columns": cols}, truth), "output": result, "columns": cols}


fmt_ratio = procs.times


def ratio(x, y):
    return x / y if x and y else None


def report_size(size, res, truth):
    print(f"\n### {size} rows ({truth['rows']:,} reference vs {truth['rows']:,} current, 25 columns)\n")
    lines = ["| side | wall s | CPU s | peak RSS MiB | self-timed s | detected /6 | false alarms | missed |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for side, r in res.items():
        if "error" in r:
            lines.append(f"| {side} | failed | | | | | | |")
            continue
        v = r["verdict"]
        own = r["output"].get("seconds")
        own = f"{own:.2f}" if isinstance(own, (int, float)) else "—"
        lines.append(f"| {side} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['peak_rss_mib']:,.0f} | {own} | "
                     f"{len(v['hits'])} | {len(v['false_alarms'])}"
                     f"{' (' + ', '.join(v['false_alarms']) + ')' if v['false_alarms'] else ''} | "
                     f"{', '.join(v['missed']) or '—'} |")
    print("\n".join(lines))

    ok = {s: r for s, r in res.items() if "error" not in r}
    ratios = {}
    rows = []
    for k in ("kiln", "kiln-1t"):
        if k not in ok:
            continue
        kr = ok[k]
        e, f = ok.get("evidently"), ok.get("floor")
        ratios[k] = {
            "evidently_over_kiln_wall": ratio(e and e["wall_s"], kr["wall_s"]),
            "evidently_over_kiln_cpu": ratio(e and e["cpu_s"], kr["cpu_s"]),
            "floor_over_kiln_wall": ratio(f and f["wall_s"], kr["wall_s"]),
            "floor_over_kiln_cpu": ratio(f and f["cpu_s"], kr["cpu_s"]),
            "kiln_rss_over_evidently_rss": ratio(kr["peak_rss_mib"], e and e["peak_rss_mib"]),
            "kiln_rss_over_floor_rss": ratio(kr["peak_rss_mib"], f and f["peak_rss_mib"]),
        }
        q = ratios[k]
        rows.append(f"| {k} | {fmt_ratio(q['evidently_over_kiln_wall'])} | "
                    f"{fmt_ratio(q['evidently_over_kiln_cpu'])} | {fmt_ratio(q['floor_over_kiln_wall'])} | "
                    f"{fmt_ratio(q['floor_over_kiln_cpu'])} | {fmt_ratio(q['kiln_rss_over_evidently_rss'])} | "
                    f"{fmt_ratio(q['kiln_rss_over_floor_rss'])} |")
    if rows:
        print("\n| kiln side | Evidently/kiln wall | Evidently/kiln CPU | floor/kiln wall | floor/kiln CPU | "
              "kiln RSS/Evidently RSS | kiln RSS/floor RSS |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        print("\n".join(rows))

    # Per column: each side's verdict and statistic.
    names = truth["columns"]["numeric"] + truth["columns"]["categorical"]
    shown = [s for s in ("kiln", "floor", "evidently") if s in ok]
    if shown:
        print(f"\n| column | injected drift | {' | '.join(shown)} |")
        print("|---|---|" + "---|" * len(shown))
        for name in names:
            cells = []
            for s in shown:
                c = next((c for c in ok[s]["columns"] if c["column"] == name), None)
                if c is None:
                    cells.append("not checked")
                    continue
                stat = c.get("statistic")
                pv = c.get("p_value")
                test = SHORT.get(c.get("test"), c.get("test", "?"))
                txt = f"{test} {stat:.3g}" if isinstance(stat, (int, float)) else str(c.get("test"))
                if isinstance(pv, (int, float)):
                    txt += f", p {pv:.2g}"
                cells.append(f"**drift** ({txt})" if c.get("drifted") else f"— ({txt})")
            d = truth["drifted"].get(name)
            print(f"| {name} | {d['drift'] if d else ''} | {' | '.join(cells)} |")

    if "kiln" in ok and "kiln-1t" in ok and ok["kiln"]["verdict"]["detected"] != ok["kiln-1t"]["verdict"]["detected"]:
        print(f"\nkiln-1t flags other columns than kiln: {ok['kiln-1t']['verdict']['detected']}.")
    for side, r in res.items():
        if "error" in r:
            print(f"\n{side} failed: {r['error']}")
        elif r.get("exit_code_note"):
            print(f"\n{side}: {r['exit_code_note']} (0 = no drift, 1 = drift found, 2 = error).")
    return ratios


def targets_for(res, ratios):
    """The issue's targets, for kiln at its default threads."""
    k, e = res.get("kiln"), res.get("evidently")
    if not k or "error" in k:
        return {}
    q = ratios.get("kiln", {})
    t = {}
    if q.get("evidently_over_kiln_wall"):
        t["evidently_over_kiln_wall_ge_100x"] = {"value": round(q["evidently_over_kiln_wall"], 1),
                                                 "met": q["evidently_over_kiln_wall"] >= 100}
    if q.get("floor_over_kiln_wall"):
        t["floor_over_kiln_wall_ge_5x"] = {"value": round(q["floor_over_kiln_wall"], 1),
                                           "met": q["floor_over_kiln_wall"] >= 5}
    if q.get("kiln_rss_over_evidently_rss"):
        t["kiln_rss_le_tenth_of_evidently"] = {"value": round(q["kiln_rss_over_evidently_rss"], 3),
                                               "met": q["kiln_rss_over_evidently_rss"] <= 0.1}
    kv = k["verdict"]
    t["no_false_alarms"] = {"value": kv["false_alarms"], "met": not kv["false_alarms"]}
    t["all_injected_drift_found"] = {"value": kv["missed"], "met": not kv["missed"]}
    if e and "error" not in e:
        ev = e["verdict"]
        missing = [c for c in ev["detected"] if c not in kv["detected"]]
        t["flags_every_column_evidently_flags"] = {"value": missing, "met": not missing}
        subtle = [c for c in ev["missed"] if c not in kv["missed"]]
        t["finds_drift_evidently_misses"] = {"value": {"evidently_missed": ev["missed"], "kiln_found": subtle},
                                             "met": set(subtle) == set(ev["missed"])}
    return t


def versions(py):
    code = ("import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            "['evidently', 'pandas', 'numpy', 'scipy', 'pyarrow']}))")
    try:
        return json.loads(subprocess.run([py, "-c", code], capture_output=True, text=True).stdout)
    except (OSError, ValueError):
        return {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="SIZE=DIR[,SIZE=DIR]")
    ap.add_argument("--out", required=True)
    ap.add_argument("--py", required=True)
    ap.add_argument("--kiln-bin", required=True)
    ap.add_argument("--only", default="kiln,floor,evidently")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    a.kiln_bin = os.path.abspath(a.kiln_bin)
    only = a.only.split(",")
    sides = [s for s in SIDES if s in only or (s == "kiln-1t" and "kiln" in only)]
    kiln_why = kiln_available(a) if "kiln" in only else None
    if kiln_why:
        log(f"kiln side skipped: {kiln_why}")

    sizes = {}
    for item in a.data.split(","):
        size, folder = item.split("=", 1)
        with open(os.path.join(folder, "truth.json")) as f:
            truth = json.load(f)
        log(f"{size}: {folder}")
        res = {}
        with tempfile.TemporaryDirectory(prefix="kiln-bench-drift.") as work:
            for side in sides:
                if side.startswith("kiln") and kiln_why:
                    res[side] = {"error": kiln_why}
                    continue
                log(f"{size}: {side}...")
                try:
                    res[side] = run_side(side, a, folder, truth, work)
                except Exception as exc:  # noqa: BLE001 - one side failing must not stop the others
                    res[side] = {"error": f"{type(exc).__name__}: {exc}"}
        sizes[size] = {"data": folder, "truth": truth, "sides": res}

    print("## Drift: kiln monitor drift vs Evidently DataDriftPreset vs numpy/scipy")
    for size, s in sizes.items():
        s["ratios"] = report_size(size, s["sides"], s["truth"])
        s["targets"] = targets_for(s["sides"], s["ratios"])
    print("\nwall: the process from spawn to exit (Python start and imports included); CPU: user + "
          "system of the process; peak RSS: its high-water mark; self-timed: what the side reports "
          "for reading and computing (no interpreter start or imports) (median-wall run of "
          f"{a.reps} for kiln and floor, one Evidently run). kiln uses all {os.cpu_count()} cores, "
          "kiln-1t one (RAYON_NUM_THREADS=1); floor and Evidently compute on one (pyarrow reads "
          "with its thread pool). Ratios: the other's figure ÷ kiln's; memory: kiln's ÷ the other's.")
    for size, s in sizes.items():
        if s["targets"]:
            print(f"\ntargets at {size} (kiln, default threads): " + "; ".join(
                f"{n} {'met' if t['met'] else 'NOT met'} ({t['value']})" for n, t in s["targets"].items()))

    out = {
        "benchmark": "drift",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "versions": versions(a.py),
        "reps": a.reps,
        "sizes": sizes,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(out, fh, indent=2)
    print(f"\n(JSON: {a.out})")
    return 0 if any("error" not in r for s in sizes.values() for r in s["sides"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
