"""Generated bench inputs made of the sample's real text (labelled generated: file names start with
``gen-``, every WET file's warcinfo record says so).

Why: throughput measured on the 65-page sample is mostly process start-up; the plan needs steady-state
figures, and the scale bench needs a CommonCrawl-like corpus at 50k-500k pages whose per-task memory can
be compared across sizes. Nothing here is invented text: every sentence comes from data/sample (see
data/sample/SOURCES.md), only the assembly is generated.

* ``write_wet_corpus``: CommonCrawl WET files (what the full profile's ``wet.paths.gz`` lists): WARC/1.0
  ``conversion`` records, each its own gzip member, ``docs_per_file`` pages per file. A page = its site's
  boilerplate lines (real short lines of the sample's web pages, the same on every page of the site; site
  sizes are heavy-tailed, so line dedup has work) + 4-10 paragraphs of 2-6 real sentences drawn at random;
  ``NEAR_DUP`` of the pages are an earlier page with about one word per paragraph changed, on another site
  (minhash clusters); ``FOREIGN`` of the pages are in one of the sample's non-English languages (bg
  Wikipedia, the de/fr/es/it/pt/ja Debian reference pages: langid excludes them). Page ``i`` depends only
  on (seed, i), so files are written independently, in parallel, and a rerun skips finished files.
* ``write_source_inputs``: enlarged raw inputs for the other sources (copies of the sample's files with
  varied ids/names, up to a target size or document count; C4 documents assembled like the pages' bodies,
  since copies would leave minhash and everything after it with nothing to measure).
"""

from __future__ import annotations

import base64
import bz2
import gzip
import hashlib
import io
import json
import random
import re
import shutil
import tarfile
import uuid
from functools import lru_cache
from multiprocessing import Pool
from pathlib import Path

from storage.atomic import atomic_open, atomic_write_bytes

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
NEAR_DUP = 0.05
FOREIGN = 0.08
_SENTENCE = re.compile(r"(?<=[.!?。])\s*")
_WET_LANG = re.compile(r"\.(de|fr|es|it|pt|ja)\.html$")


def _sentences(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        for s in _SENTENCE.split(line.strip()):
            s = s.strip()
            if 25 <= len(s) <= 400 and sum(c.isalpha() for c in s) > len(s) // 2:
                out.append(s)
    return out


@lru_cache(maxsize=1)
def text_pools() -> dict[str, list[str]]:
    """{language: real sentences} from the sample (extracted with the project's own extractors), plus
    ``"boilerplate"``: real short lines of the sample's web pages (navigation, headings)."""
    from ingest import books, c4, commoncrawl, wikipedia

    pools: dict[str, list[str]] = {}
    boiler: list[str] = []

    def add(lang: str, text: str) -> None:
        pools.setdefault(lang, []).extend(_sentences(text))

    def kept(extractor, path):
        return [d for d in extractor(path) if "reason" not in d.metadata]

    wiki = wikipedia.make_extractor({"languages": ["en", "bg"]})
    for p in sorted((SAMPLE / "wikipedia").glob("*.xml.bz2")):
        for d in kept(wiki, p):
            add(d.metadata.get("language") or "en", d.text)
    for p in sorted((SAMPLE / "books").glob("*.txt")):
        if "60col" not in p.name:  # the same book re-flowed: same sentences
            for d in kept(books.make_extractor({}), p):
                add("en", d.text)
    for p in sorted((SAMPLE / "c4").glob("*.json.gz")):
        for d in kept(c4.make_extractor({}), p):
            add("en", d.text)
    for p in sorted((SAMPLE / "commoncrawl").glob("*.wet.gz")):
        for d in kept(commoncrawl.make_extractor({}), p):
            m = _WET_LANG.search(d.metadata.get("url") or "")
            add(m[1] if m else "en", d.text)
            if not m:
                boiler.extend(ln.strip() for ln in d.text.splitlines() if 8 <= len(ln.strip()) <= 60 and ln.isascii())
    pools = {lang: sorted(set(s)) for lang, s in pools.items() if len(set(s)) >= 20}
    pools["boilerplate"] = sorted(set(boiler))
    return pools


def _rng(seed: int, *key) -> random.Random:
    return random.Random(hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest())


def _site(rng: random.Random) -> int:
    return int(rng.paretovariate(1.0) * 20) % 1_000_003  # heavy-tailed: half the pages on 20 sites, a long tail


def _boilerplate(seed: int, site: int, pools) -> tuple[list[str], list[str]]:
    rng = _rng(seed, "site", site)
    lines = rng.sample(pools["boilerplate"], 6)
    return [f"site{site}.example.org", *lines[:3]], lines[3:]


def _body(seed: int, i: int, pools) -> tuple[str, list[str]]:
    """(language, paragraphs) of page ``i``."""
    rng = _rng(seed, "page", i)
    if i > 0 and rng.random() < NEAR_DUP:
        lang, paragraphs = _body(seed, rng.randrange(i), pools)
        edited = []
        for para in paragraphs:
            words = para.split(" ")
            if len(words) > 8:
                words[rng.randrange(len(words))] = rng.choice(rng.choice(paragraphs).split(" "))
            edited.append(" ".join(words))
        return lang, edited
    foreign = [k for k in pools if k not in ("en", "boilerplate")]
    lang = rng.choice(foreign) if foreign and rng.random() < FOREIGN else "en"
    pool = pools[lang]
    sep = "" if lang == "ja" else " "
    return lang, [sep.join(rng.choice(pool) for _ in range(rng.randint(2, 6))) for _ in range(rng.randint(4, 10))]


def page(seed: int, i: int) -> tuple[str, str, str]:
    """(url, language, text) of generated page ``i``."""
    pools = text_pools()
    lang, paragraphs = _body(seed, i, pools)
    site = _site(_rng(seed, "where", i))
    head, foot = _boilerplate(seed, site, pools)
    return f"https://site{site}.example.org/{lang}/page/{i}", lang, "\n".join([*head, *paragraphs, *foot])


def _record(fields: dict[str, str], block: bytes) -> bytes:
    digest = base64.b32encode(hashlib.sha1(block).digest()).decode()
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in {
        **fields, "WARC-Block-Digest": f"sha1:{digest}", "Content-Length": str(len(block))}.items())
    return gzip.compress(head.encode() + b"\r\n" + block + b"\r\n\r\n", compresslevel=5, mtime=0)


def _write_wet_file(args) -> str:
    path, seed, first, count = args
    if path.exists():
        return path.name
    info = (f"software: llamix bench/corpus.py\r\ndescription: GENERATED page assembly of real sentences from "
            f"data/sample (see data/sample/SOURCES.md); pages {first}..{first + count - 1}, seed {seed}\r\n").encode()
    with atomic_open(path, "wb") as f:
        f.write(_record({"WARC-Type": "warcinfo", "WARC-Date": "2026-01-01T00:00:00Z", "WARC-Filename": path.name,
                         "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, path.name)}>",
                         "Content-Type": "application/warc-fields"}, info))
        for i in range(first, first + count):
            url, _lang, text = page(seed, i)
            f.write(_record({"WARC-Type": "conversion", "WARC-Target-URI": url, "WARC-Date": "2026-01-01T00:00:00Z",
                             "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{seed}/{i}')}>",
                             "WARC-Refers-To": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{seed}/{i}/r')}>",
                             "Content-Type": "text/plain"}, text.encode()))
    return path.name


def write_wet_corpus(out_dir: Path, docs: int, docs_per_file: int = 5000, seed: int = 0, workers: int = 2) -> list[Path]:
    """``ceil(docs / docs_per_file)`` WET files ``gen-NNNNN.warc.wet.gz`` in ``out_dir`` plus
    ``wet.paths`` / ``wet.paths.gz`` (the path list CommonCrawl publishes); existing files are kept."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text_pools()  # build once before forking
    jobs = [(out_dir / f"gen-{k:05d}.warc.wet.gz", seed, first, min(docs_per_file, docs - first))
            for k, first in enumerate(range(0, docs, docs_per_file))]
    if workers > 1 and len(jobs) > 1:
        with Pool(workers) as pool:
            list(pool.imap_unordered(_write_wet_file, jobs))
    else:
        for job in jobs:
            _write_wet_file(job)
    names = "".join(f"{out_dir.name}/{p.name}\n" for p, *_ in jobs)
    atomic_write_bytes(out_dir / "wet.paths.gz", gzip.compress(names.encode(), mtime=0))
    return [p for p, *_ in jobs]


# ---- the other sources: the sample's raw files, copied with varied ids until large enough ------------

def _copies(target_bytes: float, unit_bytes: int, target_docs: int, unit_docs: int) -> int:
    return max(1, min(-(-int(target_bytes) // max(1, unit_bytes)), -(-target_docs // max(1, unit_docs))))


C4_DOC_BYTES = 2_200  # C4 en: ~2.2 KB of text a document


def c4_record(i: int, seed: int = 0) -> dict:
    """A C4-format record (text, url, timestamp) whose text is 2-6 real English paragraphs of the sample,
    assembled for document ``i`` (no boilerplate, no near-duplicates: C4 is already cleaned)."""
    pool, rng = text_pools()["en"], _rng(seed, "c4", i)
    paragraphs = [" ".join(rng.choice(pool) for _ in range(rng.randint(2, 5))) for _ in range(rng.randint(2, 6))]
    return {"text": "\n".join(paragraphs), "timestamp": "2019-04-25T12:00:00Z", "url": f"https://c4-gen.example.org/doc/{i}"}


def write_source_inputs(out_dir: Path, source: str, target_mb: float = 20, target_docs: int = 5000) -> Path:
    """``out_dir/<source>/``: copies of the sample's ``source`` files (ids/names varied per copy) until the
    input holds >= ``target_mb`` MB or >= ``target_docs`` documents (the smaller number of copies; GitHub
    twice the MB: code_quality drops a third, and exactdedup must still see >= ``target_mb``), C4 ``max(target_docs, target_mb / 2.2 KB)`` assembled documents; returns the folder.
    Done once: a folder with ``.complete`` is returned as is."""
    dest = Path(out_dir) / source
    if (dest / ".complete").exists():
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    src = SAMPLE / source
    target = target_mb * 1e6
    if source == "c4":  # copies would be removed by minhash: documents assembled like the WET pages' bodies
        n = max(target_docs, int(target / C4_DOC_BYTES))
        per_file = -(-n // 4)
        for f, start in enumerate(range(0, n, per_file)):
            out = [json.dumps(c4_record(i), ensure_ascii=False) for i in range(start, min(n, start + per_file))]
            atomic_write_bytes(dest / f"gen-c4-train.{f:05d}-of-01024.json.gz", gzip.compress(("\n".join(out) + "\n").encode(), mtime=0))
    elif source == "wikipedia":
        xml = bz2.open(src / "enwiki-20160501-pages-articles-sample.xml.bz2").read()
        n = _copies(target, 1_695_871, target_docs, 98)
        for k in range(n):
            body = re.sub(rb"<id>(\d+)</id>", lambda m: b"<id>%d</id>" % (int(m[1]) + (k + 1) * 10_000_000), xml)
            atomic_write_bytes(dest / f"enwiki-20160501-pages-articles-gen{k:03d}.xml.bz2", bz2.compress(body, 6))
    elif source in ("books", "arxiv"):
        files = sorted(p for p in src.iterdir() if p.is_file())
        n = _copies(target, sum(p.stat().st_size for p in files), target_docs, len(files))
        for k in range(n):
            for p in files:
                shutil.copyfile(p, dest / f"gen{k:03d}-{p.name}")
    elif source == "github":
        repos = sorted(p for p in src.iterdir() if p.is_dir())
        size = sum(f.stat().st_size for r in repos for f in r.rglob("*") if f.is_file())
        n = _copies(2 * target, size, target_docs, 27)
        for k in range(n):
            for r in repos:
                with atomic_open(dest / f"{r.name}-gen{k:03d}.tar.gz", "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
                    tar.add(r, arcname=f"{r.name}-gen{k:03d}")
    elif source == "stackexchange":
        posts = (src / "python.stackexchange.com" / "Posts.xml").read_bytes()
        n = _copies(target, len(posts), target_docs, 109)
        for k in range(n):
            site = dest / f"python{k:03d}.stackexchange.com"
            site.mkdir()
            atomic_write_bytes(site / "Posts.xml", posts)
    else:
        raise ValueError(f"no enlarged inputs for source {source!r}")
    (dest / ".complete").write_text("generated by bench/corpus.py from data/sample\n")
    return dest


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "out" / "bench" / "corpus"))
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--docs-per-file", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    files = write_wet_corpus(Path(args.out) / "commoncrawl", args.docs, args.docs_per_file, args.seed, args.workers)
    print(f"{len(files)} WET files, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB in {Path(args.out) / 'commoncrawl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
