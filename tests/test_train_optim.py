"""Optimiser details: LLaMA LR schedule shape, weight-decay groups, config validation."""
from __future__ import annotations

import math

import pytest
import torch

from model.config import get_config
from model.llama import Llama
from train.config import ConfigError, OptimConfig, load_config
from train.optim import build_optimizer, lr_at, param_groups


def test_lr_warmup_then_cosine_to_ten_percent():
    cfg = OptimConfig(lr=3e-4, warmup_steps=2000, min_lr_ratio=0.1)
    total = 10_000
    lrs = [lr_at(s, cfg, total) for s in range(total + 500)]
    assert lrs[0] == pytest.approx(3e-4 / 2000)
    assert all(a < b for a, b in zip(lrs[:2000], lrs[1:2000]))          # linear warmup, increasing
    assert lrs[999] == pytest.approx(3e-4 * 1000 / 2000)
    assert max(lrs) == pytest.approx(3e-4) and lrs[1999] == pytest.approx(3e-4)
    decay = lrs[2000:total]
    assert all(a >= b for a, b in zip(decay, decay[1:]))                 # monotone cosine decay
    mid = 2000 + (total - 1 - 2000) // 2
    progress = (mid - 2000) / (total - 1 - 2000)
    assert lr_at(mid, cfg, total) == pytest.approx(3e-5 + 0.5 * 2.7e-4 * (1 + math.cos(math.pi * progress)))
    assert lrs[total - 1] == pytest.approx(3e-5)                          # ends at 10% of peak
    assert min(lrs[total:]) == pytest.approx(3e-5)                        # and stays there


def test_weight_decay_only_on_matrices():
    model = Llama(get_config("tiny", vocab_size=64, dim=32, n_layers=2, n_heads=2, multiple_of=16))
    groups = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)] for p in groups[0]["params"]}
    no_decay = {names[id(p)] for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert decay | no_decay == set(names.values()) and not decay & no_decay
    assert {"tok_embeddings.weight", "output.weight", "layers.0.attention.wq.weight",
            "layers.1.feed_forward.w2.weight"} <= decay
    assert no_decay and all(n.endswith("norm.weight") for n in no_decay)
    opt = build_optimizer(model, OptimConfig(beta1=0.9, beta2=0.95, eps=1e-8))
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-8
    # a decayed matrix shrinks with zero gradient; a norm gain does not
    w, g = model.output.weight, model.norm.weight
    before_w, before_g = w.detach().clone(), g.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.allclose(w, before_w * (1 - 3e-4 * 0.1)) and torch.equal(g, before_g)


def test_config_overrides_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: tiny}\ndata: {seq_len: 64}\nbatch: {micro_batch: 4, tokens_per_step: 1024}\n")
    cfg = load_config(str(path), ["optim.lr=1e-3", "max_steps=5", "parallel=ddp"])
    assert cfg.optim.lr == 1e-3 and cfg.max_steps == 5 and cfg.parallel == "ddp"
    assert cfg.out_dir == "out/sample/train/tiny" and cfg.data.tokenizer.endswith("tokenizer/tokenizer.model")
    assert cfg.grad_accum(1) == 4 and cfg.grad_accum(2) == 2
    with pytest.raises(ConfigError, match="not a multiple"):
        cfg.grad_accum(3)
    with pytest.raises(ConfigError, match="unknown config key.*optim.lrr"):
        load_config(str(path), ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="parallel must be"):
        load_config(str(path), ["parallel=tp"])
    with pytest.raises(ConfigError, match="expected a number"):
        load_config(str(path), ["max_steps=lots"])
