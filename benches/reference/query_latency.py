#!/usr/bin/env python3
"""Latency of one search query through the gateway's API: `POST /api/runs` with demo-model,
mode execute and one short text, on one kept-alive connection, one request at a time.
Prints p50 and p99 in milliseconds (client-side, loopback).

    AIMP_API_KEY=... python3 benches/reference/query_latency.py --url http://127.0.0.1:8080

`benches/reference/compare_query.sh` starts a gateway for it and alternates it with ONNX
Runtime's call on the same text (`embed_reference.py --only query`).
"""

import argparse
import http.client
import json
import os
import time
from urllib.parse import urlparse

QUERY = "how do I reset my password"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=os.environ.get("AIMP_GATEWAY_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args()
    url = urlparse(args.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    body = json.dumps({"model": "demo-model", "mode": "execute", "scope": "latency",
                       "input": {"text": QUERY}, "params": {}})
    headers = {"X-API-Key": os.environ["AIMP_API_KEY"], "Content-Type": "application/json"}

    def call():
        conn.request("POST", "/api/runs", body, headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"{response.status}: {data[:200]!r}")

    for _ in range(20):
        call()
    times = []
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p50, p99 = times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"query 1: p50 {p50:.3f} ms p99 {p99:.3f} ms over {len(times)} calls")


if __name__ == "__main__":
    main()
