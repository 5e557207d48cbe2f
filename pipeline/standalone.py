"""Run one stage on any folder of Parquet documents (``python -m pipeline stage``).

This is how users try a filter on their own data, and how tests drive a stage without a manifest.
Everything is checked before anything is written or deleted: the parameters, that ``--input`` and
``--output`` are folders apart from each other (neither inside the other), that every input shard is
a document shard, and that an existing ``--output`` is a stage folder of ours
(``storage.layout.stage_folder_problem``): ``--force`` deletes only such a folder. A problem is one
line (``UsageError``, ``ShardError``, ``NotAStageFolder``: all ``ValueError``s, exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loguru import logger

from pipeline.documents import list_shards, open_shard
from pipeline.executors import make_executor
from pipeline.params import ParamError
from pipeline.registry import MODEL_STAGES, RAW_INPUT_STAGES, stage_class
from pipeline.runner import run_stage
from pipeline.stages import StageIO, check_stage_folder, is_complete, reset_output
from storage.layout import STATS_FILE


class UsageError(ValueError):
    """A command line that cannot run as given; str() is the one line shown."""


def parse_sets(pairs: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs as a nested dict, with the trainer's ``--set`` syntax (one parser)."""
    from train.config import apply_overrides

    return apply_overrides({}, list(pairs or []))


def check_folders(input_dir: str | Path, output_dir: str | Path) -> tuple[Path, Path]:
    """``(input, output)`` resolved (symbolic links followed), refused when the input is not a folder,
    the output is not a folder, or one of them is, or is inside, the other: a stage writing into its
    input overwrites it, one writing inside it reads its own files, one writing around it deletes it
    on ``--force``."""
    inp, out = Path(input_dir), Path(output_dir)
    if not inp.exists():
        raise FileNotFoundError(f"--input {inp}: no such folder")
    if not inp.is_dir():
        raise UsageError(f"--input {inp}: not a folder")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {out}: exists and is not a folder")
    rin, rout = inp.resolve(), out.resolve()
    if rout == rin:
        raise UsageError(f"--output {out} is the --input folder: a stage writes a new folder, choose another --output")
    if rin in rout.parents:
        raise UsageError(f"--output {out} is inside --input {inp}: the stage would read its own output; choose a folder outside it")
    if rout in rin.parents:
        raise UsageError(f"--output {out} contains --input {inp}: choose a folder that does not hold the input")
    return rin, rout


def check_input_shards(input_dir: Path) -> list[Path]:
    """The input's document shards, each opened once (footer and schema): ``ShardError`` names a file
    that is not one, before any task starts. No shard at all is an empty input (0 documents), said in
    a warning."""
    shards = list_shards(input_dir)
    if not shards:
        logger.warning(f"--input {input_dir}: no Parquet document shards (*.parquet): 0 documents in")
    for shard in shards:
        open_shard(shard)
    return shards


def run_standalone(
    stage: str,
    input_dir: str | Path,
    output_dir: str | Path,
    params: dict[str, Any] | None = None,
    source: str = "custom",
    models_root: str | Path | None = None,
    workers: Any = "auto",
    executor=None,
    force: bool = False,
) -> dict[str, Any]:
    """Run ``stage`` from ``input_dir`` into ``output_dir``; returns its stats record.

    ``models_root`` is the ``out/<profile>`` folder whose ``models/`` and ``tokenizer/`` a stage such as
    perplexity or tokenize reads (defaults to the output folder's parent). ``params`` are checked first
    (``Stage.check_params``): a bad one raises ``ParamError`` (``langid.threshold: ...``) before anything runs.
    """
    if stage in MODEL_STAGES:
        raise ValueError(f"{stage} builds a model, not documents: run it with `python -m pipeline run --stages {stage}`")
    cls = stage_class(stage)
    try:  # before anything runs: a bad --set is one line naming the key (ParamError, a ValueError)
        params = cls.check_params(params, source=source)
    except ParamError as e:
        raise e.within(stage) from None
    input_dir, output_dir = check_folders(input_dir, output_dir)
    if stage not in RAW_INPUT_STAGES:
        check_input_shards(input_dir)
    check_stage_folder(output_dir)  # somebody's folder is neither written into nor deleted
    if force:  # start over: output, pass markers and intermediate files (all under output_dir)
        reset_output(output_dir)
    elif is_complete(output_dir):
        return json.loads((output_dir / STATS_FILE).read_text())
    logger.info(f"{stage}: {input_dir} -> {output_dir}")
    io = StageIO(
        stage=stage,
        source=source,
        params=params,
        input_dir=input_dir,
        output_dir=output_dir,
        work_dir=output_dir / ".work",
        out_root=Path(models_root) if models_root else output_dir.parent,
        executor=executor or make_executor("local", workers),
    )
    return run_stage(cls(io.params), io)
