"""Shared helpers for the train/ tests: a real tokenizer + format-exact shards, tiny run configs."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from train.synthetic import build

REPO = Path(__file__).resolve().parents[1]

# Three sources with LLaMA-like, deliberately unequal weights; stdlib text, 512-token BPE.
MIXTURE = {"commoncrawl": (67.0, 1.1), "github": (4.5, 0.64), "wikipedia": (4.5, 2.45)}


def make_corpus(root: Path) -> dict:
    return build(root, vocab_size=512, max_bytes=400_000, mixture=MIXTURE, docs_per_shard=8)


def tiny_config(corpus: dict, out_dir: Path, **top) -> dict:
    """A ~0.05M-parameter run that takes well under a second per step on one CPU thread."""
    cfg = {
        "run": "test", "out_dir": str(out_dir),
        "model": {"name": "tiny", "dim": 32, "n_layers": 2, "n_heads": 2, "multiple_of": 16},
        "data": {"tokens_dir": corpus["tokens_dir"], "manifest": corpus["manifest"],
                 "tokenizer": corpus["tokenizer"], "seq_len": 32, "eval_fraction": 0.02},
        "batch": {"micro_batch": 4, "tokens_per_step": 256},
        "optim": {"lr": 1.0e-2, "warmup_steps": 3},
        "max_steps": 8, "eval_every": 4, "eval_tokens": 256, "ckpt_every": 4, "keep_last": 2,
        "threads": 1, "seed": 7,
    }
    cfg.update(top)
    return cfg


def write_config(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def child_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


def train_cmd(config: Path, *extra: str, nproc: int = 1) -> list[str]:
    """`python -m train`, or `python -m train.launch` (-> torchrun --standalone) for nproc processes."""
    if nproc == 1:
        return [sys.executable, "-m", "train", "--config", str(config), *extra]
    return [sys.executable, "-m", "train.launch", "--nodes", "1", "--gpus-per-node", str(nproc), "--",
            "--config", str(config), *extra]


def run_train(config: Path, *extra: str, nproc: int = 1, timeout: float = 240) -> subprocess.CompletedProcess:
    """The training command as a real subprocess."""
    return subprocess.run(train_cmd(config, *extra, nproc=nproc), cwd=REPO, env=child_env(), capture_output=True,
                          text=True, timeout=timeout)


def last_logged_step(metrics: Path) -> int:
    """Step of the last complete line of a metrics.jsonl being written (0 before the first)."""
    try:
        lines = metrics.read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError):
            continue
    return 0


def _descendants(pid: int) -> list[int]:
    """Child processes of pid, recursively (deepest first), from /proc."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids = [int(k) for k in children.read_text().split()]
        except OSError:  # the thread or process is gone
            continue
        for kid in kids:
            found += _descendants(kid) + [kid]
    return found


def sigkill_at_step(cmd: list[str], run_dir: Path, step: int, timeout: float = 120) -> subprocess.Popen:
    """Start a training command, SIGKILL it and every process under it (torchrun workers run in their
    own sessions) once metrics.jsonl reaches `step`; returns the reaped launcher process."""
    child = subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while last_logged_step(run_dir / "metrics.jsonl") < step and child.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    if child.poll() is None:  # (a run that already ended is left alone: its exit status tells)
        for pid in [*_descendants(child.pid), child.pid]:  # workers first: no agent left to react to their death
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    child.wait()
    return child
