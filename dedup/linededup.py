"""CCNet line (paragraph) deduplication for CommonCrawl.

Why: web pages repeat navigation, cookie banners and footers across a whole site; CCNet removes every
line whose normal form was already seen (only its first occurrence survives), which strips boilerplate
better than any per-page heuristic. Where "already seen" looks is a parameter: ``group_shards: 0`` (the
default) is the whole source (global dedup); ``group_shards: N`` is CCNet's hash groups, N consecutive
input shards deduplicated among themselves (CCNet used ~1/1600 of a snapshot), so no pass ever needs
the whole crawl's lines. Every task is bounded in memory:

1. ``hash`` (one task per input shard): hash every line's normal form (``dedup.hashing``), sort the
   task's (hash, doc, line) records by hash; a repeat within the task is a duplicate whatever came
   before (its first occurrence is earlier in the same task) and goes straight to the task's drop list;
   what is left, one record per distinct hash, is written as one sorted run. A boilerplate line is thus
   at most one record per task, and hash ranges stay evenly filled.
2. The driver counts each group's run records (array headers only) and derives the partitions per
   group, P = max(2^prefix_bits, records x FIRST_BYTES_PER_RECORD / (0.8 x memory_gb)): runs are sorted,
   so hash range p of P is a contiguous slice of every run, whatever P is.
3. ``first`` (groups x P tasks): one hash range of one group; the group's run slices in rank order,
   each hash's first run keeps it, the later ones are written as (rank, doc, line) drops.
4. ``main`` (one task per input shard): the task's own drops plus its rank's rows of its group's P drop
   files; the lines go. A document left empty is excluded (``dup:line_empty``), one left under
   ``min_length`` characters too (``dup:too_short``).

"First" is the smallest (shard rank, document, line) within the group: the input order, so the kept text
does not depend on the number of tasks, workers or partitions.
"""

from __future__ import annotations

import json
import math
from array import array
from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline

from dedup.hashing import HASHES, line_hasher, normalize_line
from dedup.steps import CollectStep, DecideStep, PartitionStep
from dedup.workfiles import later_in_runs, load, partitions_for, range_slice, rows_of_rank, save
from pipeline.documents import exclude, is_excluded
from pipeline.params import Choice, Int, Number
from pipeline.stages import Stage, StageIO
from storage.atomic import atomic_write_json

# Working set per record or line (bytes), measured with tracemalloc by bench/linededup_memory.py:
FIRST_BYTES_PER_RECORD = 32  # first: slice hashes 8 + sort order 8 + sorted copy 8 + mask (measured 28-32)
HASH_BYTES_PER_LINE = 44     # hash: 2 x 8 collected + order 8 + 2 sorted copies 16 (measured 42)
MAIN_BYTES_PER_LINE = 42     # main: per dropped line (rows read, concatenated, sorted; measured 41): every line may go
AVG_LINE_BYTES = 120         # CommonCrawl paragraphs: line records for a byte count (planning only)
LOW32 = np.uint64(0xFFFFFFFF)


def run_path(root: Path, rank: int) -> Path:
    return root / "runs" / f"{rank:05d}.npy"


def group_count(ranks: int, group_shards: int) -> int:
    return 1 if not group_shards else max(1, -(-ranks // group_shards))


def group_ranks(group: int, ranks: int, group_shards: int) -> range:
    """The input shards (ranks) of hash group ``group``: N consecutive ones, or all of them."""
    if not group_shards:
        return range(ranks)
    return range(group * group_shards, min(ranks, (group + 1) * group_shards))


class LineHasher(CollectStep):
    """Writes the task's sorted run of distinct line hashes and the task's own repeats."""

    name = "#️⃣ llamix line hashes"

    def __init__(self, work_dir, hash_kind: str):
        super().__init__(work_dir)
        self.hash_kind = hash_kind

    def collect(self, docs, rank):
        hasher = line_hasher(self.hash_kind)
        hs, ps = array("Q"), array("Q")  # hash, doc << 32 | line: 16 bytes a line, not Python ints
        n = 0
        for n, doc in enumerate(docs, start=1):
            if is_excluded(doc):
                continue
            base = (n - 1) << 32
            for i, line in enumerate(doc.text.split("\n")):
                norm = normalize_line(line)
                if norm:  # blank lines are layout, not content: never hashed, never removed
                    hs.append(hasher(norm))
                    ps.append(base | i)
            self.stat_update("documents")
        h, pos = np.frombuffer(hs, dtype=np.uint64), np.frombuffer(ps, dtype=np.uint64)
        order = np.argsort(h, kind="stable")  # stable: equal hashes stay in (doc, line) order
        h, pos = h[order], pos[order]
        del order, hs, ps
        first = np.ones(len(h), dtype=bool)
        first[1:] = h[1:] != h[:-1]
        root = Path(self.work_dir)
        save(run_path(root, rank), np.stack([h[first], pos[first]]))
        repeats = pos[~first]
        save(root / "local" / f"{rank:05d}.npy", np.stack([(repeats >> 32).astype(np.uint32), (repeats & LOW32).astype(np.uint32)]))
        self.stat_update("lines", value=len(h))
        self.stat_update("task_repeats", value=len(repeats))
        return n


class FirstOccurrence(PartitionStep):
    """One hash range of one group: which run records repeat a hash an earlier shard of the group had."""

    name = "🥇 llamix first line occurrence"

    def __init__(self, work_dir, ranks: int, group_shards: int, parts: int):
        super().__init__(work_dir, ranks)
        self.group_shards = group_shards
        self.parts = parts

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        root = Path(self.work_dir)
        group, part = divmod(rank, self.parts)
        members = list(group_ranks(group, self.ranks, self.group_shards))
        bounds = []
        for r in members:  # memory maps, one at a time: only the slice's pages are read
            run = load(run_path(root, r), mmap=True)
            bounds.append(range_slice(run[0], part, self.parts))
            del run
        offsets = np.concatenate([[0], np.cumsum([hi - lo for lo, hi in bounds], dtype=np.int64)])
        hashes = np.empty(int(offsets[-1]), dtype=np.uint64)
        for k, r in enumerate(members):
            lo, hi = bounds[k]
            if hi > lo:
                run = load(run_path(root, r), mmap=True)
                hashes[offsets[k] : offsets[k + 1]] = run[0, lo:hi]
                del run
        self.stat_update("records", value=len(hashes))  # what this task held: bounded by memory_gb
        later = later_in_runs(hashes)
        del hashes
        drops = np.empty((3, len(later)), dtype=np.uint32)  # rank, doc, line; ascending rank
        cuts = np.searchsorted(later, offsets)
        for k, r in enumerate(members):
            a, b = int(cuts[k]), int(cuts[k + 1])
            if b > a:
                run = load(run_path(root, r), mmap=True)
                pos = np.asarray(run[1, later[a:b] - offsets[k] + bounds[k][0]])
                del run
                drops[0, a:b] = r
                drops[1, a:b] = pos >> 32
                drops[2, a:b] = pos & LOW32
        save(root / "drop" / f"{rank:05d}.npy", drops)
        self.stat_update("duplicate_lines", value=drops.shape[1])
        return
        yield


class LineRemover(DecideStep):
    name = "✂️ llamix duplicate line remover"

    def __init__(self, work_dir, stage: str, group_shards: int, parts: int, min_length: int):
        super().__init__(work_dir, stage)
        self.group_shards = group_shards
        self.parts = parts
        self.min_length = min_length

    def drops(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """(doc, line) of this shard's lines to remove, sorted: its own repeats and its rows of the
        group's drop files."""
        root = Path(self.work_dir)
        group = rank // self.group_shards if self.group_shards else 0
        chunks = [load(root / "local" / f"{rank:05d}.npy")]
        chunks += [rows_of_rank(root / "drop" / f"{group * self.parts + p:05d}.npy", rank) for p in range(self.parts)]
        doc, line = np.concatenate(chunks, axis=1)
        order = np.lexsort((line, doc))
        return doc[order], line[order]

    def decide(self, docs, rank):
        doc_ids, lines = self.drops(rank)
        for i, doc in enumerate(docs):
            if is_excluded(doc):
                yield doc
                continue
            lo, hi = np.searchsorted(doc_ids, [i, i + 1])
            removed = set(lines[lo:hi].tolist())
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
        "prefix_bits": Int(0, 12, default=4),  # at least 2^bits partitions (hash ranges) per group
        "group_shards": Int(0, None, default=0),  # 0: dedup across the whole source; N: hash groups of N shards
        "memory_gb": Number(above=0, default=2.0, as_float=True),  # data budget of one ``first`` task
        "min_length": Int(0, 10**9, default=300),  # characters a document must keep
    }

    def run(self, io: StageIO) -> None:
        kind, min_length, group_shards = self.params["hash"], self.params["min_length"], self.params["group_shards"]
        tasks = self.tasks(io)
        io.run_pass("hash", [io.reader(), LineHasher(io.work_dir, kind)], tasks=tasks)
        parts = self.partitions(Path(io.work_dir), tasks)
        first = FirstOccurrence(io.work_dir, tasks, group_shards, parts)
        io.run_pass("first", [first], tasks=group_count(tasks, group_shards) * parts)
        io.run_pass("main", [io.reader(account=True), LineRemover(io.work_dir, io.stage, group_shards, parts, min_length), io.writer()],
                    tasks=tasks)

    def partitions(self, root: Path, ranks: int) -> int:
        """Hash ranges per group, from the largest group's run records (array headers only); recorded
        in the work folder, so a rerun with other parameters cannot mix two partitionings."""
        counts = []
        for r in range(ranks):
            path = run_path(root, r)
            if not path.exists():
                raise FileNotFoundError(f"dedup work file {path} is missing (the hash pass did not finish)")
            counts.append(load(path, mmap=True).shape[1])
        gs = self.params["group_shards"]
        largest = max(sum(counts[r] for r in group_ranks(g, ranks, gs)) for g in range(group_count(ranks, gs)))
        parts = partitions_for(largest, FIRST_BYTES_PER_RECORD, self.params["memory_gb"] * 2**30, 1 << self.params["prefix_bits"])
        chosen = {"ranks": ranks, "group_shards": gs, "partitions": parts, "largest_group_records": largest}
        path = root / "partitions.json"
        if path.exists():
            before = json.loads(path.read_text())
            if before != chosen:
                raise RuntimeError(f"linededup: work files were partitioned as {before}, now {chosen} (parameters changed?): rerun with --force")
        else:
            atomic_write_json(path, chosen)
        return parts

    @classmethod
    def sizing(cls, params: dict, *, shards: int, docs: float, nbytes: float) -> dict:
        """Tasks and largest-task working set of each pass for an input of ``nbytes`` text, by the
        arithmetic ``run`` uses (every line counted as a run record: an upper bound)."""
        params = cls.check_params(params)
        shards = max(1, int(shards))
        gs = params["group_shards"]
        groups = group_count(shards, gs)
        lines_per_shard = nbytes / AVG_LINE_BYTES / shards
        group_records = lines_per_shard * (min(gs, shards) if gs else shards)
        parts = partitions_for(group_records, FIRST_BYTES_PER_RECORD, params["memory_gb"] * 2**30, 1 << params["prefix_bits"])
        return {
            "passes": {"hash": shards, "first": groups * parts, "main": shards},
            "memory": {
                "hash": lines_per_shard * HASH_BYTES_PER_LINE,
                "first": math.ceil(group_records / parts) * FIRST_BYTES_PER_RECORD,
                "main": lines_per_shard * MAIN_BYTES_PER_LINE,
            },
        }
