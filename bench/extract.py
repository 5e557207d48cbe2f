"""Extraction throughput per source on the embedded sample (one core), and resiliparse vs trafilatura
on the same WARC records in one run.

    python bench/extract.py [--repeat 3]

Prints docs/s and MB/s of raw input per source per core, and the HTML→text ratio. Numbers go into
bench/RESULTS.md (machine-readable `throughput:` lines are read by `python -m pipeline plan`).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ingest.extract import load_extractor, raw_entries  # noqa: E402

SAMPLE = REPO / "data/sample"


def time_source(source: str, params: dict, repeat: int) -> tuple[int, int, float]:
    """(documents kept, input bytes, best seconds) over the sample's raw entries of ``source``."""
    extractor = load_extractor(source, params, work_dir=None)
    entries = [p for p in raw_entries(SAMPLE / source) if extractor.accepts(p)]
    size = sum(p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in entries)
    best = float("inf")
    kept = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        kept = sum(1 for e in entries for d in extractor(e) if not d.metadata.get("reason"))
        best = min(best, time.perf_counter() - t0)
    return kept, size, best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, python {platform.python_version()}, one core (single process)")
    print(f"{'source':14s} {'docs':>6s} {'MB':>6s} {'docs/s':>9s} {'MB/s':>7s}")
    for source in ("commoncrawl", "c4", "github", "wikipedia", "books", "arxiv", "stackexchange"):
        kept, size, secs = time_source(source, {}, args.repeat)
        print(f"{source:14s} {kept:6d} {size / 1e6:6.2f} {kept / secs:9.1f} {size / 1e6 / secs:7.2f}")
        print(f"throughput: extract {source} {kept / secs:.1f} docs/s")

    # the same WARC records through both HTML extractors
    res = time_source("commoncrawl", {"extractor": "resiliparse"}, args.repeat)
    tra = time_source("commoncrawl", {"extractor": "trafilatura"}, 1)
    print(
        f"HTML→text on the same {res[0]} WARC pages: resiliparse {res[0] / res[2]:.1f} docs/s, "
        f"trafilatura {tra[0] / tra[2]:.1f} docs/s → resiliparse is {tra[2] / res[2]:.1f}× faster"
    )


if __name__ == "__main__":
    main()
