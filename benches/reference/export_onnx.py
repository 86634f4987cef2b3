#!/usr/bin/env python3
"""Exports the reference models to ONNX for ONNX Runtime, in fp32 and with ORT's dynamic int8
quantisation: demo-model (all-MiniLM-L6-v2, the pinned weights, mean pooling + L2 as
sentence-transformers does) and both towers of a full-size CLIP ViT-B/32 (CLIPConfig's
defaults, torch.manual_seed(42): the same shapes and cost as embed_clip_hf.py's model).

    /tmp/refvenv/bin/python benches/reference/export_onnx.py --out /tmp/onnx

Writes minilm.onnx, clip_image.onnx, clip_text.onnx and their *_int8.onnx twins. The exporter
may leave a torch module changed (it traces through it), so every reference measurement loads
its model afresh instead of reusing one that was exported.
"""

import argparse
from pathlib import Path

import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

ROOT = Path(__file__).resolve().parents[2]


class MeanPooled(torch.nn.Module):
    """BertModel + sentence-transformers' mean pooling and L2 normalisation."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


def features(out):
    """get_*_features returns the projected tensor (transformers 4) or an output whose
    pooler_output holds it (transformers 5)."""
    return out if torch.is_tensor(out) else out.pooler_output


class ImageFeatures(torch.nn.Module):
    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, pixel_values):
        return torch.nn.functional.normalize(features(self.clip.get_image_features(pixel_values=pixel_values)), dim=-1)


class TextFeatures(torch.nn.Module):
    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, input_ids, attention_mask):
        feats = features(self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask))
        return torch.nn.functional.normalize(feats, dim=-1)


def export(module, args, names, dynamic, path):
    torch.onnx.export(module, args, str(path), input_names=names, output_names=["embedding"],
                      dynamic_axes=dynamic, opset_version=17, dynamo=False)
    quantize_dynamic(str(path), str(path.with_name(path.stem + "_int8.onnx")), weight_type=QuantType.QInt8)
    print(f"wrote {path} and its int8 twin")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/onnx")
    ap.add_argument("--model-dir", default=str(ROOT / "target/tmp/models/demo-model"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from transformers import AutoModel, AutoTokenizer, CLIPConfig, CLIPModel
    with torch.no_grad():
        bert = AutoModel.from_pretrained(args.model_dir).eval()
        tok = AutoTokenizer.from_pretrained(args.model_dir)
        enc = tok(["a short query", "a second, longer sentence for the shape"], padding=True, return_tensors="pt")
        seq = {0: "batch", 1: "tokens"}
        export(MeanPooled(bert), (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]),
               ["input_ids", "attention_mask", "token_type_ids"],
               {"input_ids": seq, "attention_mask": seq, "token_type_ids": seq}, out / "minilm.onnx")

        torch.manual_seed(42)
        clip = CLIPModel(CLIPConfig()).eval()
        export(ImageFeatures(clip), (torch.rand(2, 3, 224, 224),), ["pixel_values"],
               {"pixel_values": {0: "batch"}}, out / "clip_image.onnx")
        ids = torch.randint(0, 49406, (2, 12))
        export(TextFeatures(clip), (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"],
               {"input_ids": seq, "attention_mask": seq}, out / "clip_text.onnx")


if __name__ == "__main__":
    main()
