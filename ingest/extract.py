"""The ``extract`` stage: raw upstream files of one source -> Parquet documents.

The per-source parsing lives in ``ingest/<source>.py`` (``make_extractor(params)``); this
module shards the raw inputs over tasks and guarantees the stage contract around them: every record is
either a kept document or an excluded one with a reason, and a file that makes a parser fail costs that
file only (one counted exclusion and one log line), never the shard.
"""

from __future__ import annotations

import glob
import importlib
import os
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from loguru import logger

from ingest.cited_urls import CitedUrlWriter
from ingest.download import DONE_SUFFIX, PART_SUFFIX
from pipeline import accounting
from pipeline.documents import exclude
from pipeline.params import Bool, Choice, Int, Languages, Names
from pipeline.stages import Stage, StageIO, is_complete
from storage.layout import Layout

DEFAULT_MAX_TASKS = 64


def raw_entries(folder: Path | None) -> list[Path]:
    """Top-level raw inputs (files or repository folders), sorted, bookkeeping files left out."""
    if folder is None or not folder.exists():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith((".", "_")) and not p.name.endswith((DONE_SUFFIX, PART_SUFFIX)) and p.name != "stats.json"
    )


def load_extractor(source: str, params: dict[str, Any], work_dir: str | None = None):
    """The source's extractor; a scratch folder (inside the output root) for those that declare
    ``NEEDS_WORK_DIR`` (StackExchange spills posts to SQLite)."""
    module = importlib.import_module(f"ingest.{source}")
    if work_dir and getattr(module, "NEEDS_WORK_DIR", False):
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        params = {**params, "work_dir": work_dir}
    return module.make_extractor(params)


class ExtractReader(PipelineStep):
    """Task ``rank`` extracts ``entries[rank::world_size]`` and records its docs_in."""

    name = "🧾 llamix extract"
    type = "📖 - READER"

    def __init__(self, source: str, entries: list[str], params: dict[str, Any], account_dir: str, stage: str = "extract",
                 work_dir: str | None = None, cited_dir: str | None = None):
        super().__init__()
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
        for entry in self.entries[rank::world_size]:
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
        accounting.write_task_record(self.account_dir, "in", rank, {"docs_in": docs_in, "bytes_in": bytes_in, "files": len(self.entries[rank::world_size])})


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
    PARAMS = {"tasks": Int(1)}  # at most this many tasks (default DEFAULT_MAX_TASKS)
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

    def entries(self, io: StageIO) -> list[Path]:
        return raw_entries(io.input_dir)

    def tasks(self, io: StageIO) -> int:
        max_tasks = int(self.params.get("tasks", DEFAULT_MAX_TASKS))
        return max(1, min(len(self.entries(io)), max_tasks))

    @classmethod
    def estimate_tasks(cls, params, input_dir, inputs, root, previous_tasks) -> int:
        """One task per downloaded entry (capped); before the download ran, one per local input file,
        or the cap for remote lists (they expand to many files at download time)."""
        cap = int(params.get("tasks") or DEFAULT_MAX_TASKS)
        if input_dir is not None and is_complete(input_dir):
            return max(1, min(len(raw_entries(input_dir)), cap))
        if all(isinstance(i, str) and "://" not in i for i in inputs):  # local globs: count the files
            return max(1, min(sum(len(glob.glob(str(Path(root) / i))) for i in inputs), cap))
        return cap

    def run(self, io: StageIO) -> None:
        entries = [str(p) for p in self.entries(io)]
        params = {k: v for k, v in self.params.items() if k != "tasks"}
        reader = ExtractReader(io.source, entries, params, str(io.account_dir), stage=io.stage, work_dir=str(io.work_dir / "scratch"),
                               cited_dir=str(Layout.cited_urls_dir(io.output_dir)))
        io.run_pass("main", [reader, io.writer()], tasks=self.tasks(io))
