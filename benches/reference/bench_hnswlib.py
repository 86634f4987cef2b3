"""hnswlib on the vectors `aimp bench ann` measured, in the same record shape, so the two
can share a table: `--threads` for building, one thread for the timed queries.

    /tmp/refvenv/bin/pip install hnswlib numpy
    /tmp/refvenv/bin/python benches/reference/bench_hnswlib.py base.fvecs query.fvecs gt.ivecs \
        --k 10 --m 16 --ef-construction 200 --ef 16,32,64,128,256 > hnswlib.json
"""
import argparse
import json
import platform
import resource
import time

import hnswlib
import numpy as np


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    rows = raw.reshape(-1, dim + 1)
    assert (rows[:, 0] == dim).all(), f"{path}: records of different dimensions"
    return rows[:, 1:].copy().view(dtype)


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


p = argparse.ArgumentParser()
p.add_argument("base")
p.add_argument("query")
p.add_argument("gt")
p.add_argument("--k", type=int, default=10)
p.add_argument("--m", type=int, default=16)
p.add_argument("--ef-construction", type=int, default=200)
p.add_argument("--ef", default="16,32,64,128,256")
p.add_argument("--metric", default="l2", choices=["l2", "cosine", "dot"])
p.add_argument("--threads", type=int, default=1, help="threads for building; queries run on one")
a = p.parse_args()

base = read_vecs(a.base, np.float32)
queries = read_vecs(a.query, np.float32)
gt = read_vecs(a.gt, np.int32)[:, : a.k]
space = {"l2": "l2", "cosine": "cosine", "dot": "ip"}[a.metric]
before = rss_bytes()
t = time.perf_counter()
index = hnswlib.Index(space=space, dim=base.shape[1])
index.init_index(max_elements=len(base), M=a.m, ef_construction=a.ef_construction, random_seed=100)
index.set_num_threads(a.threads)
index.add_items(base, np.arange(len(base)))
index.set_num_threads(1)
build_s = time.perf_counter() - t
bytes_per_vector = (rss_bytes() - before) / len(base)
records = []
for ef in [int(e) for e in a.ef.split(",")]:
    index.set_ef(max(ef, a.k))
    lat = []
    found = []
    for q in queries:
        t = time.perf_counter()
        labels, _ = index.knn_query(q, k=a.k)
        lat.append(time.perf_counter() - t)
        found.append(labels[0])
    recall = np.mean([len(set(f) & set(g)) / a.k for f, g in zip(found, gt)])
    lat = np.sort(np.array(lat))
    pct = lambda x: float(lat[min(len(lat) - 1, int(np.ceil(x * len(lat))) - 1)] * 1e3)
    records.append({
        "engine": "hnswlib", "ef": ef, "recall": float(recall),
        "qps_single": len(queries) / float(lat.sum()), "p50_ms": pct(0.5), "p95_ms": pct(0.95),
        "p99_ms": pct(0.99), "build_s": build_s, "bytes_per_vector": bytes_per_vector,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "n": len(base), "dim": base.shape[1], "k": a.k, "m": a.m,
        "ef_construction": a.ef_construction, "metric": a.metric, "threads": a.threads,
        "versions": {"hnswlib": getattr(hnswlib, "__version__", "0.8.0"), "python": platform.python_version()},
    })
print(json.dumps(records, indent=2))
