"""Executors: how a stage's pass (a datatrove pipeline over N tasks) is run.

Stages never construct executors themselves; they call ``io.run_pass``, which calls the executor made
here, so the same stage code runs locally (processes, ``local.py``), on a Ray cluster (``ray.py``) or as
Slurm job arrays (``slurm.py``; ``slurm_dry_run.py`` writes the scripts of a whole manifest). An executor
is a callable ``(pipeline, tasks, logging_dir, name)`` that runs the pass to completion or raises.
"""

from __future__ import annotations

from typing import Any, Callable

from pipeline.executors.logs import setup_console_logging  # noqa: F401 (the CLI's console set-up)


def make_executor(kind: str = "local", workers: Any = "auto", **options: Any) -> Callable[..., None]:
    """Return a callable ``(pipeline, tasks, logging_dir, name)`` that runs a pass to completion."""
    from pipeline.executors.logs import install_task_logging

    install_task_logging()
    if kind == "local":
        from pipeline.executors.local import LocalExecutor

        return LocalExecutor(workers)
    if kind == "ray":
        from pipeline.executors.ray import RayExecutor

        return RayExecutor(workers=workers, **options)
    if kind == "slurm":
        from pipeline.executors.slurm import SlurmExecutor

        return SlurmExecutor(**options)
    raise ValueError(f"unknown executor {kind!r} (local, slurm, ray)")
