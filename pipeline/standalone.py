"""Run one stage on any folder of Parquet documents (``python -m pipeline stage``).

This is how users try a filter on their own data, and how tests drive a stage without a manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.executors import make_executor
from pipeline.params import ParamError
from pipeline.registry import MODEL_STAGES, stage_class
from pipeline.runner import run_stage
from pipeline.stages import StageIO, is_complete, reset_output


def parse_sets(pairs: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs as a nested dict, with the trainer's ``--set`` syntax (one parser)."""
    from train.config import apply_overrides

    return apply_overrides({}, list(pairs or []))


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
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"--input {input_dir}: no such folder")
    if force:  # start over: output, pass markers and intermediate files (all under output_dir)
        reset_output(output_dir)
    elif is_complete(output_dir):
        import json

        return json.loads((output_dir / "stats.json").read_text())
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
