"""Exact file deduplication for GitHub (LLaMA: "exact-match file dedup"; RedPajama: md5 of content).

Why: vendored libraries put byte-identical (or identical up to line endings and trailing spaces)
copies of the same file into thousands of repositories. The normal form used: line endings
``\\r\\n``/``\\r`` -> ``\\n``, trailing whitespace of every line removed, leading and trailing blank lines
removed. Indentation and everything inside a line are kept (significant in Python, Makefiles, YAML).
Its hash is xxh3-128 (no 64-bit birthday risk across billions of files, ~10x faster than md5).

Passes: ``hash`` (per input shard) writes (hash, doc) records partitioned by hash prefix; ``first``
(per partition) finds each hash's first occurrence in (shard, index) order and writes, per shard,
the documents to drop and where their first copy is; ``main`` excludes them as ``dup:exact`` with
``duplicate_of`` = the id of the first copy.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import xxhash
from datatrove.data import DocumentsPipeline
from numpy.lib.recfunctions import repack_fields

from dedup.steps import CollectStep, DecideStep, PartitionStep
from dedup.workfiles import first_occurrence, gather_rank, read_partition, split_by_rank, write_partitioned
from pipeline.documents import exclude, is_excluded
from pipeline.params import Int
from pipeline.stages import Stage, StageIO

FILE = np.dtype([("h", "<u8"), ("h2", "<u8"), ("doc", "<u4")])
RANKED = np.dtype([("h", "<u8"), ("h2", "<u8"), ("rank", "<u4"), ("doc", "<u4")])
DROP = np.dtype([("rank", "<u4"), ("doc", "<u4"), ("first_rank", "<u4"), ("first_doc", "<u4")])
_TRAILING = re.compile(r"[ \t\f\v]+$", re.M)


def normalize_code(text: str) -> str:
    """Line endings unified, trailing whitespace and surrounding blank lines removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _TRAILING.sub("", text).strip("\n")


def content_hash(text: str) -> tuple[int, int]:
    digest = xxhash.xxh3_128_intdigest(normalize_code(text).encode("utf-8", "surrogatepass"))
    return digest >> 64, digest & 0xFFFFFFFFFFFFFFFF


class FileHasher(CollectStep):
    name = "#️⃣ llamix file hashes"

    def __init__(self, work_dir, prefix_bits: int):
        super().__init__(work_dir)
        self.prefix_bits = prefix_bits

    def collect(self, docs, rank):
        rows = []
        n = 0
        for n, doc in enumerate(docs, start=1):
            if not is_excluded(doc):
                rows.append((*content_hash(doc.text), n - 1))
        recs = np.array(rows, dtype=FILE) if rows else np.empty(0, dtype=FILE)
        write_partitioned(Path(self.work_dir) / "hashes", rank, recs, self.prefix_bits)
        return n


class FirstCopy(PartitionStep):
    name = "🥇 llamix first file copy"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        root = Path(self.work_dir)
        recs = read_partition(root / "hashes", rank, self.ranks, RANKED)
        dup, first = first_occurrence(recs, ["h", "h2"])
        drops = np.empty(int(dup.sum()), dtype=DROP)
        drops["rank"], drops["doc"] = recs["rank"][dup], recs["doc"][dup]
        drops["first_rank"], drops["first_doc"] = recs["rank"][first[dup]], recs["doc"][first[dup]]
        self.stat_update("duplicates", value=len(drops))
        split_by_rank(root / "drop", rank, self.ranks, repack_fields(drops))
        return
        yield


class CopyRemover(DecideStep):
    name = "✂️ llamix duplicate file remover"

    def __init__(self, work_dir, stage: str, parts: int, input_files: list):
        super().__init__(work_dir, stage)
        self.parts = parts
        self.input_files = [str(f) for f in input_files]

    def decide(self, docs, rank):
        drops = gather_rank(Path(self.work_dir) / "drop", self.parts, rank)
        firsts = {}
        for r in np.unique(drops["first_rank"]):  # ids of the first copies, one input shard at a time
            ids = pq.read_table(self.input_files[r], columns=["id"]).column("id").to_pylist()
            sel = drops["first_rank"] == r
            firsts.update((int(d), ids[fd]) for d, fd in zip(drops["doc"][sel], drops["first_doc"][sel]))
        for i, doc in enumerate(docs):
            if i in firsts and not is_excluded(doc):
                doc.metadata["duplicate_of"] = firsts[i]
                exclude(doc, "dup:exact", self.stage)
            yield doc


class ExactDedupStage(Stage):
    name = "exactdedup"
    PARAMS = {"prefix_bits": Int(0, 12, default=2)}  # 2^bits partitions of the ``first`` pass

    def run(self, io: StageIO) -> None:
        bits = self.params["prefix_bits"]
        tasks = self.tasks(io)
        io.run_pass("hash", [io.reader(), FileHasher(io.work_dir, bits)], tasks=tasks)
        io.run_pass("first", [FirstCopy(io.work_dir, tasks)], tasks=1 << bits)
        io.run_pass("main", [io.reader(account=True), CopyRemover(io.work_dir, io.stage, 1 << bits, io.input_files), io.writer()], tasks=tasks)
