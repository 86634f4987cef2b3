#!/usr/bin/env python3
"""The reference for `cargo bench --bench embed_clip`: transformers' CLIPModel at full ViT-B/32
size (CLIPConfig's defaults) with seeded random weights, on the same batch sizes, sentences and
thread count. Prints median images/s and texts/s.

    /tmp/refvenv/bin/python benches/reference/embed_clip_hf.py
"""

import argparse
from pathlib import Path

import torch
from embed_reference import median_rate
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

ROOT = Path(__file__).resolve().parents[2]


def preprocess(seconds):
    """CLIPImageProcessor (PIL backend) from a JPEG file's bytes to pixel_values."""
    import io

    from PIL import Image
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil()
    data = (ROOT / "models/clipo/fixtures/images/photo.jpg").read_bytes()
    run = lambda: processor(images=Image.open(io.BytesIO(data)), return_tensors="pt")
    rate, n = median_rate(run, 1, seconds)
    print(f"decode+preprocess photo.jpg (400x300): median {1000 / rate:.3f} ms over {n} runs")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--preprocess-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    preprocess(args.seconds)
    if args.preprocess_only:
        return
    torch.manual_seed(42)
    model = CLIPModel(CLIPConfig()).eval()
    tok = CLIPTokenizer(tokenizer_file=str(ROOT / "models/clipo/fixtures/tokenizer.json"))
    sentences = (ROOT / "benches/data/sentences.txt").read_text().splitlines()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    with torch.inference_mode():
        for batch in (1, 8, 32):
            pixels = torch.rand(batch, 3, 224, 224) * 3.9 - 1.8
            rate, n = median_rate(lambda: model.get_image_features(pixel_values=pixels), batch, args.seconds)
            print(f"image batch {batch}: median {rate:.2f} images/s over {n} runs")
        for batch in (1, 32):
            ids = tok(sentences[:batch], padding=True, return_tensors="pt")
            rate, n = median_rate(lambda: model.get_text_features(**ids), batch, args.seconds)
            print(f"text batch {batch}: median {rate:.2f} texts/s over {n} runs")


if __name__ == "__main__":
    main()
