#!/usr/bin/env bash
# Pipelines: the overhead of kiln's pipeline runner, alone and with workers,
# and `dvc repro` on the same DAG, on the same machine, in one run. Prints a
# markdown table; writes the raw lines to
# ~/.cache/kiln/bench-results/pipelines-<time>.jsonl.
#
#   bench/pipelines.sh                          # every side
#   bench/pipelines.sh --only local,sqlite      # some (local, sqlite, postgres, dvc)
#   REPS=1 DVC_REPS=1 bench/pipelines.sh        # a smoke run
#
# DAGs (bench/pipelines/run.py writes them): 100 steps whose command is
#   `true`, as a chain (each step needs the one before) and as a fan-out
#   (one root, 98 steps that need it, one join that needs all 98).
# sides:
#   local:    `kiln run DAG --json` on the embedded default (SQLite +
#             folder), default --jobs (the number of cores), every step
#             `cache: false` so all 100 run each time; and the same DAGs
#             without it, run once to fill the cache, then timed with every
#             step cached.
#   sqlite:   `kiln run DAG --remote --json` with 2 `kiln worker`s (--poll
#             25ms --lease 1s), each in its own folder with KILN_STORE and
#             KILN_OBJECTS pointing at the project's SQLite file and object
#             folder.
#   postgres: the same on PostgreSQL + S3: a throw-away PostgreSQL
#             (initdb/pg_ctl, as scripts/test starts it) and moto_server as
#             the S3 endpoint, both on loopback.
#   dvc:      `dvc repro --force` (every stage runs) and `dvc repro` (every
#             stage unchanged) on the same DAGs in a `dvc init --no-scm`
#             folder: DVC chains stages through files, so each stage is
#             `echo NAME > NAME.out` (a shell built-in, like `true`) with its
#             out uncached and the outs of the stages it needs as deps.
# Each figure: wall seconds of the whole command, median of REPS runs (DVC:
#   DVC_REPS) after one warm-up, the runs of a side interleaved; per step =
#   wall / 100. Claim latency (remote sides) = started_at − queued_at of
#   every step, from `kiln pipelines show RUN --json` (median and p95 over
#   all steps of the timed runs); the target line uses the chain, where a
#   worker is free when a step is queued (in the fan-out the figure is
#   mostly the wait behind 97 other steps for two workers). "needs done →
#   queued" = queued_at of a step − the latest finished_at of the steps it
#   needs (the runner noticing a finish and queueing what it unblocks).
#   Every timed run is checked: all 100 steps ran (or, for the cached
#   figures, were reused), or that side stops and the others go on.
#
# Environment: REPS (default 5); DVC_REPS (default 3: a forced `dvc repro`
# of 100 stages takes 30–50 s here); KILN_BIN (default target/release/kiln,
# built with `cargo build --release --locked -p kiln-cli` first;
# KILN_SKIP_BUILD=1 never builds); KILN_CACHE (default ~/.cache/kiln). Takes
# about 6 minutes on 2 cores, most of it DVC.
#
# Installs what it needs: dvc in a virtual environment cached under
# ~/.cache/kiln/venv-pipelines-<hash of bench/pipelines/requirements.txt>;
# for the postgres side, PostgreSQL from Debian when initdb is missing and
# moto in scripts/test's venv (~/.cache/kiln/venv-test-<hash of
# scripts/requirements-test.txt>).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KILN_CACHE:-$HOME/.cache/kiln}"
only="local,sqlite,postgres,dvc"
usage="usage: bench/pipelines.sh [--only local,sqlite,postgres,dvc]"
while [ $# -gt 0 ]; do
  case "$1" in
    --only)
      [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
      for s in ${2//,/ }; do
        case "$s" in local | sqlite | postgres | dvc) ;; *) echo "--only: local, sqlite, postgres or dvc, comma-separated" >&2; exit 2 ;; esac
      done
      only="$2"; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
has() { case ",$only," in *,"$1",*) return 0 ;; *) return 1 ;; esac; }

work="$(mktemp -d /tmp/kiln-bench-pipelines.XXXXXX)"
chmod 755 "$work"
pids=()
pg_bin=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -f "$work/pg/postmaster.pid" ]; then
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$cache/bench-results"

# --- kiln (release) -------------------------------------------------------------
kiln_bin="${KILN_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/kiln}"
if [ "${KILN_SKIP_BUILD:-0}" != 1 ] && [ -z "${KILN_BIN:-}" ]; then
  echo "building kiln (release)..." >&2
  (cd "$root" && cargo build -q --release --locked -p kiln-cli) 2>"$work/build.err" || {
    echo "cargo build -p kiln-cli failed:" >&2; tail -n 20 "$work/build.err" >&2; exit 1
  }
fi
[ -x "$kiln_bin" ] || { echo "bench/pipelines.sh: no kiln binary at $kiln_bin" >&2; exit 1; }

# --- DVC --------------------------------------------------------------------------
dvc_args=()
if has dvc; then
  req="$root/bench/pipelines/requirements.txt"
  venv="$cache/venv-pipelines-$(sha256sum "$req" | cut -c1-16)"
  if [ ! -f "$venv/.complete" ]; then
    echo "installing dvc into $venv (first run only)..." >&2
    rm -rf "$venv" && python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    touch "$venv/.complete"
  fi
  dvc_args=(--dvc-bin "$venv/bin/dvc")
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# --- PostgreSQL + S3 (moto), as scripts/test starts them --------------------------
server_args=()
if has postgres; then
  for d in /usr/local/bin /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then pg_bin="$d"; break; fi
  done
  if [ -z "$pg_bin" ]; then
    echo "installing PostgreSQL (Debian package)..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)"
  fi
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  pg_port="$(free_port)"
  mkdir -p "$work/pg" && chown postgres "$work/pg"
  runuser -u postgres -- "$pg_bin/initdb" -N -A trust -U postgres -D "$work/pg" >/dev/null
  # fsync off as in scripts/test: the figures are the runner's and the
  # store's round trips, not the disk's flushes.
  runuser -u postgres -- "$pg_bin/pg_ctl" -w -D "$work/pg" -l "$work/pg/server.log" \
    -o "-k $work/pg -p $pg_port -h 127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null

  req_test="$root/scripts/requirements-test.txt"
  venv_test="$cache/venv-test-$(sha256sum "$req_test" | cut -c1-16)"
  if [ ! -f "$venv_test/.complete" ]; then
    echo "installing moto into $venv_test (first run only)..." >&2
    rm -rf "$venv_test" && python3 -m venv "$venv_test"
    "$venv_test/bin/pip" install -q --disable-pip-version-check -r "$req_test"
    touch "$venv_test/.complete"
  fi
  s3_port="$(free_port)"
  "$venv_test/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$work/moto.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$s3_port/" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -sf -X PUT "http://127.0.0.1:$s3_port/kiln-bench" >/dev/null
  export KILN_S3_ENDPOINT="http://127.0.0.1:$s3_port"
  export AWS_ACCESS_KEY_ID=kiln-bench AWS_SECRET_ACCESS_KEY=kiln-bench AWS_REGION=us-east-1
  server_args=(--postgres "postgres://postgres@127.0.0.1:$pg_port/postgres" --s3 "s3://kiln-bench/pipelines")
  echo "PostgreSQL on :$pg_port, S3 (moto) on :$s3_port" >&2
fi

# --- measure ------------------------------------------------------------------------
results="$work/results.jsonl"
: >"$results"
status=0
python3 "$root/bench/pipelines/run.py" run --kiln-bin "$kiln_bin" --work "$work/runs" --out "$results" \
  --sides "$only" --reps "${REPS:-5}" --dvc-reps "${DVC_REPS:-3}" "${dvc_args[@]}" "${server_args[@]}" || status=$?
keep="$cache/bench-results/pipelines-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
cp "$results" "$keep"
echo "raw results: $keep" >&2
python3 "$root/bench/pipelines/run.py" report "$results"
exit "$status"
