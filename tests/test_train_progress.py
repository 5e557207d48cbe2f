"""Training progress off a terminal: `make train > log` must not fill the log with tqdm's '\r' redraws."""
from __future__ import annotations

import types

from train.loop import _LineProgress
from train_support import make_corpus, run_train, tiny_config, write_config


def test_a_run_with_stdout_not_a_tty_prints_plain_lines(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    config = write_config(tiny_config(corpus, tmp_path / "run", max_steps=6, eval_every=0, ckpt_every=0), tmp_path / "c.yaml")
    p = run_train(config)  # stdout and stderr are pipes, as in a log file
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stdout and "\r" not in p.stderr
    steps = [line for line in p.stdout.splitlines() if line.startswith("test: step ")]
    assert steps and steps[-1].startswith("test: step 6/6 | loss ")


def test_line_progress_prints_about_twenty_lines_per_run(capsys):
    cfg = types.SimpleNamespace(max_steps=300, log_every=1, run="tiny")
    bar = _LineProgress(cfg, start_step=0)
    for _ in range(300):
        bar.update(1)
        bar.set_postfix(loss="3.000")
    bar.close()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 20 and lines[0] == "tiny: step 15/300 | loss 3.000" and lines[-1].startswith("tiny: step 300/300")
