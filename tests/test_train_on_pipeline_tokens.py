"""The trainer on what the pipeline produced: a few steps on the sample build's own token shards.

Every other trainer test feeds train/synthetic.py shards; this one trains on ``out/sample/tokens`` and
``out/sample/tokenizer`` as ``make corpus`` writes them (the ``built_sample`` fixture builds the sample
profile once per session), with the manifest's mixture, so a change to the shard format, the tokenizer
files or the mixture reader that the trainer no longer understands fails here, not in a user's run.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_few_training_steps_on_the_sample_builds_token_shards(built_sample, tmp_path):
    from storage.layout import Layout

    manifest, out_root = built_sample
    tree = Layout(out_root)
    sources = sorted(p.name for p in tree.tokens_dir().iterdir() if p.is_dir())
    assert len(sources) == 7, sources  # every source of the mixture has token shards
    run_dir = tmp_path / "run"
    steps = 6
    p = subprocess.run(
        [sys.executable, "-m", "train", "--config", str(REPO / "train/configs/tiny.yaml"),
         "--set", f"data.tokens_dir={tree.tokens_dir()}", "--set", f"data.tokenizer={tree.tokenizer_model}",
         "--set", f"data.manifest={manifest}", "--set", f"max_steps={steps}", "--set", "eval_every=3",
         "--set", "eval_tokens=1024", "--set", "ckpt_every=3", "--set", "batch.tokens_per_step=1024",
         "--set", "batch.micro_batch=4", "--set", "data.seq_len=64", "--set", "dtype=fp32", "--set", "threads=1",
         "--set", "optim.warmup_steps=2", "--set", f"out_dir={run_dir}"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == steps and all(math.isfinite(x) for x in losses)
    # the untrained model is near log(vocab) on real tokens: the shards decode into the tokenizer's ids
    vocab = 4000  # the sample profile's tokenizer vocab_size (data_manifest.yaml)
    assert abs(losses[0] - math.log(vocab)) < 1.0, losses
    assert losses[-1] < losses[0]
    evals = [r for r in records if any(k.startswith("eval") for k in r)]
    assert evals, "no held-out evaluation was recorded"
    assert any(str(s) in json.dumps(evals) for s in sources), "evaluation is not per source of the pipeline's mixture"
