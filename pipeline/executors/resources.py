"""Resources per stage (the manifest's ``resources`` section), shared by the Ray and Slurm executors."""

from __future__ import annotations

from typing import Any

RESOURCE_KEYS = {"partition", "time", "cpus_per_task", "mem_per_cpu_gb", "qos", "max_array_size", "tasks_per_job", "sbatch_args"}
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
        if "time" in part and not isinstance(part["time"], str):
            raise ValueError(f"{where}.time: write Slurm's time limit as a quoted string such as \"04:00:00\", got "
                             f"{part['time']!r} (YAML reads an unquoted 4:00:00 as the number 14400)")
        merged.update(part)
    return merged
