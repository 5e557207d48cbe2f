"""Training checkpoints: everything needed to continue a run bit-for-bit, written atomically.

Layout of `<run>/checkpoints/step_NNNNNNN/`:
  model/            model.weights directory (model.pt + config.json): usable by eval/export alone
  train_state.pt    optimiser (FQN-keyed full state), step, scheduler (the LR is a pure function of
                    the step), loader state, RNG states (python, numpy, torch, cuda), counters
  train_config.json the run configuration, for humans and for `train.eval`
The step directory is assembled in a hidden temporary sibling and renamed into place (`storage.atomic`),
so a run killed while saving leaves only a `.step_*` directory that resume ignores and removes. Only
plain python values and tensors are stored, so everything loads with `torch.load(weights_only=True)`
(memory-mapped, so the ranks of a node share one read of the file).
Full (unsharded) state dicts make a checkpoint loadable under any parallelism and world size.
"""
from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)

from model.config import ModelConfig
from model.weights import save_model
from storage.atomic import atomic_dir
from train.parallel import Dist, barrier

CKPT_SUBDIR = "checkpoints"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def complete_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, dir) of the complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CKPT_SUBDIR
    found = []
    if root.is_dir():
        for p in root.iterdir():
            m = _STEP_DIR.match(p.name)
            if m and (p / "train_state.pt").is_file() and (p / "model" / "model.pt").is_file():
                found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1][1] if found else None


def remove_partial(run_dir: str | Path) -> list[Path]:
    """Delete the hidden temporary directories (``.step_*``) left by a save that was interrupted."""
    root = Path(run_dir) / CKPT_SUBDIR
    stale = [p for p in root.iterdir() if p.name.startswith(".step_")] if root.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"bit_generator": np_state["bit_generator"],
                       "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                       "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                       "gauss": float(np_state["gauss"])}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    model_cfg: ModelConfig, train_state: dict, train_config: dict, d: Dist,
                    keep_last: int) -> Path:
    """Collective: every rank calls it; rank 0 writes. Returns the checkpoint directory."""
    model_sd = get_model_state_dict(model, options=_FULL)
    optim_sd = get_optimizer_state_dict(model, optimizer, options=_FULL)
    root = Path(run_dir) / CKPT_SUBDIR
    final = root / f"step_{step:07d}"
    if d.is_main:
        with atomic_dir(final) as tmp:  # replaces a save of the same step (final save right after a periodic one)
            save_model(model_sd, model_cfg, tmp / "model", extra={"step": step})
            torch.save({**train_state, "step": step, "optimizer": optim_sd, "rng": rng_state()},
                       tmp / "train_state.pt")
            (tmp / "train_config.json").write_text(json.dumps(train_config, indent=2))
        for _, old in complete_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(d)
    return final


def _load(path: Path) -> dict:
    """torch.load memory-mapped: on a node of several ranks the file's pages are read once into the page
    cache and shared, and each rank only touches the tensors it copies from, instead of every rank
    reading the whole optimiser state into its own memory (weights_only: plain values and tensors)."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def _storages(tree) -> set[int]:
    if torch.is_tensor(tree):
        return {tree.untyped_storage().data_ptr()}
    if isinstance(tree, dict):
        return set().union(*(_storages(v) for v in tree.values())) if tree else set()
    if isinstance(tree, (list, tuple)):
        return set().union(*(_storages(v) for v in tree)) if tree else set()
    return set()


def _unmap_optimizer_state(optimizer: torch.optim.Optimizer, mapped: set[int]) -> None:
    """Copy optimiser state that still aliases the memory-mapped file (on CPU the optimiser adopts the
    loaded tensors as they are): the run must not keep writing into, or holding open, a checkpoint file
    that keep_last will delete."""
    for state in optimizer.state.values():
        for key, value in state.items():
            local = value.to_local() if hasattr(value, "to_local") else value
            if torch.is_tensor(local) and local.untyped_storage().data_ptr() in mapped:
                state[key] = value.clone()


def load_checkpoint(ckpt_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load weights, optimiser and RNG state into the (possibly wrapped) model; returns the train state."""
    ckpt_dir = Path(ckpt_dir)
    model_sd = _load(ckpt_dir / "model" / "model.pt")
    state = _load(ckpt_dir / "train_state.pt")
    set_model_state_dict(model, model_sd, options=StateDictOptions(full_state_dict=True))
    optim_sd = state.pop("optimizer")
    set_optimizer_state_dict(model, optimizer, optim_sd, options=StateDictOptions(full_state_dict=True))
    _unmap_optimizer_state(optimizer, _storages(optim_sd) - {0})
    del model_sd, optim_sd
    set_rng_state(state.pop("rng"))
    return state
