#!/usr/bin/env bash
# kiln server against `mlflow server`, both on SQLite, driven by the same
# official MLflow client, on the same machine, in one run. Prints a markdown
# table (metric, mlflow, kiln, ratio); writes JSON to
# ~/.cache/kiln/bench-results/tracking.json. bench/tracking/README.md says
# what each figure is and how it is measured.
#
#   bench/tracking.sh                 # both sides
#   bench/tracking.sh --only mlflow   # one side (mlflow or kiln)
#
# mlflow: `mlflow server --backend-store-uri sqlite:///… --artifacts-destination
#   … --workers 1` from the venv below (MLflow 3.17.2), with
#   MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false unless set otherwise.
# kiln: `kiln init DIR`, then `kiln server --host 127.0.0.1 --port P` in DIR.
#
# Environment: KILN_BIN (default target/release/kiln, built with
# `cargo build --release -p kiln-cli` when missing; KILN_SKIP_BUILD=1 never
# builds); KILN_CACHE (default ~/.cache/kiln); MLFLOW_SERVER_ENABLE_JOB_EXECUTION
# (default false here). Takes about 1.5 minutes for MLflow plus kiln's share.
#
# Installs what it needs: mlflow, scikit-learn, pandas in the virtual
# environment that scripts/test uses, cached under
# ~/.cache/kiln/venv-mlflow-<hash of scripts/requirements-mlflow.txt>.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KILN_CACHE:-$HOME/.cache/kiln}"
sides="mlflow kiln"
while [ $# -gt 0 ]; do
  case "$1" in
    --only)
      [ $# -ge 2 ] || { echo "usage: bench/tracking.sh [--only mlflow|kiln]" >&2; exit 2; }
      case "$2" in mlflow | kiln) sides="$2" ;; *) echo "--only: mlflow or kiln" >&2; exit 2 ;; esac
      shift 2 ;;
    *) echo "usage: bench/tracking.sh [--only mlflow|kiln]" >&2; exit 2 ;;
  esac
done
work="$(mktemp -d /tmp/kiln-bench-tracking.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache/bench-results"

req="$root/scripts/requirements-mlflow.txt"
venv="$cache/venv-mlflow-$(sha256sum "$req" | cut -c1-16)"
if [ ! -f "$venv/.complete" ]; then
  echo "installing mlflow into $venv (first run only)..." >&2
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  touch "$venv/.complete"
fi
py="$venv/bin/python"
# MLflow 3's server also starts a job runner and 7 huey consumers (GenAI jobs,
# nothing to do with tracking) that poll and take CPU from the 2 cores: off
# unless asked for, which makes MLflow's figures better (see the README).
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

kiln_bin="${KILN_BIN:-$root/target/release/kiln}"
case " $sides " in
  *" kiln "*)
    if [ ! -x "$kiln_bin" ] && [ "${KILN_SKIP_BUILD:-0}" != 1 ]; then
      echo "building kiln (release)..." >&2
      (cd "$root" && cargo build -q --release --locked -p kiln-cli) 2>"$work/build.err" || {
        echo "cargo build -p kiln-cli failed:" >&2; tail -n 20 "$work/build.err" >&2
      }
    fi ;;
esac

results=()
for side in $sides; do
  out="$work/$side.json"
  if [ "$side" = kiln ]; then
    "$py" "$root/bench/tracking/client.py" run --side kiln --work "$work/kiln" --out "$out" \
      --kiln-bin "$kiln_bin" || true
  else
    "$py" "$root/bench/tracking/client.py" run --side mlflow --work "$work/mlflow" --out "$out" \
      --mlflow-bin "$venv/bin/mlflow" || true
  fi
  [ -f "$out" ] && results+=("$out")
done
[ ${#results[@]} -gt 0 ] || { echo "bench/tracking.sh: no side produced results" >&2; exit 1; }
"$py" "$root/bench/tracking/client.py" report --json "$cache/bench-results/tracking.json" "${results[@]}"
