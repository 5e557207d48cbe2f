"""`python -m scaling.plan`: the printed comparison, the architecture chooser and the written config
(which the trainer's own config loader and model must accept)."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from model.config import get_config
from train.config import load_config
from scaling.plan import main
from scaling.shape import param_count, shape_for_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["tiny", "small", "llama-7b", "llama-13b", "llama-65b"])
def test_param_count_matches_the_model(name):
    import torch  # noqa: F401  (model import needs it)
    from model.llama import Llama

    cfg = get_config(name, vocab_size=8000)
    if cfg.dim > 1024:  # do not allocate billions of weights: count from the paper instead
        expected = {"llama-7b": 6.74e9, "llama-13b": 13.0e9, "llama-65b": 65.2e9}[name]
        assert param_count(get_config(name)) == pytest.approx(expected, rel=0.005)
    else:
        with torch.device("meta"):
            assert param_count(cfg) == Llama(cfg).num_params()


def test_shape_reproduces_llama_shapes_and_stays_near_target():
    s7 = shape_for_params(6.74e9)
    assert (s7.config.dim, s7.config.n_layers, s7.config.n_heads) == (4096, 32, 32)
    s13 = shape_for_params(13.0e9)
    assert (s13.config.dim, s13.config.n_layers, s13.config.n_heads) == (5120, 40, 40)
    for n in (3e7, 1e8, 4e8, 1e9, 3e9, 2e10, 7e10):
        s = shape_for_params(n)
        assert abs(s.rel_error) <= 0.03, (n, s.describe())
        assert s.config.dim % 128 == 0 if s.config.dim >= 1024 else s.config.dim % 32 == 0
        if s.config.dim >= 2048:
            assert s.config.head_dim == 128
        assert 16 <= s.aspect <= 160, s.describe()
    with pytest.raises(ValueError, match="too few"):
        shape_for_params(1e5)


def test_cli_prints_both_picks_and_writes_a_config_the_trainer_accepts(tmp_path, capsys):
    out = tmp_path / "planned.yaml"
    rc = main(["--compute", "1e23", "--inference-tokens", "2e12", "--law", "besiroglu",
               "--write-config", str(out), "--base-config", str(ROOT / "train/configs/llama-7b.yaml")])
    text = capsys.readouterr().out
    assert rc == 0
    assert "compute-optimal" in text and "inference-aware" in text and "tokens per parameter" in text
    saving = float(text.split("total cost is ")[1].split("%")[0])
    assert saving > 0
    cfg = load_config(str(out))  # the trainer's loader: unknown keys or bad types would raise
    assert cfg.run == "planned"
    model = get_config(cfg.model["name"], **{k: v for k, v in cfg.model.items() if k != "name"})
    planned_n = float(out.read_text().split("Planned N = ")[1].split(" ")[0])
    assert param_count(model) == pytest.approx(planned_n, rel=0.03)
    planned_d = float(out.read_text().split("D = ")[1].split(" ")[0])
    assert cfg.max_steps == pytest.approx(math.ceil(planned_d / cfg.batch.tokens_per_step), rel=1e-3)  # D printed to 4 digits
    raw = yaml.safe_load(out.read_text())
    assert raw["optim"]["lr"] == pytest.approx(3.0e-4)  # LLaMA's LR below 20B


def test_cli_subprocess_evaluate_and_one_line_errors(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "scaling.plan", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)

    ok = run("--evaluate", "6.7e9:1e12", "--law", "besiroglu")
    assert ok.returncode == 0, ok.stderr
    assert "D is" in ok.stdout and "x that" in ok.stdout
    multiple = float(ok.stdout.split("D is ")[1].split("x")[0])
    assert 5 < multiple < 9
    for args, message in ((["--target-loss", "1.5"], "irreducible"),
                          (["--compute", "1e20", "--law", f"fitted:{tmp_path / 'none.json'}"], "not found"),
                          ([], "give --compute")):
        bad = run(*args)
        assert bad.returncode == 2
        assert message in bad.stderr and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_default_law_reproduces_the_10b_on_200b_tokens_llama_cites(capsys):
    """LLaMA cites Hoffmann et al.: 10B parameters on ~200B tokens for ~1.2e22 FLOPs. The printed Approach 3
    constants say 5.7B on 362B; the default (Besiroglu's refit) must say 10B on 200B, and say which law it is."""
    assert main(["--compute", "1.2e22"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("law      besiroglu:") and lines[1].startswith("why      default law, Besiroglu")
    cells = {line[:24].strip(): line[24:].split() for line in lines}
    n, d = float(cells["parameters N"][0]), float(cells["training tokens D"][0])
    assert n == pytest.approx(10e9, rel=0.03) and d == pytest.approx(200e9, rel=0.03)
    assert main(["--compute", "1.2e22", "--law", "chinchilla"]) == 0
    old = capsys.readouterr().out
    assert "why      Hoffmann et al. 2022's Approach 3" in old and "default" not in old.splitlines()[1]
