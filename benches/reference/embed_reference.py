#!/usr/bin/env python3
"""The references for `cargo bench --bench embed_text` and `--bench embed_clip`, in one script:
PyTorch (sentence-transformers / transformers) or ONNX Runtime (fp32, or its dynamic int8
quantisation, from the files `export_onnx.py` writes), on the same inputs, batch sizes and
thread count as ours. Prints one line per measurement: `<what> <batch>: median <rate> ...`.

    /tmp/refvenv/bin/python benches/reference/embed_reference.py --engine torch
    /tmp/refvenv/bin/python benches/reference/embed_reference.py --engine ort --onnx /tmp/onnx
    /tmp/refvenv/bin/python benches/reference/embed_reference.py --engine ort-int8 --onnx /tmp/onnx

Images go from a JPEG file's bytes (decode + CLIPImageProcessor + image tower), as our
`clip_jpeg` bench does. The CLIP model is CLIPConfig's full-size ViT-B/32 with seeded random
weights (no real CLIP weights here); the cost is the real model's.
"""

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
QUERY = "how do I reset my password"


def median_rate(fn, items, seconds):
    for _ in range(2):
        fn()
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 5:
        start = time.perf_counter()
        fn()
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates), len(rates)


def latency(fn, seconds):
    for _ in range(20):
        fn()
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))], len(times)


class Torch:
    def __init__(self, model_dir):
        from sentence_transformers import SentenceTransformer
        from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

        self.st = SentenceTransformer(model_dir, device="cpu")
        torch.manual_seed(42)
        self.clip = CLIPModel(CLIPConfig()).eval()
        self.tok = CLIPTokenizer(tokenizer_file=str(ROOT / "models/clipo/fixtures/tokenizer.json"))

    def minilm(self, texts):
        return lambda: self.st.encode(texts, batch_size=len(texts))

    def clip_image(self, pixels):
        return lambda: self.clip.get_image_features(pixel_values=torch.from_numpy(pixels))

    def clip_text(self, texts):
        ids = self.tok(texts, padding=True, return_tensors="pt")
        return lambda: self.clip.get_text_features(**ids)


class Ort:
    def __init__(self, onnx_dir, int8, threads, model_dir):
        import onnxruntime as ort
        from transformers import AutoTokenizer, CLIPTokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        suffix = "_int8" if int8 else ""
        load = lambda name: ort.InferenceSession(str(Path(onnx_dir) / f"{name}{suffix}.onnx"), opts,
                                                 providers=["CPUExecutionProvider"])
        self.minilm_s, self.image_s, self.text_s = load("minilm"), load("clip_image"), load("clip_text")
        self.bert_tok = AutoTokenizer.from_pretrained(model_dir)
        self.tok = CLIPTokenizer(tokenizer_file=str(ROOT / "models/clipo/fixtures/tokenizer.json"))

    def minilm_inputs(self, texts):
        enc = self.bert_tok(texts, padding=True, truncation=True, max_length=256, return_tensors="np")
        return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}

    def minilm(self, texts):
        # Tokenising is part of the call, as in sentence-transformers' encode.
        return lambda: self.minilm_s.run(None, self.minilm_inputs(texts))[0]

    def clip_image(self, pixels):
        return lambda: self.image_s.run(None, {"pixel_values": pixels})[0]

    def clip_text(self, texts):
        enc = self.tok(texts, padding=True, return_tensors="np")
        feed = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
        return lambda: self.text_s.run(None, feed)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", choices=["torch", "ort", "ort-int8"], default="torch")
    ap.add_argument("--onnx", default="/tmp/onnx")
    ap.add_argument("--model-dir", default=str(ROOT / "target/tmp/models/demo-model"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--only", default="minilm,query,image,text",
                    help="comma-separated groups; 'peak' times one large fp32 matmul (torch)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    only = set(args.only.split(","))
    from PIL import Image
    from transformers import CLIPImageProcessor

    if "peak" in only:
        # The machine's matmul peak as MKL/oneDNN reach it: CLIP's MLP product at batch 32.
        a, b = torch.rand(1600, 768), torch.rand(768, 3072)
        rate, n = median_rate(lambda: torch.mm(a, b), 2 * 1600 * 768 * 3072 / 1e9, args.seconds)
        print(f"peak {args.threads}: median {rate:.1f} GFLOP/s over {n} runs (torch.mm 1600x768 . 768x3072)")
        if only == {"peak"}:
            return
    engine = Torch(args.model_dir) if args.engine == "torch" else Ort(args.onnx, args.engine == "ort-int8", args.threads, args.model_dir)
    processor = CLIPImageProcessor()
    jpeg = (ROOT / "models/clipo/fixtures/images/photo.jpg").read_bytes()
    sentences = (ROOT / "benches/data/sentences.txt").read_text().splitlines()
    print(f"engine {args.engine}, torch {torch.__version__}, threads {args.threads}, {type(processor).__name__}")
    with torch.inference_mode():
        if "minilm" in only:
            for batch in (1, 32):
                rate, n = median_rate(engine.minilm(sentences[:batch]), batch, args.seconds)
                print(f"minilm {batch}: median {rate:.1f} sentences/s over {n} runs")
        if "query" in only:
            p50, p99, n = latency(engine.minilm([QUERY]), args.seconds)
            print(f"query 1: p50 {p50:.3f} ms p99 {p99:.3f} ms over {n} calls")
        if "image" in only:
            for batch in (1, 8, 32):
                def run(batch=batch):
                    images = [Image.open(io.BytesIO(jpeg)).convert("RGB") for _ in range(batch)]
                    pixels = processor(images=images, return_tensors="np")["pixel_values"].astype(np.float32)
                    return embed_image(pixels)
                embed_image = lambda pixels: engine.clip_image(pixels)()
                rate, n = median_rate(run, batch, args.seconds)
                print(f"image {batch}: median {rate:.2f} images/s over {n} runs")
        if "text" in only:
            for batch in (1, 32):
                rate, n = median_rate(engine.clip_text(sentences[:batch]), batch, args.seconds)
                print(f"text {batch}: median {rate:.2f} texts/s over {n} runs")


if __name__ == "__main__":
    main()
