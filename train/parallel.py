"""Process-group setup and model wrapping for data parallelism (DDP or FSDP2), CPU or CUDA.

Why: the loop should not care how it is parallelised. It asks for a `Dist` (rank, world, device),
wraps the model once, and uses `grad_sync` around micro-steps; gloo on CPU makes the same code
testable with two processes on a laptop, nccl is used when CUDA is present.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

try:  # public since torch 2.6
    from torch.distributed.fsdp import FSDPModule, fully_shard
except ImportError:  # pragma: no cover - older torch
    from torch.distributed._composable.fsdp import FSDPModule, fully_shard


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def init_distributed(parallel: str) -> Dist:
    """Join the torchrun process group when launched by torchrun; otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1:
        if parallel == "none":
            raise ValueError(f"launched with WORLD_SIZE={world} but parallel=none; set parallel=ddp or fsdp")
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo", device_id=device if cuda else None)
    elif parallel != "none":
        warnings.warn(f"parallel={parallel} but not launched by torchrun (WORLD_SIZE=1): running unwrapped",
                      stacklevel=2)
    return Dist(rank=rank, world_size=world, local_rank=local_rank, device=device)


def wrap_model(model: torch.nn.Module, parallel: str, d: Dist) -> torch.nn.Module:
    """DDP, or FSDP2 (each transformer block sharded, then the root), or the model itself."""
    if not d.distributed or parallel == "none":
        return model
    if parallel == "ddp":
        return DistributedDataParallel(model, device_ids=[d.local_rank] if d.device.type == "cuda" else None)
    for block in model.layers:
        fully_shard(block)
    fully_shard(model)
    return model


@contextlib.contextmanager
def grad_sync(model: torch.nn.Module, sync: bool):
    """Skip the gradient all-reduce on accumulation micro-steps; sync on the last one."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(sync)
        yield
    elif isinstance(model, DistributedDataParallel) and not sync:
        with model.no_sync():
            yield
    else:
        yield


def all_reduce_sum(values: list[float], d: Dist) -> list[float]:
    """Sum floats over ranks in float64 (identity without a process group)."""
    if not d.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(d: Dist) -> None:
    if d.distributed:
        dist.barrier()


def shutdown(d: Dist) -> None:
    if d.distributed:
        dist.destroy_process_group()


def as_float(x) -> float:
    """A scalar tensor (or DTensor, as clip_grad_norm_ returns under FSDP2) as a python float."""
    if hasattr(x, "full_tensor"):
        x = x.full_tensor()
    return float(x)
