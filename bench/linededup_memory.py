"""Working set of each linededup pass per record, and the first pass's peak with P=1 vs P derived.

Why: the plan multiplies FIRST_BYTES_PER_RECORD / HASH_BYTES_PER_LINE / MAIN_BYTES_PER_LINE
(dedup/linededup.py) by record counts; this measures them. Lines are real text (the sample's
CommonCrawl, C4, Wikipedia and book lines), drawn with repeats (Zipf-like, as boilerplate is), in
documents of 10 lines. Each task runs in this process, so numpy's allocations are traced
(``tracemalloc``) and the task's peak RSS is read from VmHWM after resetting it (/proc/self/clear_refs).

    .venv/bin/python bench/linededup_memory.py --lines 200000 --shards 8 --memory-gb 0.0005
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datatrove.data import Document  # noqa: E402

from dedup.linededup import FirstOccurrence, LineDedupStage, LineHasher, LineRemover, group_count  # noqa: E402
from tests.dedup_support import extracted  # noqa: E402


def real_lines() -> list[str]:
    lines = []
    for source, pattern, params in [("commoncrawl", "*.warc.gz", {"extractor": "resiliparse"}), ("c4", "*", {}),
                                    ("wikipedia", "*", {}), ("books", "*", {})]:
        try:
            docs = extracted(source, pattern, params)
        except Exception as e:  # a source whose extractor needs more than this script sets up
            print(f"skipped {source}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        lines += [ln for d in docs for ln in d.text.split("\n") if ln.strip()]
    return lines


def documents(n_lines: int, seed: int = 1) -> list[Document]:
    pool = real_lines()
    rng = random.Random(seed)
    picked = [pool[min(int(rng.paretovariate(1.1)) - 1, len(pool) - 1) if rng.random() < 0.3 else rng.randrange(len(pool))]
              + ("" if rng.random() < 0.3 else f" {i}x")  # most lines unique: digits normalise, letters do not
              for i in range(n_lines)]
    return [Document(text="\n".join(picked[i : i + 10]), id=str(i), metadata={}) for i in range(0, n_lines, 10)]


def rss_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def rss_peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def measured(fn) -> tuple[int, int]:
    """(tracemalloc peak bytes, VmHWM growth bytes) of ``fn()``."""
    rss_reset()
    base = rss_peak()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, rss_peak() - base


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--memory-gb", type=float, default=0.0005)
    args = ap.parse_args()
    docs = documents(args.lines)
    per = -(-len(docs) // args.shards)
    shards = [docs[k * per : (k + 1) * per] for k in range(args.shards)]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hasher = LineHasher(root, "sha1_64")
        hash_peaks = []
        for rank, shard in enumerate(shards):
            hash_peaks.append(measured(lambda: list(hasher.run(iter(shard), rank)))[0])
        lines_per_shard = args.lines / args.shards
        out["hash_bytes_per_line"] = max(hash_peaks) / lines_per_shard
        for name, params in [("P=1", {"prefix_bits": 0, "memory_gb": 1000.0}), ("derived", {"prefix_bits": 0, "memory_gb": args.memory_gb})]:
            stage = LineDedupStage(params)
            (root / "partitions.json").unlink(missing_ok=True)
            parts = stage.partitions(root, args.shards)
            first = FirstOccurrence(root, args.shards, 0, parts)
            peaks = [measured(lambda: list(first.run(None, t)))
                     for t in range(group_count(args.shards, 0) * parts)]
            largest = json.loads((root / "partitions.json").read_text())["largest_group_records"]
            out[name] = {"partitions": parts, "records": largest, "tracemalloc_peak_max": max(p[0] for p in peaks),
                         "rss_growth_max": max(p[1] for p in peaks), "bytes_per_record": max(p[0] for p in peaks) / (largest / parts),
                         "records_read": first.stats["records"].total}
        remover = LineRemover(root, "linededup", 0, parts, 0)
        main_peaks = [measured(lambda: remover.drops(rank)) for rank in range(args.shards)]
        dropped = sum(remover.drops(rank)[0].size for rank in range(args.shards)) / args.shards
        out["main"] = {"drops_per_shard": dropped, "tracemalloc_peak_max": max(p[0] for p in main_peaks),
                       "bytes_per_line": max(p[0] for p in main_peaks) / lines_per_shard}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
