"""What a stage is, and the handle (StageIO) through which it reads, writes and runs passes.

A document stage turns one folder of Parquet shards into another. Most stages are one datatrove
pipeline ``reader -> steps -> writer`` (``DocumentStage``); global ones such as deduplication run several
passes (``io.run_pass``), and only the last pass writes documents. Model stages (KenLM, the
Wikipedia-reference classifier, the tokenizer) build an artefact from other stages' outputs.

Every pass goes through the configured datatrove executor, so the same stage runs on the local machine,
on Ray or as Slurm arrays, and datatrove's per-task completion markers make a killed pass resume with
only its unfinished tasks.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from datatrove.pipeline.base import PipelineStep
from loguru import logger

from pipeline import params as P
from pipeline.documents import ParquetShardReader, ParquetShardWriter, list_shards
from storage.atomic import atomic_write_json
from storage.layout import PASSES, Layout, stage_folder_problem

BUILD_PASS = "build"  # the one-task pass of a model build: "<model>/*/build", under resources.stages.<model>
BUILD_SUMMARY = "build_summary.json"  # in the model's work dir: what the build task returned


@dataclass
class StageIO:
    """Everything a stage needs to know about where it runs."""

    stage: str
    source: str
    params: dict[str, Any]
    input_dir: Path | None
    output_dir: Path
    work_dir: Path
    out_root: Path  # out/<profile>: models/, tokenizer/ live here (ask ``io.layout`` for paths)
    executor: Callable[..., Any]  # (pipeline, tasks, logging_dir, name) -> None, from pipeline.executors
    manifest: Any = None  # pipeline.manifest.Manifest when run from the manifest

    # ---- inputs -------------------------------------------------------------------------
    @property
    def input_files(self) -> list[Path]:
        return list_shards(self.input_dir) if self.input_dir else []

    @property
    def tasks(self) -> int:
        return max(1, len(self.input_files))

    @property
    def layout(self) -> Layout:
        return Layout(self.out_root)

    @property
    def account_dir(self) -> Path:
        return self.work_dir / "accounting"

    # ---- building blocks for passes -------------------------------------------------------
    def reader(self, account: bool = False, metadata: bool = True) -> ParquetShardReader:
        """A reader over the input shards; ``account=True`` in the pass that writes the output;
        ``metadata=False`` skips decoding the metadata JSON (for steps that only need text)."""
        return ParquetShardReader(self.input_files, account_dir=self.account_dir if account else None, metadata=metadata,
                                  stage=self.stage)

    def writer(self, output_dir: Path | None = None) -> ParquetShardWriter:
        return ParquetShardWriter(output_dir or self.output_dir, account_dir=self.account_dir, stage=self.stage)

    def run_pass(self, name: str, pipeline: list[PipelineStep | Callable], tasks: int | None = None) -> None:
        """Run one datatrove pipeline over ``tasks`` tasks; completed tasks are skipped on rerun."""
        tasks = tasks or self.tasks
        start = time.monotonic()
        self.executor(pipeline, tasks=tasks, logging_dir=self.work_dir / PASSES / name, name=f"{self.stage}/{self.source}/{name}")
        logger.debug(f"{self.stage}/{self.source} pass {name}: {tasks} tasks in {time.monotonic() - start:.1f}s")

    def model_path(self, name: str, *parts: str) -> Path:
        """A file of model stage ``name``'s artefact folder."""
        return self.layout.model_dir(name).joinpath(*parts)


class Stage:
    """Base of every stage. Subclasses set ``name`` and implement ``run(io)``.

    ``requires_models`` names model stages whose artefacts must exist before this stage runs. Where a
    stage's output goes is the output tree's business (``storage.layout.Layout``), not the stage's.
    ``PARAMS`` declares the stage's parameters (``pipeline.params``); ``SOURCE_PARAMS`` adds, per
    source, those only that source takes (the extract stage's extractor options). ``self.params`` is
    the checked dict, defaults filled in.
    """

    name: ClassVar[str] = ""
    requires_models: ClassVar[tuple[str, ...]] = ()
    PARAMS: ClassVar[Mapping[str, P.Param]] = {}
    SOURCE_PARAMS: ClassVar[Mapping[str, Mapping[str, P.Param]]] = {}

    def __init__(self, params: dict[str, Any] | None = None):
        self.params = self.check_params(params)

    @classmethod
    def params_spec(cls, source: str | None = None) -> dict[str, P.Param]:
        """The parameters the stage takes for ``source`` (for any source when None)."""
        spec = dict(cls.PARAMS)
        if source is None:
            for per_source in cls.SOURCE_PARAMS.values():
                for key, param in per_source.items():
                    spec.setdefault(key, param)
        else:
            spec.update(cls.SOURCE_PARAMS.get(source, {}))
        return spec

    @classmethod
    def check_params(cls, params: Mapping[str, Any] | None, source: str | None = None) -> dict[str, Any]:
        """``params`` checked against the declaration (``pipeline.params.check``) and ``check_together``;
        raises ``ParamError`` (one line naming the key)."""
        values = P.check(cls.params_spec(source), params)
        cls.check_together(values)
        return values

    @classmethod
    def check_together(cls, values: dict[str, Any]) -> None:
        """Constraints between checked parameters; raise ``ParamError`` naming one of them."""

    def run(self, io: StageIO) -> dict[str, Any] | None:
        """Run every pass. May return a small JSON-able summary of stage-specific figures (e.g. the LSH
        threshold of minhash), recorded under ``summary`` in the stage's stats."""
        raise NotImplementedError

    def tasks(self, io: StageIO) -> int:
        """Tasks of the pass that writes the output (one per input shard by default)."""
        return io.tasks

    @classmethod
    def estimate_tasks(cls, params: dict[str, Any], input_dir: Path | None, inputs: list, root: Path,
                       previous_tasks: int | None) -> int:
        """Task count before the stage's input exists (a Slurm dry run writes later stages' plans from
        this): the ``tasks`` parameter when set, else the stage before's count (a document stage writes
        one shard per task, and the next stage runs one task per shard). ``inputs`` are the source's
        manifest inputs, relative to ``root``."""
        return int(params["tasks"]) if params.get("tasks") else previous_tasks or 1


class DocumentStage(Stage):
    """One pass: read shards, apply ``steps(io)``, write kept and excluded documents."""

    def steps(self, io: StageIO) -> list[PipelineStep | Callable]:
        raise NotImplementedError

    def run(self, io: StageIO) -> None:
        io.run_pass("main", [io.reader(account=True), *self.steps(io), io.writer()], tasks=self.tasks(io))


class ModelStage(Stage):
    """Builds an artefact into its folder (``Layout.model_dir``: ``models/<name>/``, or ``tokenizer/``).

    ``requires(manifest)`` lists the (source, stage) outputs it reads; the runner builds them first.
    """

    def requires(self, manifest) -> list[tuple[str, str]]:
        return []

    def build(self, io: StageIO, inputs: dict[str, list[Path]]) -> dict[str, Any]:
        """Build the artefact into io.output_dir; ``inputs`` maps source -> its input stage folder(s).
        Return a small JSON-able summary (sizes, accuracy, ...) recorded in stats.json."""
        raise NotImplementedError


class ModelBuildStep(PipelineStep):
    """The heavy single-process part of a model build (training), run as the one task of the pass
    ``build`` on the executor, so that the driver only plans and waits. Writes the build's summary (and
    the pid and host that built it) to ``BUILD_SUMMARY`` in the model's work dir for the driver to read.
    Pickled for Slurm and Ray: it holds the stage (its params), the paths and the manifest; the StageIO
    it hands the build has no executor, since a build runs no passes of its own."""

    name = "🏗️ llamix model build"
    type = "🏗️ - BUILD"

    def __init__(self, stage: ModelStage, io: StageIO, inputs: dict[str, list[Path]]):
        super().__init__()
        self.stage = stage
        self.io = replace(io, executor=_no_nested_passes)
        self.inputs = inputs

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        summary = dict(self.stage.build(self.io, self.inputs) or {})
        summary["built_by"] = {"pid": os.getpid(), "host": os.uname().nodename}
        atomic_write_json(self.io.work_dir / BUILD_SUMMARY, summary)
        return
        yield


def _no_nested_passes(*args, **kwargs) -> None:
    raise RuntimeError("a model build runs inside an executor task: it cannot run passes of its own "
                       "(run them in the driver before the build, see pipeline.stages.build_model)")


def build_model(stage: ModelStage, io: StageIO, inputs: dict[str, list[Path]]) -> dict[str, Any]:
    """Run ``stage.build`` as the one-task pass ``build`` on ``io``'s executor and return its summary.
    A rerun after the task finished (the driver killed before it marked the model complete) reads the
    summary the task left instead of training again."""
    io.run_pass(BUILD_PASS, [ModelBuildStep(stage, io, inputs)], tasks=1)
    path = io.work_dir / BUILD_SUMMARY
    if not path.is_file():
        raise RuntimeError(f"model {io.stage}: the build task finished without writing {path}")
    return json.loads(path.read_text())


def is_complete(output_dir: Path) -> bool:
    return Layout.success_marker(output_dir).exists()


def mark_complete(output_dir: Path, record: dict[str, Any]) -> None:
    atomic_write_json(Layout.success_marker(output_dir), record)


class NotAStageFolder(ValueError):
    """A folder a stage was asked to delete or write into that is not one of ours; str() is one line."""


def check_stage_folder(output_dir: Path) -> None:
    """Raise ``NotAStageFolder`` unless ``output_dir`` is absent, empty, or a stage folder of ours
    (``storage.layout.stage_folder_problem``: a marker, and nothing a stage does not write)."""
    from pipeline.registry import STAGES

    problem = stage_folder_problem(output_dir, STAGES)
    if problem:
        raise NotAStageFolder(f"{output_dir}: not a stage folder of ours ({problem}); choose a new or empty folder")


def reset_output(output_dir: Path) -> None:
    """Remove a stage folder of ours before a forced rerun; anything else is refused (``NotAStageFolder``),
    never deleted."""
    check_stage_folder(output_dir)
    if Path(output_dir).exists():
        shutil.rmtree(output_dir)
