"""Extracts the sentences of benches/data/rust-book-sentences.txt from "The Rust Programming
Language" (the book rustup installs with the rust-docs component), so the corpus can be
rebuilt and checked:

    python3 benches/data/rust_book_sentences.py \
        ~/.rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu/share/doc/rust/html/book \
        > benches/data/rust-book-sentences.txt

Every paragraph of every chapter page, tags removed, split into sentences; sentences of 8 to
40 words ending in . ! or ?, first occurrence only; then two of every five, in book order,
up to 2,400.
"""

import html
import pathlib
import re
import sys

LIMIT = 2400


def sentences(book: pathlib.Path):
    seen = set()
    for page in sorted(book.glob("ch*.html")):
        main = re.search(r"<main>(.*)</main>", page.read_text(encoding="utf-8"), re.S)
        if not main:
            continue
        for paragraph in re.findall(r"<p>(.*?)</p>", main.group(1), re.S):
            text = html.unescape(re.sub(r"<[^>]+>", "", paragraph))
            text = re.sub(r"\s+", " ", text).strip()
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
                if 8 <= len(s.split()) <= 40 and s[-1] in ".!?" and s not in seen:
                    seen.add(s)
                    yield s


def main():
    every = list(sentences(pathlib.Path(sys.argv[1])))
    kept = [s for i, s in enumerate(every) if i % 5 in (0, 2)][:LIMIT]
    sys.stdout.write("\n".join(kept) + "\n")


if __name__ == "__main__":
    main()
