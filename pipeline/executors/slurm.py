"""The Slurm executor: one datatrove job array per pass, resources per stage from the manifest.

Real mode submits a pass and waits for it, polling datatrove's per-task completion markers (the runner is
synchronous: a pass's outputs decide how many tasks the next pass has); a rerun skips completed tasks.

``--executor slurm --dry-run`` cannot run anything, so it cannot learn later stages' task counts either:
see ``pipeline/executors/slurm_dry_run.py``.

Why datatrove's ``SlurmPipelineExecutor`` is not used as it comes (each point was met on a real
scheduler, ``tests/test_slurm_cluster.py``):

* **sbatch errors**: datatrove runs ``sbatch`` with ``check_output``, so a refused job (unknown partition,
  more memory or time than the partition allows) is a traceback with the message on stderr above it;
  ``sbatch()`` below makes it one line naming the pass, and reads the job id from ``Submitted batch job N``
  or ``--parsable`` output (``N;cluster``) wherever it is on the line, not as the line's last word.
* **dependencies**: in real mode the driver has seen every completion marker of the previous pass before
  it submits the next, so no ``--dependency`` is passed. A dependency adds nothing then, and can hang:
  an ``afterok`` on an array with one failed or cancelled element (even one whose marker exists) is never
  satisfied, and Slurm keeps the job pending forever; one on a job Slurm has forgotten (``MinJobAge``) is
  refused. The dry run's ``submit.sh`` has no driver between passes, so there each pass depends
  ``afterok`` on the one before.
* **arrays**: ``max_array_size`` defaults to the cluster's ``MaxArraySize`` (``scontrol show config``),
  capped at datatrove's 1001; larger passes become several arrays (datatrove's ``RUN_OFFSET``) and the
  driver waits for all of them. ``tasks_per_job`` runs several datatrove tasks in one array element (one
  Python start-up instead of several: small tasks spend most of their time importing).
* **CPUs of the step**: since Slurm 22.05 ``srun`` inside a batch job does not inherit ``--cpus-per-task``,
  so on a cluster that binds tasks (task/affinity, cgroups) the pipeline would get one CPU of its
  ``cpus_per_task``; the ``srun`` line passes it explicitly.
* **memory**: ``mem_per_cpu_gb: 1.5`` is sent as ``--mem-per-cpu=1536M`` (Slurm takes no fractional G).
* **environment**: each array task ``cd``s into this checkout, puts it on ``PYTHONPATH`` and the driver's
  interpreter's ``bin/`` first on ``PATH`` (where ``launch_pickled_pipeline`` is, venv or conda alike).
* **polling**: ``squeue`` failing to reach the controller is "don't know" (keep waiting), not "the job is
  gone"; a job whose tasks are missing when it has left the queue fails the pass with one line naming
  the job, the tasks and both log folders; a pending reason that will not clear by itself (a partition's
  time limit, a QOS limit) is logged once.
* **interrupt**: Ctrl-C in the driver cancels the pass's jobs (``scancel``), so that the rerun it asks for
  does not submit tasks that are still running.
* **requeue**: jobs are submitted with ``--requeue`` (a node failure reruns the element) and datatrove's
  SIGUSR1 handler requeues an element told it is about to be pre-empted (``sbatch_args: {signal:
  "USR1@120"}``); a requeued element reruns its unfinished tasks only.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from datatrove.executor.slurm import SlurmPipelineExecutor
from loguru import logger

from pipeline.executors.logs import install_task_logging
from pipeline.executors.resources import split_name, stage_resources
from pipeline.manifest import REPO_ROOT
from storage.atomic import atomic_write_text
from storage.layout import Layout

_PLACEHOLDER = re.compile(r"DRYRUN(\d+)")  # dry-run job ids; submit.sh variables of the same name
_SHELL_VAR = r"${DRYRUN\1}"
DATATROVE_MAX_ARRAY = 1001  # datatrove's default, and Slurm's default MaxArraySize
# Pending reasons that are part of normal scheduling; any other is logged once (it may never clear).
_ROUTINE_PENDING = {"None", "Priority", "Resources", "Dependency", "JobArrayTaskLimit", "BeginTime", "(null)"}


class SlurmError(RuntimeError):
    """sbatch refused a job, or a submitted pass ended with tasks missing."""


class LlamixSlurmPipelineExecutor(SlurmPipelineExecutor):
    """llamix sums its own per-task accounting records: no datatrove merge_stats job. In an array task
    (this object unpickled on a node) task logs go to their files, only warnings to the console."""

    def launch_merge_stats(self):
        return None

    def run(self):
        install_task_logging()
        super().run()


def env_command() -> str:
    """What each array task runs before the pipeline: this checkout on the path, this interpreter first."""
    repo, bin_dir = shlex.quote(str(REPO_ROOT)), shlex.quote(str(Path(sys.executable).parent))
    return " && ".join([f"cd {repo}", f"export PYTHONPATH={repo}${{PYTHONPATH:+:$PYTHONPATH}}", f"export PATH={bin_dir}:$PATH"])


def job_id_from_sbatch(output: str) -> str:
    """The job id in sbatch's answer: ``Submitted batch job 123 [on cluster x]`` or ``--parsable``'s ``123[;x]``."""
    m = re.search(r"Submitted batch job (\d+)", output) or re.search(r"^(\d+)(?:;\S+)?\s*$", output.strip(), re.M)
    if not m:
        raise SlurmError(f"cannot read a job id from sbatch's answer: {output.strip()[:200]!r}")
    return m.group(1)


class Sbatch:
    """Stands in for datatrove's ``launch_slurm_job``: runs ``sbatch`` (one line when it refuses the job)
    and remembers the job ids, so the driver can wait for every array of a pass."""

    def __init__(self):
        self.job_ids: list[str] = []

    def __call__(self, contents: str, job_id_retriever: Callable[[str], str], *args: str) -> str:
        with tempfile.NamedTemporaryFile("w", suffix=".sbatch") as f:
            f.write(contents)
            f.flush()
            p = subprocess.run(["sbatch", *args, f.name], capture_output=True, text=True)
        if p.returncode != 0:
            lines = [re.sub(r"^sbatch: (error: )?", "", ln.strip()) for ln in p.stderr.splitlines() if ln.strip()]
            raise SlurmError(f"sbatch refused the job: {'; '.join(lines) or f'exit status {p.returncode}'}")
        job_id = job_id_retriever(p.stdout)
        self.job_ids.append(job_id)
        return job_id


class _SbatchRecorder:
    """Stands in for ``sbatch`` in a dry run: remembers each launch and hands out placeholder job ids."""

    def __init__(self):
        self.launches: list[dict[str, Any]] = []

    def __call__(self, contents: str, job_id_retriever, *args: str) -> str:
        job_id = f"DRYRUN{len(self.launches) + 1}"
        self.launches.append({"job_id": job_id, "contents": contents, "args": list(args)})
        return job_id


@contextlib.contextmanager
def _sbatch_replaced_by(launcher: Callable[..., str]):
    import datatrove.executor.slurm as dt_slurm

    real = dt_slurm.launch_slurm_job
    dt_slurm.launch_slurm_job = launcher
    try:
        yield
    finally:
        dt_slurm.launch_slurm_job = real


def cluster_max_array_size() -> int | None:
    """The cluster's MaxArraySize (array indices run 0 .. MaxArraySize-1), None when it cannot be read."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
    return int(m.group(1)) if m else None


class SlurmExecutor:
    """One datatrove Slurm job array per pass, resources per stage from the manifest.

    Real mode submits and waits: it polls the completion markers every ``poll_s`` seconds and fails with
    one line if the pass's jobs leave the queue with tasks incomplete. Dry-run mode writes
    ``out/<profile>/slurm/<stage>/<source>/<pass>.sbatch`` and ``submit.sh`` instead, the passes of one
    source chained with ``--dependency=afterok``.
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
        self.previous: dict[str, Any] = {}  # dry run: source -> the executor of its last pass
        self.recorder = _SbatchRecorder()
        self.scripts: list[dict[str, Any]] = []  # dry run: what was written, in submission order
        self._cluster_max_array: int | None = None

    @property
    def slurm_dir(self) -> Path:
        if self.out_root is None:
            raise ValueError("slurm --dry-run needs the output root (out/<profile>) to write scripts under")
        return Layout(self.out_root).slurm_dir

    def max_array_size(self, res: dict[str, Any]) -> int:
        wanted = int(res.get("max_array_size") or DATATROVE_MAX_ARRAY)
        if self.dry_run:
            return wanted
        if self._cluster_max_array is None:
            self._cluster_max_array = cluster_max_array_size() or DATATROVE_MAX_ARRAY
        return max(1, min(wanted, self._cluster_max_array))

    def make(self, pipeline: list, tasks: int, logging_dir: Path, name: str):
        stage, source, _ = split_name(name)
        res = stage_resources(self.resources, stage)
        cpus, mem = int(res["cpus_per_task"]), float(res["mem_per_cpu_gb"])
        sbatch_args = dict(res.get("sbatch_args") or {})
        if not mem.is_integer():
            sbatch_args.setdefault("mem-per-cpu", f"{round(mem * 1024)}M")
        return LlamixSlurmPipelineExecutor(
            pipeline=pipeline,
            tasks=tasks,
            time=str(res["time"]),
            partition=str(res["partition"]),
            cpus_per_task=cpus,
            mem_per_cpu_gb=int(mem) if mem.is_integer() else mem,
            qos=res.get("qos", ""),
            max_array_size=self.max_array_size(res),
            tasks_per_job=int(res.get("tasks_per_job", 1)),
            sbatch_args=sbatch_args,
            srun_args={"cpus-per-task": cpus},
            job_name="-".join(["llamix", *pass_label(name)]),
            job_id_retriever=job_id_from_sbatch,
            logging_dir=str(logging_dir),
            env_command=env_command(),
            depends=self.previous.get(source) if self.dry_run else None,
            skip_completed=True,
            requeue=True,
        )

    def __call__(self, pipeline: list, tasks: int, logging_dir: Path, name: str = "") -> None:
        executor = self.make(pipeline, tasks, Path(logging_dir), name)
        if self.dry_run:
            self._write(executor, name)
            self.previous[split_name(name)[1]] = executor
        else:
            self._submit_and_wait(executor, name, Path(logging_dir))

    # ---- dry run ------------------------------------------------------------------------------
    def _write(self, executor, name: str) -> None:
        first = len(self.recorder.launches)
        with _sbatch_replaced_by(self.recorder):
            executor.launch_job()  # datatrove pickles the executor and builds the script; sbatch is recorded
        launches = self.recorder.launches[first:]
        if not launches:  # every task already complete: nothing to submit
            return
        *folders, last = pass_label(name)
        path = self.slurm_dir.joinpath(*folders) / f"{last}.sbatch"
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
        sbatch = Sbatch()
        todo = len(executor.get_incomplete_ranks())
        try:
            with _sbatch_replaced_by(sbatch):
                executor.launch_job()
            if not sbatch.job_ids:
                return  # all tasks were already complete
            jobs = ",".join(sbatch.job_ids)
            count = f"{todo} tasks" if todo == executor.tasks else f"{todo} of {executor.tasks} tasks"
            logger.info(f"{name}: Slurm job {jobs} ({count}), waiting")
            self._wait(executor, name, jobs)
        except SlurmError as e:  # sbatch refused a job (a pass of several arrays: cancel those submitted)
            _cancel(sbatch.job_ids)
            raise SlurmError(f"{name}: {e}") from None
        except KeyboardInterrupt:  # the driver owns its jobs: the rerun it asks for must not find them running
            _cancel(sbatch.job_ids)
            if sbatch.job_ids:
                logger.warning(f"{name}: cancelled Slurm job {','.join(sbatch.job_ids)}")
            raise
        incomplete = executor.get_incomplete_ranks()
        if incomplete:
            raise SlurmError(f"{name}: Slurm job {jobs} ended with tasks {incomplete[:10]} incomplete (task logs: "
                             f"{logging_dir}/logs, Slurm output: {logging_dir}/slurm_logs); a rerun resubmits only those")

    def _wait(self, executor, name: str, jobs: str) -> None:
        """Until every task has its marker, or the jobs have left the queue."""
        gone, reported = 0, set()
        while executor.get_incomplete_ranks():
            time.sleep(self.poll_s)
            queued = _queue(jobs)
            if queued is None:  # the controller did not answer: keep waiting on the markers
                continue
            for reason in {r for state, r in queued if state == "PENDING"} - _ROUTINE_PENDING - reported:
                logger.warning(f"{name}: Slurm job {jobs} pending: {reason} (see `squeue -j {jobs}`)")
                reported.add(reason)
            gone = 0 if queued else gone + 1
            if gone >= 2:  # left the queue (a second look: markers on a shared filesystem may show late)
                return


def pass_label(name: str) -> list[str]:
    """``stage/source/pass`` as job name and script path parts; a model's build (source ``*``, all
    sources) is ``[model, build]``."""
    return [p for p in split_name(name) if p != "*"]


def _cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=60)


def _queue(job_ids: str) -> list[tuple[str, str]] | None:
    """(state, reason) of each queued element of the jobs; [] when none is queued, None when unknown."""
    try:
        p = subprocess.run(["squeue", "-h", "-j", job_ids, "-o", "%i %T %r"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        # squeue refuses ids it has forgotten (MinJobAge after the end): the jobs are gone
        return [] if "Invalid job id" in p.stderr else None
    rows = [line.split(None, 2) for line in p.stdout.splitlines() if line.strip()]
    return [(row[1] if len(row) > 1 else "?", row[2] if len(row) > 2 else "") for row in rows]
