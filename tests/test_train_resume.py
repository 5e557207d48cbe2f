"""A run SIGKILLed mid-way and resumed reproduces the uninterrupted run's metrics bit-for-bit (CPU)."""
from __future__ import annotations

import json
import signal
import sys

import pytest

from train.checkpoint import complete_checkpoints
from train.metrics import read_metrics
from train_support import (last_logged_step, make_corpus, run_train, sigkill_at_step, tiny_config,
                           write_config)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_exact(corpus, tmp_path):
    kw = dict(max_steps=150, eval_every=20, ckpt_every=7, keep_last=2)
    ref = tmp_path / "ref"
    proc = run_train(write_config(tiny_config(corpus, ref, **kw), tmp_path / "ref.yaml"))
    assert proc.returncode == 0, proc.stderr[-3000:]

    run = tmp_path / "killed"
    config = write_config(tiny_config(corpus, run, **kw), tmp_path / "killed.yaml")
    child = sigkill_at_step([sys.executable, "-m", "train", "--config", str(config)], run, 45)
    assert child.returncode == -signal.SIGKILL
    killed_at = last_logged_step(run / "metrics.jsonl")
    assert not (run / "summary.json").exists() and 45 <= killed_at < 150
    assert complete_checkpoints(run), "the kill came before the first checkpoint"

    proc = run_train(config, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming at step" in proc.stdout

    def comparable(path):
        return [{k: r[k] for k in ("step", "loss", "lr", "grad_norm", "tokens", "eval") if k in r}
                for r in read_metrics(path)]

    expected, got = comparable(ref / "metrics.jsonl"), comparable(run / "metrics.jsonl")
    assert [r["step"] for r in got if "loss" in r] == list(range(1, 151))  # no step lost or duplicated
    assert got == expected                                                  # floats compared exactly
    ref_sum, got_sum = (json.loads((p / "summary.json").read_text()) for p in (ref, run))
    assert got_sum["final_loss"] == ref_sum["final_loss"] and got_sum["mixture"] == ref_sum["mixture"]
