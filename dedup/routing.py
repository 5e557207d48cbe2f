"""Routed work files: how one pass hands records to the tasks of the next, whatever their number.

Why: a distributed pass must send each record to the one task of the next pass that owns its key, and
the number of tasks of that next pass is often decided only after this pass has counted its records
(so that a task fits its memory budget). A producer task therefore writes its records *sorted by
destination* with an offsets index (``offsets[d]:offsets[d+1]`` are destination ``d``'s records), in
runs of at most ``ROUTE_CHUNK`` records (a streaming producer never holds its whole output), plus a
small manifest saying how many runs and records it wrote. A consumer task owns a contiguous range of
destinations and reads only that slice of every producer's runs (memory-mapped). Destinations are either
hash slots of a key (``slot_of``: ``SLOTS`` fine slots) or input shard ranks; the driver cuts them
into task ranges from the producers' offsets (``plan_bounds``), so that each task's records fit its budget. Every file goes through ``dedup.workfiles.save``
(atomic), and the manifest is written last: a producer without one did not finish.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from dedup.workfiles import load, save
from storage.atomic import atomic_write_json

SLOT_BITS = 14
SLOTS = 1 << SLOT_BITS  # fine hash slots: the most tasks a hash-routed pass can have (offsets: 128 KiB a run)
ROUTE_CHUNK = 1 << 22  # records a producer buffers before writing a run


def slot_of(keys: np.ndarray) -> np.ndarray:
    """Hash slot of uint64 keys (splitmix64 finaliser, top SLOT_BITS bits): doc keys are
    ``rank << 32 | index``, far from uniform, and a slot must not depend on where a document lies."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(64 - SLOT_BITS)).astype(np.int64)


def tasks_for(records: float, bytes_per_record: float, budget: float, most: int = SLOTS) -> int:
    """Tasks such that an even share of ``records`` fits ``budget`` bytes (the plan's estimate; at run
    time ``plan_bounds`` cuts on the counted records)."""
    return int(min(most, max(1, math.ceil(records * bytes_per_record / budget))))


def histogram(root: str | Path, producers: int, destinations: int) -> np.ndarray:
    """Records per destination over every producer's runs (from the offsets indexes only)."""
    counts = np.zeros(destinations, dtype=np.int64)
    for p in range(producers):
        for run in range(int(manifest(root, p)["runs"])):
            counts += np.diff(load(_run_paths(Path(root), p, run)[1]))
    return counts


def plan_bounds(root: str | Path, producers: int, destinations: int, parts: int, bytes_per_record: float,
                budget: float) -> list[int]:
    """Destination boundaries of the next pass's tasks (task p owns ``[b[p], b[p+1])``). ``parts`` > 0:
    that many equal destination ranges; 0: derived from the counted records, cut so that every task's
    records times ``bytes_per_record`` fit ``budget`` (only a single destination larger than the budget
    can exceed it: one hash slot, or one input shard)."""
    if parts > 0:
        return [p * destinations // parts for p in range(parts + 1)]
    counts = histogram(root, producers, destinations)
    cap = max(1, int(budget // bytes_per_record))
    bounds, held = [0], 0
    for d, n in enumerate(counts.tolist()):
        if held and held + n > cap:
            bounds.append(d)
            held = 0
        held += n
    bounds.append(destinations)
    return bounds


def _run_paths(root: Path, producer: int, run: int) -> tuple[Path, Path]:
    stem = f"{producer:05d}-{run:04d}"
    return root / f"{stem}.npy", root / f"{stem}.offsets.npy"


def _manifest(root: Path, producer: int) -> Path:
    return root / f"{producer:05d}.json"


class RoutedWriter:
    """One producer task's output: records added with their destination, written in sorted runs."""

    def __init__(self, root: str | Path, producer: int, destinations: int, chunk: int = ROUTE_CHUNK):
        self.root, self.producer, self.destinations, self.chunk = Path(root), producer, destinations, chunk
        self.buffer: list[tuple[np.ndarray, np.ndarray]] = []
        self.buffered = self.runs = self.records = 0

    def add(self, records: np.ndarray, dest: np.ndarray) -> None:
        if len(records):
            self.buffer.append((records, dest))
            self.buffered += len(records)
            if self.buffered >= self.chunk:
                self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        if len(self.buffer) == 1:  # one add: no concatenated copy
            (records, dest), = self.buffer
        else:
            records = np.concatenate([r for r, _ in self.buffer])
            dest = np.concatenate([d for _, d in self.buffer])
        self.buffer, self.buffered = [], 0
        order = np.argsort(dest, kind="stable")  # stable: a destination's records keep their order
        offsets = np.searchsorted(dest[order], np.arange(self.destinations + 1)).astype(np.int64)
        data, index = _run_paths(self.root, self.producer, self.runs)
        save(data, records[order])
        save(index, offsets)
        self.runs += 1
        self.records += len(records)

    def close(self, **extra) -> None:
        """Write the last run and the manifest (``extra``: small per-task figures for the driver)."""
        self._flush()
        atomic_write_json(_manifest(self.root, self.producer), {"runs": self.runs, "records": self.records, **extra},
                          indent=None, sort_keys=False)


def manifest(root: str | Path, producer: int) -> dict:
    path = _manifest(Path(root), producer)
    if not path.exists():
        raise FileNotFoundError(f"routed work file {path} is missing (an earlier pass did not finish)")
    return json.loads(path.read_text())


def total(root: str | Path, producers: int, key: str = "records") -> int:
    """Sum of one manifest figure over all producers (what the driver reads to size the next pass)."""
    return sum(int(manifest(root, p).get(key, 0)) for p in range(producers))


def read_routed(root: str | Path, producers: int, lo: int, hi: int, dtype: np.dtype) -> np.ndarray:
    """Every producer's records for destinations ``[lo, hi)``, in (producer, run) order."""
    chunks = []
    for p in range(producers):
        for run in range(int(manifest(root, p)["runs"])):
            data, index = _run_paths(Path(root), p, run)
            offsets = load(index, mmap=True)
            a, b = int(offsets[lo]), int(offsets[hi])
            if b > a:
                chunks.append(np.array(load(data, mmap=True)[a:b]))
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=dtype)


def counted_records(root: str | Path, producers: int, lo: int, hi: int) -> int:
    """How many records ``read_routed`` would return (offsets only: what a task's memory bound is checked on)."""
    n = 0
    for p in range(producers):
        for run in range(int(manifest(root, p)["runs"])):
            offsets = load(_run_paths(Path(root), p, run)[1], mmap=True)
            n += int(offsets[hi]) - int(offsets[lo])
    return n
