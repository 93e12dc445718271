"""Prepare electra_fast's bundled corpus: plain English text from 106 Wikipedia articles.

Source: gensim 4.4.0's wheel carries a shortened English Wikipedia dump (206 pages of
enwiki-latest-pages-articles1, 2016) as a test fixture. This script `pip download`s that wheel into a
temporary directory, reads the dump out of it, keeps the articles (main namespace, no redirects),
strips the wiki markup with the small parser below and writes one article per line, gzipped
deterministically, to electra_fast/corpus/enwiki_sample.txt.gz. The text is CC BY-SA (see
electra_fast/corpus/SOURCE.md).

    python tools/prepare_corpus.py            # rewrites electra_fast/corpus/enwiki_sample.txt.gz
    python tools/prepare_corpus.py --wheel PATH_TO_GENSIM_WHEEL
"""
from __future__ import annotations

import argparse
import bz2
import gzip
import hashlib
import html
import pathlib
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile

WHEEL_SPEC = "gensim==4.4.0"
MEMBER = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
MEMBER_SHA256 = "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d"
OUTPUT = pathlib.Path(__file__).resolve().parents[1] / "electra_fast" / "corpus" / "enwiki_sample.txt.gz"

# Sections that hold lists of links and citations rather than prose.
_DROPPED_SECTIONS = {"references", "external links", "see also", "further reading", "notes", "bibliography",
                     "sources", "footnotes", "citations", "notes and references", "works cited"}
# Link namespaces whose content is not running text (images, categories, interlanguage links).
_DROPPED_LINK = re.compile(r"^\s*:?\s*(category|[a-z]{2,3}(-[a-z]+)?)\s*:", re.IGNORECASE)


def fetch_dump(wheel: pathlib.Path | None) -> bytes:
    """The bz2 dump's bytes, from `wheel` or from a freshly downloaded gensim wheel (checksum-verified)."""
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                            "-d", tmp, WHEEL_SPEC], check=True)
            wheel = next(pathlib.Path(tmp).glob("gensim-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != MEMBER_SHA256:
        raise RuntimeError(f"{MEMBER} has sha256 {digest}, expected {MEMBER_SHA256}")
    return data


def articles(xml_text: str):
    """(title, wikitext) of every main-namespace page that is not a redirect, in dump order."""
    root = ET.fromstring(xml_text)
    ns = root.tag[: root.tag.index("}") + 1]
    for page in root.iter(f"{ns}page"):
        text = page.findtext(f"{ns}revision/{ns}text") or ""
        if page.findtext(f"{ns}ns") == "0" and not text.lstrip().upper().startswith("#REDIRECT"):
            yield page.findtext(f"{ns}title"), text


def _drop_balanced(text: str, open_tok: str, close_tok: str) -> str:
    """Remove every outermost `open_tok ... close_tok` span, nesting respected (templates, tables)."""
    out, depth, i, start = [], 0, 0, 0
    while i < len(text):
        if text.startswith(open_tok, i):
            if depth == 0:
                out.append(text[start:i])
            depth += 1
            i += len(open_tok)
        elif depth and text.startswith(close_tok, i):
            depth -= 1
            i += len(close_tok)
            start = i
        else:
            i += 1
    if depth == 0:
        out.append(text[start:])
    return "".join(out)


def _drop_media_links(text: str) -> str:
    """Remove [[File:...]] / [[Image:...]] links whole, captions included (they nest links and brackets)."""
    opener = re.compile(r"\[\[\s*(file|image|media):", re.IGNORECASE)
    while True:
        m = opener.search(text)
        if not m:
            return text
        depth, i = 0, m.start()
        while i < len(text):
            if text.startswith("[[", i):
                depth, i = depth + 1, i + 2
            elif text.startswith("]]", i):
                depth, i = depth - 1, i + 2
                if depth == 0:
                    break
            else:
                i += 1
        text = text[: m.start()] + text[i:]


def _links(text: str) -> str:
    """[[target|label]] -> label, [[target]] -> target; file/category/interlanguage links removed.

    Innermost links first, so a caption holding links inside an [[File:...]] resolves before the
    file link itself is dropped."""
    inner = re.compile(r"\[\[([^\[\]]*)\]\]")

    def repl(m: re.Match) -> str:
        body = m.group(1)
        if _DROPPED_LINK.match(body):
            return ""
        return body.split("|")[-1]

    while True:
        new = inner.sub(repl, text)
        if new == text:
            return new
        text = new


def strip_markup(wikitext: str) -> str:
    """Plain prose of one article: paragraphs joined by single spaces, no markup left."""
    text = re.sub(r"<!--.*?-->", "", wikitext, flags=re.DOTALL)
    text = re.sub(r"<ref[^>/]*/>", "", text)
    text = re.sub(r"<ref[^>]*>.*?</ref>", "", text, flags=re.DOTALL)
    text = re.sub(r"<(math|gallery|timeline|syntaxhighlight|source|score)[^>]*>.*?</\1>", "", text,
                  flags=re.DOTALL | re.IGNORECASE)
    text = _drop_balanced(text, "{{", "}}")
    text = _drop_balanced(text, "{|", "|}")
    text = _links(_drop_media_links(text))
    text = re.sub(r"\[(?:(?:https?|ftp):)?//[^\s\]]+\s*([^\]]*)\]", r"\1", text)  # [url label] -> label
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = html.unescape(text).replace("\u00a0", " ")

    paragraphs, dropping = [], False
    for line in text.split("\n"):
        line = line.strip()
        heading = re.fullmatch(r"(=+)\s*(.*?)\s*\1", line)
        if heading:
            dropping = heading.group(2).lower() in _DROPPED_SECTIONS
            continue
        if dropping or not line or line.startswith(("|", "!", "{", "}", "__")):
            continue
        line = re.sub(r"^[*#:;]+\s*", "", line)
        line = re.sub(r"\(\s*[,;]?\s*\)", "", line)  # parentheses emptied by the removals above
        line = re.sub(r"\s+([,.;:])", r"\1", re.sub(r"\s+", " ", line)).strip()
        if len(line.split()) >= 3:
            paragraphs.append(line)
    return " ".join(paragraphs)


def build(dump: bytes) -> list[str]:
    docs = []
    for _title, wikitext in articles(bz2.decompress(dump).decode("utf-8")):
        prose = strip_markup(wikitext)
        if prose:
            docs.append(prose)
    return docs


def write(docs: list[str], path: pathlib.Path) -> None:
    """One document per line, gzip with mtime 0 so the same text gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(doc + "\n" for doc in docs).encode("utf-8")
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                              compresslevel=9) as gz:
        gz.write(payload)
    tmp.replace(path)
    print(f"{len(docs)} documents, {len(payload) / 1e6:.2f} MB of text, "
          f"{path.stat().st_size / 1e6:.2f} MB compressed -> {path}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=pathlib.Path, help="a gensim 4.4.0 wheel already on disk")
    parser.add_argument("--output", type=pathlib.Path, default=OUTPUT)
    args = parser.parse_args(argv)
    write(build(fetch_dump(args.wheel)), args.output)


if __name__ == "__main__":
    main()
