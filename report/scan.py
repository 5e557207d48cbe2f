"""Bounded scans of a stage folder's Parquet shards for the report: signals, labels, samples, clusters.

Why a separate scan: stats.json holds exact counts, but judging a filter needs the *distributions* its
scores make (kept vs excluded) and the documents it removed. A corpus does not fit in memory, so every
scan here reads shards in record batches with only the columns it needs, keeps fixed-size reservoirs
(Vitter's algorithm R) for score values and sample documents, and keeps counts for labels, so memory is
bounded by the reservoir sizes however large the stage folder is. ``max_rows`` caps the rows read per
folder (spread over its shards) so a report over terabytes finishes; the page says when it sampled.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.accounting import reason_key
from pipeline.documents import list_shards
from storage.layout import EXCLUDED

# Keys that are bookkeeping or identifiers, never quality signals.
SKIP_KEYS = frozenset({"reason", "excluded_by", "source"})
CLUSTER_SIZE_SUFFIX = "_size"
MAX_LABELS = 200  # a string key with more distinct values than this is an identifier (url, title), not a label


def is_identifier(key: str) -> bool:
    return key == "id" or key.endswith("_id") or key.endswith("_ids")


def is_cluster_key(key: str) -> bool:
    return key.endswith("_cluster") or key == "duplicate_of"


def key_kind(key: str) -> str:
    """How the scan treats a metadata key: skip (bookkeeping, identifiers, cluster sizes, which the
    cluster statistics read), cluster (a cluster id), cutoffs (decision lines), or plain (a signal/label)."""
    if key in SKIP_KEYS or is_identifier(key):
        return "skip"
    if is_cluster_key(key):
        return "cluster"
    if key.endswith(CLUSTER_SIZE_SUFFIX) and is_cluster_key(key[: -len(CLUSTER_SIZE_SUFFIX)]):
        return "skip"
    if key.endswith("_cutoffs"):
        return "cutoffs"
    return "plain"


class Reservoir:
    """A uniform sample of at most ``size`` items from a stream of unknown length (algorithm R)."""

    def __init__(self, size: int, rng: random.Random):
        self.size = size
        self.rng = rng
        self.items: list[Any] = []
        self.seen = 0

    def offer(self) -> int | None:
        """Index the next item should go to, or None when it is not sampled (decide before building it)."""
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(None)
            return len(self.items) - 1
        j = self.rng.randrange(self.seen)
        return j if j < self.size else None

    def add(self, item: Any) -> None:
        slot = self.offer()
        if slot is not None:
            self.items[slot] = item


@dataclass
class Sample:
    id: str
    text: str
    chars: int
    metadata: dict[str, Any]


@dataclass
class ClusterStats:
    """Near-duplicate clusters seen through one cluster-id key (``minhash_cluster``, ``duplicate_of``).

    With a size key (``minhash_cluster_size``) each document adds 1/size to its size's cluster count, so
    the histogram needs no per-cluster memory. Without one (``duplicate_of`` of exactdedup/bookdedup),
    members are counted per cluster id up to ``max_counted`` ids (``truncated`` says when that cap was
    hit); a ``duplicate_of`` group's size adds the kept original, which does not carry the key.
    Examples are kept for the ``max_tracked`` largest clusters seen, ``per_example`` members each.
    """

    key: str
    size_key: str | None
    clusters_by_size: Counter = field(default_factory=Counter)  # size -> Σ 1/size over documents
    member_counts: Counter = field(default_factory=Counter)  # cluster -> documents (no size key)
    documents: int = 0
    excluded: int = 0
    truncated: bool = False
    examples: dict[str, list[Sample]] = field(default_factory=dict)  # cluster id -> first members
    example_sizes: dict[str, int] = field(default_factory=dict)
    max_tracked: int = 50
    per_example: int = 4
    max_counted: int = 1_000_000

    def add(self, cluster: str, size: int | None, excluded: bool, make_sample) -> None:
        self.documents += 1
        self.excluded += excluded
        if size:
            self.clusters_by_size[int(size)] += 1.0 / size
        elif cluster in self.member_counts or len(self.member_counts) < self.max_counted:
            self.member_counts[cluster] += 1
        else:
            self.truncated = True
        known = size or (self.member_counts.get(cluster, 0) + (self.key == "duplicate_of"))
        if cluster in self.examples:
            self.example_sizes[cluster] = max(known, self.example_sizes[cluster])
            if len(self.examples[cluster]) < self.per_example:
                self.examples[cluster].append(make_sample())
            return
        if size == 1:
            return
        if len(self.examples) >= self.max_tracked:  # make room only for a larger cluster
            smallest = min(self.example_sizes, key=lambda c: (self.example_sizes[c], c))
            if self.example_sizes[smallest] >= known:
                return
            del self.examples[smallest], self.example_sizes[smallest]
        self.examples[cluster] = [make_sample()]
        self.example_sizes[cluster] = known

    def largest_examples(self, n: int = 5) -> list[tuple[str, int, list[Sample]]]:
        ranked = sorted(self.examples, key=lambda c: (-self.example_sizes[c], c))[:n]
        return [(c, self.example_sizes[c], self.examples[c]) for c in ranked]

    def size_histogram(self) -> dict[int, int]:
        if self.clusters_by_size:
            return {s: int(round(n)) for s, n in sorted(self.clusters_by_size.items())}
        extra = 1 if self.key == "duplicate_of" else 0
        return dict(sorted(Counter(n + extra for n in self.member_counts.values()).items()))


@dataclass
class FolderScan:
    """What one stage folder (kept + excluded shards) holds, from a bounded scan."""

    stage: str
    source: str
    folder: Path
    rows: dict[str, int] = field(default_factory=lambda: {"kept": 0, "excluded": 0})  # in the shards
    scanned: dict[str, int] = field(default_factory=lambda: {"kept": 0, "excluded": 0})
    numeric: dict[str, dict[str, Reservoir]] = field(default_factory=dict)  # key -> side -> values
    labels: dict[str, dict[str, Counter]] = field(default_factory=dict)  # key -> side -> value counts
    keys_seen: set[str] = field(default_factory=set)
    kept_samples: Reservoir | None = None
    excluded_samples: dict[str, Reservoir] = field(default_factory=dict)  # reason -> samples
    reason_counts: Counter = field(default_factory=Counter)
    clusters: dict[str, ClusterStats] = field(default_factory=dict)
    chars_total: int = 0
    chars_max: int = 0
    cutoff_lines: dict[str, list[float]] = field(default_factory=dict)  # key -> values read from metadata
    problems: list[str] = field(default_factory=list)  # unreadable shards, skipped and named in the report

    @property
    def sampled(self) -> bool:
        return self.scanned != self.rows

    def values(self, key: str, side: str) -> list[float]:
        res = self.numeric.get(key, {}).get(side)
        return list(res.items) if res else []


def _row_count(shard: Path) -> int | None:
    try:
        return pq.ParquetFile(shard).metadata.num_rows
    except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
        return None


def _truncate(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max_chars] + " …"


def _small_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """Metadata for display: long lists and strings shortened so a sample stays readable."""
    out = {}
    for k, v in meta.items():
        if isinstance(v, list) and len(v) > 8:
            v = v[:8] + ["…"]
        elif isinstance(v, str) and len(v) > 160:
            v = v[:160] + "…"
        out[k] = v
    return out


class FolderScanner:
    """Scans one stage folder; see the module docstring for the bounds."""

    def __init__(self, samples_per_reason: int = 3, max_values: int = 20_000, max_chars: int = 600,
                 max_rows: int | None = 200_000, seed: int = 0):
        self.samples_per_reason = samples_per_reason
        self.max_values = max_values
        self.max_chars = max_chars
        self.max_rows = max_rows
        self.seed = seed
        self._kinds: dict[str, str] = {}

    def scan(self, stage: str, source: str, folder: Path, excluded: Path | None = None) -> FolderScan:
        """Scan ``folder``'s kept shards and ``excluded`` (default: the stage folder's ``excluded/``,
        ``Layout.excluded_dir``; a folder outside an output tree, as ``pipeline stage`` writes, has the same)."""
        self.rng = random.Random(f"{self.seed}:{stage}:{source}")  # same run folder -> same report
        result = FolderScan(stage, source, Path(folder))
        result.kept_samples = Reservoir(self.samples_per_reason, self.rng)
        excluded = Path(excluded) if excluded is not None else Path(folder) / EXCLUDED
        for side, sub in (("kept", Path(folder)), ("excluded", excluded)):
            shards = list_shards(sub) if sub.is_dir() else []
            counts = {s: _row_count(s) for s in shards}
            readable = [s for s in shards if counts[s] is not None]
            result.problems += [f"{s}: not a readable Parquet file, skipped" for s in shards if counts[s] is None]
            result.rows[side] = sum(counts[s] for s in readable)
            per_shard = math.inf
            if self.max_rows and result.rows[side] > self.max_rows:
                per_shard = max(1, self.max_rows // max(1, len(readable)))
            for shard in readable:
                try:
                    self._scan_shard(result, side, shard, per_shard)
                except (OSError, ValueError) as e:  # damaged after its footer was read: keep what was scanned
                    result.problems.append(f"{shard}: unreadable part skipped ({str(e).splitlines()[0][:200]})")
        return result

    def _scan_shard(self, result: FolderScan, side: str, shard: Path, limit: float) -> None:
        read = 0
        pf = pq.ParquetFile(shard)
        for batch in pf.iter_batches(batch_size=1024, columns=["id", "text", "metadata"]):
            ids, texts = batch.column("id"), batch.column("text")
            metas = batch.column("metadata").to_pylist()
            lengths = pc.utf8_length(texts).fill_null(0).to_pylist()
            for i in range(batch.num_rows):
                if read >= limit:
                    return
                read += 1
                meta = json.loads(metas[i] or "{}")
                if not isinstance(meta, dict):
                    meta = {"metadata": meta}

                def sample(i=i, meta=meta) -> Sample:  # built only for rows a reservoir takes
                    text = texts[i].as_py() or ""
                    return Sample(str(ids[i].as_py()), _truncate(text, self.max_chars), len(text), _small_metadata(meta))

                self._add(result, side, meta, lengths[i], sample)

    def _add(self, result: FolderScan, side: str, meta: dict[str, Any], n_chars: int, sample) -> None:
        """Account one row; ``sample()`` builds its display copy (reads the text) only when needed."""
        result.scanned[side] += 1
        if side == "kept":
            n = n_chars
            result.chars_total += n
            result.chars_max = max(result.chars_max, n)
            slot = result.kept_samples.offer()
            if slot is not None:
                result.kept_samples.items[slot] = sample()
        else:
            reason = reason_key(str(meta.get("reason") or "unknown"))  # wikiref:0.12 -> wikiref: one reservoir per rule
            result.reason_counts[reason] += 1
            res = result.excluded_samples.get(reason)
            if res is None:
                res = result.excluded_samples[reason] = Reservoir(self.samples_per_reason, self.rng)
            slot = res.offer()
            if slot is not None:
                res.items[slot] = sample()
        result.keys_seen.update(meta)
        for key, value in meta.items():
            kind = self._kinds.get(key)
            if kind is None:
                kind = self._kinds[key] = key_kind(key)
            if kind == "skip":
                continue
            if kind == "cluster":
                self._add_cluster(result, key, meta, side, sample)
            elif isinstance(value, str):
                if kind == "plain":
                    self._add_label(result, key, value, side)
            elif isinstance(value, bool):
                self._add_label(result, key, "true" if value else "false", side)
            elif isinstance(value, (int, float)):
                if kind == "plain" and math.isfinite(value):
                    sides = result.numeric.get(key)
                    if sides is None:
                        sides = result.numeric[key] = {}
                    res = sides.get(side)
                    if res is None:
                        res = sides[side] = Reservoir(self.max_values, self.rng)
                    res.add(float(value))
            elif kind == "cutoffs" and isinstance(value, list):
                base = key[: -len("_cutoffs")]
                if base not in result.cutoff_lines and value and all(isinstance(v, (int, float)) for v in value):
                    result.cutoff_lines[base] = [float(v) for v in value]

    def _add_label(self, result: FolderScan, key: str, value: str, side: str) -> None:
        sides = result.labels.get(key)
        if sides is None:
            sides = result.labels[key] = {"kept": Counter(), "excluded": Counter()}
        elif sides is _TOO_MANY:  # an identifier-like key (url, title): counting it would grow without bound
            return
        sides[side][value] += 1
        if len(sides["kept"]) + len(sides["excluded"]) > 2 * MAX_LABELS:
            result.labels[key] = _TOO_MANY

    def _add_cluster(self, result: FolderScan, key: str, meta: dict[str, Any], side: str, sample) -> None:
        cluster = meta.get(key)
        if cluster is None:
            return
        size_key = f"{key}{CLUSTER_SIZE_SUFFIX}" if f"{key}{CLUSTER_SIZE_SUFFIX}" in meta else None
        stats = result.clusters.get(key)
        if stats is None:
            stats = result.clusters[key] = ClusterStats(key, size_key)
        size = meta.get(size_key) if size_key else None
        size = int(size) if isinstance(size, (int, float)) and not isinstance(size, bool) and size > 0 else None
        stats.add(str(cluster), size, side == "excluded", sample)


_TOO_MANY: Any = {"kept": Counter(), "excluded": Counter(), "too_many": True}


def label_counts(scan: FolderScan, key: str) -> dict[str, Counter] | None:
    sides = scan.labels.get(key)
    return None if sides is None or sides.get("too_many") else sides
