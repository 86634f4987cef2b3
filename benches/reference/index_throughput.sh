#!/usr/bin/env bash
# Bulk indexing through the gateway's API (`aimp index` → upload, decode, preprocess, encode,
# index) against the raw image encoder (vision tower + projection on preprocessed pixels),
# both with a full-size random-weight ViT-B/32 on this machine, alternating runs; prints each
# run and the medians with their ratio.
#
#   benches/reference/index_throughput.sh [N_PICTURES] [ROUNDS] [BATCH]
#   e.g. benches/reference/index_throughput.sh 256 3 32
set -euo pipefail
N=${1:-256}; ROUNDS=${2:-3}; BATCH=${3:-32}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK="$ROOT/target/index-throughput"
cargo build --release --quiet --bin aimp
cargo build --release --quiet -p aimp-embed --example clip_throughput
EX="$ROOT/target/release/examples/clip_throughput"
AIMP="$ROOT/target/release/aimp"
mkdir -p "$WORK"
[ -f "$WORK/checkpoint/model.safetensors" ] || "$EX" checkpoint "$WORK/checkpoint"
[ "$(ls "$WORK/photos" 2>/dev/null | wc -l)" = "$N" ] || { rm -rf "$WORK/photos"; "$EX" photos "$WORK/photos" "$N"; }

export AIMP_DATA_DIR="$WORK/data" AIMP_MODELS_DIR="$WORK/models" AIMP_MANIFESTS_DIR="$WORK/none"
export AIMP_OFFLINE=1 AIMP_MODELS=clipo AIMP_ADDR=127.0.0.1:0 RUST_LOG=warn
export AIMP_API_KEY=aimp_index_throughput_benchmark_key_000000
export AIMP_MAX_BATCH="$BATCH"
rm -rf "$WORK/data" "$WORK/models"
"$AIMP" models import clipo --unverified --from "$WORK/checkpoint" > /dev/null 2>&1

OUT="$WORK/runs.jsonl"
: > "$OUT"
for round in $(seq "$ROUNDS"); do
  "$EX" raw "$WORK/checkpoint" "$N" "$BATCH" | tee -a "$OUT"
  rm -rf "$WORK/data"
  coproc SERVER { exec "$AIMP" serve 2>/dev/null; }
  read -r line <&"${SERVER[0]}"
  BASE=${line#aimp listening on }
  until curl -sf "$BASE/readyz" > /dev/null; do sleep 0.5; done
  summary=$(AIMP_GATEWAY_URL="$BASE" "$AIMP" index "$WORK/photos" --model clipo \
    --scope "bench-$round" --batch "$BATCH" --jobs 2 2>/dev/null | head -1)
  kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true
  rate=$(sed -E 's/.*\(([0-9.]+) per second\).*/\1/' <<< "$summary")
  echo "{\"what\": \"api\", \"summary\": \"$summary\", \"per_second\": $rate}" | tee -a "$OUT"
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
raw = statistics.median(r["per_second"] for r in runs if r["what"] == "raw")
api = statistics.median(r["per_second"] for r in runs if r["what"] == "api")
print(f"medians of {len(runs) // 2} alternating rounds")
print(f"raw image encoder   {raw:8.2f} pictures/s")
print(f"aimp index via API  {api:8.2f} pictures/s")
print(f"ratio               {api / raw:8.2f}")
PY
