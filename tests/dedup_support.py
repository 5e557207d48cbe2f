"""Helpers for the dedup tests: real sample documents, re-sharding, controlled word edits."""

from __future__ import annotations

import pathlib
import random

import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document

from pipeline.documents import SCHEMA, document_row, read_documents
from pipeline.standalone import run_standalone

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


def extracted(source: str, pattern: str = "*", params: dict | None = None) -> list[Document]:
    """Kept documents of data/sample/<source>, extracted with the project's own extractor."""
    import importlib

    make = importlib.import_module(f"ingest.{source}").make_extractor
    extractor = make(dict(params or {}))
    docs = []
    for path in sorted((SAMPLE / source).glob(pattern)):
        docs += [d for d in extractor(path) if not d.metadata.get("reason")]
    for d in docs:
        d.metadata.setdefault("source", source)
    return docs


def write_shards(folder: pathlib.Path, docs: list[Document], shards: int) -> pathlib.Path:
    """The same documents, in the same order, cut into ``shards`` contiguous Parquet files."""
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-len(docs) // shards)
    for k in range(shards):
        rows = [document_row(d) for d in docs[k * per : (k + 1) * per]]
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), folder / f"{k:05d}.parquet")
    return folder


def run(stage: str, docs: list[Document], tmp: pathlib.Path, shards: int = 1, workers: int = 2, **params) -> dict:
    inp = write_shards(tmp / "in", docs, shards)
    return run_standalone(stage, inp, tmp / "out", params, workers=workers)


def outcome(out: pathlib.Path) -> tuple[dict, dict]:
    """(kept id -> doc, excluded id -> doc) of a stage folder."""
    kept = {d.id: d for d in read_documents(out)}
    dropped = {d.id: d for d in read_documents(out, excluded=True)}
    return kept, dropped


def edit_words(text: str, n_edits: int, seed: int) -> str:
    """Replace ``n_edits`` words (at random positions) with words that occur nowhere in real text."""
    rng = random.Random(seed)
    words = text.split(" ")
    for k, i in enumerate(rng.sample(range(len(words)), min(n_edits, len(words)))):
        words[i] = f"zqx{seed}w{k}"
    return " ".join(words)


def doc(text: str, id_: str, source: str = "test") -> Document:
    return Document(text=text, id=id_, metadata={"source": source})
