#!/usr/bin/env bash
# Real-time serving: `kiln serve` against `mlflow models serve` and a
# hello-world axum handler (the HTTP floor), the same LightGBM model on both
# servers, loaded by wrk on the same machine, in one run. Prints a markdown
# table (metric, mlflow, kiln, floor, kiln/mlflow, kiln/floor); writes JSON to
# ~/.cache/kiln/bench-results/serve.json. bench/serve/README.md says what
# each figure is and how it is measured.
#
#   bench/serve.sh                       # all three
#   bench/serve.sh --only kiln,floor     # some (floor, kiln, mlflow)
#   DURATION=3 bench/serve.sh            # shorter runs (default 10 s each)
#
# model: bench/serve/prepare.py fits `lightgbm.train` (200 trees, 31 leaves) on
#   the numeric columns of lending_club.csv and saves it twice: LightGBM text
#   (kiln imports it) and `mlflow.lightgbm.save_model`.
# mlflow: `mlflow models serve -m W/mlflow-model --env-manager local` (MLflow
#   3.17.2, its default of 1 uvicorn worker).
# kiln: `kiln init`, `kiln models import lc model.txt`, `kiln serve lc@1`.
# floor: `kiln-bench hello` (crates/kiln-bench/src/hello.rs).
#
# Environment: DURATION (seconds per measured run, default 10; each run
# follows a 2 s warm-up); KILN_BIN (default target/release/kiln) and
# KILN_BENCH_BIN (default target/release/kiln-bench), built with
# `cargo build --release --locked` when missing (KILN_SKIP_BUILD=1 never
# builds); KILN_CACHE (default ~/.cache/kiln); KILN_SHARED_DATA (the folder
# with lending_club.csv, default ../shared/data). Takes about 3 minutes
# with the default DURATION.
#
# Installs what it needs: wrk from Debian (apt-get) when it is not on PATH;
# mlflow, lightgbm, scikit-learn and pandas in a virtual environment cached
# under ~/.cache/kiln/venv-serve-<hash of bench/serve/requirements.txt>.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KILN_CACHE:-$HOME/.cache/kiln}"
only="floor,kiln,mlflow"
usage="usage: bench/serve.sh [--only floor,kiln,mlflow]"
while [ $# -gt 0 ]; do
  case "$1" in
    --only)
      [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
      for s in ${2//,/ }; do
        case "$s" in floor | kiln | mlflow) ;; *) echo "--only: floor, kiln or mlflow, comma-separated" >&2; exit 2 ;; esac
      done
      only="$2"; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
duration="${DURATION:-10}"

if [ -z "${KILN_SHARED_DATA:-}" ]; then
  for d in "$root/../shared/data" /work/shared/data; do
    if [ -f "$d/lending_club.csv" ]; then KILN_SHARED_DATA="$(cd "$d" && pwd)"; break; fi
  done
fi
data="${KILN_SHARED_DATA:-}/lending_club.csv"
[ -f "$data" ] || { echo "bench/serve.sh: lending_club.csv not found; set KILN_SHARED_DATA to its folder" >&2; exit 1; }

if ! command -v wrk >/dev/null; then
  echo "installing wrk (apt-get)..." >&2
  apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }
fi

work="$(mktemp -d /tmp/kiln-bench-serve.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache/bench-results"

req="$root/bench/serve/requirements.txt"
venv="$cache/venv-serve-$(sha256sum "$req" | cut -c1-16)"
if [ ! -f "$venv/.complete" ]; then
  echo "installing mlflow and lightgbm into $venv (first run only)..." >&2
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  touch "$venv/.complete"
fi
py="$venv/bin/python"

kiln_bin="${KILN_BIN:-$root/target/release/kiln}"
bench_bin="${KILN_BENCH_BIN:-$root/target/release/kiln-bench}"
build() { # binary, package
  if [ ! -x "$1" ] && [ "${KILN_SKIP_BUILD:-0}" != 1 ]; then
    echo "building $2 (release)..." >&2
    (cd "$root" && cargo build -q --release --locked -p "$2") 2>"$work/build.err" || {
      echo "cargo build -p $2 failed:" >&2; tail -n 20 "$work/build.err" >&2
    }
  fi
}
case ",$only," in *,kiln,*) build "$kiln_bin" kiln-cli ;; esac
case ",$only," in *,floor,*) build "$bench_bin" kiln-bench ;; esac

"$py" "$root/bench/serve/prepare.py" --data "$data" --work "$work"
"$py" "$root/bench/serve/run.py" --work "$work" --out "$cache/bench-results/serve.json" \
  --kiln-bin "$kiln_bin" --bench-bin "$bench_bin" --mlflow-bin "$venv/bin/mlflow" \
  --duration "$duration" --only "$only"
