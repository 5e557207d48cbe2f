"""The ``download`` stage: the manifest's inputs for the profile -> ``out/<profile>/download/<source>/``.

Why a stage of its own: it is the pipeline's only contact with the network, and it accounts for every
input file as a document — downloaded (kept) or failed with its reason — like any other stage. What the
inputs stand for is worked out by ``ingest.download_entries`` (URLs, local paths, globs, folders,
``{paths: ...paths.gz, base_url, max_files}``, ``{url_template: ..., lang_list | site_list}``, numbered
ranges, ``{url_list: ...}``, ``{arxiv_manifest: s3://...}``, ``{gcs_listing: gs://...}``); the bytes are
moved by ``ingest.download``. Remote inputs are read from the mirror given by ``run --mirror`` (the
manifest's ``mirror``) or ``LLAMIX_MIRROR`` when there is one (``ingest.mirror``); ``max_files``
(``run --max-files``) keeps the first N files of each entry.

Where it runs: the driver only expands the entries into items (it reads small path lists and listings:
planning) and writes them to ``.work/items.jsonl``; the transfers are a pass of executor tasks
(``DownloadTask``), task k fetching its consecutive share of the items (``files_per_task`` per task, or
``tasks`` tasks) on the nodes, resumably per file. Each task writes its own accounting records and
transfer counts; the driver sums the transfer counts into ``transfer.json``.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from loguru import logger

from ingest.download import DownloadItem, download_all, failed_result, place_items, summarize
from ingest.resumable_http import CHUNK_BYTES, DEFAULT_DEADLINE_S
from ingest.download_entries import manifest_items
from ingest.mirror import Mirror
from pipeline import accounting
from pipeline.manifest import REPO_ROOT
from pipeline.params import Int, List, Number
from pipeline.stages import Stage, StageIO
from storage.atomic import atomic_open, atomic_write_json
from storage.layout import PASSES

ITEMS_FILE = "items.jsonl"  # in the stage's work dir: one header line, then one item per line
DEFAULT_FILES_PER_TASK = 16


def items_path(work_dir: Path) -> Path:
    return Path(work_dir) / ITEMS_FILE


def read_items_header(work_dir: Path) -> dict[str, Any] | None:
    """The header of a written item list (what it was expanded from, how many items), or None."""
    try:
        with open(items_path(work_dir), encoding="utf-8") as f:
            return json.loads(f.readline())
    except (OSError, ValueError):
        return None


def task_share(count: int, tasks: int, rank: int) -> range:
    """The consecutive items of task ``rank`` when ``count`` items are shared over ``tasks`` tasks (sizes
    differ by one at most; fixed by the counts alone, so a resumed run gives each task the same share)."""
    return range(rank * count // tasks, (rank + 1) * count // tasks)


def _read_share(work_dir: Path, share: range) -> Iterator[tuple[DownloadItem, str | None]]:
    """The items of one task's share, streamed (a task never holds the whole list)."""
    with open(items_path(work_dir), encoding="utf-8") as f:
        f.readline()
        for i, line in enumerate(f):
            if i >= share.stop:
                break
            if i >= share.start:
                row = json.loads(line)
                refused = row.pop("refused", None)
                yield DownloadItem(**row), refused


class DownloadTask(PipelineStep):
    """Task ``rank`` downloads its share of ``items.jsonl`` (``max_concurrency`` transfers at once) and
    writes its accounting records (in: files named, out: files downloaded, exclusions by reason) and its
    transfer counts. Picklable: only paths and numbers (the mirror by its setting)."""

    name = "⬇️ llamix download"
    type = "📖 - READER"

    def __init__(self, source: str, work_dir: str, dest_dir: str, account_dir: str, tasks: int, *, max_concurrency: int,
                 retries: int, backoff: float, timeout: float, deadline: float | None, mirror: str | None):
        super().__init__()
        self.source, self.work_dir, self.dest_dir, self.account_dir, self.tasks = source, work_dir, dest_dir, account_dir, tasks
        self.max_concurrency, self.retries, self.backoff, self.timeout, self.deadline = max_concurrency, retries, backoff, timeout, deadline
        self.mirror = mirror

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        count = read_items_header(Path(self.work_dir))["count"]
        share = list(_read_share(Path(self.work_dir), task_share(count, self.tasks, rank)))
        fetched = download_all([item for item, refused in share if not refused], Path(self.dest_dir),
                               max_concurrency=self.max_concurrency, retries=self.retries, backoff=self.backoff,
                               timeout=self.timeout, deadline=self.deadline, progress=sys.stderr.isatty(),
                               mirror=Mirror(self.mirror))
        done = iter(fetched)
        results = [failed_result(item, refused) if refused else next(done) for item, refused in share]
        summary = summarize(results)
        for r in results:
            if not r.ok:
                logger.warning(f"download/{self.source}: {r.item.url}: {r.reason}")
        self.stat_update("files", value=summary["in"])
        # sizes of the files, not bytes moved by this call: a resumed run must report the same totals
        ok_bytes = sum(r.path.stat().st_size for r in results if r.ok and r.path)
        accounting.write_task_record(self.account_dir, "in", rank, {"docs_in": summary["in"], "bytes_in": ok_bytes})
        record = accounting.empty_out_record()
        record.update({"docs_out": summary["ok"], "bytes_out": ok_bytes})
        for r in results:
            if not r.ok:
                accounting.add_exclusion(record, (r.reason or "unknown").split(":", 1)[0], 0)
        transfer = {"bytes_transferred": summary["bytes"], "resumed": summary["resumed"], "downloaded": summary["downloaded"],
                    "first_failure": next((r.reason for r in results if not r.ok), None)}
        atomic_write_json(transfer_path(Path(self.work_dir), rank), transfer)
        accounting.write_task_record(self.account_dir, "out", rank, record)
        return
        yield


def transfer_path(work_dir: Path, rank: int) -> Path:
    return Path(work_dir) / "transfer" / f"{rank:05d}.json"


class DownloadStage(Stage):
    name = "download"
    PARAMS = {
        "inputs": List("download entries", nonempty=True),  # instead of the source's inputs (entries checked when expanded)
        "max_files": Int(0, nullable=True),  # of each entry of several files (list, template, listing); 0: all
        "max_concurrency": Int(1),  # transfers at once, per task
        "files_per_task": Int(1),  # items per executor task (default 16)
        "tasks": Int(1),  # instead: this many tasks
        "retries": Int(0),
        "backoff": Number(0),
        "timeout": Number(above=0),  # seconds, each network wait
        "deadline": Number(above=0),  # seconds, each file's transfer, all attempts together (default 6 h)
    }

    def tasks(self, io: StageIO) -> int:
        header = read_items_header(io.work_dir) or self._write_items(io)
        return self.task_count(self.params, header["count"])

    @staticmethod
    def task_count(params: dict[str, Any], items: int) -> int:
        """``tasks`` when set, else one task per ``files_per_task`` items; never more tasks than items."""
        wanted = params.get("tasks") or math.ceil(items / int(params.get("files_per_task") or DEFAULT_FILES_PER_TASK))
        return max(1, min(int(wanted), items))

    @classmethod
    def sizing(cls, params: dict, *, shards: int, docs: float, nbytes: float) -> dict:
        """One pass, ``main`` (``docs``: the files named); a task holds its share of items (about 1 KiB
        each) and one read buffer per concurrent transfer."""
        tasks = cls.task_count(params, max(1, int(docs)))
        share = math.ceil(max(1, int(docs)) / tasks)
        return {"passes": {"main": tasks}, "memory": {"main": share * 1024 + int(params.get("max_concurrency") or 4) * CHUNK_BYTES}}

    @staticmethod
    def _root(io: StageIO) -> Path:
        """Relative input paths are relative to the manifest's folder (the repo for the default one)."""
        return io.manifest.path.parent if io.manifest else REPO_ROOT

    @staticmethod
    def check_mirror(value: str) -> str:
        """A ``--mirror`` value checked (``MirrorError``, a ``ValueError``, when it is neither an
        http(s) URL nor a folder), as the manifest keeps it."""
        return Mirror.from_setting(value).base or ""

    @staticmethod
    def mirror(io: StageIO) -> Mirror:
        """The run's mirror (``run --mirror``, kept on the manifest), else ``LLAMIX_MIRROR``, else none."""
        chosen = getattr(io.manifest, "mirror", None) if io.manifest else None
        return Mirror.from_setting(chosen) if chosen else Mirror.from_env()

    def _network(self) -> tuple[int, float, float]:
        return int(self.params.get("retries", 5)), float(self.params.get("backoff", 0.5)), float(self.params.get("timeout", 60))

    def _write_items(self, io: StageIO) -> dict[str, Any]:
        """Expand the entries into items (planning: small path lists and listings, cached in
        ``.work/lists``) and write them, each with the reason it is refused if it is (``place_items``).
        A started download keeps its list: a resumed run shares out the same items to the same tasks;
        a list expanded from other entries (the manifest changed) is replaced and the pass restarted."""
        source = io.manifest.sources[io.source] if io.manifest else None
        entries = list(self.params.get("inputs") or (source.inputs if source else []))
        if not entries:
            raise ValueError(f"download/{io.source}: no inputs for this profile")
        key = json.loads(json.dumps({"inputs": entries, "max_files": self.params.get("max_files")}, default=str))
        header = read_items_header(io.work_dir)
        if header is not None and header.get("key") == key:
            return header
        if header is not None:  # other entries: the old shares and their records mean nothing now
            self._forget_tasks(io)
        mirror = self.mirror(io)
        if mirror:
            logger.info(f"download/{io.source}: reading remote inputs from the mirror {mirror.base}")
        retries, backoff, timeout = self._network()
        items = manifest_items(entries, self._root(io), io.work_dir / "lists", max_files=self.params.get("max_files"),
                               retries=retries, backoff=backoff, timeout=timeout, mirror=mirror)
        if not items:
            raise RuntimeError(f"download/{io.source}: the inputs name no file")
        header = {"key": key, "count": len(items)}
        io.work_dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(items_path(io.work_dir), "w", encoding="utf-8") as f:
            f.write(json.dumps(header) + "\n")
            for item, (_target, refused) in zip(items, place_items(items, io.output_dir)):
                row = {k: v for k, v in asdict(item).items() if v is not None}
                f.write(json.dumps({**row, **({"refused": refused} if refused else {})}) + "\n")
        return header

    @staticmethod
    def _forget_tasks(io: StageIO) -> None:
        """Drop the pass's completion markers and task records, so that the next run fetches every share
        again (finished files are still skipped by their sidecars)."""
        for stale in (io.work_dir / PASSES / "main", io.account_dir, io.work_dir / "transfer"):
            shutil.rmtree(stale, ignore_errors=True)

    def run(self, io: StageIO) -> None:
        header = self._write_items(io)
        tasks = self.task_count(self.params, header["count"])
        retries, backoff, timeout = self._network()
        mirror = self.mirror(io)
        step = DownloadTask(io.source, str(io.work_dir), str(io.output_dir), str(io.account_dir), tasks,
                            max_concurrency=int(self.params.get("max_concurrency", 4)), retries=retries, backoff=backoff,
                            timeout=timeout, deadline=float(self.params.get("deadline", DEFAULT_DEADLINE_S)), mirror=mirror.base)
        io.output_dir.mkdir(parents=True, exist_ok=True)
        io.run_pass("main", [step], tasks=tasks)
        parts = [transfer_path(io.work_dir, rank) for rank in range(tasks)]
        missing = [p.name for p in parts if not p.exists()]
        if missing:
            raise RuntimeError(f"download/{io.source}: {len(missing)} of {tasks} tasks left no transfer record (first: {missing[0]})")
        counts = [json.loads(p.read_text()) for p in parts]
        transfer = {k: sum(c[k] for c in counts) for k in ("bytes_transferred", "resumed", "downloaded")}
        atomic_write_json(io.work_dir / "transfer.json", transfer)
        record = accounting.summarise(io.account_dir, tasks)
        if record["docs_out"] == 0:  # nothing to pass on: a rerun retries every file, as before the tasks ran
            first = next((c["first_failure"] for c in counts if c.get("first_failure")), None)
            self._forget_tasks(io)
            raise RuntimeError(f"download/{io.source}: all {record['docs_in']} inputs failed (first: {first})")
