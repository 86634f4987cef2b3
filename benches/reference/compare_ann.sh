#!/usr/bin/env bash
# Our HNSW against hnswlib on the same seeded clustered set, alternating runs on one pinned
# core; prints each run and the medians with their ratios (ours / hnswlib).
#
#   benches/reference/compare_ann.sh N DIM [ROUNDS] [CPU]
#   e.g. benches/reference/compare_ann.sh 100000 128 5 1
#
# Needs the reference venv with hnswlib: /tmp/refvenv/bin/pip install hnswlib
set -euo pipefail
N=${1:?N}; DIM=${2:?DIM}; ROUNDS=${3:-5}; CPU=${4:-1}
PY=${PYTHON:-/tmp/refvenv/bin/python}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR="$ROOT/target/ann/$N-$DIM"
EFS=16,32,64,128
cargo build --release --quiet -p aimp-index --example ann_compare
BIN="$ROOT/target/release/examples/ann_compare"
"$BIN" --n "$N" --dim "$DIM" --queries 1000 --threads 1 --ef "$EFS" --out "$DIR" > /dev/null
OUT="$DIR/runs.jsonl"
: > "$OUT"
for _ in $(seq "$ROUNDS"); do
  taskset -c "$CPU" "$BIN" --n "$N" --dim "$DIM" --queries 1000 --threads 1 --ef "$EFS" | tee -a "$OUT"
  taskset -c "$CPU" "$PY" "$ROOT/benches/reference/ann_hnswlib.py" "$DIR" | tee -a "$OUT"
done
"$PY" - "$OUT" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {e: [r for r in runs if r["engine"] == e] for e in ("aimp", "hnswlib")}
med = lambda xs: statistics.median(xs)
def row(name, f):
    a, h = med([f(r) for r in by["aimp"]]), med([f(r) for r in by["hnswlib"]])
    print(f"{name:28s} ours {a:10.1f}  hnswlib {h:10.1f}  ratio {a / h:.2f}")
print(f"medians of {len(by['aimp'])} alternating runs each")
row("build seconds", lambda r: r["build_s"])
row("resident bytes per vector", lambda r: r["rss_bytes_per_vector"])
for i, s in enumerate(by["aimp"][0]["search"]):
    ef = s["ef"]
    rec = lambda e: med([r["search"][i]["recall"] for r in by[e]])
    row(f"qps ef={ef} (recall {rec('aimp'):.3f}/{rec('hnswlib'):.3f})", lambda r: r["search"][i]["qps"])
PY
