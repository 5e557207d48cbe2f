"""Deduplication benchmarks: MinHash quality on edits of real text with known Jaccard, signature
throughput against datasketch in the same run, stage docs/s, and peak RSS against corpus size.

Why: the stage's claims (recall at J >= 0.8/0.9, few false positives at J <= 0.5, >= 3x datasketch,
memory set by the shard size and not the corpus) are only worth what a measurement says. All text
is real (data/sample, extracted with the project's extractors); edited copies replace words, and
the Jaccard of each pair is computed exactly on the same word 5-gram sets the stage uses.

    .venv/bin/python bench/dedup.py [quality] [speed] [memory] [linededup] [--docs 100000,300000] [--shard 10000]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from dedup.hashing import words  # noqa: E402
from dedup.signatures import MinHasher  # noqa: E402
from pipeline.documents import read_documents  # noqa: E402
from pipeline.standalone import run_standalone  # noqa: E402
from tests.dedup_support import doc, edit_words, extracted, write_shards  # noqa: E402


def real_texts() -> list[str]:
    """Distinct real texts: Wikipedia articles, the C4 pages, one edition of each book."""
    texts = [d.text for d in extracted("wikipedia", "enwiki*")]
    texts += [d.text for d in extracted("c4")]
    texts += [d.text for d in extracted("books", "*.txt") if d.id != "botchan-60col"]
    return texts


def windows(texts: list[str], size: int) -> list[str]:
    """Non-overlapping windows of ``size`` words (real text, no two windows share a passage)."""
    out = []
    for t in texts:
        w = t.split(" ")
        out += [" ".join(w[i : i + size]) for i in range(0, len(w) - size + 1, size)]
    return out


def jaccard(hasher: MinHasher, a: str, b: str) -> float:
    sa, sb = hasher.shingles(a), hasher.shingles(b)
    return len(np.intersect1d(sa, sb)) / max(1, len(np.union1d(sa, sb)))


def quality(tmp: Path, pairs_per_bin: int = 60) -> dict:
    """Base windows of 300 real words; for each, one copy with k words replaced, k chosen so the pairs
    spread over J in [0.3, 1]; run the minhash stage on bases + copies; a pair is found when base and
    copy end in the same cluster."""
    rng = random.Random(0)
    bases = windows(real_texts(), 300)
    rng.shuffle(bases)
    hasher = MinHasher(112, 5, 1)
    docs, pairs = [], []
    for k, base in enumerate(bases):
        edits = int(rng.random() ** 2 * 90)  # more pairs at high J, where recall is measured
        copy = edit_words(base, edits, seed=k)
        j = jaccard(hasher, base, copy)
        docs += [doc(base, f"base-{k}"), doc(copy, f"copy-{k}")]
        pairs.append((f"base-{k}", f"copy-{k}", j))
    rng.shuffle(docs)
    start = time.monotonic()
    record = run_standalone("minhash", write_shards(tmp / "q_in", docs, 4), tmp / "q_out", {}, workers=2)
    seconds = time.monotonic() - start
    cluster = {d.id: d.metadata["minhash_cluster"] for d in read_documents(tmp / "q_out")}
    cluster.update({d.id: d.metadata["minhash_cluster"] for d in read_documents(tmp / "q_out", excluded=True)})
    found = [(j, cluster[a] == cluster[b]) for a, b, j in pairs]

    def rate(sel):
        hits = [f for j, f in found if sel(j)]
        return (sum(hits) / len(hits) if hits else None), len(hits)

    r90, n90 = rate(lambda j: j >= 0.9)
    r80, n80 = rate(lambda j: j >= 0.8)
    fp, n50 = rate(lambda j: j <= 0.5)
    bins = {}
    for lo in np.arange(0.3, 1.0, 0.1):
        r, n = rate(lambda j, lo=lo: lo <= j < lo + 0.1 or (lo >= 0.9 and j >= 0.9))
        bins[f"{lo:.1f}-{lo + 0.1:.1f}"] = {"found": None if r is None else round(r, 3), "pairs": n}
    return {
        "documents": len(docs), "pairs": len(pairs), "recall_j_ge_0.9": r90, "pairs_j_ge_0.9": n90,
        "recall_j_ge_0.8": r80, "pairs_j_ge_0.8": n80, "false_positive_j_le_0.5": fp, "pairs_j_le_0.5": n50,
        "by_jaccard": bins, "stage_seconds": round(seconds, 2), "stage_docs_per_s": round(len(docs) / seconds, 1),
        "excluded": record["excluded"],
    }


def speed(n_docs: int = 3000) -> dict:
    """Signatures of ~1 KB real documents (one core): ours vs datasketch ``update_batch`` on the same
    words, in the same run. Both are timed from raw text (same tokenisation) and from word lists."""
    from datasketch import MinHash

    texts = []
    for t in real_texts():
        texts += [t[i : i + 1000] for i in range(0, len(t) - 999, 1000)]
    texts = texts[:n_docs]
    hasher = MinHasher(112, 5, 1)
    hasher.signatures(texts[:10])  # warm up (normaliser tables)
    best = {}
    for _ in range(3):
        t0 = time.perf_counter()
        toks = [words(t) for t in texts]
        t1 = time.perf_counter()
        for i in range(0, len(texts), 512):
            hasher.signatures(texts[i : i + 512])
        t2 = time.perf_counter()
        for w in toks:
            m = MinHash(num_perm=112, seed=1)
            m.update_batch([b" ".join(w[i : i + 5]) for i in range(max(1, len(w) - 4))])
        t3 = time.perf_counter()
        for k, v in {"tokenise": t1 - t0, "ours": t2 - t1, "datasketch_from_words": t3 - t2}.items():
            best[k] = min(best.get(k, 1e9), v)
    ours_from_words = best["ours"] - best["tokenise"]
    ds_from_text = best["datasketch_from_words"] + best["tokenise"]
    return {
        "documents": len(texts), "mean_chars": round(sum(map(len, texts)) / len(texts)),
        "ours_docs_per_s": round(len(texts) / best["ours"]),
        "datasketch_docs_per_s": round(len(texts) / ds_from_text),
        "ratio_from_text": round(ds_from_text / best["ours"], 2),
        "ratio_from_words": round(best["datasketch_from_words"] / ours_from_words, 2),
    }


def sentences() -> list[str]:
    pool = []
    for t in real_texts():
        pool += [s.strip() for s in re.split(r"(?<=[.!?])\s+", t) if 40 <= len(s.strip()) <= 400]
    return pool


def generate(folder: Path, n_docs: int, shard_docs: int, seed: int = 0, sep: str = " ") -> None:
    """``n_docs`` documents of 6-12 sentences sampled from real text, joined by ``sep``; 5% are edited
    copies of an earlier document (3 words replaced), so the stage has duplicates to find."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.documents import ROWS_PER_GROUP, SCHEMA

    pool = sentences()
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    recent: list[str] = []
    for s in range(0, n_docs, shard_docs):
        rows = []
        for i in range(s, min(n_docs, s + shard_docs)):
            if recent and rng.random() < 0.05:
                text = edit_words(rng.choice(recent), 3, seed=i)
            else:
                text = sep.join(rng.choice(pool) for _ in range(rng.randint(6, 12)))
                recent = (recent + [text])[-1000:]
            rows.append({"id": f"g{i}", "text": text, "source": "generated", "metadata": "{}"})
        table = pa.Table.from_pylist(rows, schema=SCHEMA)  # row groups as the pipeline's own writer makes them
        pq.write_table(table, folder / f"{s // shard_docs:05d}.parquet", row_group_size=ROWS_PER_GROUP, compression="zstd")


def peak_rss(inp: Path, out: Path, stage: str = "minhash") -> tuple[float, float]:
    """Run `python -m pipeline stage <stage>` in a fresh child; return (seconds, peak RSS MiB of the
    largest process: the stage process or one of its task workers)."""
    code = (
        "import resource, subprocess, sys, time; t = time.monotonic(); "
        f"subprocess.run([sys.executable, '-m', 'pipeline', 'stage', {stage!r}, '--input', {str(inp)!r}, '--output', {str(out)!r}, '--workers', '2'], check=True, cwd={str(ROOT)!r}); "
        "print(time.monotonic() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, kib = res.stdout.split()[-2:]
    return float(seconds), int(kib) / 1024


def memory(tmp: Path, sizes: list[int], shard: int) -> list[dict]:
    rows = []
    for n, shard_docs in [(n, shard) for n in sizes] + [(sizes[0], shard * 5)]:
        inp, out = tmp / f"m{n}_{shard_docs}_in", tmp / f"m{n}_{shard_docs}_out"
        generate(inp, n, shard_docs)
        seconds, rss = peak_rss(inp, out)
        stats = json.loads((out / "stats.json").read_text())
        rows.append({"documents": n, "shard_docs": shard_docs, "shards": -(-n // shard_docs), "seconds": round(seconds, 1),
                     "docs_per_s": round(n / seconds), "peak_rss_mib": round(rss), "excluded": stats["excluded"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def linededup(tmp: Path, n: int, shard: int) -> dict:
    """The line dedup stage on documents with one real sentence per line (the pool of sentences is
    finite, so many lines repeat across documents, as navigation lines do on the web)."""
    inp, out = tmp / "l_in", tmp / "l_out"
    generate(inp, n, shard, seed=1, sep="\n")
    seconds, rss = peak_rss(inp, out, "linededup")
    stats = json.loads((out / "stats.json").read_text())
    lines = sum(d.metadata["lines_removed"] for d in read_documents(out))
    return {"documents": n, "shard_docs": shard, "seconds": round(seconds, 1), "docs_per_s": round(n / seconds),
            "peak_rss_mib": round(rss), "excluded": stats["excluded"], "lines_removed_in_kept": lines}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("what", nargs="*", default=["quality", "speed", "memory"])
    p.add_argument("--docs", default="100000,300000")
    p.add_argument("--shard", type=int, default=10000)
    args = p.parse_args()
    print(f"machine: {platform.machine()}, {platform.processor() or '?'}, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="llamix-bench-dedup-") as tmp:
        tmp = Path(tmp)
        if "speed" in args.what:
            print("speed", json.dumps(speed()), flush=True)
        if "quality" in args.what:
            print("quality", json.dumps(quality(tmp)), flush=True)
        if "linededup" in args.what:
            print("linededup", json.dumps(linededup(tmp, int(args.docs.split(",")[0]), args.shard)), flush=True)
        if "memory" in args.what:
            memory(tmp, [int(x) for x in args.docs.split(",")], args.shard)
    return 0


if __name__ == "__main__":
    sys.exit(main())
