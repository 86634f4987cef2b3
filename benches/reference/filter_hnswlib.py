#!/usr/bin/env python3
"""The reference for `aimp bench filter`: hnswlib's filter functor on the very vectors, labels,
filters and truth the bench wrote to DIR (base.npy, query.npy, uniform.npy, cluster.npy,
cases.json; vectors already prepared for the metric). Builds with M 16 and ef_construction 200
on one thread, then answers every case's queries one at a time at each ef, passing the filter
as hnswlib's Python `filter` callable. Writes DIR/hnswlib.json: records in the bench's shape.

`aimp bench filter --hnswlib PYTHON` writes this file into DIR and runs it; by hand:

    /tmp/refvenv/bin/pip install numpy hnswlib
    /tmp/refvenv/bin/python DIR/filter_hnswlib.py DIR 16,32,64,128,256 cosine 10
"""

import json
import platform
import sys
import time
from pathlib import Path

import hnswlib
import numpy as np


def main() -> None:
    folder = Path(sys.argv[1])
    efs = [int(e) for e in sys.argv[2].split(",")]
    metric = sys.argv[3]
    k = int(sys.argv[4])
    base = np.load(folder / "base.npy")
    queries = np.load(folder / "query.npy")
    uniform = np.load(folder / "uniform.npy").reshape(-1)
    cluster = np.load(folder / "cluster.npy").reshape(-1)
    cases = json.loads((folder / "cases.json").read_text())
    n, dim = base.shape
    space = {"l2": "l2", "cosine": "cosine", "dot": "ip"}[metric]

    index = hnswlib.Index(space=space, dim=dim)
    index.init_index(max_elements=n, M=16, ef_construction=200, random_seed=100)
    start = time.perf_counter()
    index.add_items(base, np.arange(n), num_threads=1)
    print(f"hnswlib built in {time.perf_counter() - start:.1f} s", file=sys.stderr)

    records = []
    for case in cases:
        masks = []
        for selector in case["selectors"]:
            if selector == "all":
                masks.append(None)
            elif "below" in selector:
                masks.append(uniform < selector["below"])
            else:
                masks.append(np.isin(cluster, np.array(selector["clusters"], dtype=cluster.dtype)))
        for ef in efs:
            index.set_ef(max(ef, k))
            found, latencies = [], []
            began = time.perf_counter()
            for q, mask in enumerate(masks):
                t = time.perf_counter()
                if mask is None:  # unfiltered: the plain search
                    labels, _ = index.knn_query(queries[q : q + 1], k=k, num_threads=1)
                else:
                    allowed = mask.tolist()
                    t = time.perf_counter()
                    labels, _ = index.knn_query(
                        queries[q : q + 1], k=min(k, int(mask.sum())) or 1,
                        num_threads=1, filter=lambda i: allowed[i],
                    )
                latencies.append((time.perf_counter() - t) * 1000.0)
                found.append(set(int(x) for x in labels[0]))
            elapsed = time.perf_counter() - began
            hit = wanted = 0
            for f, truth in zip(found, case["truth"]):
                wanted += len(truth)
                hit += sum(1 for i in truth if i in f)
            latencies.sort()
            pick = lambda p: latencies[round((len(latencies) - 1) * p)]
            records.append({
                "engine": "hnswlib",
                "correlation": case["correlation"],
                "selectivity": case["selectivity"],
                "matched": case["matched"],
                "ef": ef,
                "queries": len(masks),
                "k": k,
                "recall": hit / wanted if wanted else 1.0,
                "qps_single": len(masks) / elapsed,
                "p50_ms": pick(0.5),
                "p99_ms": pick(0.99),
                "exhaustive": 0.0,
                "n": n,
                "dim": dim,
                "simd": f"hnswlib {hnswlib.__version__ if hasattr(hnswlib, '__version__') else '0.8.0'}, "
                        f"numpy {np.__version__}, Python {platform.python_version()}",
                "machine": None,
                "versions": None,
            })
            print(f"hnswlib {case['correlation']} {case['selectivity']} ef {ef}: "
                  f"recall {records[-1]['recall']:.3f}", file=sys.stderr)
    (folder / "hnswlib.json").write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
