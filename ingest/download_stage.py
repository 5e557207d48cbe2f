"""The ``download`` stage: the manifest's inputs for the profile -> ``out/<profile>/download/<source>/``.

Why a stage of its own: it is the pipeline's only contact with the network, and it accounts for every
input file as a document — downloaded (kept) or failed with its reason — like any other stage. What the
inputs stand for is worked out by ``ingest.download_entries`` (URLs, local paths, globs, folders,
``{paths: ...paths.gz, base_url, max_files}``, ``{url_template: ..., lang_list | site_list}``, numbered
ranges, ``{url_list: ...}``, ``{arxiv_manifest: s3://...}``, ``{gcs_listing: gs://...}``); the bytes are
moved by ``ingest.download``. Remote inputs are read from the mirror given by ``run --mirror`` (the
manifest's ``mirror``) or ``LLAMIX_MIRROR`` when there is one (``ingest.mirror``); ``max_files``
(``run --max-files``) keeps the first N files of each entry.
"""

from __future__ import annotations

from pathlib import Path

from loguru import logger

from ingest.download import download_all, summarize
from ingest.resumable_http import DEFAULT_DEADLINE_S
from ingest.download_entries import manifest_items
from ingest.mirror import Mirror
from pipeline import accounting
from pipeline.manifest import REPO_ROOT
from pipeline.params import Int, List, Number
from pipeline.stages import Stage, StageIO
from storage.atomic import atomic_write_json


class DownloadStage(Stage):
    name = "download"
    PARAMS = {
        "inputs": List("download entries", nonempty=True),  # instead of the source's inputs (entries checked when expanded)
        "max_files": Int(0, nullable=True),  # of each entry of several files (list, template, listing); 0: all
        "max_concurrency": Int(1),
        "retries": Int(0),
        "backoff": Number(0),
        "timeout": Number(above=0),  # seconds, each network wait
        "deadline": Number(above=0),  # seconds, each file's transfer, all attempts together (default 6 h)
    }

    def tasks(self, io: StageIO) -> int:
        return 1

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

    def run(self, io: StageIO) -> None:
        source = io.manifest.sources[io.source] if io.manifest else None
        entries = list(self.params.get("inputs") or (source.inputs if source else []))
        if not entries:
            raise ValueError(f"download/{io.source}: no inputs for this profile")
        mirror = self.mirror(io)
        if mirror:
            logger.info(f"download/{io.source}: reading remote inputs from the mirror {mirror.base}")
        retries, backoff, timeout = (int(self.params.get("retries", 5)), float(self.params.get("backoff", 0.5)),
                                     float(self.params.get("timeout", 60)))
        items = manifest_items(entries, self._root(io), io.work_dir / "lists", max_files=self.params.get("max_files"),
                               retries=retries, backoff=backoff, timeout=timeout, mirror=mirror)
        results = download_all(
            items,
            io.output_dir,
            max_concurrency=int(self.params.get("max_concurrency", 4)),
            retries=retries,
            backoff=backoff,
            timeout=timeout,
            deadline=float(self.params.get("deadline", DEFAULT_DEADLINE_S)),
            mirror=mirror,
        )
        if not results:
            raise RuntimeError(f"download/{io.source}: the inputs name no file")
        summary = summarize(results)
        for r in results:
            if not r.ok:
                logger.warning(f"download/{io.source}: {r.item.url}: {r.reason}")
        if summary["ok"] == 0:
            raise RuntimeError(f"download/{io.source}: all {summary['in']} inputs failed (first: {results[0].reason})")
        # sizes of the files, not bytes moved by this call: a resumed run must report the same totals
        ok_bytes = sum(r.path.stat().st_size for r in results if r.ok and r.path)
        accounting.write_task_record(io.account_dir, "in", 0, {"docs_in": summary["in"], "bytes_in": ok_bytes})
        record = accounting.empty_out_record()
        record.update({"docs_out": summary["ok"], "bytes_out": ok_bytes})
        transfer = {"bytes_transferred": summary["bytes"], "resumed": summary["resumed"], "downloaded": summary["downloaded"]}
        atomic_write_json(io.work_dir / "transfer.json", transfer)
        for r in results:
            if not r.ok:
                accounting.add_exclusion(record, (r.reason or "unknown").split(":", 1)[0], 0)
        accounting.write_task_record(io.account_dir, "out", 0, record)
