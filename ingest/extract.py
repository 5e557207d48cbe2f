"""The ``extract`` stage: raw upstream files of one source -> Parquet documents.

The per-source parsing lives in ``ingest/<source>.py`` (``make_extractor(params)``); this
module shares the raw inputs out to tasks (by data: one task per input entry, or per ``task_mb`` of
input, or ``tasks`` tasks; never a fixed cap) and guarantees the stage contract around them: every record is
either a kept document or an excluded one with a reason, and a file that makes a parser fail costs that
file only (one counted exclusion and one log line), never the shard.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from loguru import logger

from ingest.cited_urls import CitedUrlWriter
from ingest.download import DONE_SUFFIX, PART_SUFFIX, DownloadItem, dest_name
from ingest.safeio import DEFAULT_MAX_RECORD
from pipeline import accounting
from pipeline.documents import exclude
from pipeline.params import Bool, Choice, Int, Languages, Names, Number
from pipeline.stages import Stage, StageIO, is_complete
from storage.layout import Layout


def raw_entries(folder: Path | None) -> list[Path]:
    """Top-level raw inputs (files or repository folders), sorted, bookkeeping files left out."""
    if folder is None or not folder.exists():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith((".", "_")) and not p.name.endswith((DONE_SUFFIX, PART_SUFFIX)) and p.name != "stats.json"
    )


def assign_entries(sizes: list[int], tasks: int | None = None, task_mb: float | None = None) -> list[list[int]]:
    """Which entries (indices into the sorted entry list, of the given byte sizes) each task extracts.

    ``tasks``: entry i goes to task ``i % tasks`` (with one task per entry, entry i is task i's alone);
    ``task_mb``: consecutive entries are grouped until a group holds about ``task_mb`` MB, an entry
    bigger than that is a task of its own; neither: one task per entry. Fixed by the sorted entries and
    their sizes alone, so a resumed run (same inputs) gives every task the same entries."""
    n = len(sizes)
    if n == 0:
        return [[]]
    if task_mb:
        limit = task_mb * 1e6
        groups: list[list[int]] = [[]]
        held = 0
        for i, size in enumerate(sizes):
            if groups[-1] and held + size > limit:
                groups.append([])
                held = 0
            groups[-1].append(i)
            held += size
        return groups
    world = min(int(tasks), n) if tasks else n
    return [list(range(rank, n, world)) for rank in range(world)]


def load_extractor(source: str, params: dict[str, Any], work_dir: str | None = None):
    """The source's extractor; a scratch folder (inside the output root) for those that declare
    ``NEEDS_WORK_DIR`` (StackExchange spills posts to SQLite)."""
    module = importlib.import_module(f"ingest.{source}")
    if work_dir and getattr(module, "NEEDS_WORK_DIR", False):
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        params = {**params, "work_dir": work_dir}
    return module.make_extractor(params)


class ExtractReader(PipelineStep):
    """Task ``rank`` extracts the entries ``assignment[rank]`` names and records its docs_in."""

    name = "🧾 llamix extract"
    type = "📖 - READER"

    def __init__(self, source: str, entries: list[str], params: dict[str, Any], account_dir: str, stage: str = "extract",
                 work_dir: str | None = None, cited_dir: str | None = None, assignment: list[list[int]] | None = None):
        super().__init__()
        self.assignment = assignment  # None: entries[rank::world_size]
        self.cited_dir = cited_dir  # where an extractor that collects cited URLs (Wikipedia) has them written
        self.work_dir = work_dir
        self.source = source
        self.entries = entries
        self.params = params
        self.account_dir = account_dir
        self.stage = stage

    def _tagged(self, doc: Document) -> Document:
        doc.metadata["source"] = self.source
        if doc.metadata.get("reason"):
            doc.metadata.setdefault("excluded_by", self.stage)
        return doc

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        extractor = load_extractor(self.source, self.params, self.work_dir)
        cited = None
        if self.cited_dir and getattr(extractor, "collect_cited_urls", False):
            cited = CitedUrlWriter(self.cited_dir, rank)
            extractor.on_cited_urls = cited.add
        docs_in = bytes_in = 0
        mine = [self.entries[i] for i in self.assignment[rank]] if self.assignment is not None else self.entries[rank::world_size]
        for entry in mine:
            path = Path(entry)
            bytes_in += _size(path)
            if not extractor.accepts(path):
                docs_in += 1
                logger.warning(f"extract/{self.source}: {path.name}: not an input this extractor reads, skipped")
                yield self._tagged(exclude(Document(text="", id=path.name, metadata={"file": path.name}), "unsupported_file", self.stage))
                continue
            try:
                for doc in extractor(path):
                    docs_in += 1
                    self.stat_update("records")
                    yield self._tagged(doc)
            except Exception as e:  # a parser bug or an unforeseen corruption costs this file only
                docs_in += 1
                reason = f"error:{type(e).__name__}"
                logger.warning(f"extract/{self.source}: {path.name}: {reason}: {str(e)[:200]} (rest of file skipped)")
                yield self._tagged(exclude(Document(text="", id=f"{path.name}#error", metadata={"file": path.name, "error": str(e)[:500]}), reason, self.stage))
        if cited is not None:
            cited.close()
        accounting.write_task_record(self.account_dir, "in", rank, {"docs_in": docs_in, "bytes_in": bytes_in, "files": len(mine)})


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path, followlinks=False):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


class ExtractStage(Stage):
    name = "extract"
    PARAMS = {
        "tasks": Int(1),  # exactly this many tasks (at most one per entry); default: one task per raw input entry
        "task_mb": Number(above=0),  # instead: consecutive entries grouped into tasks of about this many MB
    }
    # each source's extractor options: the keyword arguments of its class in ingest/<source>.py (whose
    # defaults apply when a key is absent)
    _LIMITS = {"max_record_bytes": Int(1), "max_expanded_bytes": Int(1)}
    SOURCE_PARAMS = {
        "commoncrawl": {"extractor": Choice(("resiliparse", "trafilatura")), "main_content": Bool(), **_LIMITS},
        "c4": _LIMITS,
        "github": {"licences": Names(), "extensions": Names(nullable=True), "strip_headers": Bool(), **_LIMITS},
        "wikipedia": {"languages": Languages(), "cited_urls": Bool(), **_LIMITS},
        "books": _LIMITS,
        "arxiv": {**_LIMITS, "max_include_depth": Int(0), "max_expansion_passes": Int(0), "max_paper_bytes": Int(1)},
        "stackexchange": {"sites": Names(nullable=True), **_LIMITS},
    }
    TASK_PARAMS = ("tasks", "task_mb")

    def entries(self, io: StageIO) -> list[Path]:
        return raw_entries(io.input_dir)

    def assignment(self, io: StageIO) -> list[list[int]]:
        entries = self.entries(io)
        sizes = [_size(p) for p in entries] if self.params.get("task_mb") else [0] * len(entries)
        return assign_entries(sizes, self.params.get("tasks"), self.params.get("task_mb"))

    def tasks(self, io: StageIO) -> int:
        return len(self.assignment(io))

    @classmethod
    def sizing(cls, params: dict, *, shards: int, docs: float, nbytes: float) -> dict:
        """One pass, ``main``, of ``shards`` tasks (``shards``: the raw input entries); a task streams its
        entries one record at a time: its bytes and its text, a raw record's average size (``nbytes /
        docs``; a whole book or paper is one record), never more than ``max_record_bytes``."""
        tasks = cls.estimate_from_sizes(params, shards, nbytes)
        cap = int(params.get("max_record_bytes") or DEFAULT_MAX_RECORD)
        record = min(cap, nbytes / docs) if docs else cap
        return {"passes": {"main": tasks}, "memory": {"main": 2.0 * record}}

    @classmethod
    def estimate_from_sizes(cls, params: dict, entries: int, nbytes: float) -> int:
        """Task count for ``entries`` raw entries of ``nbytes`` in all (sizes taken as equal)."""
        if entries <= 0:
            return 1
        return len(assign_entries([int(nbytes / entries)] * entries, params.get("tasks"), params.get("task_mb")))

    @classmethod
    def estimate_tasks(cls, params, input_dir, inputs, root, previous_tasks) -> int:
        """Exact once the download is complete (the entries are there); before that, from the download's
        item list when it was written (a dry run writes it), else from the local files the inputs name;
        remote inputs not yet listed: ``tasks`` when set, else the download's task count."""
        if input_dir is not None and is_complete(input_dir):
            entries = raw_entries(input_dir)
            sizes = [_size(p) for p in entries] if params.get("task_mb") else [0] * len(entries)
            return len(assign_entries(sizes, params.get("tasks"), params.get("task_mb")))
        listed = _listed_entries(input_dir)
        if listed is not None:
            sizes = list(listed.values())
        elif all(isinstance(i, str) and "://" not in i for i in inputs):  # local globs: stat the files
            files = sorted({Path(f) for i in inputs for f in glob.glob(str(Path(root) / i))})
            sizes = [_size(f) for f in files]
        else:
            return int(params.get("tasks") or previous_tasks or 1)
        return len(assign_entries(sizes, params.get("tasks"), params.get("task_mb")))

    def run(self, io: StageIO) -> None:
        entries = [str(p) for p in self.entries(io)]
        assignment = self.assignment(io)
        params = {k: v for k, v in self.params.items() if k not in self.TASK_PARAMS}
        reader = ExtractReader(io.source, entries, params, str(io.account_dir), stage=io.stage, work_dir=str(io.work_dir / "scratch"),
                               cited_dir=str(Layout.cited_urls_dir(io.output_dir)), assignment=assignment)
        io.run_pass("main", [reader, io.writer()], tasks=len(assignment))


def _listed_entries(download_dir: Path | None) -> dict[str, int] | None:
    """Top-level entry -> bytes (0 when the listing gave no size) of the items a download stage listed
    in its ``.work/items.jsonl`` (``ingest.download_stage``), or None when it has not listed them."""
    if download_dir is None:
        return None
    path = Layout.work_dir(download_dir) / "items.jsonl"
    if not path.is_file():
        return None
    entries: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        f.readline()
        for line in f:
            row = json.loads(line)
            if row.pop("refused", None):
                continue
            top = dest_name(DownloadItem(**row)).replace("\\", "/").strip("/").split("/")[0]
            entries[top] = entries.get(top, 0) + int(row.get("size") or 0)
    return dict(sorted(entries.items()))
