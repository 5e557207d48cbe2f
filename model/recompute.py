"""Activation checkpointing for the LLaMA blocks.

The LLaMA paper saves "the activations that are expensive to compute, such as the outputs of linear layers"
and recomputes the rest during the backward pass. "selective" does exactly that with torch's selective
checkpoint policy: matmul outputs and the fused attention kernels' outputs (flash / memory-efficient /
cuDNN SDPA: output and log-sum-exp, what their backward needs) are kept; the cheap elementwise ops
(norms, rotary, SiLU, products, residual adds) are recomputed. Attention is the most expensive op per
byte it would save, so recomputing it (a second flash forward per block per step) costs far more than
its [B, T, dim] output. "full" keeps only each block's input.
The function only sets `TransformerBlock.checkpoint_fn`, so parameter names and checkpoints are unchanged
and the blocks can still be sharded individually.
"""

from __future__ import annotations

import functools
import logging

import torch
import torch.utils.checkpoint as ckpt

from model.llama import TransformerBlock

log = logging.getLogger(__name__)

MODES = ("none", "selective", "full")

# Outputs of these ops are the activations worth storing: linear layers, and the fused attention kernels
# that F.scaled_dot_product_attention dispatches to (whichever exist in this torch; the CPU flash kernel
# included, so CPU tests see the same policy).
_ATTENTION_OPS = ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                  "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu")
_SAVED_OPS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default} | {
    getattr(torch.ops.aten, name).default for name in _ATTENTION_OPS if hasattr(torch.ops.aten, name)}


def _save_matmuls(ctx, op, *args, **kwargs):
    if op in _SAVED_OPS:
        return ckpt.CheckpointPolicy.MUST_SAVE
    return ckpt.CheckpointPolicy.PREFER_RECOMPUTE


def _selective_context():
    return ckpt.create_selective_checkpoint_contexts(_save_matmuls)


def selective_supported() -> bool:
    return hasattr(ckpt, "create_selective_checkpoint_contexts") and hasattr(ckpt, "CheckpointPolicy")


def apply_activation_checkpointing(model: torch.nn.Module, mode: str = "selective") -> str:
    """Attach checkpointing of `mode` to every TransformerBlock of `model`; returns the mode applied
    ("selective" falls back to "full" on a torch without selective checkpoint contexts)."""
    if mode not in MODES:
        raise ValueError(f"activation checkpointing mode must be one of {MODES}, got {mode!r}")
    if mode == "selective" and not selective_supported():
        log.warning("selective activation checkpointing needs torch>=2.4; falling back to full")
        mode = "full"
    if mode == "none":
        fn = None
    elif mode == "full":
        fn = functools.partial(ckpt.checkpoint, use_reentrant=False)
    else:
        fn = functools.partial(ckpt.checkpoint, use_reentrant=False, context_fn=_selective_context)
    blocks = [m for m in model.modules() if isinstance(m, TransformerBlock)]
    if not blocks:
        raise ValueError("model has no TransformerBlock to checkpoint")
    for block in blocks:
        block.checkpoint_fn = fn
    return mode
