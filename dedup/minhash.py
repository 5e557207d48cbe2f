"""MinHash near-duplicate removal (CommonCrawl, C4), FineWeb's 14 bands x 8 rows by default.

Why: LLaMA deduplicates its web sources; exact hashing misses pages that differ in a date, a counter
or one added paragraph. MinHash-LSH finds pairs of documents whose word 5-gram sets have a high
Jaccard similarity without comparing all pairs. Passes (all under ``io.work_dir``, per task, atomic):

1. ``signatures`` (one task per input shard): signatures (``dedup.signatures``) of every document,
   kept on disk for verification, and per band the task's sorted (band hash, doc key) records.
2. ``buckets`` (one task per band): merge the band's sorted runs (bounded), stream out candidate edges
   routed by the hash slot of their first document (``dedup.routing``).
3. ``verify`` (tasks derived from the counted candidates and ``memory_gb``, or ``partitions``): a task's
   slots of every band, deduplicated, kept when their signature agreement (the Jaccard estimate) is at
   least ``verify_threshold`` (LSH alone lets ~5% of pairs at J=0.5 through).
4. ``large_star_N`` / ``small_star_N`` rounds and ``members`` (``dedup.components``): connected
   components, each task holding only its slots' edges; every node learns its component's smallest key
   and size, routed to the input shard of that root.
5. ``clusters`` (input shard ranges): the root's document id becomes the cluster id; per member, its
   (index, cluster id, size) routed to the member's shard.
6. ``main`` (one task per input shard): in each cluster the first document in input order (smallest
   shard, then index) is kept; the others are excluded as ``dup:minhash`` with ``duplicate_of``.

No task's memory depends on the corpus size: each distributed pass is cut so that its largest task's
records fit ``memory_gb`` (``sizing`` gives the plan the same figures); a shard-sized pass holds one shard.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.batching import batched
from loguru import logger

from dedup.components import (BYTES_PER_MEMBER_RECORD, BYTES_PER_STAR_RECORD, MEMBER, grouped, root_slots,
                               route_edges, run_components)
from dedup.lsh import EDGE, MERGE_BUDGET, doc_key, merge_runs, sorted_buckets, split_key, star_edges
from dedup.routing import ROUTE_CHUNK, SLOTS, RoutedWriter, plan_bounds, read_routed, slot_of, tasks_for, total
from dedup.signatures import CHUNK_SHINGLES, EMPTY, MinHasher, band_hashes, lsh_threshold, p_candidate
from dedup.steps import CollectStep, DecideStep, PartitionStep
from dedup.workfiles import load, save
from pipeline.documents import exclude, is_excluded
from pipeline.params import Fraction, Int, Number
from pipeline.stages import Stage, StageIO
from storage.atomic import atomic_write_json

BATCH = 512
# Planning assumptions of ``sizing`` (the run itself sizes its passes on counted records):
PLANNED_DUPLICATE_SHARE = 0.2  # documents in a near-duplicate cluster (ops/sizing.py KEEP["minhash"] = 0.8)
PLANNED_ROUNDS = 3  # large/small-star rounds: LSH edges are stars from a bucket's first document, so
#                     components are shallow (1-2 rounds on the tests' corpora; a sorted path of n: ~log2 n)
ROUTED_BYTES_PER_RECORD = 56  # a RoutedWriter run: 16-byte record + destination + sort order + sorted copy
SHARD_ID_BYTES = 16  # one shard's id column held by a clusters task (Arrow: ~12 bytes of text + offset)
MARKER_BYTES_PER_DOC = 256  # main: a shard's CLUSTER_RECORDs and its {index: (id, size)} dict, worst case


def sig_path(work_dir, rank: int) -> Path:
    return Path(work_dir) / "signatures" / f"{rank:05d}.npy"


def bucket_path(work_dir, band: int, rank: int) -> Path:
    return Path(work_dir) / "buckets" / f"{band:03d}" / f"{rank:05d}.npy"


class SignatureWriter(CollectStep):
    name = "✍️ llamix minhash signatures"

    def __init__(self, work_dir, bands: int, rows: int, ngram: int, seed: int):
        super().__init__(work_dir)
        self.bands, self.rows, self.ngram, self.seed = bands, rows, ngram, seed

    def collect(self, docs, rank):
        hasher = MinHasher(self.bands * self.rows, self.ngram, self.seed)
        sigs, n = [], 0
        for batch in batched(docs, BATCH):
            texts = ["" if is_excluded(d) else d.text for d in batch]
            with self.track_time("batch"):
                sigs.append(hasher.signatures(texts))
            n += len(batch)
            self.stat_update("documents", value=len(batch))
        sig = np.concatenate(sigs) if sigs else np.empty((0, self.bands * self.rows), dtype=np.uint32)
        save(sig_path(self.work_dir, rank), sig)
        live = np.flatnonzero(sig[:, 0] != EMPTY) if len(sig) else np.empty(0, dtype=np.int64)
        keys = doc_key(rank, live)
        bh = band_hashes(sig[live], self.bands, self.rows)
        for b in range(self.bands):
            save(bucket_path(self.work_dir, b, rank), sorted_buckets(bh[:, b], keys))
        return n


class BucketMerger(PartitionStep):
    """One band: candidate pairs = documents sharing the band's hash, streamed out routed by the hash
    slot of their first document (``dedup.routing``), never the band's whole edge list in memory."""

    name = "🪣 llamix minhash buckets"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        paths = [bucket_path(self.work_dir, rank, r) for r in range(self.ranks)]
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(f"minhash bucket file {missing[0]} is missing (the signatures pass did not finish)")
        writer = RoutedWriter(Path(self.work_dir) / "candidates", rank, SLOTS)
        for batch in merge_runs(paths):
            edges = star_edges(batch)
            writer.add(edges, slot_of(edges["u"]))
        writer.close()
        self.stat_update("candidate_pairs", value=writer.records)
        return
        yield


def signature_rows(path: Path, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of a 2-D ``.npy`` file, one ``pread`` each: a memory map would keep every page it
    touched resident until unmapped (up to a whole shard's signatures in the task's peak RSS), where a
    verify task needs a few rows of each shard."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        start, row, fd = f.tell(), shape[1] * dtype.itemsize, f.fileno()
        data = b"".join(os.pread(fd, row, start + i * row) for i in idx.tolist())
    return np.frombuffer(data, dtype=dtype).reshape(len(idx), shape[1])


def signature_agreement(work_dir, edges: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Fraction of equal signature values for each edge (the MinHash estimate of Jaccard). Only the
    rows of documents that appear in an edge are read, one signature file at a time."""
    nodes, inverse = np.unique(np.concatenate([edges["u"], edges["v"]]), return_inverse=True)
    ranks, idx = split_key(nodes)
    rows = None
    present = np.unique(ranks)  # nodes are sorted, so each shard's rows are one contiguous run
    cuts = np.searchsorted(ranks, np.append(present, present[-1] + 1) if len(present) else present)
    for r, lo, hi in zip(present.tolist(), cuts[:-1].tolist(), cuts[1:].tolist()):
        got = signature_rows(sig_path(work_dir, r), idx[lo:hi])
        if rows is None:
            rows = np.empty((len(nodes), got.shape[1]), dtype=got.dtype)
        rows[lo:hi] = got
    out = np.empty(len(edges), dtype=np.float64)
    u, v = inverse[: len(edges)], inverse[len(edges) :]
    for lo in range(0, len(edges), chunk):
        out[lo : lo + chunk] = (rows[u[lo : lo + chunk]] == rows[v[lo : lo + chunk]]).mean(axis=1)
    return out


def bytes_per_candidate(num_perm: int) -> int:
    """Peak bytes a verify task holds per candidate record it reads: the records, their deduplicated
    sorted copy, the node table of ``signature_agreement`` and the signature rows of both ends
    (4 bytes a hash), the verified edges routed under both ends."""
    return 192 + 8 * num_perm


class EdgeVerifier(PipelineStep):
    """The candidate pairs of some hash slots (every band's): deduplicated, checked against the
    signatures, kept at ``verify_threshold``; routed under both ends for the components rounds."""

    name = "🔎 llamix minhash verify"
    type = "🫂 - DEDUP"

    def __init__(self, work_dir, bands: int, bounds: list[int], verify_threshold: float):
        super().__init__()
        self.work_dir, self.bands, self.bounds, self.verify_threshold = str(work_dir), bands, bounds, verify_threshold

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        work = Path(self.work_dir)
        edges = read_routed(work / "candidates", self.bands, self.bounds[rank], self.bounds[rank + 1], EDGE)
        edges, _ = grouped(edges)  # the same pair from several bands: once (all copies share u's slot)
        verified = edges[signature_agreement(work, edges) >= self.verify_threshold] if len(edges) else edges
        writer = RoutedWriter(work / "star" / "000_verified", rank, SLOTS)
        route_edges(writer, verified["u"], verified["v"])
        writer.close(candidate_pairs=len(edges), verified_pairs=len(verified))
        self.stat_update("verified_pairs", value=len(verified))
        return
        yield


CLUSTER_RECORD = np.dtype([("index", "<i8"), ("size", "<i8"), ("producer", "<i8"), ("offset", "<i8"), ("length", "<i8")])
BYTES_PER_MEMBER = 200  # clusters task: MEMBER records (24 B) read, their roots sorted, key halves, the
#                         CLUSTER_RECORDs (40 B) and the writer's order and sorted copy


def ids_at(path: str, index: np.ndarray) -> list:
    """The ``id`` of the documents at sorted positions ``index`` of a shard, read in batches (decoding
    the shard's whole id column at once takes ~100 bytes a document)."""
    out, pos = [], 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1 << 16, columns=["id"]):
        lo, hi = np.searchsorted(index, [pos, pos + len(batch)])
        if hi > lo:
            out += batch.column(0).take(pa.array(index[lo:hi] - pos)).to_pylist()
        pos += len(batch)
    return out


def ids_path(work_dir, task: int) -> Path:
    return Path(work_dir) / "clusters" / "ids" / f"{task:05d}.npy"


class ClusterBuilder(PipelineStep):
    """The components whose kept document lies in a range of input shards (``root_destination``: by
    shard, then by a hash slot of the root): the kept document's id (read from its shard, one shard at a time) becomes the cluster id; per member, (index, size, where
    the id is) routed to the member's input shard."""

    name = "🕸️ llamix minhash clusters"
    type = "🫂 - DEDUP"

    def __init__(self, work_dir, producers: int, bounds: list[int], input_files: list[str]):
        super().__init__()
        self.work_dir, self.producers, self.bounds = str(work_dir), producers, bounds
        self.input_files = [str(f) for f in input_files]

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        work = Path(self.work_dir)
        members = read_routed(work / "members", self.producers, self.bounds[rank], self.bounds[rank + 1], MEMBER)
        roots, which = np.unique(members["root"], return_inverse=True)
        out = np.empty(len(members), dtype=CLUSTER_RECORD)
        ranks, out["index"] = split_key(members["key"])
        out["size"], out["producer"] = members["size"], rank
        del members
        root_ranks, root_idx = split_key(roots)
        del roots
        pieces, lengths = [], np.zeros(len(root_ranks), dtype=np.int64)
        present = np.unique(root_ranks)  # cluster id = id of the kept (first) document; roots are sorted
        cuts = np.searchsorted(root_ranks, np.append(present, present[-1] + 1) if len(present) else present)
        for r, lo, hi in zip(present.tolist(), cuts[:-1].tolist(), cuts[1:].tolist()):
            raw = [str(i).encode() for i in ids_at(self.input_files[r], root_idx[lo:hi])]
            lengths[lo:hi] = [len(b) for b in raw]
            pieces += raw
        save(ids_path(work, rank), np.frombuffer(b"".join(pieces), dtype=np.uint8))
        out["offset"], out["length"] = (np.cumsum(lengths) - lengths)[which], lengths[which]
        writer = RoutedWriter(work / "clusters", rank, max(1, len(self.input_files)))  # one destination per main task
        writer.add(out, ranks)
        writer.close()
        self.stat_update("clusters", value=len(root_ranks))
        return
        yield


def shard_clusters(work_dir, producers: int, rank: int) -> dict[int, tuple[str, int]]:
    """Index of a document in shard ``rank`` -> (cluster id, size), for its documents in a cluster."""
    recs = read_routed(Path(work_dir) / "clusters", producers, rank, rank + 1, CLUSTER_RECORD)
    out = {}
    for p in np.unique(recs["producer"]).tolist():
        blob = load(ids_path(work_dir, p), mmap=True)
        for rec in recs[recs["producer"] == p].tolist():
            index, size, _, off, length = rec
            out[index] = (bytes(blob[off : off + length]).decode(), size)
    return out


class ClusterMarker(DecideStep):
    name = "🏷️ llamix minhash cluster marker"

    def __init__(self, work_dir, stage: str, producers: int):
        super().__init__(work_dir, stage)
        self.producers = producers

    def decide(self, docs, rank):
        clusters = shard_clusters(self.work_dir, self.producers, rank)
        for i, doc in enumerate(docs):
            if is_excluded(doc):
                yield doc
                continue
            cluster, size = clusters.get(i, (str(doc.id), 1))
            doc.metadata["minhash_cluster"] = cluster
            doc.metadata["minhash_cluster_size"] = int(size)
            if cluster != str(doc.id):
                doc.metadata["duplicate_of"] = cluster
                exclude(doc, "dup:minhash", self.stage)
                self.stat_update("duplicates")
            yield doc


def lsh_summary(bands: int, rows: int) -> dict[str, Any]:
    return {
        "bands": bands,
        "rows": rows,
        "num_perm": bands * rows,
        "threshold": round(lsh_threshold(bands, rows), 4),
        "p_candidate": {str(j): round(p_candidate(j, bands, rows), 4) for j in (0.5, 0.7, 0.8, 0.9)},
    }


class MinhashStage(Stage):
    name = "minhash"
    PARAMS = {
        "bands": Int(1, 1024, default=14),  # LSH shape: bands x rows hashes
        "rows": Int(1, 1024, default=8),
        "ngram": Int(1, 64, default=5),  # words per shingle
        "seed": Int(0, 2**63 - 1, default=1),  # permutation seed
        "verify_threshold": Fraction(0.7),  # signature agreement needed to accept a candidate pair
        "memory_gb": Number(1e-6, 1024, default=2.0),  # budget of one task of the verify/star/members/clusters passes
        "partitions": Int(0, SLOTS, default=0),  # tasks of those passes: 0 = derived from counted records and memory_gb
    }

    def run(self, io: StageIO) -> None:
        p = self.params
        bands, rows, ngram, seed, verify = p["bands"], p["rows"], p["ngram"], p["seed"], p["verify_threshold"]
        parts, budget = p["partitions"], p["memory_gb"] * 2**30
        lsh = lsh_summary(bands, rows)
        logger.info(
            f"{io.stage}/{io.source}: {bands} bands x {rows} rows = {bands * rows} hashes, threshold (1/b)^(1/r) = "
            f"{lsh['threshold']:.3f}; P(candidate | J) = " + ", ".join(f"{p:.3f} at {j}" for j, p in lsh["p_candidate"].items())
            + f"; pairs verified at estimated J >= {verify}"
        )
        tasks, work = self.tasks(io), io.work_dir
        io.run_pass("signatures", [io.reader(), SignatureWriter(work, bands, rows, ngram, seed)], tasks=tasks)
        io.run_pass("buckets", [BucketMerger(work, tasks)], tasks=bands)
        bounds = plan_bounds(work / "candidates", bands, SLOTS, parts, bytes_per_candidate(bands * rows), budget)
        io.run_pass("verify", [EdgeVerifier(work, bands, bounds, verify)], tasks=len(bounds) - 1)
        verified = len(bounds) - 1
        members, producers, rounds = run_components(
            lambda name, steps, n: io.run_pass(name, steps, tasks=n), work, work / "star" / "000_verified", verified,
            tasks, parts, budget)
        bounds = plan_bounds(members, producers, tasks * root_slots(tasks), parts, BYTES_PER_MEMBER, budget)
        io.run_pass("clusters", [ClusterBuilder(work, producers, bounds, io.input_files)], tasks=len(bounds) - 1)
        io.run_pass("main", [io.reader(account=True), ClusterMarker(work, io.stage, len(bounds) - 1), io.writer()], tasks=tasks)
        candidates = total(work / "star" / "000_verified", verified, "candidate_pairs")
        verified_pairs = total(work / "star" / "000_verified", verified, "verified_pairs")
        summary = {
            **lsh, "verify_threshold": verify,
            "candidate_pairs": candidates,
            "verified_pairs": verified_pairs,
            "rejected_pairs": candidates - verified_pairs,
            "documents_in_clusters": total(members, producers, "documents_in_clusters"),
            "clusters": total(members, producers, "clusters"),
        }
        logger.info(f"{io.stage}/{io.source}: {verified_pairs} verified pairs, {summary['clusters']} clusters "
                    f"after {rounds} large/small-star rounds")
        atomic_write_json(io.output_dir / "minhash.json", summary, indent=None, sort_keys=False)
        return summary

    @classmethod
    def sizing(cls, params: dict, *, shards: int, docs: float, nbytes: float) -> dict:
        """Passes and the working set of each pass's largest task, for ``docs`` documents in ``shards``
        shards; the duplicate share and the rounds are planning assumptions (PLANNED_*), the rest is
        what ``run`` derives from counted records."""
        p = cls.check_params(params)
        bands, hashes, parts, budget = p["bands"], p["bands"] * p["rows"], p["partitions"], p["memory_gb"] * 2**30
        shards = max(1, shards)
        per_shard = docs / shards
        candidates = docs * PLANNED_DUPLICATE_SHARE * bands  # one star edge per duplicate document and band
        star_records = 2 * candidates  # every verified edge under both ends (at most every candidate)
        nodes = min(docs, 2 * candidates / bands)

        def hashed(records: float, bpr: float, most: int = SLOTS) -> tuple[int, float]:
            n = parts or tasks_for(records, bpr, budget, most)
            return n, records / n * bpr

        verify_tasks, verify_mem = hashed(candidates, bytes_per_candidate(hashes))
        star_tasks, star_mem = hashed(star_records, BYTES_PER_STAR_RECORD)
        member_tasks, member_mem = hashed(star_records, BYTES_PER_MEMBER_RECORD)
        cluster_tasks, cluster_mem = hashed(nodes, BYTES_PER_MEMBER, most=shards * root_slots(shards))
        passes = {"signatures": shards, "buckets": bands, "verify": verify_tasks}
        memory = {
            "signatures": per_shard * (hashes * 8 + bands * 8 + 48) + CHUNK_SHINGLES * hashes * 8,
            "buckets": 2 * MERGE_BUDGET + min(ROUTE_CHUNK, docs) * ROUTED_BYTES_PER_RECORD,  # a band's edges <= its documents
            "verify": verify_mem,
        }
        for r in range(1, PLANNED_ROUNDS + 1):
            for kind in ("large", "small"):
                passes[f"{kind}_star_{r}"] = star_tasks
                memory[f"{kind}_star_{r}"] = star_mem
        passes.update(members=member_tasks, clusters=cluster_tasks, main=shards)
        memory.update(members=member_mem, clusters=cluster_mem + per_shard * SHARD_ID_BYTES, main=per_shard * MARKER_BYTES_PER_DOC)
        return {"passes": passes, "memory": {k: float(v) for k, v in memory.items()}}
