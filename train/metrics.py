"""Run logging: metrics.jsonl (one record per step / evaluation), MFU, memory; TensorBoard / W&B mirrors.

Why JSON lines: appendable while training, trivially parsed by tests and plots, and truncatable to
the resumed step so a killed-and-resumed run's log has no duplicated or orphaned steps.
"""
from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Callable

import torch

from storage.atomic import atomic_write_text
from train.config import MetricsConfig
from train.trackers import open_trackers, scalars

# Dense bf16 tensor-core peak FLOP/s per device (vendor datasheets). MFU is reported against these.
PEAK_FLOPS_BF16 = {
    "H200 NVL": 835e12, "H200 SXM": 989e12, "H200": 989e12,  # torch names the SXM part plainly "NVIDIA H200"
    "H100 SXM": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12,
    "GH200": 989e12,
    "A100": 312e12,
    "L40S": 362e12, "L4": 121e12, "A10G": 70e12, "A10": 125e12,
    "V100": 125e12,  # fp16 tensor cores (no bf16)
}


def device_peak_flops(device: torch.device) -> tuple[str, float | None]:
    """(device name, peak FLOP/s or None when unknown, e.g. on CPU where no datasheet figure applies)."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_FLOPS_BF16, key=len, reverse=True):  # most specific name first
        if key in name:
            return name, PEAK_FLOPS_BF16[key]
    return name, None


def memory_mb(device: torch.device) -> float:
    """Peak allocated accelerator memory, or this process's peak RSS on CPU, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def truncate_log(path: Path, keep_through_step: int) -> None:
    """Keep only whole records with step <= keep_through_step (written atomically)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if isinstance(rec, dict) and rec.get("step", -1) <= keep_through_step:
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


class MetricsLog:
    """Appends records to metrics.jsonl and mirrors them to TensorBoard / W&B (train/trackers.py), on the
    main rank only. ``mixture`` (the loader's ``realised``) adds the realised mixture shares to each
    evaluation record."""

    def __init__(self, run_dir: str | Path, enabled: bool, resume_step: int | None, cfg=None,
                 mixture: Callable[[], dict] | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.mixture = mixture
        self.file = None
        self.trackers: list = []
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.unlink(missing_ok=True)
        else:
            truncate_log(self.path, resume_step)
        self.file = self.path.open("a")
        settings = cfg.metrics if cfg is not None else MetricsConfig()
        self.trackers = open_trackers(run_dir, settings, resume_step, name=cfg.run if cfg is not None else "",
                                      config=cfg.to_dict() if cfg is not None else None)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        if "eval" in record and self.mixture is not None:
            record = {**record, "mixture": {n: m["share"] for n, m in self.mixture().items()}}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.trackers:
            values = scalars(record)
            for tracker in self.trackers:
                tracker.log(record.get("step", 0), values)

    def close(self) -> None:
        if self.file:
            self.file.close()
            self.file = None
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
