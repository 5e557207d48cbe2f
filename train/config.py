"""Training run configuration: plain-value YAML + `--set key=value` overrides -> typed dataclasses.

Why: one flat, readable YAML per run (nanoGPT-style) but checked up front, so a typo in a key or a
batch size that does not divide fails in one line before any model is built.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from storage.layout import Layout


class ConfigError(ValueError):
    """The run configuration is inconsistent or names an unknown key."""


@dataclass
class DataConfig:
    tokens_dir: str = ""                 # default out/<profile>/tokens
    manifest: str = "data_manifest.yaml"
    tokenizer: str = ""                  # default out/<profile>/tokenizer/tokenizer.model
    seq_len: int = 256
    eval_fraction: float = 0.01


@dataclass
class BatchConfig:
    micro_batch: int = 8                 # sequences per rank per forward/backward
    tokens_per_step: int = 2048          # global tokens per optimiser step -> gradient accumulation


@dataclass
class OptimConfig:
    lr: float = 3.0e-4
    min_lr_ratio: float = 0.1            # cosine ends at 10% of peak (LLaMA)
    warmup_steps: int = 2000
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1.0e-8
    weight_decay: float = 0.1            # on >= 2-D params only
    grad_clip: float = 1.0


@dataclass
class WandbConfig:
    project: str = ""                    # set to log to Weights & Biases (needs `pip install wandb`)
    entity: str = ""                     # team or user (default: your W&B default entity)
    mode: str = ""                       # online | offline (no network; `wandb sync` later) | disabled

    def __post_init__(self):
        if self.mode not in ("", "online", "offline", "disabled"):
            raise ConfigError(f"metrics.wandb.mode must be online|offline|disabled, got {self.mode!r}")
        if not self.project and (self.entity or self.mode):
            raise ConfigError("metrics.wandb.project is required to log to W&B")
        if self.project and importlib.util.find_spec("wandb") is None:
            raise ConfigError("metrics.wandb is set but the wandb package is not installed: "
                              "pip install wandb (or remove metrics.wandb)")


@dataclass
class MetricsConfig:
    """Where metrics.jsonl's records are mirrored (rank 0 only): train/trackers.py."""
    tensorboard: bool = True             # event files in <run>/tensorboard/ (skipped with a warning without tensorboard)
    wandb: WandbConfig = field(default_factory=WandbConfig)  # off unless wandb.project is set


@dataclass
class TrainConfig:
    run: str = "tiny"
    profile: str = "sample"
    out_dir: str = ""                    # default out/<profile>/train/<run>
    model: dict = field(default_factory=lambda: {"name": "tiny"})  # name + ModelConfig overrides
    data: DataConfig = field(default_factory=DataConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    max_steps: int = 1000
    eval_every: int = 100                # 0 = only at the end
    eval_tokens: int = 65536             # held-out tokens per source per evaluation
    ckpt_every: int = 500                # 0 = only at the end
    keep_last: int = 3
    log_every: int = 1
    seed: int = 1337
    threads: int = 0                     # torch intra-op threads on CPU (0 = torch default)
    compile: bool = False
    activation_checkpointing: str = "none"
    dtype: str = "bf16"                  # bf16 | fp32: autocast dtype on CUDA; CPU always runs fp32
    parallel: str = "none"               # none | ddp | fsdp
    dist_timeout_s: float = 1800.0       # process-group timeout: covers rank 0 writing a full checkpoint

    def __post_init__(self):
        tree = Layout.of_profile("out", self.profile)  # the pipeline's output tree of this profile
        self.out_dir = self.out_dir or str(tree.train_dir(self.run))
        self.data.tokens_dir = self.data.tokens_dir or str(tree.tokens_dir())
        self.data.tokenizer = self.data.tokenizer or str(tree.tokenizer_model)
        if "name" not in self.model:
            raise ConfigError("model.name is required (a named config such as tiny, small, llama-7b)")
        if self.parallel not in ("none", "ddp", "fsdp"):
            raise ConfigError(f"parallel must be none|ddp|fsdp, got {self.parallel!r}")
        if self.dtype not in ("bf16", "fp32"):  # fp16 would need loss scaling; bf16 does not
            raise ConfigError(f"dtype must be bf16|fp32, got {self.dtype!r}")
        if not self.dist_timeout_s > 0:
            raise ConfigError(f"dist_timeout_s must be > 0, got {self.dist_timeout_s}")
        for name in ("max_steps", "keep_last"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.data.seq_len < 1 or self.batch.micro_batch < 1:
            raise ConfigError("data.seq_len and batch.micro_batch must be >= 1")

    def grad_accum(self, world_size: int) -> int:
        """Micro-steps per optimiser step so that one step sees exactly tokens_per_step tokens."""
        per_micro = self.batch.micro_batch * self.data.seq_len * world_size
        if self.batch.tokens_per_step % per_micro:
            raise ConfigError(f"batch.tokens_per_step={self.batch.tokens_per_step} is not a multiple of "
                              f"micro_batch*seq_len*world_size = {self.batch.micro_batch}*{self.data.seq_len}"
                              f"*{world_size} = {per_micro}")
        return self.batch.tokens_per_step // per_micro

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value, typ, where: str):
    if dataclasses.is_dataclass(typ):
        return _build(typ, value, where)
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if typ in (int, float):
        try:
            number = float(value) if isinstance(value, str) else value
            if typ is int:
                if float(number) != int(number):
                    raise ValueError
                return int(number)
            return float(number)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if typ is str:
        return str(value)
    if typ is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def _build(cls, values: dict, where: str = ""):
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join((where + '.' if where else '') + k for k in unknown)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` strings to a nested dict. The value is read as YAML (``0.5``, ``true``,
    ``[en, de]``); text YAML cannot read stays text. One syntax for every ``--set`` of the project:
    ``python -m train`` and ``python -m pipeline stage`` both use this."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(text)
        except yaml.YAMLError:
            node[parts[-1]] = text
    return raw


def load_config(path: str | None = None, overrides: list[str] | None = None, base: dict | None = None) -> TrainConfig:
    raw = dict(base or {})
    if path:
        try:
            raw.update(yaml.safe_load(Path(path).read_text()) or {})
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
    return _build(TrainConfig, apply_overrides(raw, overrides or []))


def config_from_dict(values: dict) -> TrainConfig:
    return _build(TrainConfig, values)
