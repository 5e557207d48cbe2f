"""MinHash dedup: real C4/CommonCrawl sample text, controlled word edits, shard/worker invariance,
kill -9 and resume, and the building blocks (signatures vs exact Jaccard, merge, components)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dedup.lsh import BUCKET, components, merge_runs, star_edges
from dedup.signatures import MinHasher, lsh_threshold, p_candidate
from dedup.workfiles import save
from tests.dedup_support import ROOT, doc, edit_words, extracted, outcome, run, write_shards


@pytest.fixture(scope="module")
def c4_docs():
    return extracted("c4")


def corpus(c4_docs):
    """The 29 C4 sample pages (one exact and one near duplicate among them) plus, for three long
    pages, a copy with 1% of its words replaced (J ~ 0.95) and one with 40% replaced (J << 0.5)."""
    docs = list(c4_docs)
    long_ones = sorted((d for d in c4_docs if len(d.text.split()) > 800), key=lambda d: d.id)[:3]
    for k, d in enumerate(long_ones):
        n = len(d.text.split(" "))
        docs.append(doc(edit_words(d.text, n // 100, seed=k), f"near-{k}"))
        docs.append(doc(edit_words(d.text, 2 * n // 5, seed=100 + k), f"far-{k}"))
    random.Random(7).shuffle(docs)
    return docs, long_ones


def test_near_and_exact_duplicates_removed_distinct_kept(c4_docs, tmp_path):
    docs, long_ones = corpus(c4_docs)
    record = run("minhash", docs, tmp_path, shards=2)
    kept, dropped = outcome(tmp_path / "out")
    assert record["docs_in"] == len(docs) == len(kept) + len(dropped)
    assert set(record["excluded"]) == {"dup:minhash"}
    by_url = {}
    for d in docs:
        by_url.setdefault(d.metadata.get("url"), []).append(d)
    # the sample's own duplicates: appendix.html under two URLs, asyncio-stream from two releases
    appendix = [d for d in docs if str(d.metadata.get("url", "")).endswith("tutorial/appendix.html")]
    stream = [d for d in docs if str(d.metadata.get("url", "")).endswith("library/asyncio-stream.html")]
    for pair in (appendix, stream):
        assert len(pair) == 2
        first, second = sorted(pair, key=lambda d: docs.index(d))
        assert first.id in kept and second.id in dropped
        assert dropped[second.id].metadata["duplicate_of"] == first.id
        assert dropped[second.id].metadata["minhash_cluster"] == first.id
        assert kept[first.id].metadata["minhash_cluster_size"] == 2
    for k, orig in enumerate(long_ones):
        near, far = f"near-{k}", f"far-{k}"
        a, b = sorted([orig.id, near], key=lambda i: [d.id for d in docs].index(i))
        assert a in kept and b in dropped, (a, b)
        assert far in kept  # 40% of the words replaced: a different document
    # everything else is distinct and stays
    assert len(dropped) == 2 + len(long_ones)
    singles = [d for d in kept.values() if d.metadata["minhash_cluster_size"] == 1]
    assert all(d.metadata["minhash_cluster"] == d.id for d in singles)


def test_same_kept_set_whatever_the_tasks_and_workers(c4_docs, tmp_path):
    docs, _ = corpus(c4_docs)
    docs += extracted("commoncrawl", "*.warc.gz", {"extractor": "resiliparse"})
    results = []
    for shards, workers in ((1, 1), (2, 2), (4, 2)):
        run("minhash", docs, tmp_path / f"s{shards}w{workers}", shards=shards, workers=workers)
        kept, dropped = outcome(tmp_path / f"s{shards}w{workers}" / "out")
        results.append(
            (sorted(kept), {i: (d.metadata["duplicate_of"], d.metadata["minhash_cluster_size"]) for i, d in dropped.items()})
        )
    assert all(r == results[0] for r in results[1:])
    assert len(results[0][1]) >= 8  # the CommonCrawl captures of example.com are among the removed


def _stage_cmd(inp, out):
    return [sys.executable, "-m", "pipeline", "stage", "minhash", "--input", str(inp), "--output", str(out), "--workers", "2"]


@pytest.mark.slow
def test_killed_and_rerun_equals_uninterrupted(c4_docs, tmp_path):
    docs, _ = corpus(c4_docs)
    docs += extracted("commoncrawl", "*.warc.gz", {"extractor": "resiliparse"})
    inp = write_shards(tmp_path / "in", docs, 4)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    subprocess.run(_stage_cmd(inp, tmp_path / "ref"), check=True, env=env, cwd=ROOT, capture_output=True)
    duration = time.monotonic() - start
    out = tmp_path / "killed"
    delay = random.uniform(0.2, 0.7) * duration  # somewhere inside one of the four passes
    proc = subprocess.Popen(_stage_cmd(inp, out), env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    assert proc.poll() is None, f"the run finished before the kill at {delay:.2f}s"
    os.killpg(proc.pid, signal.SIGKILL)  # the stage and its worker processes
    proc.wait()
    assert not (out / "_SUCCESS").exists()
    done = subprocess.run(_stage_cmd(inp, out), env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, (delay, done.stderr[-2000:])
    ref_kept, ref_dropped = outcome(tmp_path / "ref")
    kept, dropped = outcome(out)
    assert {i: d.metadata for i, d in kept.items()} == {i: d.metadata for i, d in ref_kept.items()}, delay
    assert {i: d.metadata for i, d in dropped.items()} == {i: d.metadata for i, d in ref_dropped.items()}, delay
    assert [d.text for d in kept.values()] == [d.text for d in ref_kept.values()]
    assert len(ref_dropped) >= 8


def test_signature_agreement_estimates_jaccard(c4_docs):
    hasher = MinHasher(256, ngram=5, seed=3)
    base = max(c4_docs, key=lambda d: len(d.text)).text
    for n_edits in (0, 20, 60, 150):
        other = edit_words(base, n_edits, seed=n_edits)
        a, b = hasher.shingles(base), hasher.shingles(other)
        exact = len(np.intersect1d(a, b)) / len(np.union1d(a, b))
        sa, sb = hasher.signatures([base, other])
        assert abs((sa == sb).mean() - exact) < 0.08, (n_edits, exact)
    assert (hasher.signatures([""]) == np.uint32(0xFFFFFFFF)).all()  # no words: never a candidate


def test_lsh_numbers():
    assert lsh_threshold(14, 8) == pytest.approx(0.719, abs=1e-3)
    assert p_candidate(0.8, 14, 8) == pytest.approx(0.9235, abs=1e-3)


def test_merge_of_sorted_runs_equals_a_global_sort(tmp_path):
    rng = np.random.default_rng(0)
    paths, everything = [], []
    for r in range(5):
        recs = np.empty(3000, dtype=BUCKET)
        recs["h"] = rng.integers(0, 400, size=3000)  # many equal hashes spanning chunk borders
        recs["key"] = (np.uint64(r) << np.uint64(32)) | np.arange(3000, dtype=np.uint64)
        recs = recs[np.lexsort((recs["key"], recs["h"]))]
        save(tmp_path / f"{r}.npy", recs)
        paths.append(tmp_path / f"{r}.npy")
        everything.append(recs)
    batches = list(merge_runs(paths, chunk=97))
    merged = np.concatenate(batches)
    allr = np.concatenate(everything)
    assert np.array_equal(merged, allr[np.lexsort((allr["key"], allr["h"]))])
    seen = [set(b["h"].tolist()) for b in batches]
    assert sum(len(s) for s in seen) == len(set().union(*seen))  # no hash split across batches
    edges = np.concatenate([star_edges(b) for b in batches])
    assert len(edges) == len(allr) - len(np.unique(allr["h"]))


def test_components_root_is_the_smallest_key():
    edges = np.array([(5, 9), (9, 2), (7, 8), (2, 11), (8, 20)], dtype=[("u", "<u8"), ("v", "<u8")])
    nodes, roots, sizes = components(edges)
    got = dict(zip(nodes.tolist(), zip(roots.tolist(), sizes.tolist())))
    assert got == {2: (2, 4), 5: (2, 4), 9: (2, 4), 11: (2, 4), 7: (7, 3), 8: (7, 3), 20: (7, 3)}
