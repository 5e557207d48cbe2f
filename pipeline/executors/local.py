"""The local executor: datatrove's LocalPipelineExecutor, tasks = input shards, workers = cores."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from datatrove.executor.local import LocalPipelineExecutor

from pipeline.executors.logs import setup_console_logging
from pipeline.executors.usage import TaskUsage, usage_path


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


class MeasuredLocalPipelineExecutor(LocalPipelineExecutor):
    """datatrove's local executor, each task measured (``pipeline/executors/usage.py``): peak RSS, CPU
    and wall time into ``<logging_dir>/usage/<rank>.json``, so benches and the plan see per-task cost."""

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        if self.is_rank_completed(rank):  # a resumed pass keeps the usage its first run recorded
            return super()._run_for_rank(rank, local_rank, node_rank)
        with TaskUsage(usage_path(Path(self.logging_dir.path), rank)):
            return super()._run_for_rank(rank, local_rank, node_rank)


class LocalExecutor:
    """datatrove's LocalPipelineExecutor: tasks = input shards, workers = cores."""

    def __init__(self, workers: Any = "auto"):
        self.workers = resolve_workers(workers)

    def __call__(self, pipeline: list, tasks: int, logging_dir: Path, name: str = "") -> None:
        workers = min(self.workers, tasks)
        if workers == 1 and self.workers > 1:  # datatrove runs one worker in this process: a one-task pass
            workers = 2  # (a model build) still runs in a child, so the driver only plans and waits
        executor = MeasuredLocalPipelineExecutor(
            pipeline=pipeline,
            tasks=tasks,
            workers=workers,
            logging_dir=str(logging_dir),
            skip_completed=True,
            start_method="fork" if sys.platform.startswith("linux") else "spawn",
        )
        with TaskProgress(logging_dir, tasks, name):
            executor.run()
        setup_console_logging()
        raise_if_incomplete(executor, name, logging_dir)


def raise_if_incomplete(executor, name: str, logging_dir: Path) -> None:
    """One line naming the pass and where its task logs are, when a task did not complete."""
    incomplete = executor.get_incomplete_ranks()
    if incomplete:
        raise RuntimeError(f"{name}: tasks {incomplete[:10]} did not complete (see {logging_dir}/logs)")
