"""Connected components over partitioned edge files, every task bounded: large-star / small-star.

Why: MinHash clustering at CommonCrawl scale has billions of duplicate edges; one task holding them all
(plus the signatures of their documents) needs hundreds of GB. Kiveris et al. 2014 ("Connected
Components in MapReduce and Beyond") find components with two alternating operations, each a single
group-by-node over the edge list, so a round is one executor pass whose task holds only the edges of the
nodes it owns (routed by ``dedup.routing``: hash slot of the node):

* large-star, at node u with neighbours N(u): m = min(N(u) ∪ {u}); each neighbour v > u is linked to m;
* small-star, at node u with smaller neighbours N⁻(u): m = min(N⁻(u) ∪ {u}); every v ∈ N⁻(u) ∪ {u} is
  linked to m.

Both keep the components and pull every node towards the smallest key of its component; when neither
changes the edge set in a round, every component is a star around its smallest key. Rounds are
logarithmic in practice (a sorted path of n nodes: ~log2 n), and the driver reads only each task's count of
changed edges to decide whether another round runs. Keys are ``rank << 32 | index``, so the centre is
the first document in input order: the same root as ``dedup.lsh.components`` (the single-task reference).

Every edge is stored twice, once under each end ((u, v) and (v, u), routed by u), which serves both
operations and the final ``members`` pass: a root's group holds its whole component.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from dedup.lsh import EDGE
from dedup.routing import SLOT_BITS, SLOTS, RoutedWriter, manifest, plan_bounds, read_routed, slot_of

MEMBER = np.dtype([("key", "<u8"), ("root", "<u8"), ("size", "<i8")])
# bytes per routed (node, neighbour) record a star task holds at its peak: the records read, their sort
# order and sorted copy, masks, the outgoing records (one edge -> two records) and the writer's sort
BYTES_PER_STAR_RECORD = 112  # (measured ~90 on bench/minhash_components.py)
BYTES_PER_MEMBER_RECORD = 120  # (measured ~106) members pass: star records in, MEMBER records (24 B) out, sorted


def undirected(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Edges a-b as (node, neighbour) records under both ends."""
    rec = np.empty(2 * len(a), dtype=EDGE)
    rec["u"][: len(a)], rec["v"][: len(a)] = a, b
    rec["u"][len(a) :], rec["v"][len(a) :] = b, a
    return rec


def route_edges(writer: RoutedWriter, a: np.ndarray, b: np.ndarray) -> None:
    rec = undirected(a, b)
    writer.add(rec, slot_of(rec["u"]))


def grouped(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Records sorted by (node, neighbour), duplicates dropped; and the mask of each node's first record."""
    rec = rec[np.lexsort((rec["v"], rec["u"]))]
    if len(rec) == 0:
        return rec, np.zeros(0, dtype=bool)
    keep = np.ones(len(rec), dtype=bool)
    keep[1:] = (rec["u"][1:] != rec["u"][:-1]) | (rec["v"][1:] != rec["v"][:-1])
    rec = rec[keep]
    starts = np.ones(len(rec), dtype=bool)
    starts[1:] = rec["u"][1:] != rec["u"][:-1]
    return rec, starts


def _group_first(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Each record's value of its group's first record."""
    return values[np.maximum.accumulate(np.where(starts, np.arange(len(values)), 0))]


def large_star(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Records (node u, neighbour v) -> new edges (v, m) for v > u, m = min(N(u) ∪ {u}); and how many
    of them are not the edge (u, v) they replace."""
    rec, starts = grouped(rec)
    u, v = rec["u"], rec["v"]
    m = np.minimum(_group_first(v, starts), u)  # sorted: a group's first neighbour is its smallest
    sel = v > u
    return v[sel], m[sel], int((m[sel] != u[sel]).sum())


def small_star(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Records (node u, neighbour v) -> for each u with smaller neighbours, m = the smallest of them:
    edges (v, m) for the other smaller neighbours and (u, m); and how many edges were new."""
    rec = rec[rec["v"] < rec["u"]]
    rec, starts = grouped(rec)
    u, v = rec["u"], rec["v"]
    m = _group_first(v, starts)
    other = v != m
    a = np.concatenate([v[other], u[starts]])
    b = np.concatenate([m[other], m[starts]])
    return a, b, int(other.sum())


def star_members(rec: np.ndarray) -> np.ndarray:
    """Converged records -> one MEMBER record (node, root, component size) for every node of every
    component whose root this task owns (a root has no smaller neighbour; its group is its component)."""
    rec, starts = grouped(rec)
    group = np.cumsum(starts) - 1
    first_v = rec["v"][starts]
    roots = rec["u"][starts]
    is_root = first_v > roots
    sizes = np.bincount(group, minlength=len(roots)) + 1
    mine = is_root[group]
    out = np.empty(int(is_root.sum()) + int(mine.sum()), dtype=MEMBER)
    k = int(is_root.sum())
    out["key"][:k], out["root"][:k], out["size"][:k] = roots[is_root], roots[is_root], sizes[is_root]
    out["key"][k:], out["root"][k:], out["size"][k:] = rec["v"][mine], rec["u"][mine], sizes[group[mine]]
    return out


class StarStep(PipelineStep):
    """One task of a large-star or small-star round: the records of the slots it owns in, new edges out."""

    type = "🫂 - DEDUP"

    def __init__(self, kind: str, src: str | Path, producers: int, bounds: list[int], dst: str | Path):
        super().__init__()
        self.kind, self.src, self.producers, self.bounds, self.dst = kind, str(src), producers, bounds, str(dst)
        self.name = f"⭐ llamix {kind} star"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        rec = read_routed(self.src, self.producers, self.bounds[rank], self.bounds[rank + 1], EDGE)
        a, b, changed = (large_star if self.kind == "large" else small_star)(rec)
        del rec
        writer = RoutedWriter(self.dst, rank, SLOTS)
        route_edges(writer, a, b)
        writer.close(changed=changed)
        self.stat_update("changed", value=changed)
        return
        yield


def root_slots(ranks: int) -> int:
    """Destinations per input shard for MEMBER records: the kept documents of a corpus gather in its
    first shards (the root is the smallest key), so one shard's components may be more than one task
    can hold; each shard's roots are split by hash into this many slots (one when shards alone are many)."""
    return max(1, SLOTS // max(1, ranks))


def root_destination(roots: np.ndarray, ranks: int) -> np.ndarray:
    """Destination of a component's records: its root's shard, then a hash slot of the root (contiguous
    destinations are one shard's, so a task of the next pass reads few shards)."""
    per = root_slots(ranks)
    return (roots >> np.uint64(32)).astype(np.int64) * per + (slot_of(roots) * per >> SLOT_BITS)


class MemberRouter(PipelineStep):
    """Converged stars -> (node, root, size) records routed to the input shard of the root (and a hash
    slot of the root within it, ``root_destination``)."""

    name = "🧩 llamix component members"
    type = "🫂 - DEDUP"

    def __init__(self, src: str | Path, producers: int, bounds: list[int], dst: str | Path, ranks: int):
        super().__init__()
        self.src, self.producers, self.bounds, self.dst, self.ranks = str(src), producers, bounds, str(dst), ranks

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        rec = read_routed(self.src, self.producers, self.bounds[rank], self.bounds[rank + 1], EDGE)
        members = star_members(rec)
        del rec
        writer = RoutedWriter(self.dst, rank, self.ranks * root_slots(self.ranks))
        writer.add(members, root_destination(members["root"], self.ranks))
        roots = int((members["key"] == members["root"]).sum())
        writer.close(documents_in_clusters=len(members), clusters=roots)
        self.stat_update("clusters", value=roots)
        return
        yield


def run_components(run_pass: Callable[[str, list, int], None], work: Path, src: Path, producers: int, ranks: int,
                   partitions: int, budget: float) -> tuple[Path, int, int]:
    """Large-star / small-star rounds over the edge records routed under ``src`` (``producers`` tasks
    wrote them), then the ``members`` pass. ``run_pass(name, steps, tasks)`` runs one executor pass.
    Returns (the folder of MEMBER records routed by root rank, its producers, the rounds run)."""
    rounds = 0
    edges = sum(int(manifest(src, p)["records"]) for p in range(producers))
    while edges:
        rounds += 1
        changed = 0
        for kind in ("large", "small"):
            bounds = plan_bounds(src, producers, SLOTS, partitions, BYTES_PER_STAR_RECORD, budget)
            dst = work / "star" / f"{rounds:03d}_{kind}"
            tasks = len(bounds) - 1
            run_pass(f"{kind}_star_{rounds}", [StarStep(kind, src, producers, bounds, dst)], tasks)
            changed += sum(int(manifest(dst, p)["changed"]) for p in range(tasks))
            src, producers = dst, tasks
        if changed == 0:
            break
    bounds = plan_bounds(src, producers, SLOTS, partitions, BYTES_PER_MEMBER_RECORD, budget)
    dst = work / "members"
    run_pass("members", [MemberRouter(src, producers, bounds, dst, ranks)], len(bounds) - 1)
    return dst, len(bounds) - 1, rounds
