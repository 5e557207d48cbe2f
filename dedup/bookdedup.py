"""Book-level deduplication (LLaMA: "we remove books with more than 90% content overlap").

Why containment and not Jaccard: a second edition that adds a preface, or an anthology that includes
a whole novel, has a low Jaccard with the other book but is *contained* in it: |A∩B| / |A| over word
5-gram sets is the "content overlap" of A with B. Candidates come from datasketch's MinHash LSH
Ensemble (built for containment search, Zhu et al. 2016) at a lower threshold than the decision
(``candidate_threshold``), then every candidate pair is checked exactly on the stored shingle sets.

Decision (greedy, deterministic): books are visited longest first (characters; ties: input order);
a book whose content is more than ``threshold`` contained in an already kept book is excluded as
``dup:book`` with ``duplicate_of`` (the id of that book) and ``containment``; the others are kept.
So of two editions the longer one stays, and of two equal ones the first.

Passes: ``shingles`` (per input shard: each book's shingle set and MinHash signature),
``overlap`` (one task: candidates, exact containment, decisions; books are few and their signatures
small, ~0.5 KB each), ``main`` (per input shard: apply).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasketch import MinHash, MinHashLSHEnsemble
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from dedup.hashing import shingle_hashes, words
from dedup.signatures import MinHasher
from dedup.steps import CollectStep, DecideStep
from dedup.workfiles import load, save
from pipeline.documents import exclude, is_excluded
from pipeline.params import Fraction, Int
from pipeline.stages import Stage, StageIO
from storage.atomic import atomic_path

DECISIONS = pa.schema([("index", pa.int64()), ("duplicate_of", pa.string()), ("containment", pa.float64())])


def book_files(work_dir, rank: int) -> dict[str, Path]:
    base = Path(work_dir) / "books"
    return {k: base / f"{rank:05d}.{k}.npy" for k in ("shingles", "offsets", "signatures", "chars")}


class BookShingler(CollectStep):
    name = "📚 llamix book shingles"

    def __init__(self, work_dir, num_perm: int, ngram: int, seed: int):
        super().__init__(work_dir)
        self.num_perm, self.ngram, self.seed = num_perm, ngram, seed

    def collect(self, docs, rank):
        hasher = MinHasher(self.num_perm, self.ngram, self.seed)
        sets, chars, n = [], [], 0
        for n, doc in enumerate(docs, start=1):
            text = "" if is_excluded(doc) else doc.text
            sets.append(np.unique(shingle_hashes(words(text), self.ngram)))
            chars.append(-1 if is_excluded(doc) else len(text))
        flat = np.concatenate(sets) if sets else np.zeros(0, dtype=np.uint64)
        counts = np.array([len(s) for s in sets], dtype=np.int64)
        sig = hasher.signatures_of_flat(flat >> np.uint64(32), counts)
        files = book_files(self.work_dir, rank)
        save(files["offsets"], np.concatenate(([0], np.cumsum(counts))))
        save(files["signatures"], sig)
        save(files["chars"], np.array(chars, dtype=np.int64))
        save(files["shingles"], flat)  # written last: its presence means the task finished
        return n


class OverlapDecider(PipelineStep):
    name = "📚 llamix book overlap"
    type = "🫂 - DEDUP"

    def __init__(self, work_dir, ranks: int, input_files: list, num_perm: int, threshold: float, candidate_threshold: float):
        super().__init__()
        self.work_dir = str(work_dir)
        self.ranks = ranks
        self.input_files = [str(f) for f in input_files]
        self.num_perm = num_perm
        self.threshold = threshold
        self.candidate_threshold = candidate_threshold

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        ranks = self.ranks
        files = [{k: load(p, mmap=(k == "shingles")) for k, p in book_files(self.work_dir, r).items()} for r in range(ranks)]
        books = [(r, i) for r in range(ranks) for i in range(len(files[r]["chars"])) if files[r]["chars"][i] >= 0]

        def shingles(book):
            r, i = book
            off = files[r]["offsets"]
            return np.asarray(files[r]["shingles"][off[i] : off[i + 1]])

        def minhash(book):
            r, i = book
            # 32-bit values (multiply-shift); datasketch needs a scheme tag only to refuse mixing schemes
            return MinHash(num_perm=self.num_perm, hashvalues=files[r]["signatures"][i].astype(np.uint64), scheme="affine32")

        sizes = {b: int(files[b[0]]["offsets"][b[1] + 1] - files[b[0]]["offsets"][b[1]]) for b in books}
        indexed = [b for b in books if sizes[b] > 0]
        lsh = MinHashLSHEnsemble(threshold=self.candidate_threshold, num_perm=self.num_perm, num_part=min(16, max(1, len(indexed))))
        if indexed:
            lsh.index((b, minhash(b), sizes[b]) for b in indexed)
        order = sorted(books, key=lambda b: (-int(files[b[0]]["chars"][b[1]]), b))
        position = {b: k for k, b in enumerate(order)}
        kept: set = set()
        decisions: dict[int, list] = {r: [] for r in range(ranks)}
        for book in order:
            best, best_c = None, 0.0
            if sizes[book] > 0:
                mine = shingles(book)
                for other in sorted(lsh.query(minhash(book), sizes[book])):
                    if other == book or other not in kept or position[other] > position[book]:
                        continue
                    c = len(np.intersect1d(mine, shingles(other), assume_unique=True)) / len(mine)
                    if c > best_c:
                        best, best_c = other, c
            if best is not None and best_c > self.threshold:
                decisions[book[0]].append((book[1], best, best_c))
                self.stat_update("duplicates")
            else:
                kept.add(book)
                decisions[book[0]].append((book[1], None, best_c))
        ids = {r: pq.read_table(f, columns=["id"]).column("id").to_pylist() for r, f in enumerate(self.input_files)}
        for r in range(ranks):
            rows = sorted(decisions[r], key=lambda d: d[0])
            table = pa.table(
                {
                    "index": [d[0] for d in rows],
                    "duplicate_of": [ids[d[1][0]][d[1][1]] if d[1] else None for d in rows],
                    "containment": [round(d[2], 6) for d in rows],
                },
                schema=DECISIONS,
            )
            with atomic_path(Path(self.work_dir) / "decisions" / f"{r:05d}.parquet") as tmp:
                pq.write_table(table, tmp)
        return
        yield


class BookMarker(DecideStep):
    name = "📚 llamix book dedup marker"

    def decide(self, docs, rank):
        table = pq.read_table(Path(self.work_dir) / "decisions" / f"{rank:05d}.parquet").to_pydict()
        decided = {i: (d, c) for i, d, c in zip(table["index"], table["duplicate_of"], table["containment"])}
        for i, doc in enumerate(docs):
            if i in decided:
                dup, c = decided[i]
                doc.metadata["containment"] = c
                if dup is not None:
                    doc.metadata["duplicate_of"] = dup
                    exclude(doc, "dup:book", self.stage)
            yield doc


class BookDedupStage(Stage):
    name = "bookdedup"
    PARAMS = {
        "threshold": Fraction(0.9),  # containment above which the shorter book goes
        "candidate_threshold": Fraction(lambda p: max(0.0, p["threshold"] - 0.2)),  # LSH Ensemble query
        "num_perm": Int(8, 4096, default=128),
        "ngram": Int(1, 64, default=5),
        "seed": Int(0, 2**63 - 1, default=1),
    }

    def run(self, io: StageIO) -> None:
        p = self.params
        threshold, candidate, num_perm, ngram, seed = p["threshold"], p["candidate_threshold"], p["num_perm"], p["ngram"], p["seed"]
        tasks = self.tasks(io)
        io.run_pass("shingles", [io.reader(), BookShingler(io.work_dir, num_perm, ngram, seed)], tasks=tasks)
        io.run_pass("overlap", [OverlapDecider(io.work_dir, tasks, io.input_files, num_perm, threshold, candidate)], tasks=1)
        io.run_pass("main", [io.reader(account=True), BookMarker(io.work_dir, io.stage), io.writer()], tasks=tasks)
