#!/usr/bin/env bash
# Interleaves sentence-transformers and candle runs of the embed_text benchmark on this machine
# and prints each round's medians (sentences/s). The machine is shared and noisy: compare the
# medians of the rounds, never one run.
#
#   PY=/tmp/refvenv/bin/python benches/reference/compare_embed_text.sh 3
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
py=${PY:-python3}
cargo bench --bench embed_text --no-run >/dev/null 2>&1
for round in $(seq 1 "$rounds"); do
    "$py" benches/reference/embed_text_st.py --seconds 8 2>/dev/null \
        | sed -n "s/^batch \([0-9]*\): median \([0-9.]*\).*/round $round reference batch \1: \2/p"
    cargo bench --bench embed_text -- --warm-up-time 3 --measurement-time 8 >/dev/null 2>&1
    for batch in 1 32; do
        ns=$(python3 -c "import json;print(json.load(open('target/criterion/embed_text/$batch/new/estimates.json'))['median']['point_estimate'])")
        python3 -c "print('round $round candle batch $batch: %.1f' % ($batch / ($ns / 1e9)))"
    done
done
