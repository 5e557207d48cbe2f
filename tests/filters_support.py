"""Shared fixtures for the filters tests: real text, and Parquet document folders to run stages on.

Real text only: Wikipedia articles from data/sample/wikipedia (CC BY-SA 3.0 / GFDL, see
data/sample/SOURCES.md), Project Gutenberg books from data/sample/books, and the translated messages of
Debian's apt gettext catalogues (/usr/share/locale/<lang>/LC_MESSAGES/apt.mo, GPL-2+).
"""

from __future__ import annotations

import bz2
import functools
import gettext
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datatrove.data import Document

from pipeline.documents import SCHEMA, document_row, read_documents

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
ENWIKI = SAMPLE / "wikipedia" / "enwiki-20160501-pages-articles-sample.xml.bz2"


@functools.cache
def wiki_articles(limit: int = 10_000, path: Path = ENWIKI, min_chars: int = 500) -> tuple[str, ...]:
    """Plain text of the first ``limit`` real articles (not redirects) of a MediaWiki export."""
    import mwparserfromhell

    if not path.is_file():
        pytest.skip(f"{path} not present")
    texts = []
    with bz2.open(path) as f:
        for _, el in ET.iterparse(f):
            if el.tag.rsplit("}", 1)[-1] != "page":
                continue
            node = next((n for n in el.iter() if n.tag.endswith("}text")), None)
            wikitext = node.text if node is not None and node.text else ""
            el.clear()
            if wikitext.lstrip().lower().startswith("#redirect"):
                continue
            text = mwparserfromhell.parse(wikitext).strip_code()
            text = "\n".join(line.strip() for line in text.splitlines() if len(line.split()) >= 5)
            if len(text) >= min_chars:
                texts.append(text)
                if len(texts) >= limit:
                    break
    return tuple(texts)


def book_paragraphs(name: str = "botchan.txt", min_chars: int = 400) -> list[str]:
    """Consecutive sentences of a sample book grouped into paragraphs of at least ``min_chars``."""
    text = " ".join((SAMPLE / "books" / name).read_text(encoding="utf-8").split())
    paras, current = [], ""
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        current = f"{current} {sentence}".strip()
        if len(current) >= min_chars:
            paras.append(current)
            current = ""
    return paras


def apt_messages(lang: str, min_words: int = 6) -> list[tuple[str, str]]:
    """(English msgid, translation) pairs of Debian's apt catalogue for ``lang``."""
    path = Path(f"/usr/share/locale/{lang}/LC_MESSAGES/apt.mo")
    if not path.is_file():
        pytest.skip(f"no apt gettext catalogue for {lang} on this machine")
    with open(path, "rb") as f:
        catalog = gettext.GNUTranslations(f)._catalog
    return [
        (" ".join(k.split()), " ".join(v.split()))
        for k, v in catalog.items()
        if isinstance(k, str) and isinstance(v, str) and v and len(k.split()) >= min_words and "%" not in k
    ]


def write_docs(folder: Path, docs: list[Document], shards: int = 1) -> Path:
    """Write documents as ``shards`` Parquet shards (round-robin), the stage input format."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        rows = [document_row(d) for d in docs[s::shards]]
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), folder / f"{s:05d}.parquet")
    return folder


def make_doc(doc_id: str, text: str, source: str = "commoncrawl", **meta) -> Document:
    return Document(text=text, id=doc_id, metadata={"source": source, **meta})


def outputs(folder: Path) -> tuple[dict[str, Document], dict[str, Document]]:
    """(kept by id, excluded by id) of a stage output folder."""
    kept = {d.id: d for d in read_documents(folder)}
    excluded = {d.id: d for d in read_documents(folder, excluded=True)}
    return kept, excluded


@functools.cache
def crawl_pages() -> tuple[str, ...]:
    """Text of the real crawled pages of data/sample/commoncrawl: the WET conversions of docs-web and
    the HTML responses of the iana.org crawl (resiliparse plain text), empty pages left out."""
    from resiliparse.extract.html2text import extract_plain_text
    from warcio.archiveiterator import ArchiveIterator

    pages = []
    with open(SAMPLE / "commoncrawl" / "docs-web.warc.wet.gz", "rb") as f:
        pages += [r.content_stream().read().decode("utf-8") for r in ArchiveIterator(f) if r.rec_type == "conversion"]
    with open(SAMPLE / "commoncrawl" / "iana.warc.gz", "rb") as f:
        for r in ArchiveIterator(f):
            if r.rec_type == "response" and "html" in (r.http_headers.get_header("Content-Type") or ""):
                pages.append(extract_plain_text(r.content_stream().read().decode("utf-8", "replace"), main_content=False))
    return tuple(p for p in pages if len(p) >= 200)
