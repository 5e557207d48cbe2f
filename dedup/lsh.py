"""LSH buckets on disk, candidate pairs, and connected components, for MinHash deduplication.

Why this shape: the peers' pain points are one clustering task that runs out of memory and clusters
that change with the number of tasks. Here every scan task writes, per band, its (band hash, doc)
records *sorted*; one task per band merges the sorted runs of all tasks chunk by chunk (memory: one
chunk per run, whatever the corpus size) and emits, for each group of equal band hashes, an edge from
the group's first document to each other member. Documents are keyed by their position in the input,
``rank << 32 | index``, so "first" is the same whatever the number of tasks. ``components`` is the
single-process reference of connected components (one array over every edge); the stage runs the
distributed equivalent in ``dedup.components``, and the tests hold the two to the same result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from dedup.workfiles import load

BUCKET = np.dtype([("h", "<u8"), ("key", "<u8")])
EDGE = np.dtype([("u", "<u8"), ("v", "<u8")])
MERGE_BUDGET = 16 << 20  # bytes of buffered records in one merge, whatever the number of runs


def doc_key(rank: int, index: np.ndarray) -> np.ndarray:
    return (np.uint64(rank) << np.uint64(32)) | index.astype(np.uint64)


def split_key(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (key >> np.uint64(32)).astype(np.int64), (key & np.uint64(0xFFFFFFFF)).astype(np.int64)


def sorted_buckets(band_hash: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """One task's records of one band, sorted by (hash, key)."""
    recs = np.empty(len(keys), dtype=BUCKET)
    recs["h"], recs["key"] = band_hash, keys
    return recs[np.lexsort((recs["key"], recs["h"]))]


def merge_runs(paths: list[Path], chunk: int | None = None) -> Iterator[np.ndarray]:
    """k-way merge of sorted bucket files, yielding sorted batches in which every hash value is
    complete (no value is split between two batches). Reads ``chunk`` records of a run at a time
    (default: MERGE_BUDGET shared by the runs, at least 1024 records each)."""
    chunk = chunk or max(1024, MERGE_BUDGET // (BUCKET.itemsize * max(1, len(paths))))
    runs = [load(p, mmap=True) for p in paths]
    pos = [0] * len(runs)
    bufs = [np.empty(0, dtype=BUCKET) for _ in runs]
    bound = None
    while True:
        for i, run in enumerate(runs):
            starved = len(bufs[i]) < chunk or (bound is not None and bufs[i]["h"][-1] == bound)
            if pos[i] < len(run) and starved:
                bufs[i] = np.concatenate([bufs[i], np.asarray(run[pos[i] : pos[i] + chunk])])
                pos[i] += chunk
        live = [i for i, run in enumerate(runs) if pos[i] < len(run)]
        if not live:
            rest = np.concatenate(bufs) if bufs else np.empty(0, dtype=BUCKET)
            if len(rest):
                yield rest[np.lexsort((rest["key"], rest["h"]))]
            return
        # every record still on disk is >= the last buffered value of its run
        bound = min(bufs[i]["h"][-1] for i in live)
        out = []
        for i in range(len(runs)):
            cut = int(np.searchsorted(bufs[i]["h"], bound, side="left"))
            if cut:
                out.append(bufs[i][:cut])
                bufs[i] = bufs[i][cut:]
        if out:
            batch = np.concatenate(out)
            yield batch[np.lexsort((batch["key"], batch["h"]))]


def star_edges(batch: np.ndarray) -> np.ndarray:
    """For each run of equal hashes in a sorted batch: (first key, other key) edges."""
    n = len(batch)
    if n < 2:
        return np.empty(0, dtype=EDGE)
    starts = np.ones(n, dtype=bool)
    starts[1:] = batch["h"][1:] != batch["h"][:-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    edges = np.empty(int((~starts).sum()), dtype=EDGE)
    edges["u"] = batch["key"][first[~starts]]
    edges["v"] = batch["key"][~starts]
    return edges


def components(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Connected components of an edge list over uint64 keys: (nodes, root of each node, size of
    each node's component). The root is the smallest key of the component (min-label propagation
    with pointer jumping, vectorised). In-memory reference for ``dedup.components`` (which the stage runs)."""
    if len(edges) == 0:
        empty = np.empty(0, dtype=np.uint64)
        return empty, empty, np.empty(0, dtype=np.int64)
    nodes, inverse = np.unique(np.concatenate([edges["u"], edges["v"]]), return_inverse=True)
    u, v = inverse[: len(edges)], inverse[len(edges) :]
    label = np.arange(len(nodes))
    while True:
        m = np.minimum(label[u], label[v])
        new = label.copy()
        np.minimum.at(new, u, m)
        np.minimum.at(new, v, m)
        while True:  # pointer jumping: label of my label
            jumped = new[new]
            if np.array_equal(jumped, new):
                break
            new = jumped
        if np.array_equal(new, label):
            break
        label = new
    roots, sizes = np.unique(label, return_counts=True)
    size_of = sizes[np.searchsorted(roots, label)]
    return nodes, nodes[label], size_of
