"""Process helpers the benchmark scripts share (standard library only):
free ports, a server's process tree, its CPU time and memory, a log's tail."""

import os
import socket


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tree_pids(root):
    """The root pid and all its descendants (from /proc/*/stat)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
                parent[int(d)] = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        for c, pp in parent.items():
            if pp == p and c not in out:
                out.add(c)
                frontier.append(c)
    return sorted(out)


def tree_cpu_s(root):
    """CPU seconds (user + system, all threads) the process tree has used so
    far: what a server spends per operation, whatever drives it."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def tail(path, n=800):
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode("utf-8", "replace")
    except OSError:
        return ""


def machine():
    """What the figures were measured on: cores, CPU model, memory, Python."""
    import platform
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "memory": mem, "platform": platform.platform(),
            "python": platform.python_version()}


def times(r):
    """A ratio for the table: whole above 100, two significant digits below 1."""
    if not r:
        return "—"
    if r >= 100:
        return f"{r:,.0f}×"
    if r >= 1:
        return f"{r:.1f}×"
    return f"{r:.2g}×"


def stop_group(proc):
    """Stops a server started in its own process group: SIGTERM, then
    SIGKILL after 30 s."""
    import signal
    import subprocess
    if proc and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
