#!/usr/bin/env python3
"""Builds CLIP's BPE tokenizer (tokenizer.json) from the real vocabulary and records
transformers' CLIPTokenizer output for a varied set of strings.

The vocabulary is `bpe_simple_vocab_16e6.txt.gz`, shipped inside the `open-clip-torch` wheel
(pinned below). The vocabulary and merges are laid out exactly as OpenAI's / open_clip's
SimpleTokenizer does, handed to transformers' CLIPTokenizer, and its backend saved as
`models/clipo/fixtures/tokenizer.json`, which the Rust `tokenizers` crate loads. The token ids
that transformers produces (77-token limit, truncation, start/end tokens) go to
`models/clipo/fixtures/tokenizer_reference.json`; a Rust test checks token-for-token parity.

    /tmp/refvenv/bin/python scripts/reference/clip_tokenizer.py
"""

import gzip
import json
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "models" / "clipo" / "fixtures"
OPEN_CLIP = "open-clip-torch==3.3.0"
VOCAB_IN_WHEEL = "open_clip/bpe_simple_vocab_16e6.txt.gz"
MAX_LENGTH = 77


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def vocab_and_merges(bpe_gz: Path):
    merges = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = merges[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab.extend("".join(m) for m in merges)
    vocab.extend(["<|startoftext|>", "<|endoftext|>"])
    return {v: i for i, v in enumerate(vocab)}, merges


def strings():
    rng = random.Random(20261129)
    base = [
        "a photo of a cat", "A PHOTO OF A DOG", "a diagram", "", " ", "hello world",
        "The quick brown fox jumps over the lazy dog.", "it's a dog's life, isn't it?",
        "they'll've gone; we'd rather not", "don't stop believin'", "rock'n'roll",
        "emoji 😀🚀🔥👍🏽 and flags 🇫🇷🇯🇵", "👨‍👩‍👧‍👦 family", "café naïve coöperate façade",
        "Straße Überraschung", "東京タワーの写真", "北京烤鸭", "서울의 밤", "Москва ночью",
        "مرحبا بالعالم", "שלום עולם", "ελληνικά", "हिन्दी पाठ", "ไทย", "tiếng việt có dấu",
        "123 4567 89.01 1e10 0x1F", "C++ and C# and F#", "user@example.com https://example.com/a?b=c",
        "#hashtag @mention $100 50% a&b", "(parens) [brackets] {braces} <angles>",
        "multiple   spaces\tand\ttabs\nand\nnewlines", "trailing space ", " leading space",
        "ALL CAPS SENTENCE WITH NUMBERS 2026", "mIxEd CaSe", "hyphen-ated words-here",
        "under_score_words", "dots...and---dashes", "quotes \"double\" 'single' `back`",
        "<|startoftext|> inside text", "text with <|endoftext|> marker", "a" * 300,
        "word " * 100, "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "\u00a0non-breaking\u00a0spaces", "zero\u200bwidth", "combining e\u0301 accent",
        "full-width ＡＢＣ １２３", "math ∑ ∫ √ ∞ ≠ ≤", "arrows → ← ↑ ↓", "currency € £ ¥ ₹",
    ]
    words = ["photo", "cat", "dog", "red", "car", "street", "night", "city", "beautiful", "sunset",
             "mountain", "river", "painting", "sketch", "of", "a", "the", "with", "and", "in",
             "très", "jolie", "日本", "🙂", "42", "3.14", "x-ray", "o'clock", "rock'n'roll", "GPU"]
    generated = []
    for n in range(160):
        length = rng.choice([1, 2, 3, 5, 8, 13, 21, 40, 90])
        generated.append(" ".join(rng.choice(words) for _ in range(length)))
    return base + generated


def main() -> None:
    from transformers import CLIPTokenizer
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, OPEN_CLIP],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extract(VOCAB_IN_WHEEL, tmp)
        vocab, merges = vocab_and_merges(Path(tmp) / VOCAB_IN_WHEEL)

    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LENGTH)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    tok.backend_tokenizer.save(str(FIXTURES / "tokenizer.json"))

    cases = strings()
    encoded = tok(cases, truncation=True, max_length=MAX_LENGTH)["input_ids"]
    data = {
        "generator": "scripts/reference/clip_tokenizer.py",
        "transformers": transformers.__version__,
        "vocabulary": f"{OPEN_CLIP}:{VOCAB_IN_WHEEL}",
        "max_length": MAX_LENGTH,
        "cases": [{"text": t, "ids": ids} for t, ids in zip(cases, encoded)],
    }
    (FIXTURES / "tokenizer_reference.json").write_text(json.dumps(data, ensure_ascii=False) + "\n")
    truncated = sum(1 for ids in encoded if len(ids) == MAX_LENGTH)
    print(f"{len(cases)} cases, {truncated} truncated to {MAX_LENGTH}, vocab {len(vocab)}")


if __name__ == "__main__":
    main()
