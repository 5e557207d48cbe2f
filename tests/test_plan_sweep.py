"""scaling.sweep end to end: real `python -m train` runs on a real (synthetic-text) token corpus, the fit,
scaling.json and the PNG; a bad size is excluded with its reason; a second invocation reuses every run."""

import json

import pytest
import yaml

from tests.train_support import make_corpus, tiny_config
from scaling.laws import load_law
from scaling.sweep import SweepError, load_sweep_config, main, plan_runs


@pytest.mark.slow
def test_tiny_sweep_end_to_end_and_resume(tmp_path, capsys):
    corpus = make_corpus(tmp_path / "corpus")
    base = tiny_config(corpus, tmp_path / "unused")
    base.pop("out_dir")
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    sweep_cfg = {
        "base_config": str(tmp_path / "base.yaml"), "profile": "test", "run_prefix": "sw",
        "sizes": [{"dim": 16, "n_layers": 1, "n_heads": 2}, {"dim": 32, "n_layers": 2, "n_heads": 2},
                  {"dim": 48, "n_layers": 2, "n_heads": 3}, {"dim": 30, "n_layers": 1, "n_heads": 4}],
        "steps": [4, 8], "set": ["eval_every=0", "ckpt_every=4"], "bootstrap": 20, "inference_tokens": 1e6,
    }
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep_cfg))
    out = tmp_path / "out"
    assert main(["--config", str(tmp_path / "sweep.yaml"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out

    result = json.loads((out / "report" / "scaling.json").read_text())
    assert result["accounting"] == {"planned": 8, "fitted": 6, "excluded": 2}
    assert all("sw-d30l1" in e["run"] and "trainer exit 2" in e["reason"] and "n_heads" in e["reason"]
               for e in result["excluded"])
    assert {p["loss_kind"] for p in result["runs"]} == {"eval"}
    by_size = {}
    for p in result["runs"]:
        assert (out / "train" / p["run"] / "summary.json").is_file()
        assert p["D"] == p["steps"] * base["batch"]["tokens_per_step"]
        by_size.setdefault(p["N"], []).append(p)
    assert len(by_size) == 3
    for runs in by_size.values():  # more tokens -> lower held-out loss, for every size
        runs.sort(key=lambda p: p["D"])
        assert runs[-1]["loss"] < runs[0]["loss"]
    law = load_law(f"fitted:{out / 'report' / 'scaling.json'}")
    assert set(result["ci95"]) == {"E", "A", "B", "alpha", "beta"}
    assert result["n_bootstrap"] == 20
    for p in result["runs"]:  # the fit describes the runs it was fitted on
        assert law.loss(p["N"], p["D"]) == pytest.approx(p["loss"], rel=0.05)
    picks = result["picks"]
    assert picks["inference_aware"]["N"] <= picks["compute_optimal"]["N"]
    png = out / "report" / "scaling.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "95% CI" in printed and "inference-aware" in printed

    # Second invocation: every finished run is reused, nothing retrained.
    mtimes = {p["run"]: (out / "train" / p["run"] / "summary.json").stat().st_mtime_ns for p in result["runs"]}
    assert main(["--config", str(tmp_path / "sweep.yaml"), "--out", str(out)]) == 0
    again = capsys.readouterr().out
    assert again.count("already finished") == 6
    for run, mtime in mtimes.items():
        assert (out / "train" / run / "summary.json").stat().st_mtime_ns == mtime
    assert json.loads((out / "report" / "scaling.json").read_text())["law"] == result["law"]


def test_sweep_config_errors_and_dry_run(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base_config": "train/configs/tiny.yaml", "sizes": [{"dim": 64}],
                                    "steps": [10, 20]}))
    with pytest.raises(SweepError, match="needs >= 5"):
        load_sweep_config(str(path))
    path.write_text(yaml.safe_dump({"base_config": "train/configs/tiny.yaml", "sizes": [{"dim": 64}],
                                    "steps": [10], "colour": "red"}))
    assert main(["--config", str(path)]) == 2
    assert "colour" in capsys.readouterr().err
    cfg = load_sweep_config("train/configs/sweep.yaml")
    assert len(plan_runs(cfg)) == len(cfg.sizes) * len(cfg.steps) >= 6
    assert main(["--config", "train/configs/sweep.yaml", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(plan_runs(cfg))
    assert all("-m train --config train/configs/tiny.yaml" in line and "max_steps=" in line for line in lines)
