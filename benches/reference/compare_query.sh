#!/usr/bin/env bash
# One search query's latency through our API (a gateway started here on a free loopback port,
# demo-model, one short text per POST /api/runs, one connection) alternated with one ONNX
# Runtime fp32 call on the same text. Prints p50/p99 per round.
#
#   PY=/tmp/refvenv/bin/python benches/reference/compare_query.sh 3
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
py=${PY:-python3}
cargo build --release --locked >/dev/null 2>&1
data=$(mktemp -d)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
export AIMP_API_KEY="aimp_$(head -c 30 /dev/urandom | base64 | tr '+/' '-_')"
# demo-model as the tests installed it (target/tmp/models), so nothing is fetched.
target/release/aimp serve --addr "127.0.0.1:$port" --data-dir "$data" \
    --models-dir target/tmp/models --rate-limit 0 >"$data/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$data"' EXIT
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.5; done
for round in $(seq 1 "$rounds"); do
    echo "round $round ours (HTTP): $("$py" benches/reference/query_latency.py --url "http://127.0.0.1:$port")"
    echo "round $round ort fp32: $("$py" benches/reference/embed_reference.py --engine ort --only query 2>/dev/null | grep '^query')"
done
