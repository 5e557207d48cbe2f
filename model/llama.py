"""The LLaMA decoder (Touvron et al. 2023): pre-norm RMSNorm, SwiGLU, rotary attention, no biases.

Kept deliberately flat (nanoGPT style) so it reads top to bottom. Blocks live in `self.layers` so a
data-parallel wrapper (FSDP2 `fully_shard`) can shard them one by one, and activation checkpointing is
attached from outside (`model/recompute.py`) through `TransformerBlock.checkpoint_fn` so that the
parameter names, and hence checkpoints, never change.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.config import ModelConfig
from model.kv_cache import KVCache
from model.loss import linear_cross_entropy
from model.rope import apply_rotary, rope_tables


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019), computed in fp32 whatever the activation dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x, cos, sin, cache: KVCache | None = None, start_pos: int = 0) -> torch.Tensor:
        B, T, _ = x.shape
        q = apply_rotary(self.wq(x).view(B, T, self.n_heads, self.head_dim), cos, sin)
        k = apply_rotary(self.wk(x).view(B, T, self.n_kv_heads, self.head_dim), cos, sin)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, D]
        if cache is not None:
            k, v = cache.update(start_pos, k, v)
        if self.n_kv_heads != self.n_heads:  # grouped-query attention: share each kv head across a group
            k = k.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
            v = v.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
        if k.shape[2] == T:  # no cached prefix: plain causal attention, no mask materialised
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif T == 1:  # one new token attends to every cached position
            y = F.scaled_dot_product_attention(q, k, v)
        else:  # a chunk after a cached prefix: causal mask offset by start_pos
            mask = torch.ones(T, k.shape[2], dtype=torch.bool, device=x.device).tril(diagonal=start_pos)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    """SwiGLU (Shazeer 2020): w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)  # gate
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)  # up
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)  # down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg.dim, cfg.hidden_dim)
        # Set by model.recompute.apply_activation_checkpointing: fn(block_forward, *args) -> output.
        self.checkpoint_fn = None

    def _forward(self, x, cos, sin, cache=None, start_pos=0):
        h = x + self.attention(self.attention_norm(x), cos, sin, cache, start_pos)
        return h + self.feed_forward(self.ffn_norm(h))

    def forward(self, x, cos, sin, cache: KVCache | None = None, start_pos: int = 0) -> torch.Tensor:
        if self.checkpoint_fn is not None and cache is None and torch.is_grad_enabled():
            return self.checkpoint_fn(self._forward, x, cos, sin)
        return self._forward(x, cos, sin, cache, start_pos)


class Llama(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)  # untied from tok_embeddings
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_rope(self) -> None:
        """(Re)compute the rotary cos/sin buffers on their current device."""
        cos, sin = rope_tables(self.cfg.head_dim, self.cfg.max_seq_len, self.cfg.rope_theta, device=self.rope_cos.device)
        self.rope_cos.copy_(cos)
        self.rope_sin.copy_(sin)

    @torch.no_grad()
    def init_weights(self) -> None:
        """Normal(0, 0.02) weights; residual output projections scaled by 1/sqrt(2*n_layers) (GPT-2).

        Also recomputes the rotary tables, so a model built on the meta device and moved with
        `to_empty(device=...)` becomes usable by calling this once.
        """
        self.init_rope()
        residual_std = 0.02 / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif name.endswith(("attention.wo.weight", "feed_forward.w2.weight")):
                nn.init.normal_(p, mean=0.0, std=residual_std)
            else:
                nn.init.normal_(p, mean=0.0, std=0.02)

    def init_kv_cache(self, batch_size: int, max_seq_len: int | None = None, device=None, dtype=None) -> list[KVCache]:
        ref = self.output.weight
        length = max_seq_len or self.cfg.max_seq_len
        return [
            KVCache(batch_size, length, self.cfg.kv_heads, self.cfg.head_dim, device or ref.device, dtype or ref.dtype)
            for _ in self.layers
        ]

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None,
                kv_cache: list[KVCache] | None = None, start_pos: int = 0) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """tokens [B, T] -> (logits [B, T, vocab], mean cross-entropy over targets != -100, or None).

        When targets are given and autograd is on (training), the loss comes from the chunked
        projection + cross-entropy of model/loss.py and logits is None: the full logits are never built.
        """
        B, T = tokens.shape
        if start_pos + T > self.cfg.max_seq_len:
            raise ValueError(f"sequence end {start_pos + T} exceeds max_seq_len={self.cfg.max_seq_len}")
        cos = self.rope_cos[start_pos:start_pos + T]
        sin = self.rope_sin[start_pos:start_pos + T]
        h = self.tok_embeddings(tokens)
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, None if kv_cache is None else kv_cache[i], start_pos)
        h = self.norm(h)
        # The chunked loss reads output.weight directly, so it needs the weight unsharded here: true unless
        # `output` was FSDP-sharded as its own unit (then its weight is a DTensor and the module is called).
        if targets is not None and torch.is_grad_enabled() and not hasattr(self.output.weight, "full_tensor"):
            return None, linear_cross_entropy(h.flatten(0, 1), self.output.weight, targets.flatten())
        logits = self.output(h)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return logits, loss

    def num_params(self, non_embedding: bool = False) -> int:
        """All parameters, or (non_embedding=True) without the token embedding and output matrices, as in
        Kaplan et al. 2020 (N ~ 12 * n_layers * dim^2)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_embeddings.weight.numel() + self.output.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward): 6 * matmul parameters + 12 * L * d * T for attention
        scores and values (PaLM appendix B). Used to compute MFU."""
        matmul_params = self.num_params(non_embedding=True) + self.output.weight.numel()
        return 6 * matmul_params + 12 * self.cfg.n_layers * self.cfg.dim * seq_len
