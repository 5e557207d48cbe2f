"""Steady-state per-core throughput of every stage of every source, for ``python -m pipeline plan``.

Why: the figures the plan multiplies used to come from runs on the tiny sample, where process start-up
was most of the time. Here every source runs through the real Runner and local executor on inputs large
enough for start-up to be a small share (>= 20 MB or >= 5,000 documents; ``bench/corpus.py``: generated
WET pages of real text for CommonCrawl, copies of the sample's raw files for the others), CommonCrawl's
download included, served by an HTTP server on 127.0.0.1 from a ``wet.paths.gz`` as in the full profile.

Per core = documents in (MB for download) / CPU seconds of all the stage's tasks (the executor's usage
records, ``pipeline/executors/usage.py``). Start-up share: the whole build runs twice, at 1/10 of the
size and full size; CPU = a + b x docs gives the fixed part a, reported as a / CPU(full).
Prints ``throughput: <stage> <source> <value> docs/s steady (...)`` lines for bench/RESULTS.md.

    python bench/throughput.py            # ~20k WET pages, >= 20 MB / 5,000 docs per source
    python bench/throughput.py --quick    # smoke test (tiny; the start-up share is then large)
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.corpus import write_source_inputs, write_wet_corpus  # noqa: E402
from bench.scale import machine, run_build, write_manifest  # noqa: E402
from pipeline.executors.usage import stage_usage  # noqa: E402
from storage.atomic import atomic_write_json  # noqa: E402
from storage.layout import Layout  # noqa: E402

SOURCES = ("commoncrawl", "c4", "github", "wikipedia", "books", "arxiv", "stackexchange")
GLOBS = {"c4": "*.json.gz", "github": "*.tar.gz", "wikipedia": "*.xml.bz2", "books": "*.txt", "arxiv": "*", "stackexchange": "*"}
MODELS = ("lm", "wikiref_train", "tokenizer")


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def make_inputs(folder: Path, wet_docs: int, docs_per_file: int, target_mb: float, target_docs: int, workers: int) -> None:
    write_wet_corpus(folder / "commoncrawl", wet_docs, max(1, min(docs_per_file, wet_docs // 2)), 0, workers)
    for source in SOURCES[1:]:
        write_source_inputs(folder, source, target_mb, target_docs)


def profile_inputs(folder: Path, port: int) -> dict:
    name = folder.name
    inputs = {s: [str(folder / s / g)] for s, g in GLOBS.items()}
    inputs["commoncrawl"] = [{"paths": f"http://127.0.0.1:{port}/{name}/commoncrawl/wet.paths.gz",
                              "base_url": f"http://127.0.0.1:{port}/{name}/"}]
    return inputs


def downloaded_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and ".work" not in p.parts
               and not p.name.endswith(".json") and not p.name.startswith("."))


def measure(manifest) -> dict:
    """{(stage, source): {"units", "unit", "cpu_seconds", "peak_task_rss_bytes", "mb"}} of a finished build."""
    layout = Layout(manifest.out_root)
    stats = json.loads(layout.stats_path.read_text())
    out = {}
    for source in SOURCES:
        for stage in manifest.sources[source].stage_names():
            folder = layout.stage_dir(stage, source)
            use = stage_usage(folder)
            rec = stats["stages"].get(stage, {}).get(source, {})
            if stage == "download":
                nbytes = downloaded_bytes(folder)
                units, unit = nbytes / 1e6, "MB/s"
            else:
                nbytes = rec.get("bytes_in") or 0
                units, unit = rec.get("docs_in") or 0, "docs/s"
            out[(stage, source)] = {"units": units, "unit": unit, "cpu_seconds": use["cpu_seconds"], "tasks": use["tasks"],
                                    "mb": nbytes / 1e6, "peak_task_rss_bytes": use["peak_task_rss_bytes"]}
    for model in MODELS:
        use = stage_usage(layout.model_dir(model))
        out[(model, "*")] = {"units": model_units(model, stats.get("models", {}).get(model) or {}), "unit": "docs/s",
                             "cpu_seconds": use["cpu_seconds"], "tasks": use["tasks"], "mb": 0,
                             "peak_task_rss_bytes": use["peak_task_rss_bytes"]}
    return out


def model_units(model: str, summary: dict) -> float:
    """What a model build's cost is counted in, as ``ops.sizing.model_rows`` counts it: the documents the
    KenLM models were trained on, the labelled examples of the classifier, the tokenizer's sentences."""
    if model == "lm":
        return float(sum(v.get("documents", 0) for v in (summary.get("languages") or {}).values()))
    if model == "wikiref_train":
        return float(sum((summary.get("examples") or {}).values()))
    return float(summary.get("sentences") or 0)


# wikiref scores every page whatever its threshold; keeping them all gives minhash and tokenize the page
# density per shard of a real crawl (the classifier trained on these generated pages as negatives would
# otherwise drop ~70% of them, leaving minhash ~800 pages a shard, mostly per-task overhead)
BENCH_PARAMS = {"wikiref": {"threshold": 0.0}}
ENOUGH_MB, ENOUGH_DOCS = 20, 5000  # issue #15: a figure needs >= 20 MB or >= 5,000 documents through the stage
# CommonCrawl's run gives each later stage's `*` line (web pages); these in MB/s (cost per byte, any source)
PER_BYTE_ANY = ("tokenize", "download")


def startup_share(small: dict, large: dict) -> float | None:
    """Fixed CPU a of CPU = a + b x units (two sizes), as a share of the large run's CPU."""
    du, dc = large["units"] - small["units"], large["cpu_seconds"] - small["cpu_seconds"]
    if du <= 0 or large["cpu_seconds"] <= 0:
        return None
    fixed = small["cpu_seconds"] - dc / du * small["units"]
    return max(0.0, fixed) / large["cpu_seconds"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="steady-state per-core throughput of every stage (see the module docstring)")
    ap.add_argument("--out", default=str(REPO / "out" / "bench" / "throughput"))
    ap.add_argument("--wet-docs", type=int, default=100000, help="generated CommonCrawl pages (full size)")
    ap.add_argument("--docs-per-file", type=int, default=5000, help="CommonCrawl pages per WET file (bench/scale.py's shard size)")
    ap.add_argument("--target-mb", type=float, default=25, help="raw MB per source (>= 20 MB must reach each stage)")
    ap.add_argument("--target-docs", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny inputs")
    args = ap.parse_args(argv)
    if args.quick:
        args.wet_docs, args.target_mb, args.target_docs, args.docs_per_file = 1000, 1, 200, 125
    scale = 0.01 if args.quick else 1.0  # the smoke run's bar
    root = Path(args.out).resolve()
    sizes = {"small": (max(8, args.wet_docs // 10), args.target_mb / 10, max(1, args.target_docs // 10)),
             "large": (args.wet_docs, args.target_mb, args.target_docs)}
    for name, (wet, mb, docs) in sizes.items():
        make_inputs(root / "inputs" / name, wet, args.docs_per_file, mb, docs, args.workers)
    server, port = serve(root / "inputs")
    try:
        manifest_path = write_manifest(root, {name: {"inputs": profile_inputs(root / "inputs" / name, port), "params": BENCH_PARAMS}
                                              for name in sizes},
                                       sources=SOURCES)
        measured, walls = {}, {}
        for name in sizes:
            t0 = time.monotonic()
            manifest = run_build(manifest_path, name, args.workers)
            walls[name] = time.monotonic() - t0
            measured[name] = measure(manifest)
    finally:
        server.shutdown()
    where = machine()
    lines, rows = [], []
    for key, big in measured["large"].items():
        stage, source = key
        share = startup_share(measured["small"][key], big)
        value = big["units"] / big["cpu_seconds"] if big["cpu_seconds"] > 0 and big["units"] else None
        rows.append({"stage": stage, "source": source, "per_core": value, "unit": big["unit"], "startup_share": share,
                     **{k: big[k] for k in ("units", "mb", "cpu_seconds", "tasks", "peak_task_rss_bytes")}})
        big_enough = big["mb"] >= ENOUGH_MB * scale or big["units"] >= ENOUGH_DOCS * scale or stage in MODELS
        if value and not big_enough:  # e.g. copies of the sample's files removed by dedup: no figure at all
            lines.append(f"# not measured: {stage} {source}: only {big['units']:,.0f} docs, {big['mb']:.1f} MB reached it "
                         f"(< {ENOUGH_DOCS * scale:,.0f} docs and < {ENOUGH_MB * scale:g} MB)")
            continue
        if value:
            what = f"{big['mb']:.1f} MB" if big["unit"] == "MB/s" else f"{big['units']:,.0f} docs, {big['mb']:.1f} MB"
            # only a run where start-up is < 5% is "steady" (the plan prefers those lines)
            steady = "steady" if share is not None and share < 0.05 else "start-up dominated"
            if source == "commoncrawl" and stage != "extract":  # web pages (and files over HTTP): the `*` figure of the stage
                star = (f"{big['mb'] / big['cpu_seconds']:.2f} MB/s" if stage in PER_BYTE_ANY else f"{value:.1f} docs/s")
                lines.append(f"throughput: {stage} * {star} {steady} (from {source}: {what}, {big['tasks']} tasks, "
                             f"start-up {share * 100 if share is not None else float('nan'):.1f}%, {where})")
            lines.append(f"throughput: {stage} {source} {value:.1f} {big['unit']} {steady} ({what}, {big['tasks']} tasks, "
                         f"start-up {share * 100 if share is not None else float('nan'):.1f}%, {where})")
    atomic_write_json(root / "throughput.json", {"machine": where, "workers": args.workers, "wall_seconds": walls, "rows": rows})
    print(f"{'stage':<14}{'source':<14}{'per core':>12} {'unit':<7}{'input':>12}{'cpu s':>9}{'tasks':>7}{'start-up':>10}{'peak task RSS':>15}")
    for r in rows:
        share = "" if r["startup_share"] is None else f"{r['startup_share']:.1%}"
        print(f"{r['stage']:<14}{r['source']:<14}{r['per_core'] or 0:>12.1f} {r['unit']:<7}{r['units']:>12,.1f}{r['cpu_seconds']:>9.1f}"
              f"{r['tasks']:>7}{share:>10}{r['peak_task_rss_bytes'] / 1e6:>12.0f} MB")
    print()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
