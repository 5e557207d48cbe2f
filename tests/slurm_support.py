"""A real one-node Slurm cluster for tests: started and stopped with tools/slurm-local.sh (the
``slurm_cluster`` fixture in conftest.py), plus the few Slurm commands the tests drive."""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tools" / "slurm-local.sh"
PARTITION = "llamix"  # the script's one partition


def why_no_slurm() -> str | None:
    """One line saying why this machine cannot start the cluster (not root, no apt for the packages)."""
    p = subprocess.run(["bash", str(SCRIPT), "check"], capture_output=True, text=True, timeout=60)
    return None if p.returncode == 0 else (p.stdout.strip() or p.stderr.strip() or f"check exit {p.returncode}")


@dataclass
class SlurmCluster:
    dir: Path

    @classmethod
    def start(cls, folder: Path) -> "SlurmCluster":
        p = subprocess.run(["bash", str(SCRIPT), "start", str(folder)], capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            raise RuntimeError(f"tools/slurm-local.sh start failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
        return cls(Path(folder))

    def stop(self) -> None:
        subprocess.run(["bash", str(SCRIPT), "stop", str(self.dir)], capture_output=True, text=True, timeout=120, check=True)

    @property
    def conf(self) -> Path:
        return self.dir / "slurm.conf"

    def env(self, **extra: str) -> dict[str, str]:
        """This process's environment pointed at the cluster (SLURM_CONF), plus ``extra``."""
        return {**os.environ, "SLURM_CONF": str(self.conf), **extra}

    def run(self, *cmd: str, **kw) -> str:
        p = subprocess.run(list(cmd), env=self.env(), capture_output=True, text=True, timeout=60, **kw)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}")
        return p.stdout

    def queue(self) -> list[dict[str, str]]:
        """Queued jobs and array elements: job (the array's id), task (array index or N/A), name, state."""
        out = self.run("squeue", "-h", "-r", "-o", "%A|%F|%K|%j|%T")
        rows = [line.split("|") for line in out.splitlines() if line.strip()]
        return [{"id": r[0], "job": r[1], "task": r[2], "name": r[3], "state": r[4]} for r in rows]

    def wait_gone(self, job: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while any(job in (q["id"], q["job"]) for q in self.queue()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Slurm job {job} still queued after {timeout} s")
            time.sleep(0.2)
