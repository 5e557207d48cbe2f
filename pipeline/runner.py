"""Run the manifest: each source's stages in order, model artefacts when first needed.

Works like make: asking for a stage builds what it depends on (the previous stage of its source, and
any model it requires, which in turn needs other sources' stages) and skips anything already complete
(a ``_SUCCESS`` file written last, after the stage's accounting balanced). A stage killed half-way has
no ``_SUCCESS``; rerunning it resumes its unfinished tasks only.

The driver (this process) only plans and waits: every byte of work is a pass on the chosen executor,
downloads included (``ingest.download_stage``), and a model's training is the one task of its ``build``
pass (``pipeline.stages.build_model``), under ``resources.stages.<model>``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from loguru import logger

from pipeline import accounting
from pipeline.manifest import Manifest
from pipeline.registry import MODEL_STAGES, STAGES, stage_class
from pipeline.stages import ModelStage, Stage, StageIO, build_model, is_complete, mark_complete
from storage.atomic import atomic_write_json
from storage.layout import STATS_FILE, Layout


class StageFailed(RuntimeError):
    pass


class SelectionError(ValueError):
    """``--sources`` / ``--stages`` name something the manifest does not have (exit 2, one line)."""


def check_selection(manifest: Manifest, sources: Iterable[str] | None, stages: Iterable[str] | None) -> None:
    """``--sources`` and ``--stages`` checked against the manifest before anything runs (a typo is one
    line, not a build of everything before the stage that was misspelt); raises ``SelectionError``."""
    sources = list(sources) if sources else list(manifest.sources)
    for s in sources:
        if s not in manifest.sources:
            raise SelectionError(f"--sources: unknown source {s!r} (manifest has: {', '.join(manifest.sources)})")
    if stages:
        stages = set(stages)
        unknown = stages - set(STAGES)
        if unknown:
            raise SelectionError(f"--stages: unknown stage(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(STAGES))})")
        missing = stages - MODEL_STAGES - {n for s in sources for n in manifest.sources[s].stage_names()}
        if missing:
            raise SelectionError(f"--stages: no selected source has stage(s) {', '.join(sorted(missing))}")


def check_download_caps(manifest: Manifest, sources: Iterable[str] | None) -> None:
    """A build made with ``--max-files N`` (a trial) is never taken for a bigger one: its download stages
    are complete, so a run asking for more files would skip them and everything after. Refused in one
    line (``SelectionError``) when a complete download of a selected source kept fewer files per entry
    than this run asks for."""
    layout = Layout(manifest.out_root)
    for source in sources or manifest.sources:
        spec = manifest.sources[source]
        if "download" not in spec.stage_names():
            continue
        out = layout.stage_dir("download", source)
        if not is_complete(out):
            continue
        try:
            done = json.loads(Layout.success_marker(out).read_text()).get("params", {}).get("max_files") or 0
        except (OSError, ValueError, AttributeError):
            continue
        want = spec.stage("download").params.get("max_files") or 0
        if done and (not want or want > done):
            asked = f"--max-files {want}" if want else "every file"
            raise SelectionError(f"{out} holds a trial download (--max-files {done}) and this run asks for {asked}: "
                                 f"delete {manifest.out_root} (or set out_dir elsewhere) to build it, or rerun with --max-files {done}")


class Runner:
    def __init__(
        self,
        manifest: Manifest,
        executor: Callable[..., Any],
        sources: Iterable[str] | None = None,
        stages: Iterable[str] | None = None,
    ):
        self.manifest = manifest
        self.executor = executor
        self.sources = list(sources) if sources else list(manifest.sources)
        self.stages = set(stages) if stages else None
        check_selection(manifest, self.sources, self.stages)
        self.out_root = manifest.out_root
        self.layout = Layout(self.out_root)
        self.stats_path = self.layout.stats_path
        self._busy: set[tuple[str, str]] = set()

    # ---- public ---------------------------------------------------------------------------
    def run(self) -> None:
        start = time.monotonic()
        for source in self.sources:
            names = self.manifest.sources[source].stage_names()
            targets = [n for n in names if self.stages is None or n in self.stages]
            for stage in targets:
                self.ensure(source, stage)
        if self.stages:
            for model in sorted(self.stages & MODEL_STAGES):
                self.ensure_model(model)
        logger.info(f"done: {self.manifest.profile} profile in {time.monotonic() - start:.1f}s; stats in {self.stats_path}")

    def output_dir(self, source: str, stage: str) -> Path:
        return self.layout.stage_dir(stage, source)

    # ---- dependency resolution ------------------------------------------------------------
    def ensure(self, source: str, stage: str) -> Path:
        spec = self.manifest.sources[source]
        out = self.output_dir(source, stage)
        if is_complete(out):
            self._remember_stats(stage, source, out)
            return out
        key = (source, stage)
        if key in self._busy:
            raise StageFailed(f"dependency cycle at {stage}/{source}")
        self._busy.add(key)
        try:
            prev = spec.previous(stage)
            input_dir = self.ensure(source, prev) if prev else None
            cls = stage_class(stage)
            for model in cls.requires_models:
                self.ensure_model(model)
            self._run_document_stage(cls, spec.stage(stage).params, source, input_dir, out)
        finally:
            self._busy.discard(key)
        return out

    def ensure_model(self, name: str) -> Path:
        out = self.layout.model_dir(name)
        if is_complete(out):
            return out
        key = ("*", name)
        if key in self._busy:
            raise StageFailed(f"dependency cycle at model {name}")
        self._busy.add(key)
        try:
            cls = stage_class(name)
            stage: ModelStage = cls(self.manifest.model_params(name))
            inputs: dict[str, list[Path]] = {}
            for source, after in stage.requires(self.manifest):
                if source not in self.manifest.sources:
                    continue
                inputs.setdefault(source, []).append(self.ensure(source, after))
            io = self._io(name, "*", stage.params, None, out)
            start = time.monotonic()
            logger.info(f"model {name}: building from {', '.join(f'{s}' for s in inputs) or 'nothing'}")
            summary = build_model(stage, io, inputs)
            summary["seconds"] = round(time.monotonic() - start, 3)
            stats = accounting.load_stats(self.stats_path)
            stats.setdefault("models", {})[name] = summary
            atomic_write_json(self.stats_path, stats)
            mark_complete(out, summary)
            logger.info(f"model {name}: done in {summary['seconds']:.1f}s")
        finally:
            self._busy.discard(key)
        return out

    # ---- running one stage ----------------------------------------------------------------
    def _io(self, stage: str, source: str, params: dict, input_dir: Path | None, out: Path) -> StageIO:
        return StageIO(
            stage=stage,
            source=source,
            params=params,
            input_dir=input_dir,
            output_dir=out,
            # inside the output folder: deleting a stage's folder also forgets its task markers and
            # accounting, so the stage really reruns instead of "resuming" into an empty folder
            work_dir=Layout.work_dir(out),
            out_root=self.out_root,
            executor=self.executor,
            manifest=self.manifest,
        )

    def _run_document_stage(self, cls: type[Stage], params: dict, source: str, input_dir: Path | None, out: Path) -> None:
        stage: Stage = cls(params)
        io = self._io(stage.name or cls.__name__, source, params, input_dir, out)
        record = run_stage(stage, io)
        accounting.merge_into_stats(self.stats_path, io.stage, source, record)

    def _remember_stats(self, stage: str, source: str, out: Path) -> None:
        """Keep report/stats.json complete even if it was deleted after the stage finished."""
        stats = accounting.load_stats(self.stats_path)
        if source not in stats.get("stages", {}).get(stage, {}):
            record = json.loads(Layout.success_marker(out).read_text())
            accounting.merge_into_stats(self.stats_path, stage, source, record)


def run_stage(stage: Stage, io: StageIO) -> dict[str, Any]:
    """Run a document stage to completion, balance its accounting, mark it complete."""
    label = f"{io.stage}/{io.source}"
    start = time.monotonic()
    io.output_dir.mkdir(parents=True, exist_ok=True)
    logger.info(f"{label}: running ({stage.tasks(io)} tasks)")
    summary = stage.run(io)
    seconds = time.monotonic() - start
    record = accounting.summarise(io.account_dir, stage.tasks(io))
    record.update({"seconds": round(seconds, 3), "tasks": stage.tasks(io), "params": io.params})
    if summary:  # stage-specific figures (e.g. the LSH threshold of minhash)
        record["summary"] = summary
    record["docs_per_s"] = round(record["docs_in"] / seconds, 1) if seconds > 0 else None
    excluded = ", ".join(f"{k}={v}" for k, v in sorted(record["excluded"].items(), key=lambda kv: -kv[1])[:6])
    logger.info(
        f"{label}: {record['docs_in']} in -> {record['docs_out']} kept, {record['docs_excluded']} excluded"
        f"{' (' + excluded + ')' if excluded else ''} in {seconds:.1f}s ({record['docs_per_s']} docs/s)"
    )
    atomic_write_json(io.output_dir / STATS_FILE, record)
    mark_complete(io.output_dir, record)
    return record
