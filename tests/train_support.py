"""Shared helpers for the train/ tests: a real tokenizer + format-exact shards, tiny run configs."""
from __future__ import annotations

import os
import subprocess
import sys
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


def run_train(config: Path, *extra: str, nproc: int = 1, timeout: float = 240) -> subprocess.CompletedProcess:
    """`python -m train` (or torchrun with nproc processes) as a real subprocess."""
    if nproc == 1:
        cmd = [sys.executable, "-m", "train", "--config", str(config), *extra]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "train", "--config", str(config), *extra]
    return subprocess.run(cmd, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=timeout)
