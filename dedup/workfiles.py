"""Intermediate files of the multi-pass dedup stages, and the first-occurrence rule.

Why: a global dedup decision needs every shard's hashes, but no process may hold the corpus. Each
pass writes small per-task numpy files under the stage's work folder (atomically, through
``storage.atomic``: a killed task leaves nothing a rerun could mistake for its output), partitioned so
that the next pass reads only its slice. "First" always means smallest (shard rank, document index, line index):
the order of the input, which does not depend on how many tasks or workers run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from storage.atomic import atomic_open


def save(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` written then renamed into place (``storage.atomic``)."""
    with atomic_open(path) as f:
        np.save(f, array, allow_pickle=False)


def load(path: str | Path, mmap: bool = False) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def part_path(root: Path, part: int, rank: int) -> Path:
    return Path(root) / f"{part:04d}" / f"{rank:05d}.npy"


def partition_of(h: np.ndarray, bits: int) -> np.ndarray:
    """Top ``bits`` bits of uint64 hashes: the partition a hash belongs to."""
    if bits == 0:
        return np.zeros(len(h), dtype=np.int64)
    return (h >> np.uint64(64 - bits)).astype(np.int64)


def write_partitioned(root: Path, rank: int, records: np.ndarray, bits: int, key: str = "h") -> None:
    """Split ``records`` (structured, in input order) by hash prefix; one file per partition, every
    partition written (empty ones too) so the next pass can tell a finished task from a missing one."""
    parts = partition_of(records[key], bits)
    order = np.argsort(parts, kind="stable")  # stable: input order kept within a partition
    bounds = np.searchsorted(parts[order], np.arange((1 << bits) + 1))
    for p in range(1 << bits):
        save(part_path(root, p, rank), records[order[bounds[p] : bounds[p + 1]]])


def read_partition(root: Path, part: int, ranks: int, dtype: np.dtype) -> np.ndarray:
    """All tasks' records of one partition, in rank order, with a ``rank`` column added."""
    chunks = []
    for rank in range(ranks):
        path = part_path(root, part, rank)
        if not path.exists():
            raise FileNotFoundError(f"dedup work file {path} is missing (an earlier pass did not finish)")
        arr = load(path)
        out = np.empty(len(arr), dtype=dtype)
        out["rank"] = rank
        for name in arr.dtype.names:
            out[name] = arr[name]
        chunks.append(out)
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=dtype)


def first_occurrence(records: np.ndarray, keys: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """For records in input order: (is_duplicate mask, index of the group's first record), both in
    the records' own order. A record is a duplicate when an earlier record has the same ``keys``."""
    keys = list(keys)
    n = len(records)
    if n == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
    order = np.lexsort([np.arange(n)] + [records[k] for k in reversed(keys)])
    srt = records[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = np.zeros(n - 1, dtype=bool)
    for k in keys:
        starts[1:] |= srt[k][1:] != srt[k][:-1]
    group_first = order[np.maximum.accumulate(np.where(starts, np.arange(n), 0))]
    dup = np.empty(n, dtype=bool)
    dup[order] = ~starts
    first = np.empty(n, dtype=np.int64)
    first[order] = group_first
    return dup, first


def split_by_rank(root: Path, part: int, ranks: int, records: np.ndarray) -> None:
    """Write ``records`` (with a ``rank`` column) as one file per rank for partition ``part``."""
    for rank in range(ranks):
        save(part_path(root, part, rank), records[records["rank"] == rank])


def gather_rank(root: Path, parts: int, rank: int) -> np.ndarray:
    """Concatenate one rank's files over all partitions (what the final pass of that rank needs)."""
    chunks = []
    for p in range(parts):
        path = part_path(root, p, rank)
        if not path.exists():
            raise FileNotFoundError(f"dedup work file {path} is missing (an earlier pass did not finish)")
        chunks.append(load(path))
    return np.concatenate(chunks)


# ---- sorted runs: partitions chosen after the data was written -----------------------------------
# A scan task that writes its records sorted by hash lets the next pass cut any number of equal
# hash ranges out of it (a contiguous slice each), so the partition count can be derived from the
# counted records instead of being fixed before anything was read.


def partitions_for(records: float, bytes_per_record: float, budget_bytes: float, minimum: int = 1,
                   headroom: float = 0.8) -> int:
    """Equal hash ranges needed so that one range of ``records`` fits ``headroom`` x ``budget_bytes``
    (the rest is slack for ranges that come out larger than the mean); at least ``minimum``."""
    need = records * bytes_per_record / (headroom * budget_bytes)
    return max(int(minimum), int(np.ceil(need)) if need > 0 else 1)


def hash_range(part: int, parts: int) -> tuple[int, int | None]:
    """[lo, hi) of uint64 hash range ``part`` of ``parts`` equal ranges (hi None: up to 2^64)."""
    lo = (part << 64) // parts
    return lo, None if part == parts - 1 else ((part + 1) << 64) // parts


def range_slice(sorted_h: np.ndarray, part: int, parts: int) -> tuple[int, int]:
    """Index bounds of hash range ``part`` in a sorted uint64 array (a memory map is fine: only
    log(n) of its pages are touched)."""
    lo, hi = hash_range(part, parts)
    start = int(np.searchsorted(sorted_h, np.uint64(lo), side="left"))
    end = len(sorted_h) if hi is None else int(np.searchsorted(sorted_h, np.uint64(hi), side="left"))
    return start, end


def later_in_runs(hashes: np.ndarray) -> np.ndarray:
    """Positions (ascending) of the records that are not the first of their hash, for ``hashes`` =
    runs of distinct hashes concatenated in input order: a stable sort keeps the earliest run first.
    Working set: about 25 bytes per record (the hashes, the order, one sorted copy, a mask) + 16 per repeat."""
    if len(hashes) < 2:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(hashes, kind="stable")
    srt = hashes[order]
    later = np.flatnonzero(srt[1:] == srt[:-1])
    del srt
    later += 1
    later = order[later]
    del order
    later.sort()
    return later


def rows_of_rank(path: str | Path, rank: int) -> np.ndarray:
    """Columns ``1:`` of a (k, n) work file whose row 0 is the ascending rank, for one ``rank``."""
    arr = load(path, mmap=True)
    lo, hi = np.searchsorted(arr[0], np.array([rank, rank + 1], dtype=arr.dtype))  # same dtype: no copy of the row
    out = np.array(arr[1:, lo:hi])
    del arr
    return out
