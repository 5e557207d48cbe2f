"""Pick a LLaMA-shaped architecture (dim, layers, heads) for a parameter count.

Why: the planner speaks in N, the trainer in shapes.  Kaplan et al. 2020 found loss nearly flat in the
aspect ratio dim/n_layers over a wide range, so among shapes whose exact parameter count lies within a
few percent of N we take the one closest to a LLaMA/GPT-3-like aspect ratio: ~64 up to dim 1024,
rising to 128 at dim 4096 (LLaMA-7B and 13B have exactly 128; 65B has 102).  Counts use the project's
own ModelConfig (SwiGLU hidden size rounding, untied embeddings), so N(shape) is what the trainer builds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from model.config import ModelConfig


def param_count(cfg: ModelConfig) -> int:
    """Exact parameter count of model.llama.Llama(cfg): embeddings + output + layers + final norm."""
    d, hd = cfg.dim, cfg.head_dim
    attn = d * cfg.n_heads * hd * 2 + d * cfg.kv_heads * hd * 2  # wq, wo + wk, wv
    ffn = 3 * d * cfg.hidden_dim
    per_layer = attn + ffn + 2 * d  # two RMSNorm weights
    return 2 * cfg.vocab_size * d + cfg.n_layers * per_layer + d


def target_aspect(dim: int) -> float:
    """Preferred dim / n_layers for a width (see module docstring)."""
    return min(128.0, max(32.0, 64.0 * math.sqrt(dim / 1024.0)))


def _width_rules(dim: int) -> tuple[int, int, int]:
    """(dim step, head_dim, SwiGLU multiple_of) for a width: head dim 128 where large, as LLaMA."""
    if dim < 256:
        return 32, 32, 32
    if dim < 1024:
        return 64, 64, 64
    if dim < 2048:
        return 128, 64, 256
    if dim < 4096:
        return 128, 128, 256
    return 256, 128, 256


def candidate_dims(max_dim: int = 16384):
    dim = 32
    while dim <= max_dim:
        yield dim
        dim += _width_rules(dim)[0]


@dataclass(frozen=True)
class Shape:
    config: ModelConfig
    params: int
    target: float

    @property
    def rel_error(self) -> float:
        return (self.params - self.target) / self.target

    @property
    def aspect(self) -> float:
        return self.config.dim / self.config.n_layers

    def model_overrides(self) -> dict:
        c = self.config
        return {"dim": c.dim, "n_layers": c.n_layers, "n_heads": c.n_heads,
                "multiple_of": c.multiple_of, "vocab_size": c.vocab_size, "max_seq_len": c.max_seq_len}

    def describe(self) -> str:
        c = self.config
        return (f"dim {c.dim}, {c.n_layers} layers, {c.n_heads} heads (head dim {c.head_dim}), "
                f"SwiGLU hidden {c.hidden_dim}, vocab {c.vocab_size} -> {self.params:,} params "
                f"({self.rel_error:+.1%} of target), dim/layers {self.aspect:.0f}")


def shape_for_params(n_params: float, vocab_size: int = 32000, max_seq_len: int = 2048,
                     tolerance: float = 0.03) -> Shape:
    """The shape with params within `tolerance` of n_params and aspect closest to target_aspect;
    when no width gets within tolerance (tiny N dominated by the embeddings) the closest count wins."""
    if n_params <= 0:
        raise ValueError(f"parameter count must be positive, got {n_params:g}")
    best_fit, best_any = None, None
    for dim in candidate_dims():
        _, head_dim, multiple_of = _width_rules(dim)
        base = ModelConfig(dim=dim, n_layers=1, n_heads=dim // head_dim, vocab_size=vocab_size,
                           multiple_of=multiple_of, max_seq_len=max_seq_len)
        zero_layers = 2 * vocab_size * dim + dim  # embeddings, output matrix, final norm
        per_layer = param_count(base) - zero_layers
        if zero_layers >= n_params * (1 + tolerance):
            break  # wider only adds embedding parameters
        for n_layers in {max(1, math.floor((n_params - zero_layers) / per_layer)),
                         max(1, math.ceil((n_params - zero_layers) / per_layer))}:
            cfg = ModelConfig(dim=dim, n_layers=n_layers, n_heads=dim // head_dim, vocab_size=vocab_size,
                              multiple_of=multiple_of, max_seq_len=max_seq_len)
            shape = Shape(cfg, param_count(cfg), float(n_params))
            err = abs(shape.rel_error)
            aspect_gap = abs(math.log(shape.aspect / target_aspect(dim)))
            if best_any is None or err < abs(best_any.rel_error):
                best_any = shape
            if err <= tolerance and (best_fit is None or (aspect_gap, err) < best_fit[0]):
                best_fit = ((aspect_gap, err), shape)
    if best_any is None:
        raise ValueError(f"{n_params:,.0f} parameters is too few for vocab {vocab_size}: the embedding and "
                         f"output matrices alone need {2 * vocab_size * 32 + 32:,} at the narrowest width 32")
    return best_fit[1] if best_fit else best_any
