"""Checkpoint directories: lossless round trip, atomic replacement, clear errors on damaged input."""

import json

import pytest
import torch

from model.weights import CheckpointError, load_model, save_model
from model.config import get_config
from model.llama import Llama


def make(seed=0):
    torch.manual_seed(seed)
    cfg = get_config("tiny", vocab_size=128, n_layers=2, max_seq_len=64)
    return Llama(cfg), cfg


def test_round_trip_is_exact_and_keeps_extra_keys(tmp_path):
    model, cfg = make()
    save_model(model, cfg, tmp_path / "ckpt", extra={"step": 12})
    loaded, loaded_cfg = load_model(tmp_path / "ckpt")
    assert loaded_cfg == cfg and not loaded.training
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["step"] == 12
    x = torch.randint(0, 128, (1, 20))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], model(x)[0], atol=0, rtol=0)
    assert torch.load(tmp_path / "ckpt" / "model.pt", weights_only=True).keys() == model.state_dict().keys()


def test_overwrite_replaces_whole_directory_and_leaves_no_temporaries(tmp_path):
    a, cfg = make(0)
    b, _ = make(1)
    save_model(a, cfg, tmp_path / "ckpt")
    save_model(b.state_dict(), cfg, tmp_path / "ckpt")
    loaded, _ = load_model(tmp_path / "ckpt")
    torch.testing.assert_close(loaded.output.weight, b.output.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_compiled_wrapper_prefix_is_stripped(tmp_path):
    model, cfg = make()
    prefixed = {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}
    save_model(prefixed, cfg, tmp_path / "ckpt")
    loaded, _ = load_model(tmp_path / "ckpt")
    torch.testing.assert_close(loaded.tok_embeddings.weight, model.tok_embeddings.weight)


def test_damaged_checkpoints_give_one_line_errors(tmp_path):
    model, cfg = make()
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        load_model(tmp_path / "missing")
    save_model(model, cfg, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.pt").unlink()
    with pytest.raises(CheckpointError, match="missing model.pt"):
        load_model(tmp_path / "ckpt")
    save_model(model, get_config("tiny", vocab_size=128, n_layers=3, max_seq_len=64), tmp_path / "bad")
    with pytest.raises(CheckpointError, match="do not match the config") as err:
        load_model(tmp_path / "bad")
    assert "\n" not in str(err.value)
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        load_model(tmp_path / "bad")
