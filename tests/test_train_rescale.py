"""A 2-process FSDP run (torchrun via `train.launch`, gloo) SIGKILLed after a checkpoint resumes in ONE
process on the same global data stream (2 -> 1 ranks).

What is compared with an uninterrupted 2-process run of the same config:
- data position: every checkpoint the resumed run writes holds the loader state (global draw counter,
  per-source counts) of the reference's checkpoint of that step, and the final realised mixture is equal,
  so the continuation consumed exactly the windows the 2-process run would have;
- steps: 1..max_steps each logged once (none lost or repeated);
- losses: bit-identical up to the resumed checkpoint (the same 2-process computation); after it within
  REL relative (fp32). The 1-process continuation sums the same 8 windows per step as 4 micro-batches of
  2 instead of 2 ranks x 2 micro-batches + an all-reduce: only the floating-point reduction order changes.
  Measured: at most 2e-7 relative. A different data position moves a step's loss by ~1e-2 relative
  (the batch-to-batch spread), 1000x REL.
"""
from __future__ import annotations

import json
import signal

import pytest
import torch

from train.checkpoint import complete_checkpoints
from train.metrics import read_metrics
from train_support import (last_logged_step, make_corpus, run_train, sigkill_at_step, tiny_config,
                           train_cmd, write_config)

REL = 1e-5
STEPS, CKPT_EVERY, KILL_AFTER = 60, 7, 25


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def _loader_states(run):
    return {step: torch.load(ckpt / "train_state.pt", weights_only=True)["loader"]
            for step, ckpt in complete_checkpoints(run)}


def _losses(run):
    return {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r}


@pytest.mark.slow
def test_two_process_run_killed_resumes_in_one_process_at_the_same_data_position(corpus, tmp_path):
    def config(name):
        cfg = tiny_config(corpus, tmp_path / name, parallel="fsdp", max_steps=STEPS, eval_every=20,
                          ckpt_every=CKPT_EVERY, keep_last=STEPS)
        cfg["batch"] = {**cfg["batch"], "micro_batch": 2}  # 2 ranks x 2 rows x accum 2 = 8 windows/step
        return write_config(cfg, tmp_path / f"{name}.yaml")

    ref, run = tmp_path / "ref", tmp_path / "killed"
    proc = run_train(config("ref"), nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world 2 (fsdp)" in proc.stdout

    child = sigkill_at_step(train_cmd(config("killed"), nproc=2), run, KILL_AFTER)
    assert child.returncode == -signal.SIGKILL
    killed_at = last_logged_step(run / "metrics.jsonl")
    assert not (run / "summary.json").exists() and KILL_AFTER <= killed_at < STEPS
    resume_step = complete_checkpoints(run)[-1][0]
    assert resume_step >= CKPT_EVERY, "the kill came before the first checkpoint"

    proc = run_train(tmp_path / "killed.yaml", "--resume", "--set", "parallel=none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world 1 (none)" in proc.stdout and f"resuming at step {resume_step}" in proc.stdout
    assert "micro 2 x seq 32 x accum 4" in proc.stdout

    # the same global data position at every checkpoint, before and after the change of world size
    expected, got = _loader_states(ref), _loader_states(run)
    assert sorted(got) == sorted(expected) == [*range(CKPT_EVERY, STEPS, CKPT_EVERY), STEPS]
    for step in got:
        assert got[step] == expected[step], step
    assert got[STEPS]["draw"] == STEPS * 8
    ref_sum, got_sum = (json.loads((p / "summary.json").read_text()) for p in (ref, run))
    assert got_sum["mixture"] == ref_sum["mixture"] and got_sum["steps"] == STEPS

    # every step once; identical before the resume point, reduction-order close after it
    want, have = _losses(ref), _losses(run)
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r] == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        if step <= resume_step:
            assert have[step] == want[step], step
        else:
            assert abs(have[step] - want[step]) <= REL * abs(want[step]), (step, have[step], want[step])
    for source, loss in ref_sum["eval"].items():
        assert abs(got_sum["eval"][source] - loss) <= REL * abs(loss)
