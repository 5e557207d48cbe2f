"""Distributed MinHash clustering (dedup/components.py, dedup/routing.py): the large-star/small-star
passes give exactly the single-task reference's clusters (dedup.lsh.components) whatever the partitions
and producer tasks, in few rounds on long paths, with every task's records inside its budget; and the
whole stage gives the same documents and summary with partitions=3 as with partitions derived."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from dedup.components import (BYTES_PER_MEMBER_RECORD, BYTES_PER_STAR_RECORD, MEMBER, MemberRouter, StarStep,
                              root_slots, route_edges, run_components)
from dedup.lsh import EDGE, components, doc_key
from dedup.minhash import MinhashStage
from dedup.routing import SLOTS, RoutedWriter, counted_records, read_routed
from tests.dedup_support import outcome, run
from tests.test_dedup_minhash import corpus, extracted

RANKS = 5


def key(rank: int, index: int) -> int:
    return int(doc_key(rank, np.array([index]))[0])


def edges_of(pairs) -> np.ndarray:
    out = np.empty(len(pairs), dtype=EDGE)
    if len(pairs):
        out["u"], out["v"] = np.array([min(p) for p in pairs], dtype=np.uint64), np.array([max(p) for p in pairs], dtype=np.uint64)
    return out


def graphs() -> dict[str, list[tuple[int, int]]]:
    rng = random.Random(3)
    nodes = [key(r, i) for r in range(RANKS) for i in range(400)]  # documents of five shards
    path = nodes[:300]
    g = {
        "chains": [(nodes[i], nodes[i + 1]) for i in range(0, 60) if i % 7],  # broken every 7 nodes
        "star": [(nodes[1000], nodes[j]) for j in range(1001, 1100)] + [(nodes[j], nodes[5]) for j in range(200, 240)],
        "sorted_long_path": list(zip(path, path[1:])),
        "reversed_long_path": list(zip(path[::-1], path[::-1][1:])),
        "shuffled_long_path": (lambda p: list(zip(p, p[1:])))(rng.sample(nodes, 500)),
        "many_components": [(nodes[2 * i], nodes[2 * i + 1]) for i in range(800)]
        + [tuple(rng.sample(nodes[1600:], 2)) for _ in range(150)],
        # duplicates across shards: the same document index in every shard, and repeated edges
        "across_shards": [(key(r, i), key(r + 1, i)) for r in range(RANKS - 1) for i in range(0, 400, 9)]
        + [(key(0, 0), key(4, 0))] * 3,
        "single_edge": [(nodes[17], nodes[1500])],
        "empty": [],
    }
    mixed = []
    for name in ("chains", "star", "shuffled_long_path", "many_components"):
        mixed += g[name]
    g["mixed"] = mixed
    return g


def run_inline(name: str, steps: list, tasks: int, seen: list) -> None:
    """One pass: every task of the pass, one after the other, in this process (the executor's job is
    tested elsewhere; the stage test below goes through it)."""
    seen.append((name, steps[0], tasks))
    for rank in range(tasks):
        list(steps[0].run(None, rank, tasks))


def distributed(tmp_path, pairs, producers: int, partitions: int, budget: float = 2**30):
    """The edges split over ``producers`` writer tasks, components by large/small-star passes."""
    edges = edges_of(pairs)
    src = tmp_path / "star" / "000_verified"
    for p, part in enumerate(np.array_split(edges, producers)):
        writer = RoutedWriter(src, p, SLOTS, chunk=97)  # small runs: a task reads many slices
        route_edges(writer, part["u"], part["v"])
        writer.close()
    seen: list = []
    members, tasks, rounds = run_components(lambda n, s, t: run_inline(n, s, t, seen), tmp_path, src, producers,
                                            RANKS, partitions, budget)
    got = read_routed(members, tasks, 0, RANKS * root_slots(RANKS), MEMBER)
    assert len(np.unique(got["key"])) == len(got), "a node in two components"
    return {int(k): (int(r), int(s)) for k, r, s in got.tolist()}, rounds, seen


def reference(pairs) -> dict[int, tuple[int, int]]:
    nodes, roots, sizes = components(np.unique(edges_of(pairs)))
    return {int(n): (int(r), int(s)) for n, r, s in zip(nodes, roots, sizes)}


@pytest.mark.parametrize("name", sorted(graphs()))
@pytest.mark.parametrize("partitions,producers", [(1, 1), (2, 3), (7, 2), (0, 1)])
def test_same_components_as_the_single_task_reference(tmp_path, name, partitions, producers):
    pairs = graphs()[name]
    got, rounds, _ = distributed(tmp_path, pairs, producers, partitions)
    assert got == reference(pairs)
    assert (rounds == 0) == (len(pairs) == 0)


def test_members_are_routed_to_the_shard_of_their_root(tmp_path):
    pairs = graphs()["across_shards"]
    ref = reference(pairs)
    got, _, seen = distributed(tmp_path, pairs, 2, 3)
    members_dir, producers = tmp_path / "members", seen[-1][2]
    per = root_slots(RANKS)
    for rank in range(RANKS):  # a shard's destinations are contiguous (hash slots of its roots)
        recs = read_routed(members_dir, producers, rank * per, (rank + 1) * per, MEMBER)
        assert all(int(r) >> 32 == rank for r in recs["root"])
        assert {int(k) for k in recs["key"]} == {n for n, (r, _) in ref.items() if r >> 32 == rank}


@pytest.mark.parametrize("order", ["sorted", "reversed", "shuffled"])
def test_rounds_stay_logarithmic_on_a_long_path(tmp_path, order):
    n = 4096
    nodes = [key(i % RANKS, i) for i in range(n)]
    if order == "sorted":
        nodes.sort()
    elif order == "reversed":
        nodes.sort(reverse=True)
    else:
        random.Random(5).shuffle(nodes)
    pairs = list(zip(nodes, nodes[1:]))
    got, rounds, _ = distributed(tmp_path, pairs, 2, 3)
    assert got == reference(pairs)
    assert len({r for r, _ in got.values()}) == 1 and next(iter(got.values()))[1] == n
    assert rounds <= math.log2(n) + 2, rounds  # label propagation would need ~n rounds


def test_every_task_holds_no_more_records_than_its_budget(tmp_path):
    """Tasks are cut on counted records; the one thing a task cannot split is a component's star (its
    root's records), here 300 nodes, so the budget is above that and far below the 8,600 records."""
    pairs = graphs()["sorted_long_path"] + [(key(r, 1000 + 2 * i), key(r, 1001 + 2 * i)) for r in range(RANKS) for i in range(800)]
    budget = 700 * BYTES_PER_STAR_RECORD
    got, _, seen = distributed(tmp_path, pairs, 3, 0, budget=budget)
    assert got == reference(pairs)
    assert max(tasks for _, _, tasks in seen) >= 10
    for name, step, tasks in seen:
        per_record = BYTES_PER_STAR_RECORD if isinstance(step, StarStep) else BYTES_PER_MEMBER_RECORD
        assert isinstance(step, (StarStep, MemberRouter))
        for rank in range(tasks):
            held = counted_records(step.src, step.producers, step.bounds[rank], step.bounds[rank + 1])
            assert held * per_record <= budget, (name, rank, held)


def test_sizing_fits_8_gb_at_commoncrawl_and_c4_scale():
    for docs, shards in ((1e9, 160_000), (4.5e8, 1000)):
        plan = MinhashStage.sizing({}, shards=shards, docs=docs, nbytes=docs * 4000)
        assert set(plan["passes"]) == set(plan["memory"])
        assert list(plan["passes"])[:3] == ["signatures", "buckets", "verify"] and list(plan["passes"])[-3:] == ["members", "clusters", "main"]
        assert plan["passes"]["signatures"] == plan["passes"]["main"] == shards and plan["passes"]["buckets"] == 14
        assert max(plan["memory"].values()) < 8 * 2**30 - 1.5 * 2**30, plan["memory"]  # room for the process baseline
        assert plan["passes"]["verify"] > 100  # the old single task is now spread


def test_stage_with_three_partitions_equals_derived_partitions(tmp_path):
    docs, _ = corpus(extracted("c4"))
    docs += extracted("commoncrawl", "*.warc.gz", {"extractor": "resiliparse"})
    results = []
    for name, params in (("derived", {}), ("three", {"partitions": 3}), ("tiny_budget", {"memory_gb": 0.00001})):
        record = run("minhash", docs, tmp_path / name, shards=3, workers=2, **params)
        kept, dropped = outcome(tmp_path / name / "out")
        assert record["docs_in"] == len(kept) + len(dropped)
        summary = json.loads((tmp_path / name / "out" / "minhash.json").read_text())
        results.append(({i: d.metadata for i, d in kept.items()}, {i: d.metadata for i, d in dropped.items()}, summary))
        passes = sorted(p.name for p in (tmp_path / name / "out" / ".work" / "passes").iterdir())
        assert {"signatures", "buckets", "verify", "large_star_1", "small_star_1", "members", "clusters", "main"} <= set(passes)
        verify_tasks = len(list((tmp_path / name / "out" / ".work" / "passes" / "verify" / "completions").iterdir()))
        assert verify_tasks == {"derived": 1, "three": 3}.get(name, verify_tasks) and (name != "tiny_budget" or verify_tasks > 3)
    assert results[0] == results[1] == results[2]
    assert len(results[0][1]) >= 8 and results[0][2]["clusters"] >= 4
    assert results[0][2]["documents_in_clusters"] == len(results[0][1]) + results[0][2]["clusters"]


def test_stage_without_duplicates_runs_no_star_round(tmp_path):
    docs = extracted("c4")[:6]
    record = run("minhash", docs, tmp_path, shards=2, workers=1)
    kept, dropped = outcome(tmp_path / "out")
    assert record["docs_in"] == len(kept) == 6 and not dropped
    summary = json.loads((tmp_path / "out" / "minhash.json").read_text())
    assert (summary["verified_pairs"], summary["documents_in_clusters"], summary["clusters"]) == (0, 0, 0)
    passes = {p.name for p in (tmp_path / "out" / ".work" / "passes").iterdir()}
    assert passes == {"signatures", "buckets", "verify", "members", "clusters", "main"}
    assert all(d.metadata["minhash_cluster"] == i and d.metadata["minhash_cluster_size"] == 1 for i, d in kept.items())
