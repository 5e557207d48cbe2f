"""Rotary position embeddings (Su et al. 2021) in Meta's interleaved layout.

Each head vector is read as head_dim/2 consecutive pairs (x[2i], x[2i+1]), each rotated by angle pos*theta^(-2i/d).
This is the layout of the original LLaMA release; `model/export_hf.py` permutes q/k weights into the
rotate-half layout that transformers uses. cos/sin are precomputed in fp32 as real tables and combined
into a complex rotation per call.
"""

from __future__ import annotations

import torch


def rope_tables(head_dim: int, max_seq_len: int, theta: float = 10000.0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape [max_seq_len, head_dim // 2], fp32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    pos = torch.arange(max_seq_len, device=device, dtype=torch.float32)
    angles = torch.outer(pos, inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x of shape [B, T, H, head_dim] by tables already sliced to the T positions ([T, head_dim // 2]).

    Eager: each pair is a complex number multiplied by cos + i*sin, one kernel forward and backward (about
    3x faster on CPU than the real-valued form). Under torch.compile the real-valued form is used, since
    inductor generates no code for complex ops and fuses the real one into a single kernel.
    """
    if torch.compiler.is_compiling():
        return apply_rotary_real(x, cos, sin)
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())
    rotation = torch.complex(cos, sin)[None, :, None, :]
    return torch.view_as_real(pairs * rotation).flatten(-2).type_as(x)


def apply_rotary_real(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """apply_rotary spelled out with real multiplies: (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos)."""
    pairs = x.float().unflatten(-1, (-1, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    cos = cos[None, :, None, :]
    sin = sin[None, :, None, :]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2).type_as(x)
