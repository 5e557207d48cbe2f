"""Model hyper-parameters for the LLaMA family.

One dataclass is shared by the model, the trainer, checkpoints and the HF exporter, so that a checkpoint's
`config.json` alone is enough to rebuild the network. The four paper shapes come from Touvron et al. 2023,
Table 2; the small ones exist so the whole stack can be exercised on a CPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class ModelConfig:
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int | None = None  # None: multi-head attention; fewer: grouped-query attention
    vocab_size: int = 32000
    multiple_of: int = 256  # SwiGLU hidden size is rounded up to a multiple of this
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_seq_len: int = 2048

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} is not divisible by n_heads={self.n_heads}")
        if (self.dim // self.n_heads) % 2:
            raise ValueError(f"head_dim={self.dim // self.n_heads} must be even for rotary embeddings")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}")
        for name in ("dim", "n_layers", "n_heads", "vocab_size", "multiple_of", "max_seq_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def hidden_dim(self) -> int:
        """SwiGLU width: 2/3 of 4*dim (keeps FLOPs equal to a 4*dim GELU MLP), rounded up (11008 at 4096)."""
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s): {', '.join(unknown)}")
        return cls(**d)


CONFIGS: dict[str, ModelConfig] = {
    # Touvron et al. 2023, Table 2 (6.7B, 13.0B, 32.5B, 65.2B parameters).
    "llama-7b": ModelConfig(dim=4096, n_layers=32, n_heads=32),
    "llama-13b": ModelConfig(dim=5120, n_layers=40, n_heads=40),
    "llama-33b": ModelConfig(dim=6656, n_layers=60, n_heads=52),
    "llama-65b": ModelConfig(dim=8192, n_layers=80, n_heads=64),
    # CPU-sized shapes. Non-embedding parameters: tiny 1.8M, small 10.6M; embeddings add 2*vocab*dim.
    "tiny": ModelConfig(dim=192, n_layers=4, n_heads=6, multiple_of=32, max_seq_len=512),
    "small": ModelConfig(dim=384, n_layers=6, n_heads=6, multiple_of=64, max_seq_len=1024),
    # ~1.06B parameters at vocab 32000, for the single-GPU throughput bench.
    "1b": ModelConfig(dim=2048, n_layers=18, n_heads=16, max_seq_len=2048),
}


def get_config(name: str, **overrides) -> ModelConfig:
    """A copy of a named config with fields replaced, e.g. get_config("tiny", vocab_size=8000)."""
    if name not in CONFIGS:
        raise KeyError(f"unknown model config {name!r}; known: {', '.join(CONFIGS)}")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown ModelConfig field(s): {', '.join(unknown)}")
    return dataclasses.replace(CONFIGS[name], **overrides)
