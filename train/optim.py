"""AdamW with LLaMA's settings and the warmup + cosine learning-rate schedule.

Why separate: the weight-decay grouping and the schedule are the two optimiser details that are easy
to get subtly wrong, and both are tested on their own (no model run needed).
"""
from __future__ import annotations

import math

import torch

from train.config import OptimConfig


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices (embeddings, linear weights); never norms' gains or other 1-D params."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def use_fused(model: torch.nn.Module) -> bool:
    """Fused AdamW (one kernel for all parameters) when every parameter lives on a CUDA device. Not on
    CPU: curves there stay those of the default (foreach) implementation the tests compare against."""
    devices = {p.device.type for p in model.parameters()}
    return devices == {"cuda"}


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig, fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over `param_groups`; fused=None picks the fused implementation on CUDA (`use_fused`)."""
    fused = use_fused(model) if fused is None else fused
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                             betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused or None)


def lr_at(step: int, cfg: OptimConfig, max_steps: int) -> float:
    """LR for optimiser step `step` (0-based): linear warmup to the peak, cosine down to min_lr_ratio*peak.

    Warmup reaches the peak at step warmup_steps-1; the cosine reaches its floor at max_steps-1 and
    stays there if training runs longer.
    """
    peak, floor = cfg.lr, cfg.lr * cfg.min_lr_ratio
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    span = max(1, max_steps - 1 - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span) if max_steps - 1 > cfg.warmup_steps else 1.0
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
