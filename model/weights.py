"""Model checkpoints shared by train/, generate and export: a directory holding `model.pt` (a plain Llama
state_dict, loadable with weights_only=True) and `config.json` ({"model": ModelConfig.to_dict(), ...}).

Saving writes a sibling temporary directory and renames it into place (``storage.atomic.atomic_dir``), so
an interrupted save never leaves a half-written checkpoint where a reader would look for one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from model.config import ModelConfig
from model.llama import Llama
from storage.atomic import atomic_dir

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile / DDP wrappers


class CheckpointError(Exception):
    """A checkpoint directory that is missing, incomplete or does not match its config."""


def clean_state_dict(state_dict: dict) -> dict[str, torch.Tensor]:
    """Detached CPU tensors with compile/DDP wrapper prefixes removed."""
    out = {}
    for name, tensor in state_dict.items():
        for prefix in _WRAPPER_PREFIXES:
            name = name.replace(prefix, "")
        if hasattr(tensor, "full_tensor"):  # a DTensor (FSDP2): gather the full parameter (collective)
            tensor = tensor.full_tensor()
        out[name] = tensor.detach().cpu()
    return out


def save_model(model: torch.nn.Module | dict, cfg: ModelConfig, ckpt_dir: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write model weights + config to ckpt_dir atomically. `extra` adds keys to config.json (e.g. step)."""
    state = model if isinstance(model, dict) else model.state_dict()
    meta = {"model": cfg.to_dict(), **(extra or {})}
    with atomic_dir(ckpt_dir) as tmp:
        torch.save(clean_state_dict(state), tmp / MODEL_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return Path(ckpt_dir)


def read_config(ckpt_dir: str | os.PathLike) -> dict:
    path = Path(ckpt_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{ckpt_dir}: not a checkpoint directory (no {CONFIG_FILE})")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
        raise CheckpointError(f"{path}: no \"model\" config object")
    return meta


def load_model(ckpt_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Llama, ModelConfig]:
    """Rebuild the Llama stored in ckpt_dir, weights loaded strictly, in eval mode."""
    meta = read_config(ckpt_dir)
    try:
        cfg = ModelConfig.from_dict(meta["model"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt_dir}: bad model config ({e})") from None
    weights = Path(ckpt_dir) / MODEL_FILE
    if not weights.is_file():
        raise CheckpointError(f"{ckpt_dir}: missing {MODEL_FILE}")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    with torch.device("meta"):
        model = Llama(cfg)
    model.to_empty(device=device)
    model.init_rope()  # non-persistent buffers; the parameters are loaded below
    try:
        model.load_state_dict(clean_state_dict(state), strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(f"{weights}: weights do not match the config ({' '.join(first[:2])[:300]})") from None
    return model.eval(), cfg
