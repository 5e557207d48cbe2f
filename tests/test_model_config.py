"""ModelConfig: the paper's shapes give the paper's parameter counts; configs round-trip and reject nonsense."""

import pytest
import torch

from model.config import CONFIGS, ModelConfig, get_config
from model.llama import Llama

# Touvron et al. 2023, Table 2.
PAPER_PARAMS = {"llama-7b": 6.7e9, "llama-13b": 13.0e9, "llama-33b": 32.5e9, "llama-65b": 65.2e9}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_paper_param_counts_within_one_percent(name):
    with torch.device("meta"):
        model = Llama(CONFIGS[name])
    n = model.num_params()
    assert abs(n - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < 0.01, (name, n)


def test_hidden_dim_matches_llama_rounding():
    assert CONFIGS["llama-7b"].hidden_dim == 11008
    assert CONFIGS["llama-13b"].hidden_dim == 13824
    assert CONFIGS["llama-65b"].hidden_dim == 22016
    assert ModelConfig(dim=4096, n_layers=1, n_heads=32, ffn_dim_multiplier=1.3, multiple_of=1024).hidden_dim == 14336


def test_small_configs_sizes():
    sizes = {}
    for name in ("tiny", "small", "1b"):
        with torch.device("meta"):
            sizes[name] = Llama(CONFIGS[name])
    assert 1e6 <= sizes["tiny"].num_params(non_embedding=True) <= 3e6
    assert 8e6 <= sizes["small"].num_params(non_embedding=True) <= 12e6
    assert 0.9e9 <= sizes["1b"].num_params() <= 1.2e9


def test_get_config_overrides_and_roundtrip():
    cfg = get_config("tiny", vocab_size=8000, n_kv_heads=2)
    assert cfg.vocab_size == 8000 and cfg.kv_heads == 2
    assert CONFIGS["tiny"].vocab_size == 32000  # the registry entry is untouched
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("call, match", [
    (lambda: get_config("nope"), "unknown model config"),
    (lambda: get_config("tiny", depth=3), "unknown ModelConfig field"),
    (lambda: ModelConfig.from_dict({"dim": 64, "n_layers": 1, "n_heads": 4, "bogus": 1}), "bogus"),
    (lambda: ModelConfig(dim=100, n_layers=1, n_heads=3), "not divisible"),
    (lambda: ModelConfig(dim=64, n_layers=1, n_heads=4, n_kv_heads=3), "n_kv_heads"),
])
def test_config_errors_are_clear(call, match):
    with pytest.raises((KeyError, ValueError), match=match):
        call()
