"""The CommonCrawl chain at two sizes 10x apart: is every task bounded, and does the plan predict it?

Why: the plan (``python -m pipeline plan``) promises a memory per task and core-hours per stage for a
corpus no one can build on a laptop. This bench builds the CommonCrawl chain (extract -> linededup ->
langid -> perplexity -> wikiref -> minhash -> tokenize) on generated WET corpora of real text
(``bench/corpus.py``) at two sizes 10x apart, same pages per file, through the real Runner and local
executor, and reads each task's own usage records (``pipeline/executors/usage.py``):

* per stage: docs in/out, docs/s per core (docs in / CPU seconds of all its tasks), wall seconds, the
  peak RSS of its largest task (max over its passes);
* peak RSS (10x) / peak RSS (1x) per stage: a bounded stage stays near 1;
* ``ops.sizing.replan(manifest, stats, throughputs)`` on the build's own stats -> predicted memory per
  task and core-hours, with measured / predicted ratios.

The models (lm, wikiref_train, tokenizer) are built once from the sample (Wikipedia, books, the sample
crawl) and copied into both builds: not measured. linededup/minhash get a small ``memory_gb`` so that
their partition counts grow with the data. Everything is written under ``--out`` (out/bench/scale):
``inputs/``, ``out/<profile>/`` builds, ``scale.json`` and ``scale.md``.

    python bench/scale.py                       # 50,000 and 500,000 pages, 5,000 per file, 2 workers
    python bench/scale.py --sizes 5000,50000    # a development-sized run
    python bench/scale.py --quick               # smoke test (tiny)
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from bench.corpus import SAMPLE, write_wet_corpus  # noqa: E402
from pipeline.executors.usage import stage_usage  # noqa: E402
from storage.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from storage.layout import Layout  # noqa: E402

CHAIN = ["extract", "linededup", "langid", "perplexity", "wikiref", "minhash", "tokenize"]
SOURCE = "commoncrawl"
MODELS = ("lm", "wikiref_train", "tokenizer")
MODEL_SOURCES = ("commoncrawl", "wikipedia", "books")


def machine() -> str:
    from pipeline.executors.local import cpu_count

    return f"{platform.machine()} {cpu_count()} cores, Python {platform.python_version()}"


def known_params(stage: str) -> set[str]:
    from pipeline.registry import stage_class

    return set(getattr(stage_class(stage), "PARAMS", {}) or {})


def write_manifest(root: Path, profiles: dict[str, dict], sources=MODEL_SOURCES) -> Path:
    """A copy of the project manifest with only the sources the bench needs, ``out_dir`` = ``root/out``,
    and ``profiles`` ({name: {"inputs": {source: [...]}, "params": {...}}})."""
    raw = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
    sample_params = raw["profiles"]["sample"].get("params", {})
    raw["out_dir"] = "out"
    raw["default_profile"] = next(iter(profiles))
    raw["profiles"] = {name: {"description": f"bench/scale.py {name}", "params": {**sample_params, **p.get("params", {})}}
                       for name, p in profiles.items()}
    wanted, sources = sources, {}
    for name in wanted:
        spec = raw["sources"][name]
        spec["inputs"] = {prof: p["inputs"].get(name) or [str(SAMPLE / name / "*")] for prof, p in profiles.items()}
        sources[name] = spec
    total = sum(float(spec["weight"]) for spec in sources.values())
    for spec in sources.values():  # the manifest wants proportions summing to 1
        spec["weight"] = float(spec["weight"]) / total
    raw["sources"] = sources
    root.mkdir(parents=True, exist_ok=True)
    path = root / "manifest.yaml"
    atomic_write_text(path, yaml.safe_dump(raw, sort_keys=False))
    return path


def scale_params(memory_gb: float) -> dict:
    """Small per-task budgets so partition counts grow with the data (params a stage does not know yet
    are left out, said in one line)."""
    params = {}
    for stage in ("linededup", "minhash"):
        if "memory_gb" in known_params(stage):
            params[stage] = {"memory_gb": memory_gb}
        else:
            print(f"note: {stage} has no memory_gb parameter in this tree: run with its defaults")
    return params


def sample_inputs() -> dict:
    return {"commoncrawl": [str(SAMPLE / "commoncrawl" / "*.warc.gz")], "wikipedia": [str(SAMPLE / "wikipedia" / "*.xml.bz2")],
            "books": [str(SAMPLE / "books" / "*.txt")]}


def run_build(manifest_path: Path, profile: str, workers: int, sources=None, stages=None):
    from pipeline.executors import make_executor
    from pipeline.manifest import load
    from pipeline.runner import Runner

    manifest = load(manifest_path, profile=profile)
    Runner(manifest, make_executor("local", workers), sources=sources, stages=stages).run()
    return manifest


def measure(manifest) -> dict:
    layout = Layout(manifest.out_root)
    stats = json.loads(layout.stats_path.read_text())
    rows = {}
    for stage in CHAIN:
        rec = stats["stages"][stage][SOURCE]
        use = stage_usage(layout.stage_dir(stage, SOURCE))
        cpu = use["cpu_seconds"]
        rows[stage] = {
            "docs_in": rec.get("docs_in"), "docs_out": rec.get("docs_out"), "bytes_in": rec.get("bytes_in"),
            "wall_seconds": rec.get("seconds"), "cpu_seconds": round(cpu, 3), "tasks": use["tasks"],
            "docs_per_s_per_core": round(rec["docs_in"] / cpu, 1) if cpu and rec.get("docs_in") else None,
            "peak_task_rss_bytes": use["peak_task_rss_bytes"],
            "passes": {name: {"tasks": p["tasks"], "cpu_seconds": round(p["cpu_seconds"], 3),
                              "peak_task_rss_bytes": p["peak_task_rss_bytes"]} for name, p in use["passes"].items()},
        }
    return {"stats": stats, "stages": rows}


def predict(manifest, stats: dict, results: Path) -> tuple[dict, str | None]:
    """{stage: {"memory", "core_hours"}} from ops.sizing.replan, or (empty, why not)."""
    try:
        from ops.sizing import parse_throughputs, replan
    except ImportError:
        return {}, "ops.sizing.replan does not exist in this tree: no predictions, measurements only"
    throughputs = parse_throughputs(results.read_text()) if results.exists() else {}
    out = {}
    for row in replan(manifest, stats, throughputs):
        if row.source == SOURCE and row.stage in CHAIN:
            out[row.stage] = {"memory": row.memory, "core_hours": row.core_hours}
    return out, None


def ratio(measured, predicted):
    return round(measured / predicted, 3) if measured and predicted else None


def table(sizes: list[int], runs: dict) -> str:
    mb = 1e6
    head = ["stage"]
    for n in sizes:
        head += [f"{n:,}: docs in", "out", "docs/s/core", "wall s", "peak task RSS MB", "pred MB", "RSS meas/pred",
                 "core-h", "pred core-h", "core-h meas/pred"]
    if len(sizes) == 2:
        head.append(f"peak RSS {sizes[1]:,}/{sizes[0]:,}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fmt = lambda v, f="{:,.0f}": "" if v is None else f.format(v)  # noqa: E731
    for stage in CHAIN:
        cells = [stage]
        for n in sizes:
            m = runs[n]["stages"][stage]
            p = runs[n]["predicted"].get(stage, {})
            ch = m["cpu_seconds"] / 3600
            cells += [fmt(m["docs_in"]), fmt(m["docs_out"]), fmt(m["docs_per_s_per_core"]), fmt(m["wall_seconds"], "{:,.1f}"),
                      fmt(m["peak_task_rss_bytes"] / mb), fmt(p.get("memory") and p["memory"] / mb),
                      fmt(ratio(m["peak_task_rss_bytes"], p.get("memory")), "{:.2f}"), fmt(ch, "{:.4f}"),
                      fmt(p.get("core_hours"), "{:.4f}"), fmt(ratio(ch, p.get("core_hours")), "{:.2f}")]
        if len(sizes) == 2:
            a, b = (runs[n]["stages"][stage]["peak_task_rss_bytes"] for n in sizes)
            cells.append(fmt(ratio(b, a), "{:.2f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="CommonCrawl chain at two sizes 10x apart (see the module docstring)")
    ap.add_argument("--out", default=str(REPO / "out" / "bench" / "scale"))
    ap.add_argument("--sizes", default="50000,500000")
    ap.add_argument("--docs-per-file", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-gb", type=float, default=0.1, help="linededup/minhash memory_gb (small: partitions grow with the data)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    ap.add_argument("--quick", action="store_true", help="smoke test: 400 and 4,000 pages, 200 per file")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.docs_per_file = "400,4000", 200
    sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(args.out).resolve()
    names = {n: f"n{n}" for n in sizes}
    profiles = {"models": {"inputs": sample_inputs()}}
    params = scale_params(args.memory_gb)
    for n in sizes:
        profiles[names[n]] = {"inputs": {SOURCE: [str(root / "inputs" / names[n] / "*.warc.wet.gz")]}, "params": params}
    manifest_path = write_manifest(root, profiles)

    t0 = time.monotonic()
    models = run_build(manifest_path, "models", args.workers, sources=list(MODEL_SOURCES), stages=list(MODELS))
    print(f"models built from the sample in {time.monotonic() - t0:.0f}s (not measured)")
    runs = {}
    for n in sizes:
        t0 = time.monotonic()
        files = write_wet_corpus(root / "inputs" / names[n], n, args.docs_per_file, args.seed, args.workers)
        print(f"{names[n]}: {len(files)} WET files, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB in {time.monotonic() - t0:.0f}s")
        from pipeline.manifest import load

        manifest = load(manifest_path, profile=names[n])
        for model in MODELS:  # the same models for both sizes
            src, dst = Layout(models.out_root).model_dir(model), Layout(manifest.out_root).model_dir(model)
            if not dst.exists():
                shutil.copytree(src, dst)
        t0 = time.monotonic()
        run_build(manifest_path, names[n], args.workers, sources=[SOURCE], stages=CHAIN)
        run = measure(manifest)
        run["wall_seconds"] = round(time.monotonic() - t0, 1)
        run["predicted"], why = predict(manifest, run.pop("stats"), Path(args.results))
        if why:
            print(why)
        runs[n] = run
    md = table(sizes, runs)
    result = {"machine": machine(), "sizes": sizes, "docs_per_file": args.docs_per_file, "workers": args.workers,
              "memory_gb": args.memory_gb, "runs": {str(n): runs[n] for n in sizes}}
    atomic_write_json(root / "scale.json", result)
    atomic_write_text(root / "scale.md", f"machine: {result['machine']}, {args.workers} workers, {args.docs_per_file} pages per file, "
                                         f"memory_gb {args.memory_gb}\n\n{md}\n")
    print(md)
    print(f"written: {root / 'scale.json'}, {root / 'scale.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
