#!/usr/bin/env python3
"""The reference for `cargo bench --bench embed_text`: sentence-transformers on the same
sentences, batch sizes and thread count. Prints the median sentences per second.

    /tmp/refvenv/bin/python benches/reference/embed_text_st.py --model-dir target/tmp/models/demo-model
"""

import argparse
import statistics
import time
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=str(ROOT / "target/tmp/models/demo-model"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0, help="measuring time per batch size")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    sentences = (ROOT / "benches/data/sentences.txt").read_text().splitlines()
    model = SentenceTransformer(args.model_dir, device="cpu")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for batch in (1, 32):
        texts = sentences[:batch]
        for _ in range(3):
            model.encode(texts, batch_size=batch)
        rates = []
        deadline = time.perf_counter() + args.seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            model.encode(texts, batch_size=batch)
            rates.append(batch / (time.perf_counter() - start))
        print(f"batch {batch}: median {statistics.median(rates):.1f} sentences/s over {len(rates)} runs")


if __name__ == "__main__":
    main()
