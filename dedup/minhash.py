"""MinHash near-duplicate removal (CommonCrawl, C4), FineWeb's 14 bands x 8 rows by default.

Why: LLaMA deduplicates its web sources; exact hashing misses pages that differ in a date, a counter
or one added paragraph. MinHash-LSH finds pairs of documents whose word 5-gram sets have a high
Jaccard similarity without comparing all pairs. Passes (all under ``io.work_dir``, per task, atomic):

1. ``signatures`` (one task per input shard): signatures (``dedup.signatures``) of every document,
   kept on disk for verification, and per band the task's sorted (band hash, doc key) records.
2. ``buckets`` (one task per band): merge the band's sorted runs, emit candidate edges.
3. ``clusters`` (one task): drop candidate pairs whose signature agreement (the Jaccard estimate)
   is under ``verify_threshold`` (LSH alone lets ~5% of pairs at J=0.5 through), then connected
   components; per input shard, the cluster and size of its documents in clusters.
4. ``main`` (one task per input shard): in each cluster the first document in input order (smallest
   shard, then index) is kept; the others are excluded as ``dup:minhash`` with ``duplicate_of``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.batching import batched
from loguru import logger

from dedup.lsh import EDGE, components, doc_key, merge_runs, sorted_buckets, split_key, star_edges
from dedup.signatures import EMPTY, MinHasher, band_hashes, lsh_threshold, p_candidate
from dedup.steps import CollectStep, DecideStep, PartitionStep
from dedup.workfiles import load, save
from pipeline.documents import exclude, is_excluded
from pipeline.params import Fraction, Int
from pipeline.stages import Stage, StageIO
from storage.atomic import atomic_path, atomic_write_json

BATCH = 512
CLUSTERS = pa.schema([("index", pa.int64()), ("cluster", pa.string()), ("size", pa.int64())])


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
    """One band: candidate pairs = documents sharing the band's hash."""

    name = "🪣 llamix minhash buckets"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        paths = [bucket_path(self.work_dir, rank, r) for r in range(self.ranks)]
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(f"minhash bucket file {missing[0]} is missing (the signatures pass did not finish)")
        edges = [star_edges(batch) for batch in merge_runs(paths)]
        edges = np.unique(np.concatenate(edges)) if edges else np.empty(0, dtype=EDGE)
        self.stat_update("candidate_pairs", value=len(edges))
        save(Path(self.work_dir) / "edges" / f"{rank:03d}.npy", edges)
        return
        yield


def signature_agreement(work_dir, edges: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Fraction of equal signature values for each edge (the MinHash estimate of Jaccard). Only the
    rows of documents that appear in an edge are read, one signature file at a time (a memory map
    left open over every file would keep their touched pages resident: corpus-sized)."""
    nodes, inverse = np.unique(np.concatenate([edges["u"], edges["v"]]), return_inverse=True)
    ranks, idx = split_key(nodes)
    rows = None
    for r in np.unique(ranks):
        sigs = load(sig_path(work_dir, int(r)), mmap=True)
        if rows is None:
            rows = np.empty((len(nodes), sigs.shape[1]), dtype=sigs.dtype)
        sel = ranks == r
        rows[sel] = sigs[idx[sel]]
        del sigs
    out = np.empty(len(edges), dtype=np.float64)
    u, v = inverse[: len(edges)], inverse[len(edges) :]
    for lo in range(0, len(edges), chunk):
        out[lo : lo + chunk] = (rows[u[lo : lo + chunk]] == rows[v[lo : lo + chunk]]).mean(axis=1)
    return out


class ClusterBuilder(PipelineStep):
    """Verified edges -> connected components -> per input shard: (index, cluster id, size)."""

    name = "🕸️ llamix minhash clusters"
    type = "🫂 - DEDUP"

    def __init__(self, work_dir, bands: int, ranks: int, input_files: list[str], verify_threshold: float):
        super().__init__()
        self.work_dir = str(work_dir)
        self.bands = bands
        self.ranks = ranks
        self.input_files = [str(f) for f in input_files]
        self.verify_threshold = verify_threshold

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        work = Path(self.work_dir)
        edges = np.unique(np.concatenate([load(work / "edges" / f"{b:03d}.npy") for b in range(self.bands)]))
        agree = signature_agreement(work, edges)
        verified = edges[agree >= self.verify_threshold]
        nodes, roots, sizes = components(verified)
        ranks, idx = split_key(nodes)
        root_ranks, root_idx = split_key(roots)
        root_ids = np.empty(len(nodes), dtype=object)
        for r in np.unique(root_ranks):  # cluster id = id of the kept (first) document
            ids = pq.read_table(self.input_files[r], columns=["id"]).column("id").to_numpy(zero_copy_only=False)
            sel = root_ranks == r
            root_ids[sel] = ids[root_idx[sel]]
        for r in range(self.ranks):
            sel = ranks == r
            table = pa.table({"index": idx[sel], "cluster": root_ids[sel].tolist(), "size": sizes[sel]}, schema=CLUSTERS)
            with atomic_path(work / "clusters" / f"{r:05d}.parquet") as tmp:
                pq.write_table(table, tmp)
        summary = {
            "candidate_pairs": int(len(edges)),
            "verified_pairs": int(len(verified)),
            "rejected_pairs": int(len(edges) - len(verified)),
            "documents_in_clusters": int(len(nodes)),
            "clusters": int(len(np.unique(roots))),
        }
        atomic_write_json(work / "clusters" / "summary.json", summary, indent=None, sort_keys=False)
        self.stat_update("verified_pairs", value=len(verified))
        return
        yield


class ClusterMarker(DecideStep):
    name = "🏷️ llamix minhash cluster marker"

    def decide(self, docs, rank):
        table = pq.read_table(Path(self.work_dir) / "clusters" / f"{rank:05d}.parquet").to_pydict()
        clusters = {i: (c, s) for i, c, s in zip(table["index"], table["cluster"], table["size"])}
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
    }

    def run(self, io: StageIO) -> None:
        p = self.params
        bands, rows, ngram, seed, verify = p["bands"], p["rows"], p["ngram"], p["seed"], p["verify_threshold"]
        lsh = lsh_summary(bands, rows)
        logger.info(
            f"{io.stage}/{io.source}: {bands} bands x {rows} rows = {bands * rows} hashes, threshold (1/b)^(1/r) = "
            f"{lsh['threshold']:.3f}; P(candidate | J) = " + ", ".join(f"{p:.3f} at {j}" for j, p in lsh["p_candidate"].items())
            + f"; pairs verified at estimated J >= {verify}"
        )
        tasks = self.tasks(io)
        io.run_pass("signatures", [io.reader(), SignatureWriter(io.work_dir, bands, rows, ngram, seed)], tasks=tasks)
        io.run_pass("buckets", [BucketMerger(io.work_dir, tasks)], tasks=bands)
        io.run_pass("clusters", [ClusterBuilder(io.work_dir, bands, tasks, io.input_files, verify)], tasks=1)
        io.run_pass("main", [io.reader(account=True), ClusterMarker(io.work_dir, io.stage), io.writer()], tasks=tasks)
        summary = {**lsh, "verify_threshold": verify, **json.loads((io.work_dir / "clusters" / "summary.json").read_text())}
        atomic_write_json(io.output_dir / "minhash.json", summary, indent=None, sort_keys=False)
        return summary
