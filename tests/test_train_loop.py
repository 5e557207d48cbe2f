"""End-to-end single-process training on real (stdlib-text) shards: logs, checkpoints, eval CLI, stops."""
from __future__ import annotations

import json

import pytest
import yaml

from model.weights import load_model
from train.checkpoint import complete_checkpoints
from train.config import ConfigError, config_from_dict
from train.eval import main as eval_main
from train.loop import train
from train.metrics import read_metrics
from train.synthetic import stdlib_documents, stdlib_tokenizer
from train_support import make_corpus, tiny_config


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def test_run_logs_checkpoints_and_evaluates(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    summary = train(config_from_dict(tiny_config(corpus, run, max_steps=10, eval_every=5, ckpt_every=3)))
    records = read_metrics(run / "metrics.jsonl")
    steps = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval" in r]
    assert [r["step"] for r in steps] == list(range(1, 11))
    assert {"lr", "grad_norm", "tokens", "tokens_per_s", "mfu", "mem_mb"} <= steps[0].keys()
    assert steps[0]["mfu"] is None and steps[-1]["tokens"] == 10 * 256
    assert [r["step"] for r in evals] == [5, 10] and set(evals[0]["eval"]) == {"commoncrawl", "github", "wikipedia"}
    assert steps[-1]["loss"] < steps[0]["loss"] - 0.3
    # checkpoints at 3, 6, 9 and the final 10; keep_last=2
    assert [s for s, _ in complete_checkpoints(run)] == [9, 10]
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk["steps"] == 10 and on_disk["stop_reason"] == "max_steps"
    assert 0 < summary["unigram_entropy"] < 7 and summary["final_loss"] == steps[-1]["loss"]
    assert abs(sum(m["share"] for m in summary["mixture"].values()) - 1) < 1e-9
    model, mcfg = load_model(run / "checkpoints" / "step_0000010" / "model")
    assert mcfg.vocab_size == 512 and mcfg.dim == 32
    # the eval CLI reproduces the trainer's held-out losses from the checkpoint alone
    capsys.readouterr()
    assert eval_main(["--checkpoint", str(run), "--data", corpus["tokens_dir"], "--max-tokens", "256", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for source, loss in evals[-1]["eval"].items():
        assert out["sources"][source]["loss"] == pytest.approx(loss, rel=1e-6)
    assert out["tokens"] == sum(r["tokens"] for r in out["sources"].values()) > 0
    assert eval_main(["--checkpoint", str(run), "--data", corpus["tokens_dir"] + "/github", "--split", "all",
                      "--max-tokens", "320", "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert list(one["sources"]) == ["github"] and one["tokens"] == 320
    # a finished run is not silently overwritten, and resuming it changes nothing
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train(config_from_dict(tiny_config(corpus, run)))
    before = (run / "metrics.jsonl").read_text()
    again = train(config_from_dict(tiny_config(corpus, run, max_steps=10, eval_every=5, ckpt_every=3)), resume=True)
    assert again == on_disk and (run / "metrics.jsonl").read_text() == before


def test_stops_cleanly_when_the_mixture_is_exhausted(corpus, tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"sources": {"github": {"weight": 1.0, "epochs": 0.1},
                                                    "wikipedia": {"weight": 1.0, "epochs": 0.1}}}))
    cfg = tiny_config(corpus, tmp_path / "run", max_steps=10_000, eval_every=0, ckpt_every=0)
    cfg["data"] = {**cfg["data"], "manifest": str(manifest)}
    summary = train(config_from_dict(cfg))
    assert summary["stop_reason"].startswith("data exhausted")
    assert 0 < summary["steps"] < 10_000
    for source in summary["mixture"].values():
        assert source["epochs"] <= 0.1
    assert [s for s, _ in complete_checkpoints(tmp_path / "run")] == [summary["steps"]]


def test_shards_from_another_tokenizer_are_refused(corpus, tmp_path):
    other = stdlib_tokenizer(stdlib_documents(100_000), tmp_path / "tok", 600)
    cfg = tiny_config(corpus, tmp_path / "run")
    cfg["data"] = {**cfg["data"], "tokenizer": str(other)}
    with pytest.raises(ConfigError, match="written for vocab 512, tokenizer has 600"):
        train(config_from_dict(cfg))
    same_size = stdlib_tokenizer(stdlib_documents(150_000), tmp_path / "tok512", 512)
    cfg["data"] = {**cfg["data"], "tokenizer": str(same_size)}
    with pytest.raises(ConfigError, match="tokenizer_sha256 .* differs from the configured tokenizer"):
        train(config_from_dict(cfg))


@pytest.mark.parametrize("mode", ["full", "selective"])
def test_activation_checkpointing_keeps_the_loss_curve(corpus, tmp_path, mode):
    curves = {}
    for m in ("none", mode):
        run = tmp_path / m
        train(config_from_dict(tiny_config(corpus, run, max_steps=3, eval_every=0, ckpt_every=0,
                                           activation_checkpointing=m)))
        curves[m] = [r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert curves[mode] == pytest.approx(curves["none"], rel=1e-6)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path):
    cfg = tiny_config(corpus, tmp_path / "run", max_steps=30, eval_every=0, ckpt_every=1)
    cfg["optim"] = {"lr": 1.0e12, "warmup_steps": 1}  # absurd LR: weights overflow within a few steps
    summary = train(config_from_dict(cfg))
    assert summary["stop_reason"] == f"diverged: non-finite loss at step {summary['steps']}"
    assert summary["steps"] < 30
    assert [s for s, _ in complete_checkpoints(tmp_path / "run")][-1] == summary["steps"] - 1


def test_host_reads_scalars_only_on_sync_steps_and_logs_the_same_values(corpus, tmp_path, monkeypatch):
    import train.loop as loop
    reads = []
    real = loop.as_float
    monkeypatch.setattr(loop, "as_float", lambda x: reads.append(1) or real(x))
    curves = {}
    for every in (1, 4):
        reads.clear()
        run = tmp_path / f"every{every}"
        train(config_from_dict(tiny_config(corpus, run, max_steps=9, eval_every=0, ckpt_every=0, log_every=every)))
        curves[every] = {r["step"]: (r["loss"], r["grad_norm"]) for r in read_metrics(run / "metrics.jsonl")
                         if "loss" in r}
        assert len(reads) == (9 if every == 1 else 4)  # every step / steps 1 (first), 4, 8 and 9 (last)
    assert sorted(curves[4]) == [4, 8, 9]
    assert {s: curves[1][s] for s in curves[4]} == curves[4]  # identical floats


def test_divergence_between_sync_steps_names_the_first_bad_step(corpus, tmp_path):
    def run(name, **kw):
        cfg = tiny_config(corpus, tmp_path / name, max_steps=30, eval_every=0, **kw)
        cfg["optim"] = {"lr": 1.0e12, "warmup_steps": 1}
        return train(config_from_dict(cfg))

    dense = run("dense", ckpt_every=1, log_every=1)
    first_bad = dense["steps"]
    sparse = run("sparse", ckpt_every=0, log_every=7)
    assert sparse["stop_reason"].startswith(f"diverged: non-finite loss at step {first_bad}")
    assert sparse["steps"] == 7 * (first_bad // 7 + 1) or sparse["steps"] == first_bad
    assert not complete_checkpoints(tmp_path / "sparse")  # nothing written after the divergence


def test_compile_without_a_toolchain_runs_eager(corpus, tmp_path, monkeypatch, capsys):
    import train.loop as loop
    monkeypatch.setattr(loop, "compile_unavailable", lambda device: "no C++ compiler on PATH (test)")
    summary = train(config_from_dict(tiny_config(corpus, tmp_path / "run", max_steps=2, eval_every=0,
                                                 ckpt_every=0, compile=True)))
    assert summary["steps"] == 2
    assert "train: compile=true but no C++ compiler on PATH (test): running eager" in capsys.readouterr().out
