#!/usr/bin/env bash
# Data drift: `kiln monitor drift` against Evidently's data drift preset and
# a plain numpy/scipy floor, on the same reference and current Parquet
# tables (100k and 1M rows x 20 numeric + 5 categorical columns, drift
# injected into 6), in one run. Prints markdown tables (per size: wall s,
# CPU s, peak RSS, drifted columns found of the 6, false alarms; the ratios;
# each column's verdict per side); writes JSON to
# ~/.cache/kiln/bench-results/drift.json. bench/drift/README.md says what
# each figure is and the rule each side decides drift by.
#
#   bench/drift.sh                            # both sizes, all sides
#   bench/drift.sh --rows 100k                # one size (100k or 1M)
#   bench/drift.sh --only kiln,floor          # some sides (kiln, floor, evidently)
#
# data: bench/drift/gen.py (numpy, fixed seed) writes reference.parquet,
#   current.parquet and truth.json once per size into
#   ~/.cache/kiln/bench-data/drift/<size>/; they are written again when
#   gen.py changes (its SHA-256 is kept in the folder).
# kiln: `kiln monitor drift REF CUR --json`, with its default threads (all
#   cores) and again with RAYON_NUM_THREADS=1 (the `kiln-1t` rows).
# floor: bench/drift/floor.py: KS + PSI + Wasserstein (numbers), chi-squared
#   + PSI (categories) with scipy; drift when p < 0.05 / 25.
# evidently: bench/drift/evidently_run.py: Evidently 0.7.23
#   `Report([DataDriftPreset()])` with the column types declared.
#
# Environment: REPS (runs of kiln, kiln-1t and floor per size, default 3;
# Evidently runs once); KILN_BIN (default target/release/kiln, or
# $CARGO_TARGET_DIR/release/kiln), built with `cargo build --release --locked
# -p kiln-cli` when missing or when it lacks `monitor drift`
# (KILN_SKIP_BUILD=1 never builds); KILN_CACHE (default ~/.cache/kiln).
# Takes about 3 minutes with both sizes on 2 cores, most of it Evidently at
# 1M rows (about 95 s here; FINDINGS.md saw 519 s on a busier box), and
# about 30 s with --rows 100k.
#
# Installs what it needs: evidently, pandas, numpy, scipy, pyarrow in a
# virtual environment cached under
# ~/.cache/kiln/venv-drift-<hash of bench/drift/requirements.txt>.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KILN_CACHE:-$HOME/.cache/kiln}"
only="kiln,floor,evidently"
rows="100k,1M"
usage="usage: bench/drift.sh [--rows 100k,1M] [--only kiln,floor,evidently]"
while [ $# -gt 0 ]; do
  case "$1" in
    --only)
      [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
      for s in ${2//,/ }; do
        case "$s" in kiln | floor | evidently) ;; *) echo "--only: kiln, floor or evidently, comma-separated" >&2; exit 2 ;; esac
      done
      only="$2"; shift 2 ;;
    --rows)
      [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
      for s in ${2//,/ }; do
        case "$s" in 100k | 1M) ;; *) echo "--rows: 100k or 1M, comma-separated" >&2; exit 2 ;; esac
      done
      rows="$2"; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done

mkdir -p "$cache/bench-results" "$cache/bench-data/drift"

req="$root/bench/drift/requirements.txt"
venv="$cache/venv-drift-$(sha256sum "$req" | cut -c1-16)"
if [ ! -f "$venv/.complete" ]; then
  echo "installing evidently, numpy, scipy into $venv (first run only)..." >&2
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  touch "$venv/.complete"
fi
py="$venv/bin/python"

kiln_bin="${KILN_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/kiln}"
case ",$only," in
  *,kiln,*)
    if [ "${KILN_SKIP_BUILD:-0}" != 1 ] && ! "$kiln_bin" monitor drift --help >/dev/null 2>&1; then
      echo "building kiln (release)..." >&2
      err="$(mktemp /tmp/kiln-bench-drift-build.XXXXXX)"
      (cd "$root" && cargo build -q --release --locked -p kiln-cli) 2>"$err" || {
        echo "cargo build -p kiln-cli failed:" >&2; tail -n 20 "$err" >&2
      }
      rm -f "$err"
    fi ;;
esac

# One folder per size; gen.py prints them in order.
mapfile -t folders < <("$py" "$root/bench/drift/gen.py" "$cache/bench-data/drift" ${rows//,/ })
data=""
i=0
for s in ${rows//,/ }; do
  data="${data:+$data,}$s=${folders[$i]}"
  i=$((i + 1))
done

"$py" "$root/bench/drift/run.py" --data "$data" --out "$cache/bench-results/drift.json" \
  --py "$py" --kiln-bin "$kiln_bin" --only "$only" --reps "${REPS:-3}"
