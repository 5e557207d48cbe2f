"""`python -m train.launch` builds the right torchrun command (on Slurm from the environment), and the
sbatch example really trains: two "nodes" on this machine rendezvous over c10d and run FSDP2 on gloo."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train.launch import main
from train_support import REPO, child_env, make_corpus, tiny_config, write_config

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TRAIN_ARGS = ["--config", "train/configs/llama-7b.yaml", "--resume"]

# `scontrol show hostnames LIST` for a machine without Slurm: expands the one list the tests use.
SCONTROL = """#!/bin/bash
[ "$1 $2" = "show hostnames" ] || { echo "scontrol: unexpected $*" >&2; exit 1; }
case "$3" in
  "gpu[07-08]") printf 'gpu07\\ngpu08\\n';;
  localhost) echo localhost;;
  *) echo "scontrol: error: Invalid hostlist: $3" >&2; exit 1;;
esac
"""
# `srun --ntasks-per-node=1 CMD` over SLURM_NNODES nodes: one copy per node with its SLURM_NODEID.
SRUN = """#!/bin/bash
while [[ "$1" == -* ]]; do shift; done
pids=(); for ((i = 0; i < SLURM_NNODES; i++)); do SLURM_NODEID=$i SLURM_PROCID=$i "$@" & pids+=($!); done
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=$?; done; exit $rc
"""
SLURM_ENV = {"SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": "gpu[07-08]",
             "SLURM_GPUS_ON_NODE": "8", "SLURM_JOB_ID": "4242"}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    shim = tmp_path / "bin"
    shim.mkdir()
    for tool, body in (("scontrol", SCONTROL), ("srun", SRUN)):
        (shim / tool).write_text(body)
        (shim / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{child_env()['PATH']}")
    return shim


def _launch(capsys, argv, env):
    rc = main([*argv, "--dry-run", "--", *TRAIN_ARGS], env=env)
    out, err = capsys.readouterr()
    return rc, out.split(), err


def test_slurm_environment_gives_the_multinode_command(fake_slurm, capsys):
    rc, cmd, err = _launch(capsys, [], SLURM_ENV)
    assert rc == 0, err
    assert cmd == [*TORCHRUN, "--nnodes", "2", "--nproc-per-node", "8", "--rdzv-backend", "c10d",
                   "--rdzv-endpoint", "gpu07:29500", "--rdzv-id", "4242", "-m", "train", *TRAIN_ARGS]
    assert "node 1 of 2" in err
    # the same line on every node; MASTER_PORT moves the rendezvous port, flags that agree are accepted
    rc, cmd0, _ = _launch(capsys, ["--nodes", "2", "--gpus-per-node", "8"],
                          {**SLURM_ENV, "SLURM_NODEID": "0", "MASTER_PORT": "29611"})
    assert rc == 0 and cmd0 == [("gpu07:29611" if a == "gpu07:29500" else a) for a in cmd]
    # --gpus=h100:4 style allocations
    env = {k: v for k, v in SLURM_ENV.items() if k != "SLURM_GPUS_ON_NODE"}
    rc, cmd, _ = _launch(capsys, [], {**env, "SLURM_GPUS_PER_NODE": "h100:4"})
    assert rc == 0 and cmd[cmd.index("--nproc-per-node") + 1] == "4"


def test_single_node_and_explicit_rendezvous_without_slurm(capsys):
    rc, cmd, _ = _launch(capsys, ["--nodes", "1", "--gpus-per-node", "2"], {})
    assert rc == 0
    assert cmd == [*TORCHRUN, "--nnodes", "1", "--nproc-per-node", "2", "--standalone", "-m", "train", *TRAIN_ARGS]
    rc, cmd, _ = _launch(capsys, ["--nodes", "3", "--gpus-per-node", "4", "--rdzv-endpoint", "10.0.0.5:29400",
                                  "--rdzv-id", "exp7", "--max-restarts", "2"], {})
    assert rc == 0
    assert cmd == [*TORCHRUN, "--nnodes", "3", "--nproc-per-node", "4", "--rdzv-backend", "c10d",
                   "--rdzv-endpoint", "10.0.0.5:29400", "--rdzv-id", "exp7", "--max-restarts", "2",
                   "-m", "train", *TRAIN_ARGS]


@pytest.mark.parametrize("argv, env, message", [
    (["--nodes", "4"], SLURM_ENV, "--nodes 4 but the Slurm allocation has SLURM_NNODES=2"),
    (["--nodes", "2", "--gpus-per-node", "1"], {}, "--nodes 2 needs --rdzv-endpoint HOST:PORT"),
    (["--gpus-per-node", "1", "--rdzv-endpoint", "node1"], {}, "--rdzv-endpoint must be HOST:PORT"),
    ([], {**SLURM_ENV, "SLURM_JOB_NODELIST": "gpu[99]"}, "Invalid hostlist: gpu[99]"),
    ([], {**SLURM_ENV, "SLURM_NODEID": "2"}, "SLURM_NODEID=2 outside a job of 2 nodes"),
])
def test_inconsistent_requests_are_one_line_errors(fake_slurm, capsys, argv, env, message):
    rc, out, err = _launch(capsys, argv, env)
    assert rc == 2 and not out
    assert err.count("\n") == 1 and err.startswith("train.launch: error:") and message in err


def test_training_arguments_are_required(capsys):
    assert main(["--nodes", "1", "--gpus-per-node", "1", "--dry-run"], env={}) == 2
    assert "put `-- --config" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="counts the visible GPUs when there are some")
def test_no_gpu_and_no_process_count_is_an_error(capsys):
    assert main(["--dry-run", "--", *TRAIN_ARGS], env={}) == 2
    assert "no GPU found and no --gpus-per-node" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sbatch_example_trains_on_two_nodes(fake_slurm, tmp_path):
    """The sbatch script as Slurm runs it: 2 nodes x 1 process (gloo on CPU), c10d rendezvous, FSDP2."""
    corpus = make_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    cfg = tiny_config(corpus, run, parallel="fsdp", max_steps=6, eval_every=3, ckpt_every=3)
    config = write_config(cfg, tmp_path / "two_nodes.yaml")
    env = {**child_env(), "PATH": f"{fake_slurm}:{child_env()['PATH']}", "SLURM_NNODES": "2",
           "SLURM_JOB_NODELIST": "localhost", "SLURM_GPUS_ON_NODE": "1", "SLURM_JOB_ID": "31",
           "SLURM_SUBMIT_DIR": str(REPO), "MASTER_PORT": str(_free_port()), "CONFIG": str(config),
           "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "train/slurm/train_fsdp.sbatch"), "--set", "seed=11"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "node 0 of 2" in proc.stderr and "node 1 of 2" in proc.stderr
    assert "--rdzv-endpoint localhost:" in proc.stdout
    assert "world 2 (fsdp)" in proc.stdout and "fresh start" in proc.stdout
    assert (run / "summary.json").is_file()
    saved = Path(run / "checkpoints" / "step_0000006" / "train_config.json").read_text()
    assert '"seed": 11' in saved and '"parallel": "fsdp"' in saved
