"""Writes a real English text corpus of about 100,000 sentences, one a line, from documentation
already on a machine that builds this project (no download): the HTML books and API docs that
rustup installs with the toolchain's rust-docs component, then the doc comments (`///`, `//!`)
of the crates in Cargo.lock whose sources cargo has unpacked. `aimp bench filter` embeds it
with demo-model's real MiniLM weights (see docs/benchmarks.md):

    python3 benches/data/docs_corpus.py \
        ~/.rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu/share/doc/rust/html \
        Cargo.lock ~/.cargo/registry/src/index.crates.io-* > /tmp/corpus.txt

Sentences of 8 to 40 words ending in . ! or ?, with markup removed, first occurrence only,
in file order (sorted paths), up to --limit (default 110,000). The texts are licensed as their
sources are (the Rust documentation and the crates: MIT or Apache-2.0 for nearly all); the
corpus is not committed, only this script.
"""

import html
import pathlib
import re
import sys

LIMIT = 110_000
SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
LINK = re.compile(r"\[`?([^\]]*?)`?\](\([^)]*\)|\[[^\]]*\])?")


def keep(text, seen):
    text = re.sub(r"\s+", " ", text).strip()
    for s in SPLIT.split(text):
        if 8 <= len(s.split()) <= 40 and s[-1] in ".!?" and s not in seen:
            seen.add(s)
            yield s


def from_html(root, seen):
    for page in sorted(root.rglob("*.html")):
        try:
            text = page.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for paragraph in re.findall(r"<p>(.*?)</p>", text, re.S):
            yield from keep(html.unescape(re.sub(r"<[^>]+>", "", paragraph)), seen)


def locked_crates(lock, registry):
    text = lock.read_text(encoding="utf-8")
    for name, version in sorted(set(re.findall(r'name = "([^"]+)"\nversion = "([^"]+)"', text))):
        source = registry / f"{name}-{version}"
        if source.is_dir():
            yield source


def from_doc_comments(source, seen):
    for path in sorted(source.rglob("*.rs")):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        block, fenced = [], False
        for line in lines + [""]:
            m = re.match(r"\s*//[/!]\s?(.*)", line)
            if m:
                body = m.group(1)
                if body.startswith("```"):
                    fenced = not fenced
                elif not fenced and not body.startswith(("#", "|", "    ")):
                    block.append(body)
                continue
            if block:
                yield from keep(LINK.sub(r"\1", " ".join(block)).replace("`", ""), seen)
                block, fenced = [], False


def main():
    args = sys.argv[1:]
    limit = LIMIT
    if "--limit" in args:
        i = args.index("--limit")
        limit = int(args[i + 1])
        del args[i : i + 2]
    if len(args) != 3:
        sys.exit("usage: docs_corpus.py RUST_DOC_HTML CARGO_LOCK REGISTRY_SRC [--limit N]")
    html_root, lock, registry = (pathlib.Path(a).expanduser() for a in args)
    seen = set()

    def every():
        yield from from_html(html_root, seen)
        for source in locked_crates(lock, registry):
            yield from from_doc_comments(source, seen)

    out = []
    for s in every():
        out.append(s)
        if len(out) == limit:
            break
    sys.stdout.write("\n".join(out) + "\n")
    print(f"{len(out)} sentences", file=sys.stderr)


if __name__ == "__main__":
    main()
