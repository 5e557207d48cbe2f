"""``python -m pipeline plan``: size a profile before running it — tasks, disk, dedup memory, core-hours.

Why: a corpus build on a cluster is booked in advance (partition, array sizes, memory per task, quota),
and a dedup task that runs out of memory 20 hours in is the classic failure (datatrove #106/#222). The
plan is arithmetic on stated assumptions, each printed with its origin:

* Volume: a source's ``disk`` in the manifest is LLaMA's Table 1 size, i.e. the text that reaches
  ``tokenize``. Walking the stages backwards, each stage's input is its output divided by the fraction of
  bytes it keeps (``KEEP``), down to ``extract``; raw downloads are the extracted text times ``RAW_PER_TEXT``.
* Documents: bytes / the source's average document size (``DOC_BYTES``).
* Tasks: document stages run one task per shard; ``extract`` makes ``ceil(text / --task-gb)`` shards
  (set it with the stage's ``tasks`` param). Extra passes: 2^prefix_bits for line/exact dedup's
  ``first``, one per band for MinHash ``buckets``, one for MinHash ``clusters`` and book ``overlap``.
* Disk: every stage writes its input again (kept + excluded) as zstd Parquet, ``PARQUET_RATIO`` of the
  text bytes; token shards are 2 bytes per token (``BYTES_PER_TOKEN`` text bytes each) + 8 per document.
* Memory per task of the dedup passes that hold a whole partition: records per task × bytes per record
  (the record dtypes in ``dedup/``, × the sort's working copies), compared with the stage's Slurm
  ``cpus_per_task × mem_per_cpu_gb``.
* Core-hours: input / per-core throughput. Throughputs come from ``bench/RESULTS.md`` lines
  ``throughput: <stage> <source|*|any> <value> <docs/s|MB/s> [baseline]`` — measured stage figures win over
  lines marked ``baseline`` (raw-library figures), a source's own line over ``*``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.manifest import REPO_ROOT, load

RESULTS = REPO_ROOT / "bench" / "RESULTS.md"
UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}

# Fraction of input bytes a stage keeps. Planning assumptions, not measurements, except where said.
KEEP: dict[str, float] = {
    "linededup": 0.50,   # CCNet: boilerplate lines repeated across a dump are a large share of WET text
    "langid": 0.45,      # English share of CommonCrawl text (fastText lid >= 0.5); C4 is already English: see KEEP_SOURCE
    "perplexity": 0.60,  # head + middle buckets = 60% of documents by construction (30th/60th percentiles)
    "wikiref": 0.50,     # RedPajama's reference classifier at 0.25
    "minhash": 0.80,
    "quality": 0.90,     # C4 is pre-filtered; the Gopher/C4 heuristics remove a little more
    "code_quality": 0.90,
    "exactdedup": 0.75,
    "bookdedup": 0.95,
}
KEEP_SOURCE: dict[tuple[str, str], float] = {("langid", "c4"): 0.98}
# Average document size in text bytes (assumed from the public datasets' sizes and document counts).
DOC_BYTES: dict[str, int] = {
    "commoncrawl": 4_000, "c4": 2_200, "github": 5_000, "wikipedia": 3_000,
    "books": 400_000, "arxiv": 50_000, "stackexchange": 3_000,
}
# Downloaded (compressed, marked-up) bytes per byte of extracted text.
RAW_PER_TEXT: dict[str, float] = {
    "commoncrawl": 0.4, "c4": 0.4, "github": 0.35, "wikipedia": 0.4, "books": 1.0, "arxiv": 0.6, "stackexchange": 0.3,
}
PARQUET_RATIO = 0.35      # zstd Parquet bytes per text byte (0.26-0.39 measured on the sample's stages)
BYTES_PER_TOKEN = 3.84    # bench/RESULTS.md, tokenize section (books sample, BPE)
AVG_LINE_BYTES = 120      # CommonCrawl paragraphs, for line dedup record counts
SORT_FACTOR = 4           # first_occurrence: records + sorted copy + order/mask arrays + kept copy
RECORD_BYTES = {"linededup": 20, "exactdedup": 24}  # dedup/linededup.py, dedup/exactdedup.py RANKED dtypes
SIGNATURE_BYTES_PER_HASH = 4  # dedup/signatures.py: uint32 minima


@dataclass(frozen=True)
class Throughput:
    value: float
    unit: str  # "docs/s" or "MB/s", per core
    baseline: bool
    line: str

    def core_hours(self, docs: float, nbytes: float) -> float:
        per_s = docs / self.value if self.unit == "docs/s" else nbytes / (self.value * 1e6)
        return per_s / 3600


_THROUGHPUT = re.compile(r"throughput:\s*(?P<stage>\w+)\s+(?P<source>[\w*]+)\s+(?P<value>[\d.]+(?:e[-+]?\d+)?)\s*(?P<unit>docs/s|MB/s)(?P<rest>[^\n`]*)", re.I)


def parse_throughputs(text: str) -> dict[tuple[str, str], Throughput]:
    """``throughput:`` lines of RESULTS.md; a measured line beats a ``baseline`` one for the same key."""
    found: dict[tuple[str, str], Throughput] = {}
    for m in _THROUGHPUT.finditer(text):
        t = Throughput(float(m["value"]), "MB/s" if m["unit"].lower() == "mb/s" else "docs/s", "baseline" in m["rest"].lower(), m.group(0).strip())
        key = (m["stage"], "*" if m["source"].lower() in ("*", "any") else m["source"])
        if t.value <= 0:
            continue
        if key not in found or (found[key].baseline and not t.baseline):
            found[key] = t
    return found


def parse_size(text: str | int | float) -> float:
    """``"3.3 TB"`` -> 3.3e12 bytes (decimal units, KiB/MiB/... binary)."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGTP]?i?B?)\s*", str(text), re.I)
    if not m or m[2].upper() not in UNITS:
        raise ValueError(f"cannot read size {text!r} (e.g. '3.3 TB', '783 GB')")
    return float(m[1]) * UNITS[m[2].upper()]


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def keep_fraction(stage: str, source: str) -> float:
    return KEEP_SOURCE.get((stage, source), KEEP.get(stage, 1.0))


def pass_tasks(stage: str, params: dict[str, Any], tasks: int) -> dict[str, int]:
    """Tasks of each pass of ``stage`` (mirrors the stages' ``run``)."""
    bits = int(params.get("prefix_bits", 4 if stage == "linededup" else 2))
    if stage in ("linededup", "exactdedup"):
        return {"hash": tasks, "first": 1 << bits, "main": tasks}
    if stage == "minhash":
        return {"signatures": tasks, "buckets": int(params.get("bands", 14)), "clusters": 1, "main": tasks}
    if stage == "perplexity":
        return {"score": tasks, "main": tasks}
    if stage == "bookdedup":
        return {"shingles": tasks, "overlap": 1, "main": tasks}
    if stage == "download":
        return {"main": 1}
    return {"main": tasks}


def dedup_memory(stage: str, params: dict[str, Any], docs: float, nbytes: float) -> float | None:
    """Peak bytes of the dedup pass that holds the most in one task (None: not a dedup stage)."""
    passes = pass_tasks(stage, params, 1)
    if stage == "linededup":
        return nbytes / AVG_LINE_BYTES / passes["first"] * RECORD_BYTES[stage] * SORT_FACTOR
    if stage == "exactdedup":
        return docs / passes["first"] * RECORD_BYTES[stage] * SORT_FACTOR
    if stage == "minhash":
        # clusters: one task holds the signatures of every document in a candidate pair, plus the edges
        hashes = int(params.get("bands", 14)) * int(params.get("rows", 8))
        in_pairs = docs * 2 * (1 - keep_fraction("minhash", "*"))
        return in_pairs * (hashes * SIGNATURE_BYTES_PER_HASH + 16 * 2) * 2
    if stage == "bookdedup":
        return docs * int(params.get("num_perm", 128)) * 8 * 4  # every book's signature, LSH Ensemble index
    return None


@dataclass
class Row:
    source: str
    stage: str
    passes: dict[str, int]
    docs_in: float
    bytes_in: float
    disk: float
    memory: float | None
    mem_limit: float
    core_hours: float | None
    throughput: str


def plan_source(manifest, source: str, throughputs: dict, task_bytes: float) -> list[Row]:
    spec = manifest.sources[source]
    if not spec.disk:
        raise ValueError(f"sources.{source}.disk: missing (the processed size the plan works back from)")
    names = spec.stage_names()
    # walk back from the bytes entering tokenize (or the end of the chain) to extract's output
    volume: dict[str, float] = {}
    out = parse_size(spec.disk)
    for stage in reversed(names):
        if stage in ("download", "extract"):
            volume[stage] = out
            continue
        volume[stage] = out / keep_fraction(stage, source) if stage != "tokenize" else out
        out = volume[stage]
    text = volume.get("extract", out)
    tasks = int(spec.stage("extract").params.get("tasks", 0)) if "extract" in names else 0
    tasks = tasks or max(1, math.ceil(text / task_bytes))
    rows = []
    for stage in names:
        nbytes = text * RAW_PER_TEXT.get(source, 1.0) if stage == "download" else volume[stage]
        docs = 0.0 if stage == "download" else nbytes / DOC_BYTES.get(source, 4000)  # downloads are files
        params = spec.stage(stage).params
        if stage == "download":
            disk = nbytes
        elif stage == "tokenize":
            disk = nbytes / BYTES_PER_TOKEN * 2 + docs * 8
        else:
            disk = nbytes * PARQUET_RATIO
        res = manifest.resources or {}
        over = {**(res.get("default") or {}), **((res.get("stages") or {}).get(stage) or {})}
        mem_limit = float(over.get("cpus_per_task", 1)) * float(over.get("mem_per_cpu_gb", 2)) * 2**30
        t = throughputs.get((stage, source)) or throughputs.get((stage, "*"))
        rows.append(Row(
            source, stage, pass_tasks(stage, params, tasks), docs, nbytes, disk,
            dedup_memory(stage, params, docs, nbytes), mem_limit,
            t.core_hours(docs, nbytes) if t else None,
            (f"{t.value:g} {t.unit}" + (" (baseline)" if t.baseline else "")) if t else "no figure",
        ))
    return rows


def plan(manifest, throughputs: dict, task_bytes: float) -> list[Row]:
    return [row for source in manifest.sources for row in plan_source(manifest, source, throughputs, task_bytes)]


def print_plan(rows: list[Row], profile: str) -> None:
    print(f"plan for profile {profile!r} (assumptions: ops/sizing.py docstring; throughputs: bench/RESULTS.md)")
    print(f"{'source':<14}{'stage':<13}{'tasks (passes)':<52}{'docs in':>10}{'bytes in':>11}{'disk':>11}{'mem/task':>13}{'core-h':>9}  throughput")
    for r in rows:
        passes = ", ".join(f"{k} {v}" for k, v in r.passes.items()) if len(r.passes) > 1 else str(r.passes["main"])
        mem = "" if r.memory is None else human(r.memory) + ("" if r.memory <= r.mem_limit else " (!)")
        ch = "" if r.core_hours is None else f"{r.core_hours:,.0f}"
        docs = f"{r.docs_in:.3g}" if r.docs_in else ""
        print(f"{r.source:<14}{r.stage:<13}{passes:<52}{docs:>10}{human(r.bytes_in):>11}{human(r.disk):>11}{mem:>13}{ch:>9}  {r.throughput}")
    print("\nper stage")
    by_stage: dict[str, list[Row]] = {}
    for r in rows:
        by_stage.setdefault(r.stage, []).append(r)
    for stage, rs in by_stage.items():
        known = [r.core_hours for r in rs if r.core_hours is not None]
        missing = [r.source for r in rs if r.core_hours is None]
        hours = f"{sum(known):>10,.0f}" if known else f"{'n/a':>10}"
        print(f"  {stage:<13} disk {human(sum(r.disk for r in rs)):>10}   core-hours {hours}"
              + (f"   (no throughput figure for: {', '.join(missing)})" if missing else ""))
    total_ch = sum(r.core_hours or 0 for r in rows)
    print(f"  {'total':<13} disk {human(sum(r.disk for r in rows)):>10}   core-hours {total_ch:>10,.0f}")
    over = [r for r in rows if r.memory is not None and r.memory > r.mem_limit]
    for r in over:
        advice = ("raise prefix_bits (more, smaller partitions)" if r.stage in ("linededup", "exactdedup")
                  else "its single clustering task needs a large-memory node (resources.stages), or dedup per dump/shard group")
        print(f"  (!) {r.stage}/{r.source}: {human(r.memory)} per task exceeds its Slurm allocation {human(r.mem_limit)}: {advice}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline plan", description="Size a profile: tasks, disk, memory, core-hours.")
    ap.add_argument("--profile", default="full")
    ap.add_argument("--manifest", default=None)
    ap.add_argument("--results", default=str(RESULTS), help="benchmark results with `throughput:` lines")
    ap.add_argument("--task-gb", type=float, default=2.0, help="extracted text per task (GB) when extract has no `tasks` param")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    manifest = load(args.manifest, profile=args.profile, check_paths=False)
    results = Path(args.results)
    throughputs = parse_throughputs(results.read_text()) if results.exists() else {}
    rows = plan(manifest, throughputs, args.task_gb * 1e9)
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=1))
    else:
        print_plan(rows, manifest.profile)
    return 0
