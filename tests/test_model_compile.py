"""torch.compile can trace the whole model as one graph (no graph breaks), forward and backward, with
selective activation checkpointing, and gets the eager gradients. Uses the aot_eager backend so the check
needs no C++ code generation; the GPU bench (bench/train_gpu.py) compiles the same graph with inductor."""

import pytest
import torch

from model.recompute import apply_activation_checkpointing
from model.config import get_config
from model.llama import Llama


@pytest.mark.slow
def test_full_graph_compile_matches_eager_gradients():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = Llama(get_config("tiny", dim=64, n_heads=4, n_kv_heads=2, n_layers=2, vocab_size=256, max_seq_len=32))
        x = torch.randint(0, 256, (2, 32))
        y = torch.roll(x, -1, dims=1)
        _, loss = model(x, y)
        loss.backward()
        ref = [p.grad.clone() for p in model.parameters()]
        apply_activation_checkpointing(model, "selective")  # the configuration the GPU configs train with
        model.zero_grad()
        torch._dynamo.reset()
        _, compiled_loss = torch.compile(model, backend="aot_eager", fullgraph=True)(x, y)
        compiled_loss.backward()
        torch.testing.assert_close(compiled_loss, loss)
        for p, r in zip(model.parameters(), ref):
            torch.testing.assert_close(p.grad, r, atol=1e-6, rtol=1e-5)
    finally:
        torch._dynamo.reset()
        torch.set_num_threads(prev)
