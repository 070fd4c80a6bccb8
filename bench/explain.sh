#!/usr/bin/env bash
# Explaining: kiln's TreeSHAP against LightGBM's pred_contrib and shap's
# TreeExplainer, on the same 200-tree LightGBM model and the same 10,000
# rows, 2 threads, in one run. Prints a markdown table; writes the raw lines
# to ~/.cache/kiln/bench-results/explain-<time>.jsonl.
#
#   bench/explain.sh
#
# data: bench/explain/gen.py writes model.txt (LightGBM 4.7.0 binary, 200
#   trees x 31 leaves, trained on 50,000 generated rows of 20 features) and
#   explain.parquet (10,000 other rows) once into
#   ~/.cache/kiln/bench-data/explain/v1.
# sides, each REPS times (default 3), interleaved; the table has medians:
#   kiln path:            kiln-bench shap --method path (exact path-dependent
#                         TreeSHAP; kiln's engine alone, after reading)
#   lightgbm pred_contrib: Booster.predict(X, pred_contrib=True)
#   shap path:            shap.TreeExplainer(booster).shap_values(X) (shap
#                         0.51.0 hands LightGBM models to pred_contrib)
#   kiln interventional:  kiln-bench shap --method interventional, 100
#                         background rows spread over the table
#   shap interventional:  shap.TreeExplainer(booster, those 100 rows,
#                         feature_perturbation="interventional")
#   Each also times 200 one-row calls (median µs): the cost one served
#   prediction's explanation adds (kiln: kiln_serve::explain, which builds
#   the explainer, runs TreeSHAP and writes the top 5 columns as JSON),
#   beside kiln's one-row prediction.
# Checksums (the sum of all attributions) show both sides computed the
# same values.
#
# Environment: REPS; CARGO_TARGET_DIR (default ~/.cache/kiln/target);
# KILN_SKIP_BUILD=1 uses the kiln-bench already built; KILN_CACHE.
# Takes about 2 minutes on 2 cores, most of it shap's interventional side.
#
# Installs what it needs: shap, LightGBM, numpy, pandas, pyarrow in a
# virtual environment cached under
# ~/.cache/kiln/venv-explain-<hash of bench/explain/requirements.txt>.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KILN_CACHE:-$HOME/.cache/kiln}"
[ $# -eq 0 ] || { echo "usage: bench/explain.sh" >&2; exit 2; }
work="$(mktemp -d /tmp/kiln-bench-explain.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"

req="$root/bench/explain/requirements.txt"
venv="$cache/venv-explain-$(sha256sum "$req" | cut -c1-16)"
if [ ! -f "$venv/.complete" ]; then
  echo "installing the peers into $venv (first run only)..." >&2
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  touch "$venv/.complete"
fi
py="$venv/bin/python"
export OMP_NUM_THREADS=2

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
if [ "${KILN_SKIP_BUILD:-0}" != 1 ]; then
  echo "building kiln-bench (release) into $CARGO_TARGET_DIR..." >&2
  cargo build -q --release --locked -p kiln-bench --manifest-path "$root/Cargo.toml"
fi
kb="$CARGO_TARGET_DIR/release/kiln-bench"

echo "generating inputs (first run only)..." >&2
data="$("$py" "$root/bench/explain/gen.py" "$cache/bench-data/explain/v1" | tail -n 1)"
model="$data/model.txt"
rows="$data/explain.parquet"

results="$work/results.jsonl"
: >"$results"
reps="${REPS:-3}"
for rep in $(seq 1 "$reps"); do
  for side in kiln-path pred_contrib shap_path kiln-interventional shap_interventional; do
    case "$side" in
      kiln-path) cmd=(env RAYON_NUM_THREADS=2 "$kb" shap --model "$model" --data "$rows" --threads 2 --method path --single 200) ;;
      kiln-interventional) cmd=(env RAYON_NUM_THREADS=2 "$kb" shap --model "$model" --data "$rows" --threads 2 --method interventional --background 100 --single 0) ;;
      *) cmd=("$py" "$root/bench/explain/peer.py" --side "$side" --model "$model" --data "$rows" --threads 2 --background 100 --single "$([ "$side" = shap_interventional ] && echo 0 || echo 200)") ;;
    esac
    sync
    out="$("${cmd[@]}" 2>"$work/err" | grep '^{' | tail -n 1)" || true
    if [ -z "$out" ]; then
      echo "$side failed:" >&2; tail -n 5 "$work/err" >&2; continue
    fi
    echo "run $rep, $side: $out" >&2
    echo "{\"rep\": $rep, \"name\": \"$side\", \"result\": $out}" >>"$results"
  done
done
mkdir -p "$cache/bench-results"
keep="$cache/bench-results/explain-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
cp "$results" "$keep"
echo "raw results: $keep" >&2

"$py" - "$results" "$(nproc)" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["name"], []).append(r["result"])
def med(name, key):
    v = [x[key] for x in by.get(name, []) if x.get(key) is not None]
    return statistics.median(v) if v else None
print(f"10,000 rows, 200-tree LightGBM model (31 leaves), 20 features, 2 threads, {sys.argv[2]} cores, median of {max(len(v) for v in by.values())} runs\n")
print("| side | seconds | rows/s | one row (µs) | checksum |")
print("|---|---:|---:|---:|---:|")
labels = {
    "kiln-path": "kiln TreeSHAP, path-dependent",
    "pred_contrib": "LightGBM pred_contrib",
    "shap_path": "shap TreeExplainer, path-dependent",
    "kiln-interventional": "kiln TreeSHAP, interventional (100 background rows)",
    "shap_interventional": "shap TreeExplainer, interventional (100 background rows)",
}
for name, label in labels.items():
    s = med(name, "seconds")
    if s is None:
        print(f"| {label} | failed | | | |")
        continue
    one = med(name, "single_explain_us")
    chk = by[name][0]["checksum"]
    print(f"| {label} | {s:.3f} | {10000 / s:,.0f} | {one if one else '—'} | {chk:.4f} |")
k, l, sp = med("kiln-path", "seconds"), med("pred_contrib", "seconds"), med("shap_path", "seconds")
ki, si = med("kiln-interventional", "seconds"), med("shap_interventional", "seconds")
print()
if k and l:
    print(f"- path-dependent: kiln is {l / k:.2f}x LightGBM pred_contrib's speed and {sp / k:.2f}x shap's (target: at least 1x)")
if ki and si:
    print(f"- interventional: kiln is {si / ki:.2f}x shap's speed")
p = med("kiln-path", "single_predict_us")
e = med("kiln-path", "single_explain_us")
if e:
    print(f"- one served row: explanation adds {e:.0f} µs (target: under 1,000), beside {p:.0f} µs to predict it")
EOF
