#!/usr/bin/env bash
# kiln's ML against its peers, on the same files, the same machine and the
# same thread count (2), in one run. Prints markdown tables; BENCHMARKS.md
# records the results.
#
#   bench/ml.sh gbdt [--xgboost]      # kiln-bench gbdt vs LightGBM 4.7.0
#   bench/ml.sh automl [BUDGETS...]   # kiln train vs FLAML 2.7.0 (default: 30 120)
#
# gbdt: the gradient-boosting learner alone. Inputs (bench/ml/gen_gbdt.py,
#   written once into ~/.cache/kiln/bench-data/ml/gbdt-v1): a generated binary
#   set, 200,000 train + 50,000 test rows x 50 features (46 numeric from
#   make_classification, 4 string categoricals of 5/20/100/1000 levels, ~2 %
#   NaN in 6 columns), and the real NYC flights 2013 set as regression on
#   arr_delay, split in time order 80/20, both as Parquet. Configurations:
#   binary 100 and 500 trees, 31 leaves; flights 200 trees, 63 leaves;
#   learning rate 0.1, max_bin 255, min_child_samples 20, 2 threads. Each
#   side runs REPS times (default 3), interleaved; the table has medians.
#   Fit time includes dataset construction (binning), as LightGBM users see
#   it; its construct part is shown apart. kiln's side is
#   `kiln-bench gbdt` with the same flags as bench/ml/lgbm.py; while that
#   subcommand fails (not written yet) its rows say "kiln-bench gbdt not
#   available". --xgboost adds XGBoost 3.2.0 hist rows (lgbm.py --impl xgboost).
#
# automl: the whole `kiln train` against FLAML AutoML, each given the same
#   time budget (seconds) and 2 threads, on fixed 80/20 splits of the 8 real
#   data sets in shared/data (bench/ml/split_real.py: time order for
#   bikeshare, cdnow, flights, rainfall; by person_id for rand_hie;
#   stratified for the binary sets). Both sides validate inside the training
#   file the way the test was split: FLAML split_type="time" / "group" and
#   kiln --split time / group:person_id; their defaults for the others.
#   Score on the test file: ROC AUC
#   (binary) or RMSE (regression). Wall seconds are the whole fit as run
#   (both may overrun their budget; the table shows what they took). kiln
#   runs in a fresh project: kiln init; kiln data add; kiln train train
#   --target T --budget Ss --seed 0 --test-fraction 0 --json (the test file
#   is the test set, so kiln holds none out of the training file, as FLAML
#   does not); kiln evaluate MODEL test.csv --json.
#   Running all 8 data sets at 30 s and 120 s takes about 45 minutes.
#
# Environment: REPS (gbdt repetitions, default 3); DATASETS (automl: names
# to run, space-separated, default all 8); CARGO_TARGET_DIR (default
# ~/.cache/kiln/target); KILN_SKIP_BUILD=1 uses the binaries already built;
# KILN_CACHE, KILN_SHARED_DATA as in bench/data_add.sh.
#
# Installs what it needs: scikit-learn, LightGBM, XGBoost, FLAML, pandas,
# pyarrow in a virtual environment cached under
# ~/.cache/kiln/venv-ml-<hash of bench/ml/requirements.txt>.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KILN_CACHE:-$HOME/.cache/kiln}"
shared="${KILN_SHARED_DATA:-$root/../shared/data}"
mode="${1:-}"
[ $# -gt 0 ] && shift
case "$mode" in
  gbdt | automl) ;;
  *) echo "usage: bench/ml.sh gbdt [--xgboost] | bench/ml.sh automl [BUDGET_SECONDS...]" >&2; exit 2 ;;
esac
work="$(mktemp -d /tmp/kiln-bench-ml.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"

req="$root/bench/ml/requirements.txt"
venv="$cache/venv-ml-$(sha256sum "$req" | cut -c1-16)"
if [ ! -f "$venv/.complete" ]; then
  echo "installing the peers into $venv (first run only)..." >&2
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  touch "$venv/.complete"
fi
py="$venv/bin/python"
export OMP_NUM_THREADS=2

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
build() {   # build PACKAGE: a failed build is reported, and the kiln rows say so
  [ "${KILN_SKIP_BUILD:-0}" = 1 ] && return 0
  echo "building $1 (release) into $CARGO_TARGET_DIR..." >&2
  cargo build -q --release --locked -p "$1" --manifest-path "$root/Cargo.toml" 2>"$work/build.err" || {
    echo "cargo build -p $1 failed:" >&2; tail -n 20 "$work/build.err" >&2; return 1
  }
}
results="$work/results.jsonl"
: >"$results"

# keep_results MODE: a copy of the raw results (JSON lines) for later;
# `python bench/ml/table.py MODE FILE` prints the table again.
keep_results() {
  mkdir -p "$cache/bench-results"
  local keep="$cache/bench-results/ml-$1-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
  cp "$results" "$keep"
  echo "raw results: $keep" >&2
}
# last_json FILE: the last line of FILE that looks like a JSON object.
last_json() { grep '^{' "$1" | tail -n 1; }
# record SIDE GROUP_JSON RESULT_JSON|null [ERROR]: appends one result line.
record() {
  "$py" - "$@" >>"$results" <<'EOF'
import json, sys
side, group, result = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
row = {**group, "side": side, "result": json.loads(result) if result != "null" else None}
if len(sys.argv) > 4:
    row["error"] = sys.argv[4]
print(json.dumps(row))
EOF
}

if [ "$mode" = gbdt ]; then
  xgb=0
  for arg in "$@"; do
    case "$arg" in
      --xgboost) xgb=1 ;;
      *) echo "unknown argument $arg" >&2; exit 2 ;;
    esac
  done
  reps="${REPS:-3}"
  kb="$CARGO_TARGET_DIR/release/kiln-bench"
  kiln_ok=1
  build kiln-bench || kiln_ok=0
  [ -x "$kb" ] || kiln_ok=0
  kiln_why="kiln-bench gbdt not available"
  kiln_ran=0

  echo "generating inputs (first run only)..." >&2
  data="$("$py" "$root/bench/ml/gen_gbdt.py" "$cache/bench-data/ml" "$shared" | tail -n 1)"

  # name objective target trees leaves lr
  configs=(
    "synth binary y 100 31 0.1"
    "synth binary y 500 31 0.1"
    "flights regression arr_delay 200 63 0.1"
  )
  sides=(lightgbm)
  [ "$xgb" = 1 ] && sides+=(xgboost)
  sides+=(kiln)
  for cfg in "${configs[@]}"; do
    read -r name objective target trees leaves lr <<<"$cfg"
    flags=(--train "$data/${name}_train.parquet" --test "$data/${name}_test.parquet" --target "$target"
      --objective "$objective" --trees "$trees" --leaves "$leaves" --lr "$lr" --threads 2
      --max-bin 255 --min-child-samples 20)
    for rep in $(seq 1 "$reps"); do
      group="{\"dataset\": \"$name\", \"trees\": $trees, \"rep\": $rep}"
      for side in "${sides[@]}"; do
        if [ "$side" = kiln ]; then
          if [ "$kiln_ok" = 0 ]; then record kiln "$group" null "$kiln_why"; continue; fi
          cmd=(env RAYON_NUM_THREADS=2 "$kb" gbdt "${flags[@]}")
        else
          cmd=("$py" "$root/bench/ml/lgbm.py" --impl "$side" "${flags[@]}")
        fi
        sync
        if "${cmd[@]}" >"$work/out" 2>"$work/err" && [ -n "$(last_json "$work/out")" ]; then
          out="$(last_json "$work/out")"
          echo "$name $trees trees, $side, run $rep: $out" >&2
          record "$side" "$group" "$out"
        else
          echo "$side failed on $name $trees trees:" >&2; tail -n 5 "$work/err" >&2
          why="$side failed"
          if [ "$side" = kiln ] && [ "$kiln_ran" = 0 ]; then kiln_ok=0; why="$kiln_why"; fi
          record "$side" "$group" null "$why"
          continue
        fi
        if [ "$side" = kiln ]; then kiln_ran=1; fi
      done
    done
  done
  keep_results gbdt
  echo
  "$py" "$root/bench/ml/table.py" gbdt "$results"
  exit 0
fi

# automl
budgets=("$@")
[ ${#budgets[@]} -eq 0 ] && budgets=(30 120)
kiln="$CARGO_TARGET_DIR/release/kiln"
kiln_ok=1
build kiln-cli || kiln_ok=0
[ -x "$kiln" ] || kiln_ok=0
kiln_why="kiln train not available"
kiln_ran=0

echo "splitting the real data sets (first run only)..." >&2
data="$("$py" "$root/bench/ml/split_real.py" "$cache/bench-data/ml" "$shared" | tail -n 1)"
mapfile -t tasks < <("$py" - "$data/tasks.json" "${DATASETS:-}" <<'EOF'
import json, sys
tasks = json.load(open(sys.argv[1]))
only = sys.argv[2].split()
for name, t in tasks.items():
    if not only or name in only:
        # Validation inside the training file follows the test split's
        # structure, for both sides: later rows for time-ordered sets (the
        # file is in time order), whole persons for rand_hie.
        split = t["split"]
        valid = "time" if split.startswith("time") else split if split.startswith("group:") else "-"
        print(name, t["target"], t["task"], t["metric"], t["positive"] if t["positive"] is not None else "-", valid)
EOF
)

# kiln_side NAME TARGET METRIC BUDGET: prints a result JSON line, or fails.
kiln_side() {
  local name=$1 target=$2 metric=$3 budget=$4 valid=$5 d split=()
  [ "$valid" != - ] && split=(--split "$valid")
  d="$(mktemp -d "$work/kiln-$name.XXXXXX")"
  cd "$d" || return 1
  "$kiln" init >/dev/null || return 1
  # The interface asked of the new CLI, then today's `kiln data add NAME PATH`.
  "$kiln" data add "$data/$name/train.csv" --name train >/dev/null 2>&1 ||
    "$kiln" data add train "$data/$name/train.csv" >/dev/null || return 1
  local t0 t1 model
  sync
  t0=$(date +%s.%N)
  RAYON_NUM_THREADS=2 "$kiln" train train --target "$target" --budget "${budget}s" --seed 0 --test-fraction 0 "${split[@]}" --json >train.json || return 1
  t1=$(date +%s.%N)
  model="$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"])' train.json)" || return 1
  RAYON_NUM_THREADS=2 "$kiln" evaluate "$model" "$data/$name/test.csv" --json >eval.json || return 1
  "$py" - "$t0" "$t1" "$metric" "$budget" <<'EOF'
import json, sys
t0, t1, metric, budget = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], float(sys.argv[4])
last = lambda f: json.load(open(f))  # kiln prints one (pretty) JSON document
train, ev = last("train.json"), last("eval.json")
best = train.get("chosen")
print(json.dumps({"side": "kiln", "budget": budget, "wall_seconds": round(t1 - t0, 3),
                  "test_score": ev["metrics"][metric], "metric": metric, "best_estimator": best,
                  "model": train["model"]}))
EOF
}

for budget in "${budgets[@]}"; do
  for line in "${tasks[@]}"; do
    read -r name target task metric positive valid <<<"$line"
    group="{\"dataset\": \"$name\", \"budget\": $budget, \"metric\": \"$metric\"}"
    pos=()
    [ "$positive" != - ] && pos=(--positive "$positive")
    [ "$valid" != - ] && pos+=(--split "$valid")
    sync
    if "$py" "$root/bench/ml/flaml_run.py" --train "$data/$name/train.csv" --test "$data/$name/test.csv" \
      --target "$target" --task "$task" --metric "$metric" --budget "$budget" --threads 2 --seed 0 "${pos[@]}" \
      >"$work/out" 2>"$work/err" && [ -n "$(last_json "$work/out")" ]; then
      out="$(last_json "$work/out")"
      echo "$name ${budget}s, flaml: $out" >&2
      record flaml "$group" "$out"
    else
      echo "flaml failed on $name:" >&2; tail -n 5 "$work/err" >&2
      record flaml "$group" null "flaml failed"
    fi
    if [ "$kiln_ok" = 0 ]; then record kiln "$group" null "$kiln_why"; continue; fi
    if (kiln_side "$name" "$target" "$metric" "$budget" "$valid") >"$work/out" 2>"$work/err" && [ -n "$(last_json "$work/out")" ]; then
      out="$(last_json "$work/out")"
      echo "$name ${budget}s, kiln: $out" >&2
      record kiln "$group" "$out"
    else
      echo "kiln failed on $name:" >&2; tail -n 5 "$work/err" >&2
      if [ "$kiln_ran" = 0 ]; then
        kiln_ok=0   # never worked: not implemented yet, no point trying the others
        record kiln "$group" null "$kiln_why"
      else
        record kiln "$group" null "kiln failed"
      fi
      continue
    fi
    kiln_ran=1
  done
done
keep_results automl
echo
"$py" "$root/bench/ml/table.py" automl "$results"
