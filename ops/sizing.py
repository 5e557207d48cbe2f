"""``python -m pipeline plan``: size a profile before running it — tasks, disk, memory per task, core-hours.

Why: a corpus build on a cluster is booked in advance (partition, array sizes, memory per task, quota),
and a task that runs out of memory 20 hours in is the classic failure (datatrove #106/#222). The plan
is arithmetic on stated assumptions; this docstring is their one statement, each with its origin.

* Volume: a source's ``disk`` in the manifest is LLaMA's Table 1 size, i.e. the text that reaches
  ``tokenize``. Walking the stages backwards, each stage's input is its output divided by the fraction of
  bytes it keeps (``KEEP``), down to ``extract``; raw downloads are the extracted text times ``RAW_PER_TEXT``.
  ``--stats`` replaces all of this by a finished build's counts (``replan``).
* Documents: bytes / the source's average document size (``DOC_BYTES``).
* Files: raw bytes / the upstream's typical file size (``FILE_BYTES``), or the upstream's fixed file count
  (``UPSTREAM_FILES``: C4 en's 1024 train files, one Wikipedia dump per language, one 7z per site).
* Tasks: a stage class's ``sizing`` hook, when it has one, says each pass's task count and the working
  set of its largest task (``sizing(params, shards=, docs=, nbytes=)``; for ``download`` and ``extract``
  ``shards`` are raw files and ``nbytes`` raw bytes). Stages without a hook get ``default_sizing``:
  download ``ceil(files / files_per_task)`` (or ``tasks``); extract one task per raw file (or ``tasks``, or
  ``task_mb`` MB of raw input per task; ``--task-gb`` overrides all three); document stages one task per
  input shard, i.e. per task of the stage before; the extra passes of dedup as their ``run`` makes them.
* Disk: every stage writes its input again (kept + excluded) as zstd Parquet, ``PARQUET_RATIO`` of the
  text bytes; token shards are 2 bytes per token (``BYTES_PER_TOKEN`` text bytes each) + 8 per document.
* Memory per task (predicted peak RSS of the stage's largest task) = ``PROCESS_BASELINE`` + what the stage
  loads (``stage_loads``: lid.176, the KenLM model + SentencePiece, the wikiref classifier, the tokenizer)
  + its largest pass: the pass's own working set (the hook's ``memory``; without a hook the dedup
  partition arithmetic of ``dedup_memory``: records x bytes per record x ``SORT_FACTOR``), plus, in the
  passes that read the input shards (``DOC_PASSES``), the document I/O (``io_working_set``: the Parquet
  reader's and writer's own ``PARQUET_READ_RSS`` / ``PARQUET_WRITE_RSS``, a reader batch of ``READER_BATCH``
  rows x ``READ_COPIES``, a writer row group of ``ROWS_PER_GROUP`` rows x ``WRITE_COPIES``; extract's raw
  record is its hook's). bench/scale.py compares this with measured peaks at two sizes. Flagged
  ``(!)`` when above the stage's Slurm ``cpus_per_task x mem_per_cpu_gb`` or above ``TASK_CEILING``.
* Model builds (lm, wikiref_train, tokenizer) are rows of their own (one ``build`` task, their
  ``resources.stages.<model>``), sized in ``model_rows``.
* Core-hours: input / per-core throughput (cpu-seconds, not wall). Throughputs come from
  ``bench/RESULTS.md`` lines ``throughput: <stage> <source|*|any> <value> <docs/s|MB/s> [steady|baseline]``:
  a ``steady`` line (measured on >= 5,000 documents or >= 20 MB, so start-up is noise) beats an unmarked
  measured line, which beats a ``baseline`` one (raw-library figures); a source's own line beats ``*``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.executors.resources import stage_resources
from pipeline.manifest import REPO_ROOT, load
from pipeline.registry import MODEL_STAGES, stage_class

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
# Typical upstream file size (raw bytes): one extract task per file, download files_per_task files per task.
FILE_BYTES: dict[str, float] = {
    "commoncrawl": 150e6,   # a WET file: ~56k-90k files of ~150 MB gz per dump
    "c4": 320e6,            # c4/en: c4-train.NNNNN-of-01024.json.gz, ~320 MB each
    "github": 2e9,          # RedPajama-1T github: ~100 jsonl files of ~2 GB
    "wikipedia": 1e9,       # one pages-articles bz2 per language (en ~20 GB, most others 0.3-5 GB)
    "books": 410e3,         # PG-19 train: 28,602 books, 11.7 GB
    "arxiv": 500e6,         # s3://arxiv/src/arXiv_src_YYMM_NNN.tar, ~500 MB each
    "stackexchange": 1e9,   # one 7z per site
}
UPSTREAM_FILES: dict[str, int] = {"c4": 1024, "wikipedia": 20, "stackexchange": 28}  # fixed by the manifest's inputs
FILES_PER_TASK = 16       # download's default files_per_task
PARQUET_RATIO = 0.35      # zstd Parquet bytes per text byte (0.26-0.39 measured on the sample's stages)
BYTES_PER_TOKEN = 3.84    # bench/RESULTS.md, tokenize section (books sample, BPE)
AVG_LINE_BYTES = 120      # CommonCrawl paragraphs, for line dedup record counts and tokenizer sentences
SORT_FACTOR = 4           # first_occurrence: records + sorted copy + order/mask arrays + kept copy
RECORD_BYTES = {"linededup": 20, "exactdedup": 24}  # dedup/linededup.py, dedup/exactdedup.py RANKED dtypes
SIGNATURE_BYTES_PER_HASH = 4  # dedup/signatures.py: uint32 minima
# Memory per task. PROCESS_BASELINE: VmRSS of the driver once every stage is imported (python, datatrove,
# pyarrow, numpy, fasttext, kenlm, sentencepiece: 160 MB, `python -c "import pipeline.registry as r;
# [r.stage_class(s) for s in r.STAGES]"` then /proc/self/status); a local worker is a fork of it (the
# partition passes of bench/scale.py's runs peak at 165-175 MB) and a Slurm task imports no more than it.
PROCESS_BASELINE = 160e6
# What a task's Parquet reader / writer hold beyond the rows themselves (Arrow's memory pool, a decoded row
# group, the zstd contexts): fitted on bench/scale.py's 50,000-page run, where extract's tasks only write
# (peak 225 MB) and tokenize's only read (peak 280 MB); the 500,000-page run and the other stages check them.
PARQUET_WRITE_RSS = 50e6
DOC_PASSES = {"main", "hash", "signatures", "score", "shingles"}  # passes that read the input shards (dedup/, filters/perplexity.py)
PARQUET_READ_RSS = 100e6
TASK_CEILING = 16e9       # issue #15: no task over 16 GB, whatever its allocation
READER_BATCH = 1024       # pipeline/documents.py: iter_batches(batch_size=1024)
ROWS_PER_GROUP = 2000     # pipeline/documents.py: rows buffered per Parquet row group
READ_COPIES = 3           # a batch as Arrow buffers + decompressed pages + Python strings (to_pydict)
WRITE_COPIES = 2          # buffered row dicts + the Arrow table written from them
LID_MODEL_BYTES = 938_013  # filters/lid_model.py: lid.176.ftz (quantized; loaded about its file size)
KENLM_BYTES_PER_TEXT_BYTE = 15.3  # sample build: en.bin 44.4 MB from 2.9 MB of Wikipedia (5-gram, unpruned, probing); linear = upper bound
SP_BYTES_PER_PIECE = 137  # sample build: en.sp.model 273.6 KB for 2,000 pieces
FASTTEXT_WORDS = 4_000_000  # wikiref_train vocabulary (minCount 1) at 300k examples a class: assumed
SPM_TRAIN_BYTES_PER_TEXT_BYTE = 16.0  # SentencePiece BPE trainer, peak RSS per byte of distinct sentences: 16.1 (slope, 0.2M -> 0.8M lines, 9.5 -> 37 MB, vocab 8000), docs/scale.md
PY_STR_OVERHEAD = 50      # bytes of a Python str object beyond its text
LMPLZ_DEFAULT_UNIT = 2**10  # lmplz -S without a suffix: KiB


@dataclass(frozen=True)
class Throughput:
    value: float
    unit: str  # "docs/s" or "MB/s", per core (cpu-seconds)
    baseline: bool
    line: str
    steady: bool = False

    @property
    def rank(self) -> int:
        """steady measurement > other measurement > baseline (raw-library) figure."""
        return 0 if self.baseline else 2 if self.steady else 1

    def core_hours(self, docs: float, nbytes: float) -> float:
        per_s = docs / self.value if self.unit == "docs/s" else nbytes / (self.value * 1e6)
        return per_s / 3600

    def label(self) -> str:
        return f"{self.value:g} {self.unit}" + (" (baseline)" if self.baseline else " (steady)" if self.steady else "")


_THROUGHPUT = re.compile(r"throughput:\s*(?P<stage>\w+)\s+(?P<source>[\w*]+)\s+(?P<value>[\d.]+(?:e[-+]?\d+)?)\s*(?P<unit>docs/s|MB/s)(?P<rest>[^\n`]*)", re.I)


def parse_throughputs(text: str) -> dict[tuple[str, str], Throughput]:
    """``throughput:`` lines of RESULTS.md; per key the best-ranked line wins (the first of equals)."""
    found: dict[tuple[str, str], Throughput] = {}
    for m in _THROUGHPUT.finditer(text):
        words = set(re.findall(r"\w+", m["rest"].lower().split("(", 1)[0]))
        t = Throughput(float(m["value"]), "MB/s" if m["unit"].lower() == "mb/s" else "docs/s", "baseline" in words,
                       m.group(0).strip(), steady="steady" in words)
        key = (m["stage"], "*" if m["source"].lower() in ("*", "any") else m["source"])
        if t.value <= 0:
            continue
        if key not in found or t.rank > found[key].rank:
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


def raw_files(source: str, raw_bytes: float) -> int:
    """Upstream files of a source: its fixed count, else raw bytes / the typical file size."""
    return UPSTREAM_FILES.get(source) or max(1, math.ceil(raw_bytes / FILE_BYTES.get(source, 1e9)))


# ---- passes and their memory: the stage's own hook, else the default arithmetic ----------------------
def pass_tasks(stage: str, params: dict[str, Any], shards: int, nbytes: float = 0.0) -> dict[str, int]:
    """Tasks of each pass of a stage without a ``sizing`` hook (mirrors the stages' ``run``). ``shards``:
    input shards (raw files for download and extract); ``nbytes``: input bytes (raw for extract)."""
    bits = int(params.get("prefix_bits", 4 if stage == "linededup" else 2))
    if stage in ("linededup", "exactdedup"):
        return {"hash": shards, "first": 1 << bits, "main": shards}
    if stage == "minhash":
        return {"signatures": shards, "buckets": int(params.get("bands", 14)), "clusters": 1, "main": shards}
    if stage == "perplexity":
        return {"score": shards, "main": shards}
    if stage == "bookdedup":
        return {"shingles": shards, "overlap": 1, "main": shards}
    if stage == "download":
        return {"main": int(params.get("tasks") or math.ceil(shards / int(params.get("files_per_task") or FILES_PER_TASK)))}
    if stage == "extract":
        if params.get("tasks"):
            return {"main": int(params["tasks"])}
        if params.get("task_mb"):
            return {"main": max(1, min(shards, math.ceil(nbytes / (float(params["task_mb"]) * 1e6))))}
    return {"main": shards}


DEDUP_PASS = {"linededup": "first", "exactdedup": "first", "minhash": "clusters", "bookdedup": "overlap"}


def dedup_memory(stage: str, params: dict[str, Any], docs: float, nbytes: float) -> float | None:
    """Peak bytes of the dedup pass that holds the most in one task, for a dedup stage without a
    ``sizing`` hook (None: not a dedup stage)."""
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


def default_sizing(stage: str, params: dict[str, Any], *, shards: int, docs: float, nbytes: float) -> dict[str, dict[str, float]]:
    """What a stage without a ``sizing`` hook is assumed to do: ``pass_tasks`` and ``dedup_memory``."""
    memory = dedup_memory(stage, params, docs, nbytes)
    return {"passes": pass_tasks(stage, params, shards, nbytes),
            "memory": {DEDUP_PASS[stage]: memory} if memory is not None else {}}


def stage_sizing(stage: str, params: dict[str, Any], *, shards: int, docs: float, nbytes: float) -> dict[str, dict[str, float]]:
    """``{"passes": {pass: tasks}, "memory": {pass: bytes}}`` from the stage class's ``sizing`` hook when
    it has one (the stage knows what its ``run`` does), else ``default_sizing``."""
    hook = getattr(stage_class(stage), "sizing", None)
    if hook is None:
        return default_sizing(stage, params, shards=shards, docs=docs, nbytes=nbytes)
    out = hook(params, shards=shards, docs=docs, nbytes=nbytes)
    return {"passes": {k: int(v) for k, v in out["passes"].items()}, "memory": {k: float(v) for k, v in (out.get("memory") or {}).items()}}


# ---- what a task holds besides its pass's working set ----------------------------------------------
TASK_PARAMS = {  # parameters besides the input shard count that set a stage's extra passes
    "linededup": "group_shards, prefix_bits, memory_gb", "minhash": "bands, partitions, memory_gb",
    "exactdedup": "prefix_bits", "bookdedup": "",
}


def model_sizes(manifest, stats: dict | None = None) -> dict[str, float]:
    """Bytes each model stage's artefact takes in a task that loads it: for a finished build (``stats``
    given) its stats' figures and the files on disk, else estimated from the models' parameters."""
    lm, wr, tok = (manifest.model_params(n) for n in ("lm", "wikiref_train", "tokenizer"))
    langs = list(lm.get("languages") or ["en"])
    sp = int(lm.get("sp_vocab_size", 65536)) * SP_BYTES_PER_PIECE
    kenlm = int(lm.get("max_docs", 200_000)) * DOC_BYTES.get(lm.get("source", "wikipedia"), 3000) * KENLM_BYTES_PER_TEXT_BYTE
    sizes = {
        "lm": len(langs) * (kenlm + sp),
        "wikiref_train": (int(wr.get("bucket", 1_000_000)) + FASTTEXT_WORDS) * int(wr.get("dim", 64)) * 4,
        "tokenizer": int(tok.get("vocab_size", 32000)) * SP_BYTES_PER_PIECE,
    }
    built = (stats or {}).get("models") or {}
    if (built.get("lm") or {}).get("languages"):
        sizes["lm"] = sum(float(v.get("model_bytes", 0)) + sp for v in built["lm"]["languages"].values())
    if (built.get("wikiref_train") or {}).get("model_bytes"):
        sizes["wikiref_train"] = float(built["wikiref_train"]["model_bytes"])
    if stats is not None:  # a finished build: the files its tasks loaded (models copied in have no stats)
        sizes.update(built_model_bytes(manifest))
    return sizes


def built_model_bytes(manifest) -> dict[str, float]:
    """Sizes of the models a finished build has on disk (its artefact files; scratch and markers left
    out): what its tasks really loaded, whatever its stats say."""
    from storage.layout import Layout

    layout, sizes = Layout(manifest.out_root), {}
    for name in ("lm", "wikiref_train", "tokenizer"):
        folder = layout.model_dir(name)
        if (folder / "_SUCCESS").exists():
            sizes[name] = float(sum(f.stat().st_size for f in folder.rglob("*")
                                    if f.is_file() and ".work" not in f.relative_to(folder).parts and not f.name.endswith(".json")
                                    and f.name != "_SUCCESS"))
    return sizes


def stage_loads(stage: str, models: dict[str, float]) -> float:
    """Bytes of the models a document stage's task loads."""
    return {"langid": LID_MODEL_BYTES, "perplexity": models["lm"], "wikiref": models["wikiref_train"],
            "tokenize": models["tokenizer"]}.get(stage, 0.0)


def io_working_set(stage: str, source: str, params: dict[str, Any], docs: float, text: float, tasks: int) -> float:
    """Bytes a task of the stage's per-shard pass holds for its documents: a reader batch and a writer row
    group (extract: one raw record instead of a batch; tokenize: its token buffer instead of a row group)."""
    if stage == "download":
        return 0.0
    per_task = docs / max(1, tasks)
    doc = text / docs if docs else 0.0
    written = min(ROWS_PER_GROUP, per_task) * doc * WRITE_COPIES
    if stage == "extract":  # the raw record it holds: ExtractStage.sizing
        return PARQUET_WRITE_RSS + written
    read = PARQUET_READ_RSS + min(READER_BATCH, per_task) * doc * READ_COPIES
    if stage == "tokenize":  # token ids buffered until a shard closes (max_tokens_per_shard, uint16)
        return read + 2 * min(float(params.get("max_tokens_per_shard") or 100_000_000), text / max(1, tasks) / BYTES_PER_TOKEN)
    return read + PARQUET_WRITE_RSS + written


@dataclass
class Row:
    source: str
    stage: str
    passes: dict[str, int]
    docs_in: float
    bytes_in: float
    disk: float
    memory: float  # predicted peak RSS of the stage's largest task, bytes
    mem_limit: float  # the stage's Slurm allocation per task, bytes
    core_hours: float | None
    throughput: str
    tasks_set_by: str = ""
    pass_memory: dict[str, float] = field(default_factory=dict)  # the passes' own working sets (sizing)
    loads: float = 0.0  # models loaded
    io: float = 0.0  # document I/O buffers

    @property
    def flagged(self) -> bool:
        return self.memory > self.mem_limit or self.memory > TASK_CEILING


def allocation(manifest, stage: str) -> float:
    res = stage_resources(manifest.resources, stage)
    return float(res.get("cpus_per_task", 1)) * float(res.get("mem_per_cpu_gb", 2)) * 2**30


def _throughput(throughputs: dict, stage: str, source: str):
    return throughputs.get((stage, source)) or throughputs.get((stage, "*"))


def size_stage(manifest, source: str, stage: str, *, docs: float, nbytes: float, shards: int, text: float,
               throughputs: dict, models: dict[str, float], tasks: int | None = None, set_by: str = "") -> Row:
    """One row: passes (the stage's hook or the default), memory per task, disk, core-hours. ``docs`` and
    ``nbytes`` enter the stage (raw files and bytes for download; raw bytes for extract), ``text`` leaves
    it as documents; ``tasks``, when given, is the task count of the per-shard passes (a finished build's)."""
    params = manifest.sources[source].stage(stage).params
    sizing = stage_sizing(stage, params, shards=shards, docs=docs, nbytes=nbytes)
    passes = dict(sizing["passes"])
    if tasks:
        passes = {k: (tasks if v == passes.get("main") else v) for k, v in passes.items()}
    main = passes.get("main", max(passes.values()))
    pass_memory = sizing["memory"]
    loads = stage_loads(stage, models)
    io = io_working_set(stage, source, params, docs if stage != "extract" else text / DOC_BYTES.get(source, 4000),
                        text if stage != "download" else 0.0, main)
    # the passes over the input shards hold a reader (and the last a writer); the others only their records
    memory = PROCESS_BASELINE + loads + max((io if name in DOC_PASSES else 0.0) + pass_memory.get(name, 0.0) for name in passes)
    if stage == "download":
        disk = nbytes
    elif stage == "tokenize":
        disk = text / BYTES_PER_TOKEN * 2 + docs * 8
    else:
        disk = text * PARQUET_RATIO
    t = _throughput(throughputs, stage, source)
    if not set_by:
        extra = TASK_PARAMS.get(stage)
        set_by = "input shards" + (f"; {extra}" if extra else "")
    return Row(source, stage, passes, docs, nbytes, disk, memory, allocation(manifest, stage),
               t.core_hours(docs, nbytes) if t else None, t.label() if t else "no figure", set_by, pass_memory, loads, io)


def _set_by(stage: str, params: dict[str, Any], files: int, task_bytes: float | None) -> str:
    if stage == "download":
        return "download.tasks" if params.get("tasks") else f"download.files_per_task ({files:,} files)"
    if task_bytes:
        return f"--task-gb {task_bytes / 1e9:g}"
    for key in ("tasks", "task_mb"):
        if params.get(key):
            return f"extract.{key}"
    return f"one per raw file ({files:,})"


def plan_source(manifest, source: str, throughputs: dict, task_bytes: float | None = None,
                models: dict[str, float] | None = None) -> list[Row]:
    """The rows of one source from the manifest's ``disk`` and the assumptions above. ``task_bytes``
    (``--task-gb``): extracted text per task, overriding extract's own task count."""
    spec = manifest.sources[source]
    if not spec.disk:
        raise ValueError(f"sources.{source}.disk: missing (the processed size the plan works back from)")
    models = models if models is not None else model_sizes(manifest)
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
    raw = text * RAW_PER_TEXT.get(source, 1.0)
    files = raw_files(source, raw)
    doc_bytes = DOC_BYTES.get(source, 4000)
    rows, shards = [], files
    for stage in names:
        params = spec.stage(stage).params
        common = dict(throughputs=throughputs, models=models)
        if stage == "download":
            row = size_stage(manifest, source, stage, docs=files, nbytes=raw, shards=files, text=raw,
                             set_by=_set_by(stage, params, files, None), **common)
        elif stage == "extract":
            tasks = math.ceil(text / task_bytes) if task_bytes else None
            row = size_stage(manifest, source, stage, docs=text / doc_bytes, nbytes=raw, shards=files, text=text, tasks=tasks,
                             set_by=_set_by(stage, params, files, task_bytes), **common)
        else:
            nbytes = volume[stage]  # written again as kept + excluded documents
            row = size_stage(manifest, source, stage, docs=nbytes / doc_bytes, nbytes=nbytes, shards=shards, text=nbytes, **common)
        if stage != "download":
            shards = row.passes.get("main", shards)  # a document stage writes one shard per task
        rows.append(row)
    return rows


# ---- model builds: one "build" task each, under resources.stages.<model> -----------------------------
def lmplz_bytes(setting: Any, limit: float) -> float:
    """lmplz ``-S``: a percentage (of the machine's memory: taken of the task's allocation, what it may
    use) or a size with a K/M/G/T/b suffix (bare: KiB)."""
    text = str(setting)
    if text.endswith("%"):
        return float(text[:-1]) / 100 * limit
    scale = {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50, "e": 2**60}
    unit = text[-1].lower()
    return float(text[:-1]) * scale[unit] if unit in scale else float(text) * LMPLZ_DEFAULT_UNIT


def _source_of(spec: Any) -> str:
    """The source of a model's input spec (``{source, after}`` or a list of them: the first)."""
    spec = spec[0] if isinstance(spec, list) and spec else spec
    return spec.get("source", "commoncrawl") if isinstance(spec, dict) else "commoncrawl"


def _built_count(name: str, built: dict) -> float | None:
    """Documents (lines, examples) a finished build's model stage read, from its stats summary."""
    if name == "lm" and built.get("languages"):
        return float(sum(v.get("documents", 0) for v in built["languages"].values()))
    if name == "wikiref_train" and built.get("examples"):
        return float(sum(built["examples"].values()))
    if name == "tokenizer" and built.get("sentences"):
        return float(built["sentences"])
    return None


def model_rows(manifest, throughputs: dict, models: dict[str, float], built: dict | None = None) -> list[Row]:
    """A row per model build the profile needs: its input, artefact size, peak memory and core-hours
    (``built``: a finished build's ``stats["models"]``, whose counts replace the parameters' caps)."""
    stages = {s for spec in manifest.sources.values() for s in spec.stage_names()}
    needed = [m for m, user in (("lm", "perplexity"), ("wikiref_train", "wikiref"), ("tokenizer", "tokenize")) if user in stages]
    rows = []
    for name in needed:
        p, limit = manifest.model_params(name), allocation(manifest, name)
        count = _built_count(name, (built or {}).get(name) or {})
        if name == "lm":
            langs = len(p.get("languages") or ["en"])
            docs = count if count is not None else int(p.get("max_docs", 200_000)) * langs
            nbytes = docs * DOC_BYTES.get(p.get("source", "wikipedia"), 3000)
            lines = min(2_000_000, nbytes / langs / AVG_LINE_BYTES)  # filters/kenlm_model.py: SentencePiece samples 2M lines
            phases = {"sentencepiece": lines * AVG_LINE_BYTES * SPM_TRAIN_BYTES_PER_TEXT_BYTE,
                      "lmplz": lmplz_bytes(p.get("lmplz_memory", "20%"), limit),
                      "build_binary": models["lm"] / langs}  # the probing tables of one language, built in memory
        elif name == "wikiref_train":
            cap = int(p.get("max_examples", 300_000)) if count is None else count / 2
            docs = 2 * cap
            pages, negative = _source_of(p.get("reference_pages")), _source_of(p.get("negative"))
            nbytes = cap * (DOC_BYTES.get(pages, 4000) + DOC_BYTES.get(negative, 4000))
            # documents, their page chunks and the labelled example lines are all held as str at once
            phases = {"examples": 3 * (nbytes + docs * PY_STR_OVERHEAD), "fasttext": 2 * models["wikiref_train"]}
        else:
            docs = count if count is not None else int(p.get("max_sentences", 1_000_000))
            nbytes = docs * AVG_LINE_BYTES
            held = nbytes + docs * PY_STR_OVERHEAD  # tokenizer/stages.py: the sampled lines, a Python list
            phases = {"sentences + trainer": held + nbytes * SPM_TRAIN_BYTES_PER_TEXT_BYTE}
        t = _throughput(throughputs, name, "*")
        rows.append(Row("*", name, {"build": 1}, docs, nbytes, models[name], PROCESS_BASELINE + max(phases.values()), limit,
                        t.core_hours(docs, nbytes) if t else None, t.label() if t else "no figure",
                        f"one build task; models.{name}", phases))
    return rows


def plan(manifest, throughputs: dict, task_bytes: float | None = None) -> list[Row]:
    models = model_sizes(manifest)
    rows = [row for source in manifest.sources for row in plan_source(manifest, source, throughputs, task_bytes, models)]
    return rows + model_rows(manifest, throughputs, models)


def replan(manifest, stats: dict, throughputs: dict) -> list[Row]:
    """The plan of a finished build: per stage and source, documents, bytes and tasks from its
    ``report/stats.json`` instead of ``KEEP``/``DOC_BYTES``; memory and core-hours by the same model.
    (bench/scale.py compares these predictions with what its runs measured.)"""
    models = model_sizes(manifest, stats)
    recorded = stats.get("stages") or {}
    rows = []
    for source, spec in manifest.sources.items():
        shards = 0
        for stage in spec.stage_names():
            rec = (recorded.get(stage) or {}).get(source)
            if not rec:
                continue
            docs, nbytes, tasks = float(rec.get("docs_in", 0)), float(rec.get("bytes_in", 0)), int(rec.get("tasks") or 0)
            if stage == "download":
                row = size_stage(manifest, source, stage, docs=docs, nbytes=nbytes, shards=max(1, int(docs)), text=nbytes,
                                 throughputs=throughputs, models=models, set_by="stats.json")
            elif stage == "extract":
                files = int(rec.get("files") or tasks or 1)
                row = size_stage(manifest, source, stage, docs=docs, nbytes=nbytes, shards=files, text=float(rec.get("bytes_out", nbytes)),
                                 throughputs=throughputs, models=models, tasks=tasks or None, set_by="stats.json")
            else:
                row = size_stage(manifest, source, stage, docs=docs, nbytes=nbytes, shards=tasks or shards or 1, text=nbytes,
                                 throughputs=throughputs, models=models, tasks=tasks or None, set_by="stats.json")
            shards = row.passes.get("main", shards)
            rows.append(row)
    built = stats.get("models") or {}
    return rows + [r for r in model_rows(manifest, throughputs, models, built) if r.stage in built]


# ---- output -------------------------------------------------------------------------------------------
def row_json(r: Row) -> dict[str, Any]:
    return {**r.__dict__, "flagged": r.flagged}


def advice(r: Row) -> str:
    if r.stage in MODEL_STAGES:
        return f"raise resources.stages.{r.stage} or lower models.{r.stage}'s sample size"
    if r.pass_memory and max(r.pass_memory.values()) > r.loads + r.io:
        return {"linededup": "lower memory_gb / raise prefix_bits (more, smaller partitions), or set group_shards",
                "exactdedup": "raise prefix_bits (more, smaller partitions)",
                "minhash": "lower memory_gb or raise partitions (more, smaller edge and component partitions)",
                }.get(r.stage, "its single task needs a large-memory node (resources.stages)")
    return f"raise resources.stages.{r.stage}.mem_per_cpu_gb (its models and buffers do not shrink with more tasks)"


def print_plan(rows: list[Row], profile: str) -> None:
    print(f"plan for profile {profile!r} (assumptions: ops/sizing.py docstring; throughputs: bench/RESULTS.md)")
    print(f"{'source':<14}{'stage':<13}{'tasks (passes)':<52}{'docs in':>10}{'bytes in':>11}{'disk':>11}{'mem/task':>13}{'core-h':>9}"
          f"  {'throughput':<24}tasks set by")
    for r in rows:
        passes = ", ".join(f"{k} {v}" for k, v in r.passes.items()) if len(r.passes) > 1 else str(next(iter(r.passes.values())))
        mem = human(r.memory) + (" (!)" if r.flagged else "")
        ch = "" if r.core_hours is None else f"{r.core_hours:,.0f}"
        docs = f"{r.docs_in:.3g}" if r.docs_in else ""
        print(f"{r.source:<14}{r.stage:<13}{passes:<52}{docs:>10}{human(r.bytes_in):>11}{human(r.disk):>11}{mem:>13}{ch:>9}"
              f"  {r.throughput:<24}{r.tasks_set_by}")
    print("\nper stage")
    by_stage: dict[str, list[Row]] = {}
    for r in rows:
        by_stage.setdefault(r.stage, []).append(r)
    for stage, rs in by_stage.items():
        known = [r.core_hours for r in rs if r.core_hours is not None]
        missing = [r.source for r in rs if r.core_hours is None]
        hours = f"{sum(known):>10,.0f}" if known else f"{'n/a':>10}"
        print(f"  {stage:<13} disk {human(sum(r.disk for r in rs)):>10}   core-hours {hours}   largest task {human(max(r.memory for r in rs)):>9}"
              + (f"   (no throughput figure for: {', '.join(missing)})" if missing else ""))
    total_ch = sum(r.core_hours or 0 for r in rows)
    print(f"  {'total':<13} disk {human(sum(r.disk for r in rows)):>10}   core-hours {total_ch:>10,.0f}   largest task {human(max(r.memory for r in rows)):>9}")
    for r in rows:
        if r.flagged:
            what = f"exceeds its Slurm allocation {human(r.mem_limit)}" if r.memory > r.mem_limit else ""
            if r.memory > TASK_CEILING:
                what += (" and " if what else "") + f"is over the {human(TASK_CEILING)} ceiling of one task"
            print(f"  (!) {r.stage}/{r.source}: {human(r.memory)} per task {what}: {advice(r)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline plan", description="Size a profile: tasks, disk, memory per task, core-hours.")
    ap.add_argument("--profile", default="full")
    ap.add_argument("--manifest", default=None)
    ap.add_argument("--results", default=str(RESULTS), help="benchmark results with `throughput:` lines")
    ap.add_argument("--task-gb", type=float, default=None,
                    help="extracted text per extract task (GB); overrides extract's own count (one task per raw file, or its tasks/task_mb params)")
    ap.add_argument("--stats", default=None, help="a finished build's report/stats.json: replan that build from its own counts")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    manifest = load(args.manifest, profile=args.profile, check_paths=False)
    results = Path(args.results)
    throughputs = parse_throughputs(results.read_text()) if results.exists() else {}
    if args.stats:
        rows = replan(manifest, json.loads(Path(args.stats).read_text()), throughputs)
    else:
        rows = plan(manifest, throughputs, args.task_gb * 1e9 if args.task_gb else None)
    if args.json:
        print(json.dumps([row_json(r) for r in rows], indent=1))
    else:
        print_plan(rows, manifest.profile)
    return 0
