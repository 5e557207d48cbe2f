"""Executors: how a stage's pass (a datatrove pipeline over N tasks) is run.

Stages never construct executors themselves; they call ``io.run_pass`` which lands here, so the same
stage code runs locally (processes), on a Ray cluster or as Slurm job arrays.

datatrove prints a banner and INFO lines for every task on the console; a corpus build runs hundreds of
tasks, so task logs go to their files in full and only warnings reach the console
(``LLAMIX_TASK_LOG_LEVEL`` changes that).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import datatrove.executor.base as _dt_base
from datatrove.executor.local import LocalPipelineExecutor
from loguru import logger

CONSOLE_LEVEL = os.environ.get("LLAMIX_LOG_LEVEL", "INFO")
TASK_CONSOLE_LEVEL = os.environ.get("LLAMIX_TASK_LOG_LEVEL", "WARNING")


def _FORMAT(record) -> str:
    """One line per record on the console; tracebacks go to the task log files only."""
    return "{time:HH:mm:ss} | {level: <7} | {message}\n"


def _console_filter(record) -> bool:
    """datatrove's own progress chatter only when it is a warning; ours from INFO."""
    if record["name"].startswith("datatrove"):
        return record["level"].no >= logger.level(TASK_CONSOLE_LEVEL).no
    return True


def setup_console_logging(level: str = CONSOLE_LEVEL) -> None:
    logger.remove()
    logger.add(sys.stderr, level=level, format=_FORMAT, filter=_console_filter)


def _quiet_add_task_logger(logging_dir, rank: int, local_rank: int = 0, node_rank: int = -1):
    logger.remove()
    logfile = logging_dir.open(f"logs/task_{rank:05d}.log", "w")
    logger.add(sys.stderr, level=TASK_CONSOLE_LEVEL if local_rank == 0 else "ERROR", format=_FORMAT)
    logger.add(logfile, level="DEBUG")
    return logfile


def _quiet_close_task_logger(logfile):
    logger.complete()
    setup_console_logging()
    logfile.close()


# datatrove's executor base imports these names; replacing them there changes only the console noise.
_dt_base.add_task_logger = _quiet_add_task_logger
_dt_base.close_task_logger = _quiet_close_task_logger


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def resolve_workers(workers: Any) -> int:
    if workers in (None, "auto", -1):
        return cpu_count()
    return max(1, int(workers))


class TaskProgress:
    """A progress bar over a pass's tasks, fed by datatrove's completion markers (so it counts tasks
    finished by any worker process, and those completed before a resume). Silent when not on a TTY."""

    def __init__(self, logging_dir: Path, tasks: int, name: str):
        import threading

        from tqdm import tqdm

        self.dir = Path(logging_dir) / "completions"
        self.bar = tqdm(total=tasks, desc=name, unit="task", disable=None, leave=False)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stop.wait(0.5):
            self._update()

    def _update(self) -> None:
        done = len(list(self.dir.glob("*"))) if self.dir.exists() else 0
        self.bar.update(max(0, done - self.bar.n))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self._update()
        self.bar.close()


class LocalExecutor:
    """datatrove's LocalPipelineExecutor: tasks = input shards, workers = cores."""

    def __init__(self, workers: Any = "auto"):
        self.workers = resolve_workers(workers)

    def __call__(self, pipeline: list, tasks: int, logging_dir: Path, name: str = "") -> None:
        executor = LocalPipelineExecutor(
            pipeline=pipeline,
            tasks=tasks,
            workers=min(self.workers, tasks),
            logging_dir=str(logging_dir),
            skip_completed=True,
            start_method="fork" if sys.platform.startswith("linux") else "spawn",
        )
        with TaskProgress(logging_dir, tasks, name):
            executor.run()
        incomplete = executor.get_incomplete_ranks()
        if incomplete:
            raise RuntimeError(f"{name}: tasks {incomplete[:10]} did not complete (see {logging_dir}/logs)")
        setup_console_logging()


def make_executor(kind: str = "local", workers: Any = "auto", **options: Any) -> Callable[..., None]:
    """Return a callable ``(pipeline, tasks, logging_dir, name)`` that runs a pass to completion."""
    if kind == "local":
        return LocalExecutor(workers)
    if kind == "ray":
        from pipeline.executors.cluster import RayExecutor

        return RayExecutor(workers=workers, **options)
    if kind == "slurm":
        from pipeline.executors.cluster import SlurmExecutor

        return SlurmExecutor(**options)
    raise ValueError(f"unknown executor {kind!r} (local, slurm, ray)")
