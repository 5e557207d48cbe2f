"""Cluster executors: datatrove's Ray and Slurm executors behind llamix's pass-runner interface.

The runner is synchronous (a pass's outputs decide how many tasks the next pass has), so both executors
run a pass *to completion* before returning: Ray waits on its actors, Slurm submits a job array and polls
datatrove's per-task completion markers. Either way a rerun skips completed tasks, exactly as locally.

``--executor slurm --dry-run`` cannot run anything, so it cannot learn later stages' task counts either.
It walks the manifest like the runner (``SlurmDryRun``): every pass of a stage whose input is complete (and
whose models exist) gets an exact, submittable script (datatrove's own launch script plus the pickled
executor and ``ranks_to_run.json``, written by datatrove's ``launch_job`` with ``sbatch`` replaced by a
recorder); stages further down are listed with *estimated* task counts (the ``tasks`` param when set, else
the task count of the stage before: document stages write one shard per task). ``submit.sh`` submits the
exact scripts in order with each source's ``--dependency=afterok`` chain.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
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

from pipeline import accounting
from pipeline.executors import resolve_workers, setup_console_logging
from pipeline.manifest import REPO_ROOT
from pipeline.registry import stage_class
from pipeline.runner import Runner, stage_output_dir
from pipeline.stages import is_complete

RESOURCE_KEYS = {"partition", "time", "cpus_per_task", "mem_per_cpu_gb", "qos", "max_array_size", "sbatch_args"}
_PLACEHOLDER = re.compile(r"DRYRUN(\d+)")  # dry-run job ids; submit.sh variables of the same name
_SHELL_VAR = r"${DRYRUN\1}"
DEFAULT_RESOURCES = {"partition": "cpu", "time": "04:00:00", "cpus_per_task": 1, "mem_per_cpu_gb": 2}


def split_name(name: str) -> tuple[str, str, str]:
    """``"stage/source/pass"`` (what ``StageIO.run_pass`` passes) -> its three parts."""
    parts = (name or "pass").split("/")
    parts += ["*", "main"][len(parts) - 1 :]
    return parts[0], parts[1], parts[2]


def stage_resources(resources: dict[str, Any] | None, stage: str) -> dict[str, Any]:
    """The manifest's ``resources.default`` overlaid with ``resources.stages.<stage>``; unknown keys fail."""
    resources = resources or {}
    merged = dict(DEFAULT_RESOURCES)
    for where, part in (("resources.default", resources.get("default")), (f"resources.stages.{stage}", (resources.get("stages") or {}).get(stage))):
        if part is None:
            continue
        if not isinstance(part, dict):
            raise ValueError(f"{where}: must be a mapping, got {type(part).__name__}")
        unknown = set(part) - RESOURCE_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(RESOURCE_KEYS))})")
        merged.update(part)
    return merged


def _raise_if_incomplete(executor, name: str, logging_dir: Path) -> None:
    incomplete = executor.get_incomplete_ranks()
    if incomplete:
        raise RuntimeError(f"{name}: tasks {incomplete[:10]} did not complete (see {logging_dir}/logs)")


# ---- Ray ----------------------------------------------------------------------------------------
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
        _raise_if_incomplete(executor, name, logging_dir)


# ---- Slurm --------------------------------------------------------------------------------------
class LlamixSlurmPipelineExecutor(SlurmPipelineExecutor):
    """llamix sums its own per-task accounting records: no datatrove merge_stats job."""

    def launch_merge_stats(self):
        return None


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
        return self.out_root / "slurm"

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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(launches[0]["contents"])
        os.replace(tmp, path)
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
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
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
        _raise_if_incomplete(executor, name, logging_dir)


def _in_queue(job_id: Any) -> bool:
    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%i"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return True  # cannot tell: keep waiting on the markers
    return bool(out.stdout.strip())


# ---- dry run over the manifest ---------------------------------------------------------------
class SlurmDryRun(Runner):
    """Walks the sources' stages as the runner would, writing scripts instead of running passes."""

    def __init__(self, manifest, executor: SlurmExecutor, sources=None, stages=None):
        super().__init__(manifest, executor, sources=sources, stages=stages)
        self.plan: list[dict[str, Any]] = []

    def _targets(self, source: str) -> list[str]:
        names = self.manifest.sources[source].stage_names()
        if self.stages is None:
            return names
        chosen = [i for i, n in enumerate(names) if n in self.stages]
        return names[: max(chosen) + 1] if chosen else []

    def _estimate(self, stage: str, params: dict, source: str, previous_tasks: int | None) -> int:
        if "tasks" in params:
            return int(params["tasks"])
        if stage == "extract":
            from ingest.extract import DEFAULT_MAX_TASKS, raw_entries

            download = self.output_dir(source, "download")
            cap = int(params.get("tasks", DEFAULT_MAX_TASKS))
            if is_complete(download):
                return max(1, min(len(raw_entries(download)), cap))
            inputs = self.manifest.sources[source].inputs
            if all(isinstance(i, str) and "://" not in i for i in inputs):  # local globs: count the files
                root = self.manifest.path.parent
                return max(1, min(sum(len(glob.glob(str(root / i))) for i in inputs), cap))
            return cap  # remote lists expand to many files at download time
        return previous_tasks or 1

    def run(self) -> None:
        for source in self.sources:
            spec = self.manifest.sources[source]
            blocked: str | None = None
            tasks: int | None = None
            for stage in self._targets(source):
                out = self.output_dir(source, stage)
                res = stage_resources(self.manifest.resources, stage)
                entry: dict[str, Any] = {"stage": stage, "source": source, "resources": res}
                if is_complete(out):
                    tasks = json.loads((out / "_SUCCESS").read_text()).get("tasks", tasks)
                    self.plan.append({**entry, "status": "complete", "tasks": tasks})
                    continue
                cls = stage_class(stage)
                params = spec.stage(stage).params
                missing = [m for m in cls.requires_models if not is_complete(stage_output_dir(self.out_root, m, None))]
                prev = spec.previous(stage)
                if blocked is None and stage == "download":
                    blocked = f"download/{source} runs on the submitting node"
                    self.plan.append({**entry, "status": "driver", "tasks": 1, "note": "downloads run in the driver, not as a job array"})
                    tasks = 1
                    continue
                if blocked is None and missing:
                    blocked = f"model(s) {', '.join(missing)} not built yet (the driver builds them between passes)"
                if blocked is None:
                    stage_obj = cls(params)
                    io = self._io(stage, source, params, self.output_dir(source, prev) if prev else None, out)
                    tasks = stage_obj.tasks(io)
                    before = len(self.executor.scripts)
                    try:
                        stage_obj.run(io)
                        note = None
                    except Exception as e:  # a later pass needs what the earlier ones compute
                        note = f"later passes need the earlier passes' results ({type(e).__name__}: {e})"
                        blocked = f"{stage}/{source} has passes that can only be written after the earlier ones ran"
                    written = [s["script"] for s in self.executor.scripts[before:]]
                    self.plan.append({**entry, "status": "scripts", "tasks": tasks, "scripts": written, **({"note": note} if note else {})})
                    if blocked is None:
                        blocked = f"{stage}/{source} has not run yet"
                    continue
                tasks = self._estimate(stage, params, source, tasks)
                self.plan.append({**entry, "status": "estimated", "tasks": tasks, "note": blocked})
        models = sorted({m for s in self.sources for n in self._targets(s) for m in stage_class(n).requires_models})
        for m in models:
            self.plan.append({"stage": m, "source": "*", "status": "complete" if is_complete(stage_output_dir(self.out_root, m, None)) else "driver",
                              "resources": stage_resources(self.manifest.resources, m), "note": "model: built by the driver process"})
        submit = self.executor.write_submit_script()
        accounting.atomic_write_json(self.executor.slurm_dir / "plan.json", {"submit": str(submit), "entries": self.plan})
        self._print(submit)

    def _print(self, submit: Path) -> None:
        print(f"{'stage':<14}{'source':<15}{'status':<11}{'tasks':>6}  {'partition':<10}{'time':<10}{'cpus':>5}{'mem/cpu':>8}  scripts")
        for e in self.plan:
            r = e["resources"]
            scripts = ", ".join(Path(s).name for s in e.get("scripts", [])) or e.get("note", "")
            print(f"{e['stage']:<14}{e['source']:<15}{e['status']:<11}{e.get('tasks') or '':>6}  {r['partition']:<10}{r['time']:<10}"
                  f"{r['cpus_per_task']:>5}{str(r['mem_per_cpu_gb']) + 'G':>8}  {scripts}")
        print(f"submit the exact scripts with: bash {submit}")
