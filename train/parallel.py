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
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

try:  # public since torch 2.6
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
except ImportError:  # pragma: no cover - older torch
    from torch.distributed._composable.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

# Long enough for rank 0 to write a full (unsharded) checkpoint while the other ranks wait in the
# barrier after it: a 7B model with AdamW state is ~80 GB, >10 min at 100 MB/s, past NCCL's default.
DEFAULT_TIMEOUT_S = 1800.0


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


def launched_by_torchrun(env: dict | None = None) -> bool:
    """torchrun (torch.distributed.run) set this process up, also with a single process per job."""
    env = os.environ if env is None else env
    if int(env.get("WORLD_SIZE", "1")) > 1 or "TORCHELASTIC_RUN_ID" in env:
        return True
    return all(k in env for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def init_distributed(parallel: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Dist:
    """Join the torchrun process group when launched by torchrun; otherwise a single process.

    The group is started whenever torchrun launched the job and parallel is ddp/fsdp, one process
    included: `--nproc-per-node 1` then runs the real DDP/FSDP2 (NCCL, DTensor) code rather than
    a silently unwrapped model. `timeout_s` bounds every collective (the barrier after rank 0's
    checkpoint write included)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and parallel == "none":
        raise ValueError(f"launched with WORLD_SIZE={world} but parallel=none; set parallel=ddp or fsdp")
    if parallel != "none" and launched_by_torchrun():
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo", device_id=device if cuda else None,
                                    timeout=timedelta(seconds=timeout_s))
    elif parallel != "none":
        warnings.warn(f"parallel={parallel} but not launched by torchrun: running unwrapped", stacklevel=2)
    return Dist(rank=rank, world_size=world, local_rank=local_rank, device=device)


def mixed_precision(param_dtype: torch.dtype | None) -> MixedPrecisionPolicy:
    """FSDP2 policy: gather parameters and run the blocks in `param_dtype` (bf16 on GPU), reduce gradients
    in fp32. Forward inputs are not cast: the rotary cos/sin tables passed into every block must stay
    fp32 (FSDP's default `cast_forward_inputs=True` would make them bf16, which torch.complex rejects in
    eager and which loses rotary precision under compile). None: everything in fp32."""
    if param_dtype is None or param_dtype == torch.float32:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32, cast_forward_inputs=False)


def wrap_model(model: torch.nn.Module, parallel: str, d: Dist, param_dtype: torch.dtype | None = None,
               compile_blocks: bool = False, compile_backend: str = "inductor") -> torch.nn.Module:
    """DDP, or FSDP2 (each transformer block sharded, then the root), or the model itself.

    FSDP2 runs under `mixed_precision(param_dtype)`. With compile_blocks (FSDP2 only) each block is
    compiled on its own before it is sharded, as torchtitan does: FSDP's hooks then sit outside the
    compiled graphs (compiling the whole sharded model breaks the graph at every block's hooks and runs
    the top level eagerly), and identical blocks share one compiled graph. Parameter names gain an
    `_orig_mod.` that the checkpoint code (torch.distributed.checkpoint.state_dict) strips."""
    if not d.distributed or parallel == "none":
        return model
    if parallel == "ddp":
        return DistributedDataParallel(model, device_ids=[d.local_rank] if d.device.type == "cuda" else None)
    mp = mixed_precision(param_dtype)
    for i, block in enumerate(model.layers):
        if compile_blocks:
            block = torch.compile(block, backend=compile_backend, fullgraph=True)
            model.layers[i] = block
        fully_shard(block, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    return model


def describe_wrapping(model: torch.nn.Module, param_dtype: torch.dtype | None = None) -> str:
    """One phrase for the run's first line: how the model is really wrapped (not what was asked for)."""
    if isinstance(model, DistributedDataParallel):
        return "DDP"
    if not isinstance(model, FSDPModule):
        return "unwrapped"
    units = sum(isinstance(m, FSDPModule) for m in model.modules())
    dtensors = all(hasattr(p, "full_tensor") for p in model.parameters())
    compiled = sum(isinstance(m, torch._dynamo.eval_frame.OptimizedModule) for m in model.modules())
    dtype = str(param_dtype or torch.float32).replace("torch.", "")
    return (f"FSDP2, {units} units, {'DTensor' if dtensors else 'plain'} params, {dtype} compute / float32 "
            f"reduce" + (f", {compiled} blocks compiled" if compiled else ""))


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


def all_reduce_min(value: int, d: Dist) -> int:
    """Smallest integer over ranks (identity without a process group)."""
    if not d.distributed:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


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
