"""Mirrors of metrics.jsonl in the tools people watch runs with: TensorBoard event files and W&B.

Why mirrors and not the source of truth: metrics.jsonl stays the record the trainer, the report and the
tests read; a tracker gets every record as it is written (``scalars`` turns one into ``tag -> value``:
``train/<key>`` for a step's numbers, ``eval/<source>`` for held-out losses, ``mixture/<source>`` for the
realised shares), so what TensorBoard or W&B shows is exactly what the log holds.

Both packages are optional and imported here only when enabled (train/ promises torch, numpy, pyyaml and
sentencepiece only): TensorBoard is on by default, so without the package the run warns once, in one
line, and goes on; W&B is asked for explicitly, so train/config.py refuses the configuration up front
when ``wandb`` is missing. Everything either writes stays inside the run folder.

Resume: metrics.jsonl is cut back to the checkpoint's step; TensorBoard gets ``purge_step`` = that step
+ 1, so a reader drops the events a killed run wrote past the checkpoint and no step appears twice; W&B
resumes the same run id (kept in ``wandb/run_id``), and W&B itself ignores steps it already has.
"""
from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from storage.atomic import atomic_write_text
from train.config import ConfigError

TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
_warned: set[str] = set()


def scalars(record: dict) -> dict[str, float]:
    """One metrics.jsonl record as tracker scalars: numbers only (None, e.g. MFU on CPU, is left out)."""
    out = {}
    for key, value in record.items():
        if key == "step":
            continue
        if isinstance(value, dict):
            prefix = key
            for sub, v in value.items():
                if _number(v):
                    out[f"{prefix}/{sub}"] = float(v)
        elif _number(value):
            out[f"train/{key}"] = float(value)
    return out


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _warn_once(key: str, line: str) -> None:
    if key not in _warned:
        _warned.add(key)
        print(line, file=sys.stderr, flush=True)


class TensorBoardTracker:
    def __init__(self, run_dir: Path, resume_step: int | None):
        from torch.utils.tensorboard import SummaryWriter  # raises ImportError without tensorboard

        folder = run_dir / TENSORBOARD_DIR
        if resume_step is None:  # a fresh run: curves of an earlier run in this folder would overlay it
            for old in folder.glob("events.out.tfevents.*"):
                old.unlink()
        self.writer = SummaryWriter(str(folder), purge_step=None if resume_step is None else resume_step + 1)

    def log(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, run_dir: Path, resume_step: int | None, settings, name: str, config: dict):
        folder = run_dir / WANDB_DIR
        folder.mkdir(parents=True, exist_ok=True)
        # W&B's own files (settings, cache, artefacts, debug logs) go under the run folder, not $HOME;
        # the variables are restored when the run closes (another run in this process has its own folder)
        env = {"WANDB_DIR": run_dir, "WANDB_CACHE_DIR": folder / "cache", "WANDB_CONFIG_DIR": folder / "config",
               "WANDB_DATA_DIR": folder / "data", "WANDB_ARTIFACT_DIR": folder / "artifacts"}
        self.saved_env = {var: os.environ.get(var) for var in env}
        os.environ.update({var: str(path) for var, path in env.items()})
        try:
            import wandb
        except ImportError:  # train/config.py checks this up front; here for a config built another way
            self._restore_env()
            raise ConfigError("metrics.wandb is set but the wandb package is not installed: pip install wandb") from None

        id_file = folder / "run_id"
        if resume_step is not None and id_file.is_file():
            run_id = id_file.read_text().strip()
        else:
            run_id = secrets.token_hex(4)
            atomic_write_text(id_file, run_id + "\n")
        try:
            self.run = wandb.init(project=settings.project, entity=settings.entity or None,
                                  mode=settings.mode or None, dir=str(run_dir), name=name, id=run_id,
                                  resume="allow", config=config,
                                  settings=wandb.Settings(console="off", silent=True))
        except Exception as e:  # not logged in, no network, a bad entity: one line, before any step runs
            self._restore_env()
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"metrics.wandb: W&B could not start a run ({first}); run `wandb login`, or "
                              f"set metrics.wandb.mode=offline") from None
        except BaseException:
            self._restore_env()
            raise

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        try:
            self.run.finish()
        finally:
            self._restore_env()

    def _restore_env(self) -> None:
        for var, value in self.saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def open_trackers(run_dir: str | Path, metrics, resume_step: int | None, name: str = "",
                  config: dict | None = None) -> list:
    """The trackers ``metrics`` (a train.config.MetricsConfig) asks for; call on the main rank only."""
    run_dir = Path(run_dir)
    trackers = []
    if metrics.tensorboard:
        try:
            trackers.append(TensorBoardTracker(run_dir, resume_step))
        except ImportError:
            _warn_once("tensorboard", "train: warning: metrics.tensorboard is on but the tensorboard package is "
                                      "not installed (pip install tensorboard); continuing without it")
    if metrics.wandb.project:
        trackers.append(WandbTracker(run_dir, resume_step, metrics.wandb, name or run_dir.name, config or {}))
    return trackers
