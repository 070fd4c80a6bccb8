#!/usr/bin/env bash
# kiln data add against `dvc add` and plain BLAKE3 hashing (b3sum), on the same
# files and the same machine, in one run. Prints a markdown table of wall
# seconds, peak memory and ratios; BENCHMARKS.md records the results.
#
#   bench/data_add.sh            # needs ../shared/data (the flights data set)
#
# Installs what it needs: dvc and pyarrow in a cached virtual environment,
# b3sum with cargo, GNU time with apt. Inputs (about 1.3 GB) are generated
# once into ~/.cache/kiln/bench-data.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KILN_CACHE:-$HOME/.cache/kiln}"
shared="${KILN_SHARED_DATA:-$root/../shared/data}"
data="$cache/bench-data"
work="$(mktemp -d /tmp/kiln-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"

command -v /usr/bin/time >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
req="$root/bench/requirements.txt"
venv="$cache/venv-bench-$(sha256sum "$req" | cut -c1-16)"
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  touch "$venv/.complete"
fi
b3sum="$cache/tools/bin/b3sum"
[ -x "$b3sum" ] || cargo install -q --locked b3sum@1.8.2 --root "$cache/tools"
export PATH="$venv/bin:$PATH"

echo "building kiln (release)..." >&2
cargo build -q --release --locked -p kiln-cli -p kiln-bench --manifest-path "$root/Cargo.toml"
target="${CARGO_TARGET_DIR:-$root/target}"
kiln="$target/release/kiln"
kb="$target/release/kiln-bench"

echo "generating inputs in $data (first run only)..." >&2
python3 "$root/bench/gen_data.py" "$data" "$shared"

results="$work/results.tsv"
# measure NAME DIR CMD...: wall seconds and peak RSS of CMD run in DIR, warm cache.
measure() {
  local name=$1 dir=$2
  shift 2
  sync   # no writeback of earlier steps' dirty pages during the measurement
  (cd "$dir" && /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err") || {
    echo "$name failed:" >&2; cat "$work/err" >&2; exit 1
  }
  read -r secs rss <"$work/time"
  printf '%s\t%s\t%s\n' "$name" "$secs" "$rss" | tee -a "$results" >&2
}
warm() { cat "$@" >/dev/null; }
fresh_kiln() { local d="$work/$1"; mkdir -p "$d"; (cd "$d" && "$kiln" init -q); echo "$d"; }
fresh_dvc() { local d="$work/$1"; mkdir -p "$d"; (cd "$d" && dvc init -q --no-scm); echo "$d"; }

big="$data/big.csv"
warm "$big"
measure "b3sum 1 GB (all threads)" "$work" "$b3sum" "$big"
measure "b3sum 1 GB (1 thread)" "$work" "$b3sum" --num-threads 1 "$big"
measure "kiln's BLAKE3 pass alone 1 GB (kiln-bench hash)" "$work" "$kb" hash "$big"
measure "cp 1 GB (the copy any store makes)" "$work" cp "$big" "$work/copy.bin"
rm -f "$work/copy.bin"
k=$(fresh_kiln k1); measure "kiln data add --no-profile 1 GB" "$k" "$kiln" data add -q big "$big" --no-profile
k=$(fresh_kiln k2); measure "kiln data add 1 GB (profile + Parquet)" "$k" "$kiln" data add -q big "$big"
measure "kiln data add 1 GB again (unchanged)" "$k" "$kiln" data add -q big "$big"
head -n 1200000 "$big" > "$work/big100.csv"   # about 100 MB, whole rows
k=$(fresh_kiln k3); measure "kiln data add 100 MB (profile + Parquet)" "$k" "$kiln" data add -q big "$work/big100.csv"
d=$(fresh_dvc d1); cp "$big" "$d/big.csv"; warm "$d/big.csv"
measure "dvc add 1 GB" "$d" dvc add -q big.csv

cp -r "$data/files" "$work/files"
warm "$work"/files/*/*
k=$(fresh_kiln k4); measure "kiln data add 10,000 files" "$k" "$kiln" data add -q files "$work/files"
d=$(fresh_dvc d2); cp -r "$data/files" "$d/files"
measure "dvc add 10,000 files" "$d" dvc add -q files
printf 'changed' >>"$work/files/42/04242.bin"
printf 'changed' >>"$d/files/42/04242.bin"
measure "kiln data add 10,000 files, 1 changed" "$k" "$kiln" data add -q files "$work/files"
measure "dvc status 10,000 files, 1 changed" "$d" dvc status
measure "dvc add 10,000 files, 1 changed" "$d" dvc add -q files

wide="$data/wide.csv"
warm "$wide"
measure "CSV to Arrow 1M x 25 (arrow-csv, kiln's reader)" "$work" "$kb" csv-read "$wide"
measure "CSV to Arrow + profile 1M x 25" "$work" "$kb" profile "$wide"
measure "CSV to Arrow + profile + Parquet 1M x 25" "$work" "$kb" ingest "$wide" "$work/wide.parquet"
k=$(fresh_kiln k5); measure "kiln data add 1M x 25" "$k" "$kiln" data add -q wide "$wide"
measure "pyarrow.csv.read_csv 1M x 25" "$work" python3 -c "import pyarrow.csv as c, sys; c.read_csv(sys.argv[1])" "$wide"

get() { awk -F'\t' -v n="$1" '$1 == n { print $2 }' "$results"; }
mem() { awk -F'\t' -v n="$1" '$1 == n { printf "%.0f", $3 / 1024 }' "$results"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo
echo "| measurement | seconds | peak MB |"
echo "|---|---:|---:|"
while IFS=$'\t' read -r n s m; do printf '| %s | %s | %.0f |\n' "$n" "$s" "$((m / 1024))"; done <"$results"
echo
echo "| target | ratio | goal |"
echo "|---|---:|---|"
echo "| dvc add 1 GB / kiln data add 1 GB (profile + Parquet) | $(ratio "$(get "dvc add 1 GB")" "$(get "kiln data add 1 GB (profile + Parquet)")") | ≥ 10 |"
echo "| dvc add 1 GB / kiln data add --no-profile 1 GB | $(ratio "$(get "dvc add 1 GB")" "$(get "kiln data add --no-profile 1 GB")") | ≥ 10 |"
echo "| dvc add 10,000 files / kiln data add 10,000 files | $(ratio "$(get "dvc add 10,000 files")" "$(get "kiln data add 10,000 files")") | ≥ 10 |"
echo "| kiln data add --no-profile 1 GB / b3sum 1 GB (all threads) | $(ratio "$(get "kiln data add --no-profile 1 GB")" "$(get "b3sum 1 GB (all threads)")") | ≤ 1.5 |"
echo "| kiln's hashing pass / b3sum 1 GB (all threads) | $(ratio "$(get "kiln's BLAKE3 pass alone 1 GB (kiln-bench hash)")" "$(get "b3sum 1 GB (all threads)")") | ≤ 1.5 |"
echo "| kiln re-add, 1 of 10,000 files changed (s) | $(get "kiln data add 10,000 files, 1 changed") | ≪ 1 s (dvc status: $(get "dvc status 10,000 files, 1 changed") s) |"
echo "| CSV to Arrow + profile / CSV to Arrow, 1M x 25 | $(ratio "$(get "CSV to Arrow + profile 1M x 25")" "$(get "CSV to Arrow 1M x 25 (arrow-csv, kiln's reader)")") | < 2 |"
echo "| peak memory, kiln data add 1 GB / 100 MB | $(ratio "$(mem "kiln data add 1 GB (profile + Parquet)")" "$(mem "kiln data add 100 MB (profile + Parquet)")") | ≈ 1 (flat) |"
