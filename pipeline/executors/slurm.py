"""The Slurm executor: one datatrove job array per pass, resources per stage from the manifest.

Real mode submits a pass and waits for it, polling datatrove's per-task completion markers (the runner is
synchronous: a pass's outputs decide how many tasks the next pass has); a rerun skips completed tasks.

``--executor slurm --dry-run`` cannot run anything, so it cannot learn later stages' task counts either:
see ``pipeline/executors/slurm_dry_run.py``.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from datatrove.executor.slurm import SlurmPipelineExecutor
from loguru import logger

from pipeline.executors.local import raise_if_incomplete
from pipeline.executors.logs import install_task_logging
from pipeline.executors.resources import split_name, stage_resources
from pipeline.manifest import REPO_ROOT
from storage.atomic import atomic_write_text
from storage.layout import Layout

_PLACEHOLDER = re.compile(r"DRYRUN(\d+)")  # dry-run job ids; submit.sh variables of the same name
_SHELL_VAR = r"${DRYRUN\1}"


class LlamixSlurmPipelineExecutor(SlurmPipelineExecutor):
    """llamix sums its own per-task accounting records: no datatrove merge_stats job. In an array task
    (this object unpickled on a node) task logs go to their files, only warnings to the console."""

    def launch_merge_stats(self):
        return None

    def run(self):
        install_task_logging()
        super().run()


def env_command() -> str:
    """What each array task runs before the pipeline: this checkout on the path, this venv active."""
    lines = [f"cd {shlex.quote(str(REPO_ROOT))}", f"export PYTHONPATH={shlex.quote(str(REPO_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"]
    if sys.prefix != sys.base_prefix:
        lines.append(f"source {shlex.quote(str(Path(sys.prefix) / 'bin' / 'activate'))}")
    return " && ".join(lines)


class _SbatchRecorder:
    """Stands in for ``sbatch`` in a dry run: remembers each launch and hands out placeholder job ids."""

    def __init__(self):
        self.launches: list[dict[str, Any]] = []

    def __call__(self, contents: str, job_id_retriever, *args: str) -> str:
        job_id = f"DRYRUN{len(self.launches) + 1}"
        self.launches.append({"job_id": job_id, "contents": contents, "args": list(args)})
        return job_id


@contextlib.contextmanager
def _sbatch_replaced_by(recorder: _SbatchRecorder):
    import datatrove.executor.slurm as dt_slurm

    real = dt_slurm.launch_slurm_job
    dt_slurm.launch_slurm_job = recorder
    try:
        yield
    finally:
        dt_slurm.launch_slurm_job = real


class SlurmExecutor:
    """One datatrove Slurm job array per pass, resources per stage from the manifest.

    Passes of one source form a chain (``depends=`` the previous pass's executor). Real mode submits and
    waits: it polls the completion markers every ``poll_s`` seconds and fails with one line if the job
    leaves the queue with tasks incomplete. Dry-run mode writes ``out/<profile>/slurm/<stage>/<source>/
    <pass>.sbatch`` and ``submit.sh`` instead.
    """

    def __init__(self, resources: dict | None = None, dry_run: bool = False, out_root: str | Path | None = None,
                 poll_s: float = 30.0, **_: Any):
        self.resources = resources or {}
        stage_resources(self.resources, "*")  # fail on a bad default before anything is submitted
        self.dry_run = dry_run
        if not dry_run and shutil.which("sbatch") is None:
            raise ValueError("slurm: no sbatch on PATH (run on a Slurm login node, or use --dry-run to write the scripts)")
        self.out_root = Path(out_root) if out_root else None
        self.poll_s = poll_s
        self.previous: dict[str, Any] = {}  # source -> the executor of its last pass
        self.recorder = _SbatchRecorder()
        self.scripts: list[dict[str, Any]] = []  # dry run: what was written, in submission order

    @property
    def slurm_dir(self) -> Path:
        if self.out_root is None:
            raise ValueError("slurm --dry-run needs the output root (out/<profile>) to write scripts under")
        return Layout(self.out_root).slurm_dir

    def make(self, pipeline: list, tasks: int, logging_dir: Path, name: str):
        stage, source, _pass = split_name(name)
        res = stage_resources(self.resources, stage)
        return LlamixSlurmPipelineExecutor(
            pipeline=pipeline,
            tasks=tasks,
            time=str(res["time"]),
            partition=str(res["partition"]),
            cpus_per_task=int(res["cpus_per_task"]),
            mem_per_cpu_gb=res["mem_per_cpu_gb"],
            qos=res.get("qos", ""),
            max_array_size=int(res.get("max_array_size", 1001)),
            sbatch_args=dict(res.get("sbatch_args") or {}),
            job_name=f"llamix-{stage}-{source}-{_pass}",
            logging_dir=str(logging_dir),
            env_command=env_command(),
            depends=self.previous.get(source),
            skip_completed=True,
            requeue=True,
        )

    def __call__(self, pipeline: list, tasks: int, logging_dir: Path, name: str = "") -> None:
        executor = self.make(pipeline, tasks, Path(logging_dir), name)
        stage, source, _pass = split_name(name)
        if self.dry_run:
            self._write(executor, name)
        else:
            self._submit_and_wait(executor, name, Path(logging_dir))
        self.previous[source] = executor

    # ---- dry run ------------------------------------------------------------------------------
    def _write(self, executor, name: str) -> None:
        stage, source, _pass = split_name(name)
        first = len(self.recorder.launches)
        with _sbatch_replaced_by(self.recorder):
            executor.launch_job()  # datatrove pickles the executor and builds the script; sbatch is recorded
        launches = self.recorder.launches[first:]
        if not launches:  # every task already complete: nothing to submit
            return
        path = self.slurm_dir / stage / source / f"{_pass}.sbatch"
        atomic_write_text(path, launches[0]["contents"])
        self.scripts.append({"name": name, "script": str(path), "tasks": executor.tasks, "jobs": launches})

    def write_submit_script(self) -> Path:
        """``submit.sh``: the recorded ``sbatch`` calls, placeholder ids replaced by the real ones."""
        lines = ["#!/bin/bash", "# written by `python -m pipeline run --executor slurm --dry-run`; submits the exact scripts in order", "set -euo pipefail"]
        for entry in self.scripts:
            for job in entry["jobs"]:
                args = " ".join('"' + _PLACEHOLDER.sub(_SHELL_VAR, a) + '"' for a in job["args"])
                lines.append(f"{job['job_id']}=$(sbatch --parsable {args} {shlex.quote(entry['script'])} | cut -d';' -f1)  # {entry['name']}")
        lines.append("echo 'submitted; when they finish, rerun: python -m pipeline run --executor slurm'")
        path = self.slurm_dir / "submit.sh"
        atomic_write_text(path, "\n".join(lines) + "\n")
        path.chmod(0o755)
        return path

    # ---- real cluster -------------------------------------------------------------------------
    def _submit_and_wait(self, executor, name: str, logging_dir: Path) -> None:
        dep = executor.depends
        if dep is not None and not (dep.job_id and dep.job_id != -1 and _in_queue(dep.job_id)):
            executor.depends = None  # its tasks were verified complete by their markers; Slurm may have forgotten the job
        executor.launch_job()
        if executor.job_id in (None, -1):
            return  # all tasks were already complete
        logger.info(f"{name}: Slurm job {executor.job_id} ({executor.tasks} tasks), waiting")
        gone = 0
        while executor.get_incomplete_ranks():
            time.sleep(self.poll_s)
            gone = gone + 1 if not _in_queue(executor.job_id) else 0
            if gone >= 2 and executor.get_incomplete_ranks():
                break
        raise_if_incomplete(executor, name, logging_dir)


def _in_queue(job_id: Any) -> bool:
    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%i"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return True  # cannot tell: keep waiting on the markers
    return bool(out.stdout.strip())
