#!/usr/bin/env python3
"""The reference for our HNSW: hnswlib on the very vectors, queries and truth that
`cargo run --release -p aimp-index --example ann_compare -- --out DIR` wrote to DIR, with the
same M, ef_construction, ef values and thread count. Prints one JSON object in the same shape.

    /tmp/refvenv/bin/pip install hnswlib
    /tmp/refvenv/bin/python benches/reference/ann_hnswlib.py DIR
"""

import json
import sys
import time
from pathlib import Path

import hnswlib
import numpy as np


def rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


def main() -> None:
    folder = Path(sys.argv[1])
    meta = json.loads((folder / "meta.json").read_text())
    n, dim, nq, k = meta["n"], meta["dim"], meta["queries"], meta["k"]
    base = np.fromfile(folder / "base.f32", dtype="<f4").reshape(n, dim)
    queries = np.fromfile(folder / "queries.f32", dtype="<f4").reshape(nq, dim)
    truth = np.fromfile(folder / "truth.u32", dtype="<u4").reshape(nq, k)
    space = {"l2": "l2", "cosine": "cosine", "dot": "ip"}[meta["metric"]]

    before = rss_bytes()
    start = time.perf_counter()
    index = hnswlib.Index(space=space, dim=dim)
    index.init_index(max_elements=n, M=meta["m"], ef_construction=meta["ef_construction"], random_seed=100)
    index.add_items(base, np.arange(n), num_threads=meta["threads"])
    build_s = time.perf_counter() - start
    rss_per_vector = (rss_bytes() - before) / n

    rows = []
    for ef in meta["efs"]:
        index.set_ef(ef)
        times = []
        for _ in range(3):
            found = []
            t = time.perf_counter()
            for q in queries:
                labels, _ = index.knn_query(q, k=k, num_threads=1)
                found.append(labels[0])
            times.append(time.perf_counter() - t)
        times.sort()
        recall = np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth)])
        rows.append({"ef": ef, "recall": round(float(recall), 4), "qps": round(nq / times[1], 1)})
    print(json.dumps({"engine": "hnswlib", "version": getattr(hnswlib, "__version__", "?"), "n": n,
                      "dim": dim, "threads": meta["threads"], "build_s": round(build_s, 2),
                      "rss_bytes_per_vector": round(rss_per_vector, 1), "search": rows}))


if __name__ == "__main__":
    main()
