"""The three shapes of step every dedup stage is made of.

``CollectStep`` (scan passes): consumes the task's documents in input order and writes that task's
work files; it yields nothing (the scan pass has no writer). ``PartitionStep`` (middle passes): one task
per hash partition/band reads what all ``ranks`` scan tasks wrote for it, takes no documents. ``DecideStep`` (the final pass, between
``io.reader(account=True)`` and ``io.writer()``): walks the same documents in the same order, applies
the decisions an earlier pass wrote for this rank, and yields every document (excluded ones marked).
Both count documents, and the final step refuses to run if the input changed since the scan.
"""

from __future__ import annotations

import json
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from storage.atomic import atomic_write_json


def count_path(work_dir: str | Path, rank: int) -> Path:
    return Path(work_dir) / "counts" / f"{rank:05d}.json"


class CollectStep(PipelineStep):
    type = "🫂 - DEDUP"

    def __init__(self, work_dir: str | Path):
        super().__init__()
        self.work_dir = str(work_dir)

    def collect(self, docs: DocumentsPipeline, rank: int) -> int:
        """Scan the task's documents, write work files; return the number of documents seen."""
        raise NotImplementedError

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        n = self.collect(data or (), rank)
        atomic_write_json(count_path(self.work_dir, rank), {"documents": n}, indent=None, sort_keys=False)
        return
        yield


class PartitionStep(PipelineStep):
    type = "🫂 - DEDUP"

    def __init__(self, work_dir: str | Path, ranks: int):
        super().__init__()
        self.work_dir = str(work_dir)
        self.ranks = ranks


class DecideStep(PipelineStep):
    type = "🫂 - DEDUP"

    def __init__(self, work_dir: str | Path, stage: str):
        super().__init__()
        self.work_dir = str(work_dir)
        self.stage = stage

    def decide(self, docs: DocumentsPipeline, rank: int) -> DocumentsPipeline:
        raise NotImplementedError

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        expected = json.loads(count_path(self.work_dir, rank).read_text())["documents"]
        n = 0
        for doc in self.decide(data or (), rank):
            n += 1
            yield doc
        if n != expected:
            raise RuntimeError(f"{self.stage}: task {rank} has {n} documents now but {expected} when it was scanned (rerun with --force)")
