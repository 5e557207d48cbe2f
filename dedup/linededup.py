"""CCNet line (paragraph) deduplication for CommonCrawl.

Why: web pages repeat navigation, cookie banners and footers across a whole site; CCNet removes every
line whose normal form was already seen anywhere in the dump (only its first occurrence survives),
which strips boilerplate better than any per-page heuristic. A global set of line hashes does not fit
one process at crawl scale, so the work is split by hash prefix:

1. ``hash`` (one task per input shard): hash every line's normal form (``dedup.hashing``), write the
   (hash, doc, line) records of the task split into ``2^prefix_bits`` partition files.
2. ``first`` (one task per partition): concatenate the partition's records in (rank, doc, line) order,
   find each hash's first occurrence, write the partition's first-occurrence table and, per rank, the
   (doc, line) of the lines to remove. Only one partition is ever in memory.
3. ``main`` (one task per input shard): drop those lines; a document left empty is excluded
   (``dup:line_empty``), one left under ``min_length`` characters too (``dup:too_short``).
"""

from __future__ import annotations

from array import array
from pathlib import Path

import numpy as np
from numpy.lib.recfunctions import repack_fields
from datatrove.data import DocumentsPipeline

from dedup.hashing import HASHES, line_hasher, normalize_line
from dedup.steps import CollectStep, DecideStep, PartitionStep
from dedup.workfiles import first_occurrence, gather_rank, read_partition, save, split_by_rank, write_partitioned
from pipeline.documents import exclude, is_excluded
from pipeline.params import Choice, Int
from pipeline.stages import Stage, StageIO

LINE = np.dtype([("h", "<u8"), ("doc", "<u4"), ("line", "<u4")])
RANKED = np.dtype([("h", "<u8"), ("rank", "<u4"), ("doc", "<u4"), ("line", "<u4")])


class LineHasher(CollectStep):
    name = "#️⃣ llamix line hashes"

    def __init__(self, work_dir, hash_kind: str, prefix_bits: int):
        super().__init__(work_dir)
        self.hash_kind = hash_kind
        self.prefix_bits = prefix_bits

    def collect(self, docs, rank):
        hasher = line_hasher(self.hash_kind)
        hs, dd, ll = array("Q"), array("I"), array("I")  # 16 bytes a line, not three Python ints
        n = 0
        for n, doc in enumerate(docs, start=1):
            if is_excluded(doc):
                continue
            for i, line in enumerate(doc.text.split("\n")):
                norm = normalize_line(line)
                if norm:  # blank lines are layout, not content: never hashed, never removed
                    hs.append(hasher(norm))
                    dd.append(n - 1)
                    ll.append(i)
            self.stat_update("documents")
        recs = np.empty(len(hs), dtype=LINE)
        recs["h"] = np.frombuffer(hs, dtype=np.uint64)
        recs["doc"] = np.frombuffer(dd, dtype=np.uint32)
        recs["line"] = np.frombuffer(ll, dtype=np.uint32)
        self.stat_update("lines", value=len(hs))
        write_partitioned(Path(self.work_dir) / "hashes", rank, recs, self.prefix_bits)
        return n


class FirstOccurrence(PartitionStep):
    """One partition: which of its lines are repeats of an earlier line."""

    name = "🥇 llamix first line occurrence"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        root = Path(self.work_dir)
        recs = read_partition(root / "hashes", rank, self.ranks, RANKED)
        dup, _ = first_occurrence(recs, ["h"])
        save(root / "first" / f"{rank:04d}.npy", recs[~dup])
        drops = recs[dup]
        self.stat_update("lines", value=len(recs))
        self.stat_update("duplicate_lines", value=len(drops))
        split_by_rank(root / "drop", rank, self.ranks, repack_fields(drops[["rank", "doc", "line"]]))
        return
        yield


class LineRemover(DecideStep):
    name = "✂️ llamix duplicate line remover"

    def __init__(self, work_dir, stage: str, parts: int, min_length: int):
        super().__init__(work_dir, stage)
        self.parts = parts
        self.min_length = min_length

    def decide(self, docs, rank):
        drops = gather_rank(Path(self.work_dir) / "drop", self.parts, rank)
        drops = drops[np.lexsort((drops["line"], drops["doc"]))]
        doc_ids = drops["doc"]
        for i, doc in enumerate(docs):
            if is_excluded(doc):
                yield doc
                continue
            lo, hi = np.searchsorted(doc_ids, [i, i + 1])
            removed = set(drops["line"][lo:hi].tolist())
            text = doc.text
            if removed:
                text = "\n".join(ln for j, ln in enumerate(doc.text.split("\n")) if j not in removed).strip()
            doc.metadata["lines_removed"] = len(removed)
            doc.metadata["chars_removed"] = len(doc.text) - len(text)
            self.stat_update("lines_removed", value=len(removed))
            if not text.strip():  # excluded documents keep their original text, for inspection
                exclude(doc, "dup:line_empty", self.stage)
            elif len(text) < self.min_length:
                exclude(doc, "dup:too_short", self.stage)
            else:
                doc.text = text
            yield doc


class LineDedupStage(Stage):
    name = "linededup"
    PARAMS = {
        "hash": Choice(HASHES, "sha1_64"),  # line hash: first 8 bytes of SHA-1 (CCNet) or xxh64
        "prefix_bits": Int(0, 12, default=4),  # 2^bits partitions of the ``first`` pass
        "min_length": Int(0, 10**9, default=300),  # characters a document must keep
    }

    def run(self, io: StageIO) -> None:
        kind, bits, min_length = self.params["hash"], self.params["prefix_bits"], self.params["min_length"]
        tasks = self.tasks(io)
        io.run_pass("hash", [io.reader(), LineHasher(io.work_dir, kind, bits)], tasks=tasks)
        io.run_pass("first", [FirstOccurrence(io.work_dir, tasks)], tasks=1 << bits)
        io.run_pass("main", [io.reader(account=True), LineRemover(io.work_dir, io.stage, 1 << bits, min_length), io.writer()], tasks=tasks)
