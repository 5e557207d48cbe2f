"""Per-layer key/value cache for incremental decoding.

Keys and values of already-processed positions are kept in preallocated buffers so that each new token
costs one attention row instead of re-running the whole prefix.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, batch_size: int, max_seq_len: int, n_kv_heads: int, head_dim: int, device=None, dtype=torch.float32):
        shape = (batch_size, n_kv_heads, max_seq_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)

    @property
    def max_seq_len(self) -> int:
        return self.k.shape[2]

    def update(self, start_pos: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v ([B, H_kv, T, D]) at positions start_pos.. and return all keys/values up to them."""
        end = start_pos + k.shape[2]
        if k.shape[0] != self.k.shape[0]:
            raise ValueError(f"batch size {k.shape[0]} does not match the cache's {self.k.shape[0]}")
        if end > self.max_seq_len:
            raise ValueError(f"position {end} exceeds the cache length {self.max_seq_len}")
        self.k[:, :, start_pos:end] = k
        self.v[:, :, start_pos:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]
