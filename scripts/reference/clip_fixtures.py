#!/usr/bin/env python3
"""Small random-weight CLIP checkpoints and their reference outputs, for the Rust parity tests.

For each checkpoint (seeded), writes `models/clipo/fixtures/<name>/` in the Hugging Face layout
(`config.json`, `model.safetensors` in float16), plus `reference.json` with transformers' text
and image embeddings. The CLIP `tokenizer.json` (built by `clip_tokenizer.py`) is shared by both
and lives once, in `models/clipo/fixtures/`; a checkpoint folder plus that file is exactly what
the hub's `openai/clip-vit-base-patch32` holds.
The weights are rounded to float16 before the reference runs, so the float32 reference and a
float32 load of the float16 file see identical numbers.

Images: `models/clipo/fixtures/images/` holds small generated image files of several formats,
modes and sizes. For each, `expected/<name>.png` is the 224x224 RGB image that
`CLIPImageProcessorPil` (PIL bicubic shortest-side resize, centre crop) hands to its rescale
and normalise steps, stored losslessly; the reference pixel tensor is
`(png / 255 - mean) / std`.

    /tmp/refvenv/bin/python scripts/reference/clip_fixtures.py
"""

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "models" / "clipo" / "fixtures"
TEXTS = [
    "a photo of a cat",
    "a diagram of a vector index",
    "",
    "Émigré café at night, 東京 🚀",
    "word " * 100,
]
CHECKPOINTS = {
    "tiny-a": dict(seed=1, text=dict(hidden_size=16, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2),
                   vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=2, patch_size=32), projection_dim=16),
    "tiny-b": dict(seed=2, text=dict(hidden_size=24, intermediate_size=96, num_hidden_layers=3,
                                     num_attention_heads=3),
                   vision=dict(hidden_size=24, intermediate_size=40, num_hidden_layers=1,
                               num_attention_heads=4, patch_size=16), projection_dim=512),
}


def make_images(out: Path) -> list[Path]:
    """Deterministic pictures with edges, gradients and noise, saved in varied formats."""
    rng = np.random.default_rng(7)
    out.mkdir(parents=True, exist_ok=True)

    def picture(w, h):
        y, x = np.mgrid[0:h, 0:w]
        r = (x * 255 // max(w - 1, 1)).astype(np.uint8)
        g = (y * 255 // max(h - 1, 1)).astype(np.uint8)
        b = ((x + y) % 64 * 4).astype(np.uint8)
        arr = np.stack([r, g, b], -1)
        arr = np.clip(arr.astype(int) + rng.integers(-12, 12, arr.shape), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
        d = ImageDraw.Draw(img)
        d.ellipse([w // 5, h // 5, w // 2, h // 2], fill=(250, 30, 30))
        d.rectangle([w // 2, h // 3, w - w // 6, h - h // 6], outline=(10, 10, 10), width=3)
        d.line([0, h - 1, w - 1, 0], fill=(255, 255, 0), width=2)
        return img

    files = []

    def save(img, name, **kw):
        path = out / name
        img.save(path, **kw)
        files.append(path)

    save(picture(320, 240), "landscape_rgb.png")
    rgba = picture(150, 260).convert("RGBA")
    alpha = Image.linear_gradient("L").resize(rgba.size)
    rgba.putalpha(alpha)
    save(rgba, "portrait_rgba.png")
    save(picture(256, 256).convert("P", palette=Image.ADAPTIVE, colors=64), "palette.png")
    save(picture(300, 200).convert("L"), "grayscale.jpg", quality=90)
    sixteen = (np.asarray(picture(160, 120).convert("L"), dtype=np.uint16) * 257)
    save(Image.fromarray(sixteen.astype("<u2")), "gray16.png")
    save(picture(200, 200), "square.webp", lossless=True)
    save(picture(180, 120).convert("P", palette=Image.ADAPTIVE), "frame.gif")
    save(picture(48, 30), "small_upscaled.png")
    save(picture(400, 300), "photo.jpg", quality=85)
    save(picture(233, 157), "progressive_422.jpg", quality=80, subsampling=1, progressive=True)
    save(picture(190, 140).convert("CMYK"), "cmyk.jpg", quality=90)
    rgba16 = np.asarray(rgba, dtype=np.uint16) * 257 + rng.integers(0, 257, (260, 150, 4))
    write_png16(out / "rgba16.png", rgba16.astype(np.uint16))
    files.append(out / "rgba16.png")
    return files


def write_png16(path: Path, arr) -> None:
    """A 16-bit RGBA PNG (Pillow cannot write one), unfiltered rows, big-endian samples."""
    import struct
    import zlib

    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def to_float(model):
    """Round every weight to float16, then compute in float32."""
    return model.half().float()


def main() -> None:
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    import transformers

    tokenizer_json = FIXTURES / "tokenizer.json"
    tok = CLIPTokenizer(tokenizer_file=str(tokenizer_json))
    processor = CLIPImageProcessorPil()
    images = make_images(FIXTURES / "images")
    expected = FIXTURES / "images" / "expected"
    expected.mkdir(exist_ok=True)
    pixels = {}
    mean = np.array(processor.image_mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.array(processor.image_std, dtype=np.float32).reshape(3, 1, 1)
    for path in images:
        pv = processor(images=Image.open(path), return_tensors="pt")["pixel_values"][0].numpy()
        u8 = np.rint((pv * std + mean) * 255.0)
        assert np.abs(u8 - (pv * std + mean) * 255.0).max() < 1e-3, path
        u8 = u8.clip(0, 255).astype(np.uint8)
        back = (u8.astype(np.float32) / 255.0 - mean) / std
        assert np.abs(back - pv).max() < 1e-5, path
        Image.fromarray(np.ascontiguousarray(u8.transpose(1, 2, 0))).save(expected / (path.name + ".png"))
        pixels[path.name] = torch.from_numpy(pv)

    for name, spec in CHECKPOINTS.items():
        torch.manual_seed(spec["seed"])
        config = CLIPConfig(
            text_config=dict(vocab_size=49408, max_position_embeddings=77, **spec["text"]),
            vision_config=dict(image_size=224, **spec["vision"]),
            projection_dim=spec["projection_dim"],
        )
        model = to_float(CLIPModel(config)).eval()
        out = FIXTURES / name
        out.mkdir(parents=True, exist_ok=True)
        model.half().save_pretrained(out, safe_serialization=True)
        model = model.float()

        with torch.no_grad():
            ids = tok(TEXTS, padding=True, truncation=True, max_length=77, return_tensors="pt")
            t = model.get_text_features(**ids)
            t = getattr(t, "pooler_output", t)
            batch = torch.stack([pixels[p.name] for p in images])
            i = model.get_image_features(pixel_values=batch)
            i = getattr(i, "pooler_output", i)
        reference = {
            "generator": "scripts/reference/clip_fixtures.py",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "texts": [{"text": s, "embedding": v.tolist()} for s, v in zip(TEXTS, t)],
            "images": [{"file": p.name, "embedding": v.tolist()} for p, v in zip(images, i)],
        }
        (out / "reference.json").write_text(json.dumps(reference, ensure_ascii=False) + "\n")
        size = sum(f.stat().st_size for f in out.iterdir())
        print(f"{name}: {size / 1e6:.1f} MB, projection {spec['projection_dim']}")


if __name__ == "__main__":
    main()
