"""The Ray executor: datatrove's RayPipelineExecutor behind llamix's pass-runner interface.

The runner is synchronous (a pass's outputs decide how many tasks the next pass has), so a pass runs to
completion before the call returns; a rerun skips completed tasks, exactly as locally.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from loguru import logger

from pipeline.executors.local import raise_if_incomplete, resolve_workers
from pipeline.executors.logs import setup_console_logging
from pipeline.executors.resources import split_name, stage_resources
from pipeline.manifest import REPO_ROOT


class RayExecutor:
    """datatrove's RayPipelineExecutor. Connects to ``RAY_ADDRESS`` (or ``address``) when given, else
    starts a local Ray with ``workers`` CPUs; on a cluster each task reserves the stage's manifest
    resources, locally one CPU (so ``workers`` tasks run at once)."""

    def __init__(self, workers: Any = "auto", address: str | None = None, resources: dict | None = None):
        self.workers = resolve_workers(workers)
        self.address = address or os.environ.get("RAY_ADDRESS")
        self.resources = resources or {}
        self.started_here = False

    def connect(self) -> None:
        import ray

        if ray.is_initialized():
            return
        # the workers unpickle llamix's pipeline steps: they must import this checkout
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}}
        if self.address:
            ray.init(address=self.address, runtime_env=runtime_env, log_to_driver=False)
        else:
            ray.init(
                num_cpus=self.workers,
                include_dashboard=False,
                log_to_driver=False,
                object_store_memory=256 << 20,  # the pipeline passes file paths, not data, through Ray
                runtime_env=runtime_env,
            )
            self.started_here = True
        setup_console_logging()

    def shutdown(self) -> None:
        import ray

        if self.started_here and ray.is_initialized():
            ray.shutdown()
            self.started_here = False

    def __call__(self, pipeline: list, tasks: int, logging_dir: Path, name: str = "") -> None:
        from datatrove.executor.ray import RayPipelineExecutor

        self.connect()
        if self.address:
            res = stage_resources(self.resources, split_name(name)[0])
            cpus, mem = int(res["cpus_per_task"]), float(res["mem_per_cpu_gb"])
        else:
            cpus, mem = 1, 1.0
        # datatrove warns that a local logging dir must be shared with the workers: here it is.
        logger.disable("datatrove.executor.ray")
        try:
            executor = RayPipelineExecutor(
                pipeline=pipeline,
                tasks=tasks,
                workers=tasks,  # Ray's CPU accounting limits concurrency
                logging_dir=str(logging_dir),
                skip_completed=True,
                cpus_per_task=cpus,
                mem_per_cpu_gb=mem,
            )
        finally:
            logger.enable("datatrove.executor.ray")
        executor.run()
        setup_console_logging()
        raise_if_incomplete(executor, name, logging_dir)
