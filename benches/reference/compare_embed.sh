#!/usr/bin/env bash
# Alternates our encoders (criterion: embed_text, embed_clip) with PyTorch and ONNX Runtime
# (embed_reference.py) on this machine and prints every round's numbers: rates per second,
# and the query's time in ms. The machine is shared and noisy: compare medians over rounds,
# never one run.
#
#   PY=/tmp/refvenv/bin/python benches/reference/export_onnx.py --out /tmp/onnx   # once
#   PY=/tmp/refvenv/bin/python benches/reference/compare_embed.sh 3 [torch ort ort-int8]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
shift || true
engines=${*:-torch ort}
py=${PY:-python3}
seconds=${SECONDS_PER:-5}
cargo bench --bench embed_text --bench embed_clip --no-run >/dev/null 2>&1
rate() { # criterion group/id, items -> items per second from the median
    python3 -c "import json;e=json.load(open('target/criterion/$1/new/estimates.json'));print('%.2f' % ($2 / (e['median']['point_estimate'] / 1e9)))"
}
ms() {
    python3 -c "import json;e=json.load(open('target/criterion/$1/new/estimates.json'));print('%.3f' % (e['median']['point_estimate'] / 1e6))"
}
for round in $(seq 1 "$rounds"); do
    for engine in $engines; do
        "$py" benches/reference/embed_reference.py --engine "$engine" --seconds "$seconds" 2>/dev/null \
            | grep -E '^(minilm|query|image|text) ' | sed "s/^/round $round $engine /"
    done
    cargo bench --bench embed_text -- --warm-up-time 2 --measurement-time "$seconds" >/dev/null 2>&1
    cargo bench --bench embed_clip -- --warm-up-time 2 --measurement-time "$seconds" 'clip_jpeg|clip_text' >/dev/null 2>&1
    for p in fp32 int8; do
        for b in 1 32; do echo "round $round ours-$p minilm $b: median $(rate embed_text/$p/$b $b) sentences/s"; done
        echo "round $round ours-$p query 1: p50 $(ms embed_text/$p/query) ms (criterion median, in process)"
        for b in 1 8 32; do echo "round $round ours-$p image $b: median $(rate clip_jpeg/$p/$b $b) images/s"; done
        for b in 1 32; do echo "round $round ours-$p text $b: median $(rate clip_text/$p/$b $b) texts/s"; done
    done
done
