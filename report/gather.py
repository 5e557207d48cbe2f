"""What the report is made of: everything a build left in ``out/<profile>/``, read once into ``RunData``.

Why a module of its own: the HTML sections and the terminal summary only format; reading the tree
(stats.json, stage folders, token shards, training runs) happens here, through ``storage.layout.Layout``
so that the report and the writers agree on every path. Nothing here imports torch or the trainer: the
report runs on a laptop next to a corpus.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from report.scan import FolderScan, FolderScanner
from storage.layout import STATS_FILE, Layout
from tokenizer.shards import ShardError, list_shards, open_shard

# files inside a training run's folder (train/<run>/), as train/metrics.py and train/loop.py name them
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
# per-task accounting records inside a stage's scratch folder (pipeline/stages.py)
ACCOUNTING_DIR = "accounting"


@dataclass
class ShardInfo:
    source: str
    name: str
    documents: int
    tokens: int
    mean_len: float | None
    max_len: int | None
    bytes_per_token: float | None
    vocab_size: int | None
    problem: str | None = None


@dataclass
class TrainingRun:
    """One ``train/<run>/`` folder: its metrics records and its summary.json (None until it finished)."""

    name: str
    records: list[dict]
    summary: dict | None
    finished_at: float = 0.0  # summary.json's mtime: which run is the latest

    @property
    def mixture(self) -> dict[str, dict]:
        """The loader's realised mixture (``summary.json`` ``mixture``: per source tokens, windows,
        share, target, epochs, max_epochs), or {} for a run that has none."""
        mix = (self.summary or {}).get("mixture")
        return {k: v for k, v in mix.items() if isinstance(v, dict)} if isinstance(mix, dict) else {}


@dataclass
class RunData:
    root: Path
    profile: str
    stats: dict[str, Any]
    manifest: Any | None
    notes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    stages: dict[str, list[str]] = field(default_factory=dict)  # source -> stages present, in order
    scans: dict[tuple[str, str], FolderScan] = field(default_factory=dict)
    shards: dict[str, list[ShardInfo]] = field(default_factory=dict)
    runs: list[TrainingRun] = field(default_factory=list)

    @property
    def layout(self) -> Layout:
        return Layout(self.root)

    def record(self, stage: str, source: str) -> dict[str, Any] | None:
        return self.stats.get("stages", {}).get(stage, {}).get(source)

    def tokens(self, source: str) -> int:
        return sum(s.tokens for s in self.shards.get(source, []))

    def bytes_per_token(self, source: str) -> float | None:
        rec = self.record("tokenize", source)
        if rec and rec.get("tokens"):
            return rec.get("bytes_out", 0) / rec["tokens"]
        return None

    def weight(self, source: str) -> float | None:
        return self.manifest.sources[source].weight if self.manifest and source in self.manifest.sources else None

    def epochs(self, source: str) -> float | None:
        return self.manifest.sources[source].epochs if self.manifest and source in self.manifest.sources else None

    def latest_run_with_mixture(self) -> TrainingRun | None:
        """The most recently finished run whose summary.json records a realised mixture."""
        runs = [r for r in self.runs if r.mixture]
        return max(runs, key=lambda r: (r.finished_at, r.name)) if runs else None


def _load_manifest(path: str | None, profile: str | None, root: Path, notes: list[str]):
    from pipeline.manifest import ManifestError, load

    try:
        if profile is None:  # the run folder out/<profile> names its profile, if the manifest has it
            manifest = load(path, check_paths=False)
            if root.name != manifest.profile and root.name in (manifest.raw.get("profiles") or {}):
                manifest = load(path, profile=root.name, check_paths=False)
            return manifest
        return load(path, profile=profile, check_paths=False)
    except ManifestError as e:
        if path:
            raise
        notes.append(f"no manifest ({e}): mixture targets and stage order are unavailable")
        return None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _stats(layout: Layout, notes: list[str]) -> dict[str, Any]:
    """report/stats.json, completed from the stage folders' own stats.json where it lacks a record."""
    path = layout.stats_path
    stats = read_json(path) if path.exists() else {"version": 1, "stages": {}}
    if not path.exists():
        notes.append(f"{path} is missing: counts were read from the stage folders")
    from pipeline.registry import STAGES

    for stage in STAGES:
        folder = layout.stage_dir(stage)
        for rec_path in sorted(folder.glob(f"*/{STATS_FILE}")) if folder.is_dir() else []:
            source = rec_path.parent.name
            if source not in stats.setdefault("stages", {}).get(stage, {}):
                try:
                    stats["stages"].setdefault(stage, {})[source] = json.loads(rec_path.read_text())
                except json.JSONDecodeError:
                    notes.append(f"{rec_path}: unreadable, skipped")
    return stats


def _order(data: RunData) -> None:
    from pipeline.registry import STAGES

    in_stats: dict[str, list[str]] = {}
    for stage, by_source in data.stats.get("stages", {}).items():
        for source in by_source:
            in_stats.setdefault(source, []).append(stage)
    manifest_sources = list(data.manifest.sources) if data.manifest else []
    data.sources = manifest_sources + sorted(s for s in in_stats if s not in manifest_sources)
    canonical = list(STAGES)
    for source in data.sources:
        present = in_stats.get(source, [])
        order = data.manifest.sources[source].stage_names() if data.manifest and source in data.manifest.sources else []
        rank = {s: i for i, s in enumerate(order)}
        data.stages[source] = sorted(present, key=lambda s: (rank.get(s, len(order)), canonical.index(s) if s in canonical else 99, s))


def _scan_folders(data: RunData, scanner: FolderScanner) -> None:
    layout = data.layout
    for source in data.sources:
        for stage in data.stages[source]:
            folder = layout.stage_dir(stage, source)
            if stage == "tokenize" or not folder.is_dir():
                continue
            excluded = layout.excluded_dir(stage, source)
            if not any(folder.glob("*.parquet")) and not any(excluded.glob("*.parquet")):
                continue
            scan = data.scans[(stage, source)] = scanner.scan(stage, source, folder, excluded)
            data.notes += scan.problems


def _task_bytes_per_token(layout: Layout, source: str) -> dict[int, float]:
    """Exact bytes/token per tokenize task, from its accounting record (bytes and tokens it wrote)."""
    out = {}
    for path in sorted((Layout.work_dir(layout.tokens_dir(source)) / ACCOUNTING_DIR).glob("out-*.json")):
        try:
            rec = json.loads(path.read_text())
            rank = int(path.stem.split("-")[1])
        except (ValueError, IndexError, json.JSONDecodeError):
            continue
        if rec.get("tokens"):
            out[rank] = rec.get("bytes_out", 0) / rec["tokens"]
    return out


def shard_info(ds: Path, source: str, bytes_per_token: float | None) -> ShardInfo:
    """One shard's row, read through tokenizer.shards (the trainer's reader): a shard the trainer would
    refuse is shown with its problem rather than with numbers the trainer never sees."""
    try:
        shard = open_shard(ds)
        ends = np.asarray(shard.document_ends(), dtype=np.int64)
    except (OSError, json.JSONDecodeError, ShardError, ValueError) as e:
        return ShardInfo(source, ds.name, 0, 0, None, None, None, None, problem=f"unreadable: {e}")
    meta = shard.meta
    problem = None
    if not meta:
        problem = "no JSON sidecar"
    elif len(ends) != meta.get("documents") or (len(ends) and int(ends[-1]) != meta.get("tokens")):
        problem = "index does not match the sidecar"
    lengths = np.diff(ends, prepend=0) if len(ends) else np.zeros(0, np.int64)
    return ShardInfo(
        source, ds.name, int(meta.get("documents", len(ends))), int(meta.get("tokens", shard.n_tokens)),
        float(lengths.mean()) if len(lengths) else None, int(lengths.max()) if len(lengths) else None,
        bytes_per_token, meta.get("vocab_size"), problem,
    )


def _token_shards(data: RunData) -> None:
    layout = data.layout
    base = layout.tokens_dir()
    for folder in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        source = folder.name
        per_task = _task_bytes_per_token(layout, source)
        fallback = data.bytes_per_token(source)
        infos = []
        for ds in list_shards(folder):
            try:
                rank = int(ds.stem.split("_")[0])
            except ValueError:
                rank = -1
            infos.append(shard_info(ds, source, per_task.get(rank, fallback)))
        data.shards[source] = infos
        if source not in data.sources:
            data.sources.append(source)
            data.stages.setdefault(source, [])


def _read_jsonl(path: Path) -> list[dict]:
    """metrics.jsonl records (train/metrics.py's format), skipping a last line cut short by a kill.
    Read here rather than with train.metrics so that the report does not import torch."""
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def _runs(data: RunData) -> None:
    base = data.layout.train_dir()
    for run_dir in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        metrics = run_dir / METRICS_FILE
        if not metrics.exists():
            continue
        records = _read_jsonl(metrics)
        summary_path = run_dir / SUMMARY_FILE
        summary, finished = None, 0.0
        if summary_path.exists():
            try:
                summary = read_json(summary_path)
                finished = summary_path.stat().st_mtime
            except ValueError as e:
                data.notes.append(str(e))
            if summary is not None and not isinstance(summary, dict):
                data.notes.append(f"{summary_path}: not a JSON object, ignored")
                summary = None
        data.runs.append(TrainingRun(run_dir.name, records, summary, finished))


def gather(root: Path, manifest_path: str | None = None, profile: str | None = None,
           scanner: FolderScanner | None = None) -> RunData:
    notes: list[str] = []
    manifest = _load_manifest(manifest_path, profile, root, notes)
    layout = Layout(root)
    data = RunData(layout.root, profile or (manifest.profile if manifest else layout.root.name), _stats(layout, notes),
                   manifest, notes)
    _order(data)
    _scan_folders(data, scanner or FolderScanner())
    _token_shards(data)
    _runs(data)
    return data
