"""`python -m train.launch --nodes N --gpus-per-node G [--rdzv-endpoint HOST:PORT] -- <python -m train args>`

Why: torchrun wants different flags on one node (a private `--standalone` rendezvous) and on many
(a c10d rendezvous at one shared HOST:PORT under a job-unique id, the same on every node). On Slurm
all of it is in the environment (SLURM_NNODES, SLURM_NODEID, SLURM_JOB_NODELIST, SLURM_GPUS_ON_NODE,
SLURM_JOB_ID), so one `srun` task per node can run this same line everywhere. Building the command in
one tested place keeps the sbatch script and the README from drifting. The command is printed, then
exec'd (`--dry-run` only prints). `python -m torch.distributed.run` is torchrun run by this
interpreter, so the venv's torch is the one launched.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass

DEFAULT_PORT = 29500
DEFAULT_RDZV_ID = "llamix-train"


class LaunchError(ValueError):
    """The launch request is inconsistent with itself or with the Slurm allocation."""


@dataclass(frozen=True)
class LaunchPlan:
    nodes: int
    procs_per_node: int
    rdzv_endpoint: str | None   # None: single node, standalone rendezvous
    rdzv_id: str
    node_id: int | None          # this node's index in the allocation (Slurm), for the log line
    max_restarts: int = 0


def slurm_hostnames(nodelist: str) -> list[str]:
    """Expand a Slurm node list (e.g. `gpu[01-04]`) with `scontrol show hostnames`."""
    try:
        proc = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                              timeout=60)
    except FileNotFoundError:
        raise LaunchError("SLURM_JOB_NODELIST is set but `scontrol` is not on PATH") from None
    hosts = proc.stdout.split()
    if proc.returncode != 0 or not hosts:
        detail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise LaunchError(f"`scontrol show hostnames {nodelist}` gave no host names ({detail})")
    return hosts


def _env_int(env: dict, name: str) -> int | None:
    """An integer Slurm variable; SLURM_GPUS_* may read `h100:8`, so the trailing number counts."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    m = re.search(r"(\d+)$", raw.split(",")[0])
    if not m:
        raise LaunchError(f"{name}={raw!r} is not a number")
    return int(m.group(1))


def _cuda_devices() -> int:
    import torch  # only when the process count has to be discovered: keeps --dry-run fast elsewhere
    return torch.cuda.device_count()


def plan_launch(nodes: int | None, gpus_per_node: int | None, rdzv_endpoint: str | None,
                rdzv_id: str | None, max_restarts: int, env: dict) -> LaunchPlan:
    """Combine the flags with the Slurm environment (flags win, but must agree with the allocation)."""
    slurm_nodes = _env_int(env, "SLURM_NNODES") or _env_int(env, "SLURM_JOB_NUM_NODES")
    node_id = _env_int(env, "SLURM_NODEID")
    if nodes is not None and slurm_nodes is not None and nodes != slurm_nodes:
        raise LaunchError(f"--nodes {nodes} but the Slurm allocation has SLURM_NNODES={slurm_nodes}")
    nodes = nodes or slurm_nodes or 1
    if nodes < 1:
        raise LaunchError(f"--nodes must be >= 1, got {nodes}")
    if node_id is not None and not 0 <= node_id < nodes:
        raise LaunchError(f"SLURM_NODEID={node_id} outside a job of {nodes} nodes")

    procs = gpus_per_node or _env_int(env, "SLURM_GPUS_ON_NODE") or _env_int(env, "SLURM_GPUS_PER_NODE")
    if procs is None:
        procs = _cuda_devices()
        if procs == 0:
            raise LaunchError("no GPU found and no --gpus-per-node given (on CPU it is the number of "
                              "processes per node)")
    if procs < 1:
        raise LaunchError(f"--gpus-per-node must be >= 1, got {procs}")

    rdzv_id = rdzv_id or env.get("SLURM_JOB_ID") or DEFAULT_RDZV_ID
    if rdzv_endpoint is None and nodes > 1:
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if not nodelist:
            raise LaunchError(f"--nodes {nodes} needs --rdzv-endpoint HOST:PORT (an address of the first node "
                              f"that every node can reach) outside Slurm")
        port = _env_int(env, "MASTER_PORT") or DEFAULT_PORT
        rdzv_endpoint = f"{slurm_hostnames(nodelist)[0]}:{port}"
    if rdzv_endpoint is not None and not re.fullmatch(r"[^\s:]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", rdzv_endpoint):
        raise LaunchError(f"--rdzv-endpoint must be HOST:PORT, got {rdzv_endpoint!r}")
    return LaunchPlan(nodes, procs, rdzv_endpoint, rdzv_id, node_id, max_restarts)


def torchrun_command(plan: LaunchPlan, train_args: list[str], python: str = sys.executable) -> list[str]:
    """The torchrun command line that runs `python -m train <train_args>` as planned."""
    cmd = [python, "-m", "torch.distributed.run", "--nnodes", str(plan.nodes),
           "--nproc-per-node", str(plan.procs_per_node)]
    if plan.rdzv_endpoint is None:
        cmd.append("--standalone")
    else:  # c10d assigns node ranks itself (torchrun ignores --node-rank for it)
        cmd += ["--rdzv-backend", "c10d", "--rdzv-endpoint", plan.rdzv_endpoint, "--rdzv-id", plan.rdzv_id]
    if plan.max_restarts:
        cmd += ["--max-restarts", str(plan.max_restarts)]
    return cmd + ["-m", "train", *train_args]


def _split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" not in argv:
        return argv, []
    i = argv.index("--")
    return argv[:i], argv[i + 1:]


def main(argv: list[str] | None = None, env: dict | None = None) -> int:
    own, train_args = _split_argv(list(sys.argv[1:] if argv is None else argv))
    ap = argparse.ArgumentParser(prog="python -m train.launch",
                                 description="Build and exec the torchrun command for one node of a run.",
                                 epilog="Everything after `--` goes to `python -m train` (--config ... --set ...).")
    ap.add_argument("--nodes", type=int, help="number of nodes (default: SLURM_NNODES, else 1)")
    ap.add_argument("--gpus-per-node", type=int,
                    help="worker processes per node, one per GPU (default: SLURM_GPUS_ON_NODE, else the "
                         "visible CUDA devices); on CPU, the number of CPU processes")
    ap.add_argument("--rdzv-endpoint", help="HOST:PORT of the rendezvous on the first node (default on Slurm: "
                                            f"first host of SLURM_JOB_NODELIST, port MASTER_PORT or {DEFAULT_PORT})")
    ap.add_argument("--rdzv-id", help=f"id shared by all nodes of the run (default: SLURM_JOB_ID, else "
                                      f"{DEFAULT_RDZV_ID})")
    ap.add_argument("--max-restarts", type=int, default=0,
                    help="torchrun restarts of the worker group after a failure (combine with --resume)")
    ap.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    args = ap.parse_args(own)
    try:
        if "--config" not in train_args and not any(a.startswith("--config=") for a in train_args):
            raise LaunchError("no training arguments: put `-- --config train/configs/NAME.yaml [...]` last")
        plan = plan_launch(args.nodes, args.gpus_per_node, args.rdzv_endpoint, args.rdzv_id, args.max_restarts,
                           dict(os.environ) if env is None else env)
    except LaunchError as e:
        print(f"train.launch: error: {e}", file=sys.stderr)
        return 2
    cmd = torchrun_command(plan, train_args)
    where = f"node {plan.node_id} of {plan.nodes}" if plan.node_id is not None else f"{plan.nodes} node(s)"
    print(f"train.launch: {where}, {plan.procs_per_node} process(es) per node, rendezvous "
          f"{plan.rdzv_endpoint or 'standalone'} (id {plan.rdzv_id})", file=sys.stderr)
    print(shlex.join(cmd), flush=True)
    if args.dry_run:
        return 0
    sys.stderr.flush()
    os.execv(cmd[0], cmd)
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main())
