"""Report scan throughput and memory: ``FolderScanner`` vs the least any per-document scan must do.

Baseline, measured in the same run on the same files: pyarrow ``iter_batches`` over id/text/metadata
plus ``json.loads`` of every metadata string (what any scan of per-document signals pays). Memory: the
scanner's peak traced allocation over N/4 and N documents (with reservoirs of 2,000 values, full in both)
must stay flat: reservoirs, not lists.

Documents: real prose (the sample's Project Gutenberg books, 8-line documents) repeated to the size
wanted, with the metadata a CommonCrawl document carries after perplexity (language, language_score,
perplexity, bucket, cutoffs, url) and 20% of them excluded with reasons.

    .venv/bin/python bench/report_scan.py [--docs 60000]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import pyarrow.parquet as pq
from datatrove.data import Document

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.documents import ParquetShardWriter  # noqa: E402
from report.scan import FolderScanner  # noqa: E402
from storage.layout import Layout  # noqa: E402

STAGE, SOURCE = "perplexity", "commoncrawl"


def make_folder(root: Path, n_docs: int, shards: int = 4) -> Layout:
    """A perplexity stage folder of ``n_docs`` documents in the output tree at ``root``."""
    lines = []
    for path in sorted((REPO / "data" / "sample" / "books").glob("*.txt")):
        lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
    texts = ["\n".join(lines[i : i + 8]) for i in range(0, len(lines) - 8, 8)]
    rng = random.Random(0)
    layout = Layout(root)
    folder = layout.stage_dir(STAGE, SOURCE)
    per = n_docs // shards
    for rank in range(shards):
        docs = []
        for i in range(per):
            ppl = rng.lognormvariate(6, 0.8)
            meta = {"source": "commoncrawl", "url": f"https://example.org/{rank}/{i}", "language": rng.choice(["en"] * 9 + ["fr"]),
                    "language_score": round(rng.uniform(0.5, 1), 4), "perplexity": ppl,
                    "perplexity_bucket": "head" if ppl < 300 else "middle" if ppl < 600 else "tail",
                    "perplexity_cutoffs": [300.0, 600.0]}
            if ppl >= 600:
                meta.update(reason="perplexity:tail", excluded_by="perplexity")
            docs.append(Document(text=texts[(rank * per + i) % len(texts)], id=f"{rank}/{i}", metadata=meta))
        list(ParquetShardWriter(folder).run(iter(docs), rank=rank))
    return layout


def baseline(layout: Layout) -> int:
    n = 0
    kept, excluded = layout.stage_dir(STAGE, SOURCE), layout.excluded_dir(STAGE, SOURCE)
    for shard in sorted(kept.glob("*.parquet")) + sorted(excluded.glob("*.parquet")):
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=1024, columns=["id", "text", "metadata"]):
            for m in batch.column("metadata").to_pylist():
                json.loads(m)
                n += 1
    return n


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=60_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = make_folder(Path(tmp) / "small", args.docs // 4)
        big = make_folder(Path(tmp) / "big", args.docs)
        scanner = FolderScanner(max_rows=None)
        t_raw, n = best_of(lambda: baseline(big))
        t_scan, scan = best_of(lambda: scanner.scan(STAGE, SOURCE, big.stage_dir(STAGE, SOURCE)))
        assert scan.scanned["kept"] + scan.scanned["excluded"] == n
        peaks = {}
        for name, layout in (("N/4", small), ("N", big)):
            tracemalloc.start()
            FolderScanner(max_rows=None, max_values=2000).scan(STAGE, SOURCE, layout.stage_dir(STAGE, SOURCE))
            peaks[name] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
    print(f"machine: {platform.machine()}, {platform.python_version()}, documents: {n:,}")
    print(f"baseline (pyarrow batches + json.loads): {t_raw:.2f} s, {n / t_raw:,.0f} docs/s")
    print(f"FolderScanner.scan:                      {t_scan:.2f} s, {n / t_scan:,.0f} docs/s")
    print(f"scan / baseline time: {t_scan / t_raw:.2f}x")
    print(f"peak traced memory: {peaks['N/4']:.1f} MiB at {n // 4:,} docs, {peaks['N']:.1f} MiB at {n:,} docs")


if __name__ == "__main__":
    main()
