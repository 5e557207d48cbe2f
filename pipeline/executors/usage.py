"""Per-task resource usage: what one task of a pass cost (peak RSS, CPU, wall), written by the executor.

Why: the plan multiplies per-core throughputs and promises a memory per task; both are only credible
when measured per task, on the task itself, not on the driver or a whole run. Each task writes
``<pass logging_dir>/usage/<rank:05d>.json`` = {"peak_rss_bytes", "cpu_seconds", "wall_seconds"}; this
module is the one writer (``TaskUsage``) and the one reader (``pass_usage``, ``stage_usage``) of them.

Peak RSS: a worker process runs many tasks in turn, so the kernel's high-water mark (VmHWM) is reset
at task start (``5`` -> /proc/self/clear_refs; it then restarts from the current RSS) and read at the
end. CPU: user + system of the process and of the children it waited for, as getrusage deltas.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

from storage.atomic import atomic_write_json
from storage.layout import PASSES, WORK

USAGE = "usage"  # <pass logging_dir>/usage/<rank:05d>.json


def _cpu_seconds() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def reset_peak_rss() -> bool:
    """Restart the process's VmHWM from its current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """VmHWM of this process (bytes); ru_maxrss (the process's whole life) where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class TaskUsage:
    """Measures one task: ``with TaskUsage(path): run_task()``; the record is written only when the
    task succeeds, so a failed task leaves no usage behind (its rerun writes one)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self) -> "TaskUsage":
        reset_peak_rss()
        self.cpu0 = _cpu_seconds()
        self.wall0 = time.monotonic()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            return
        record = {
            "peak_rss_bytes": peak_rss_bytes(),
            "cpu_seconds": round(_cpu_seconds() - self.cpu0, 4),
            "wall_seconds": round(time.monotonic() - self.wall0, 4),
        }
        atomic_write_json(self.path, record, fsync=False)


def usage_path(logging_dir: Path, rank: int) -> Path:
    return Path(logging_dir) / USAGE / f"{rank:05d}.json"


def pass_usage(logging_dir: Path) -> dict[str, Any]:
    """Sum of a pass's task records: tasks, cpu/wall seconds (summed), the largest task's peak RSS and
    the longest task's wall time."""
    records = []
    for p in sorted((Path(logging_dir) / USAGE).glob("*.json")):
        try:
            records.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return {
        "tasks": len(records),
        "cpu_seconds": sum(r.get("cpu_seconds", 0.0) for r in records),
        "wall_seconds": sum(r.get("wall_seconds", 0.0) for r in records),
        "max_task_wall_seconds": max((r.get("wall_seconds", 0.0) for r in records), default=0.0),
        "peak_task_rss_bytes": max((r.get("peak_rss_bytes", 0) for r in records), default=0),
    }


def stage_usage(stage_dir: Path) -> dict[str, Any]:
    """A stage (or model) folder's usage over all its passes (``.work/passes/*``): total cpu_seconds,
    the largest task's peak RSS over every pass, and the same per pass under ``passes``."""
    passes_dir = Path(stage_dir) / WORK / PASSES
    passes = {p.name: pass_usage(p) for p in sorted(passes_dir.iterdir()) if p.is_dir()} if passes_dir.is_dir() else {}
    return {
        "tasks": sum(p["tasks"] for p in passes.values()),
        "cpu_seconds": sum(p["cpu_seconds"] for p in passes.values()),
        "wall_seconds": sum(p["wall_seconds"] for p in passes.values()),
        "peak_task_rss_bytes": max((p["peak_task_rss_bytes"] for p in passes.values()), default=0),
        "passes": passes,
    }
