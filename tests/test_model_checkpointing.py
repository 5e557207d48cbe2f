"""Activation checkpointing changes memory/compute, never gradients; selective keeps matmul and attention
outputs, so the attention kernel runs once per block per step, not again in the backward pass."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from model.recompute import apply_activation_checkpointing
from model.config import get_config
from model.llama import Llama


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func)] = self.counts.get(str(func), 0) + 1
        return func(*args, **(kwargs or {}))


def grads_and_backward_ops(model, mode, x):
    assert apply_activation_checkpointing(model, mode) == mode
    model.zero_grad()
    _, loss = model(x[:, :-1], x[:, 1:])
    with OpCounter() as counter:
        loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}, counter.counts


def test_checkpointing_gives_identical_gradients_and_recomputes_what_it_should():
    torch.manual_seed(0)
    model = Llama(get_config("tiny", vocab_size=256, n_kv_heads=2))
    x = torch.randint(0, 256, (2, 33))
    ref, ops_none = grads_and_backward_ops(model, "none", x)
    names = list(model.state_dict())
    for mode in ("selective", "full"):
        grads, ops = grads_and_backward_ops(model, mode, x)
        for n in ref:
            torch.testing.assert_close(grads[n], ref[n], atol=1e-6, rtol=1e-5)
        assert "rsqrt" in str(ops) and "rsqrt" not in str(ops_none)  # norms are recomputed
        if mode == "selective":
            assert ops["aten.mm.default"] == ops_none["aten.mm.default"]  # linear outputs were saved, not recomputed
        else:
            assert ops["aten.mm.default"] > ops_none["aten.mm.default"]  # full recomputes the block's linears too
    assert list(model.state_dict()) == names  # checkpoints keep their keys


SDPA_FORWARD = "aten._scaled_dot_product_flash_attention_for_cpu.default"  # what F.sdpa runs on a CPU


def test_selective_saves_the_attention_kernel_output_instead_of_rerunning_it():
    torch.manual_seed(0)
    cfg = get_config("tiny", vocab_size=256, n_layers=3, n_kv_heads=2, max_seq_len=64)
    model = Llama(cfg)
    x = torch.randint(0, 256, (2, 33))
    _, loss = model(x[:, :-1], x[:, 1:])
    loss.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    for mode, reruns in (("none", 0), ("selective", 0), ("full", cfg.n_layers)):
        apply_activation_checkpointing(model, mode)
        model.zero_grad()
        with OpCounter() as forward:
            _, loss = model(x[:, :-1], x[:, 1:])
        with OpCounter() as backward:
            loss.backward()
        assert forward.counts[SDPA_FORWARD] == cfg.n_layers, mode      # once per block in the forward pass
        assert backward.counts.get(SDPA_FORWARD, 0) == reruns, mode     # selective: never again in backward
        assert backward.counts[SDPA_FORWARD.replace(".default", "_backward.default")] == cfg.n_layers
        for n, p in model.named_parameters():
            torch.testing.assert_close(p.grad, ref[n], atol=1e-6, rtol=1e-5)


def test_unknown_mode_is_rejected():
    model = Llama(get_config("tiny", vocab_size=64))
    with pytest.raises(ValueError, match="selective"):
        apply_activation_checkpointing(model, "some")
