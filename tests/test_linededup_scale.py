"""Line dedup at scale: the same kept text whatever the partitions or tasks, CCNet hash groups, bounded
first-pass tasks, and a plan (``sizing``) that says what ``run`` does."""

from __future__ import annotations

import json

import pytest
from datatrove.data import Document

from dedup.hashing import line_hasher, normalize_line
from dedup.linededup import AVG_LINE_BYTES, FIRST_BYTES_PER_RECORD, LineDedupStage
from pipeline.executors.resources import stage_resources
from pipeline.manifest import load as load_manifest
from tests.dedup_support import extracted, outcome, run

MIN_LENGTH = 100


@pytest.fixture(scope="module")
def cc_docs():
    return extracted("commoncrawl", "*.warc.gz", {"extractor": "resiliparse"})


def copies(docs: list[Document], tag: str) -> list[Document]:
    return [Document(text=d.text, id=f"{tag}{d.id}", metadata=dict(d.metadata)) for d in docs]


def reference(docs: list[Document], group_of: list[int]) -> tuple[dict, dict]:
    """CCNet line dedup written the obvious way (one set of seen lines per group, in input order):
    (kept id -> text, excluded id -> reason)."""
    hasher = line_hasher("sha1_64")
    seen: dict[int, set] = {}
    kept, dropped = {}, {}
    for d, g in zip(docs, group_of):
        lines, keep = d.text.split("\n"), []
        for line in lines:
            norm = normalize_line(line)
            if norm and hasher(norm) in seen.setdefault(g, set()):
                continue
            if norm:
                seen[g].add(hasher(norm))
            keep.append(line)
        text = "\n".join(keep).strip() if len(keep) < len(lines) else d.text
        if not text.strip():
            dropped[d.id] = "dup:line_empty"
        elif len(text) < MIN_LENGTH:
            dropped[d.id] = "dup:too_short"
        else:
            kept[d.id] = text
    return kept, dropped


def texts(out) -> tuple[dict, dict]:
    kept, dropped = outcome(out)
    return {i: d.text for i, d in kept.items()}, {i: d.metadata["reason"] for i, d in dropped.items()}


def work(out):
    return out / ".work"


def first_pass_records(out) -> list[int]:
    """Records each ``first`` task held (its datatrove stats)."""
    held = []
    for path in sorted((work(out) / "passes" / "first" / "stats").glob("*.json")):
        stats = json.loads(path.read_text())[0]["stats"]
        held.append(stats.get("records", {}).get("total", 0))
    return held


def test_global_dedup_identical_whatever_partitions_and_tasks(cc_docs, tmp_path):
    docs = cc_docs + copies(cc_docs[::3], "again-")  # repeats across shards, not only within one
    expected = reference(docs, [0] * len(docs))
    budget_gb = 1e-5  # ~270 records per partition on average: many partitions, each far from empty
    partitions = {}
    for name, shards, params in [("one", 1, {}), ("single-partition", 3, {"prefix_bits": 0, "memory_gb": 64.0}),
                                 ("many-partitions", 7, {"prefix_bits": 0, "memory_gb": budget_gb})]:
        record = run("linededup", docs, tmp_path / name, shards=shards, min_length=MIN_LENGTH, **params)
        out = tmp_path / name / "out"
        assert texts(out) == expected, name
        assert record["docs_in"] == len(docs) == record["docs_out"] + sum(record["excluded"].values())
        partitions[name] = json.loads((work(out) / "partitions.json").read_text())["partitions"]
        assert len(first_pass_records(out)) == partitions[name]  # one group: one task per partition
    assert partitions["one"] == 16 and partitions["single-partition"] == 1 and partitions["many-partitions"] >= 12
    # every first task held at most what its budget allows
    held = first_pass_records(tmp_path / "many-partitions" / "out")
    assert max(held) <= budget_gb * 2**30 / FIRST_BYTES_PER_RECORD
    assert sum(held) == json.loads((work(tmp_path / "many-partitions" / "out") / "partitions.json").read_text())["largest_group_records"]
    # the kept sample is the real CCNet result: IANA navigation is shared, so lines were removed
    assert sum(t.count("\n") for t in expected[0].values()) < sum(d.text.count("\n") for d in docs)


def test_hash_groups_dedup_within_their_shards_only(cc_docs, tmp_path):
    base = cc_docs[:40]
    docs = base + copies(base, "copy-")  # 80 documents, 4 shards of 20: the copy is shards 2-3
    record = run("linededup", docs, tmp_path / "groups", shards=4, min_length=MIN_LENGTH, group_shards=2, memory_gb=2e-5)
    kept, dropped = texts(tmp_path / "groups" / "out")
    assert (kept, dropped) == reference(docs, [i // 40 for i in range(80)])
    assert record["docs_in"] == 80 == record["docs_out"] + sum(record["excluded"].values())
    # group 1 (the copy) repeats group 0 line for line, and is deduplicated exactly like it
    for d in base:
        assert kept.get(f"copy-{d.id}") == kept.get(d.id) and dropped.get(f"copy-{d.id}") == dropped.get(d.id)
    assert sum(1 for i in kept if not i.startswith("copy-")) > 10
    # within a group repeated lines go: the IANA navigation survives once per group
    nav = [line for line in kept[base[0].id].split("\n") if normalize_line(line)][0]
    holders = [i for i, t in kept.items() if nav in t.split("\n")]
    assert len(holders) == 2 and sum(i.startswith("copy-") for i in holders) == 1
    # the global run removes the whole copy
    run("linededup", docs, tmp_path / "global", shards=4, min_length=MIN_LENGTH)
    kept_g, dropped_g = texts(tmp_path / "global" / "out")
    assert not any(i.startswith("copy-") for i in kept_g)
    assert all(dropped_g[f"copy-{d.id}"] == "dup:line_empty" for d in base)

    # the plan's arithmetic is run's: fed the counted records, sizing names the passes that ran
    chosen = json.loads((work(tmp_path / "groups" / "out") / "partitions.json").read_text())
    params = {"group_shards": 2, "memory_gb": 2e-5}
    sized = LineDedupStage.sizing(params, shards=4, docs=80, nbytes=chosen["largest_group_records"] * AVG_LINE_BYTES * 2)
    ran = len(first_pass_records(tmp_path / "groups" / "out"))
    assert sized["passes"] == {"hash": 4, "first": ran, "main": 4} and ran == 2 * chosen["partitions"]
    assert max(first_pass_records(tmp_path / "groups" / "out")) <= 2e-5 * 2**30 / FIRST_BYTES_PER_RECORD


def test_rerun_with_another_partitioning_is_refused(cc_docs, tmp_path):
    run("linededup", cc_docs, tmp_path, shards=2, min_length=MIN_LENGTH)
    root = work(tmp_path / "out")
    assert LineDedupStage({"min_length": MIN_LENGTH}).partitions(root, 2) == 16  # same input, same choice
    with pytest.raises(RuntimeError, match="rerun with --force"):
        LineDedupStage({"memory_gb": 1e-6}).partitions(root, 2)
    (root / "runs" / "00001.npy").unlink()
    with pytest.raises(FileNotFoundError, match="hash pass did not finish"):
        LineDedupStage({}).partitions(root, 2)


def test_full_profile_commoncrawl_fits_its_allocation():
    """The manifest's full profile at CommonCrawl scale (~1.5e10 documents, ~61 TB of text in 160k
    shards): every pass's largest task stays under linededup's Slurm allocation."""
    manifest = load_manifest(profile="full", check_paths=False)
    params = manifest.sources["commoncrawl"].stage("linededup").params
    assert params["group_shards"] > 0  # CCNet hash groups, not one set of lines for the whole crawl
    res = stage_resources(manifest.resources, "linededup")
    allocation = res["mem_per_cpu_gb"] * res["cpus_per_task"] * 2**30
    sized = LineDedupStage.sizing(params, shards=160_000, docs=1.5e10, nbytes=61e12)
    groups = -(-160_000 // params["group_shards"])
    assert sized["passes"]["hash"] == sized["passes"]["main"] == 160_000
    assert sized["passes"]["first"] % groups == 0 and sized["passes"]["first"] >= groups
    for name, memory in sized["memory"].items():
        assert memory <= params["memory_gb"] * 2**30 < allocation, name
    # global dedup of the same crawl needs ~16x more records per group: the partitions follow
    whole = LineDedupStage.sizing({**params, "group_shards": 0}, shards=160_000, docs=1.5e10, nbytes=61e12)
    assert whole["passes"]["first"] > sized["passes"]["first"] / groups * 1000
    assert whole["memory"]["first"] <= params["memory_gb"] * 2**30


@pytest.mark.parametrize("params, message", [
    ({"group_shards": -1}, "group_shards: expected an integer >= 0"),
    ({"memory_gb": 0}, "memory_gb: expected a number > 0"),
])
def test_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        LineDedupStage(params)
