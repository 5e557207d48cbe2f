"""The GPU code paths of the trainer, checked on a CPU (issue 18).

FSDP2 runs here in one process over gloo (a world-1 process group from a file store): bf16 mixed
precision (gathers in bf16, fp32 gradients and reductions, rotary tables left in fp32), per-block
compilation before sharding (aot_eager backend: no C++ code generation), and checkpoints of a compiled,
sharded model that load into a plain one. Also the small GPU-only decisions that can be taken on a CPU:
torchrun detection, fused AdamW only on CUDA, the peak-FLOP/s table, loss chunk sizes, the compile
toolchain check, and memory-mapped resume.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

import model.toolchain as toolchain
import train.checkpoint as checkpoint
from model.config import get_config
from model.llama import Llama
from model.loss import default_chunk_rows
from model.recompute import apply_activation_checkpointing
from train.config import OptimConfig
from train.metrics import device_peak_flops
from train.optim import build_optimizer, use_fused
from train.parallel import (DEFAULT_TIMEOUT_S, Dist, describe_wrapping, launched_by_torchrun, mixed_precision,
                            wrap_model)
from train_support import REPO, child_env

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CFG = dict(dim=64, n_heads=4, n_kv_heads=2, n_layers=2, vocab_size=256, max_seq_len=32, multiple_of=16)


@pytest.fixture
def world_of_one(tmp_path):
    """A gloo process group of one rank in this process; destroyed afterwards so that no other test
    sees an initialised group (the loop wraps models whenever one exists)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield Dist(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    finally:
        dist.destroy_process_group()
        torch._dynamo.reset()


def batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, CFG["vocab_size"], (2, CFG["max_seq_len"]), generator=g)
    return x, torch.roll(x, -1, dims=1)


def pair():
    """Two models with the same weights: a plain reference and one to wrap."""
    torch.manual_seed(0)
    ref = Llama(get_config("tiny", **CFG))
    other = Llama(get_config("tiny", **CFG))
    other.load_state_dict(ref.state_dict())
    return ref, other


def test_torchrun_is_detected_with_one_process_too():
    torchrun_one = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "x"}
    assert launched_by_torchrun(torchrun_one)
    assert launched_by_torchrun({k: v for k, v in torchrun_one.items() if k != "TORCHELASTIC_RUN_ID"})
    assert launched_by_torchrun({"WORLD_SIZE": "2"})
    assert not launched_by_torchrun({})
    assert not launched_by_torchrun({"LOCAL_RANK": "0"})  # a stray variable is not a torchrun launch
    assert DEFAULT_TIMEOUT_S >= 1800  # generous enough for rank 0 writing a full checkpoint


def test_mixed_precision_policy_keeps_forward_inputs_in_fp32():
    mp = mixed_precision(torch.bfloat16)
    assert (mp.param_dtype, mp.reduce_dtype, mp.cast_forward_inputs) == (torch.bfloat16, torch.float32, False)
    plain = mixed_precision(None)
    assert plain.param_dtype is None and plain.reduce_dtype is None
    assert mixed_precision(torch.float32) == plain


def test_fsdp2_bf16_mixed_precision_trains_with_fp32_rotary_tables(world_of_one):
    ref, model = pair()
    x, y = batch()
    _, ref_loss = ref(x, y)
    ref_loss.backward()
    model = wrap_model(model, "fsdp", world_of_one, param_dtype=torch.bfloat16)
    assert "FSDP2, 3 units, DTensor params, bfloat16 compute" in describe_wrapping(model, torch.bfloat16)
    seen = []
    model.layers[0].attention.register_forward_pre_hook(lambda m, args: seen.append((args[0].dtype, args[1].dtype)))
    _, loss = model(x, y)
    loss.backward()
    assert seen == [(torch.bfloat16, torch.float32)]  # activations in bf16, cos/sin not cast
    assert torch.isfinite(loss) and loss.item() == pytest.approx(ref_loss.item(), rel=2e-2)
    for (name, p), r in zip(model.named_parameters(), ref.parameters()):
        assert p.dtype == torch.float32 and p.grad.dtype == torch.float32, name  # fp32 master weights and grads
        grad = p.grad.full_tensor()
        assert torch.isfinite(grad).all()
        assert torch.nn.functional.cosine_similarity(grad.flatten(), r.grad.flatten(), dim=0) > 0.98, name


def test_fsdp2_compiles_each_block_before_sharding(world_of_one):
    ref, model = pair()
    for m in (ref, model):
        apply_activation_checkpointing(m, "selective")
    x, y = batch()
    _, ref_loss = ref(x, y)
    ref_loss.backward()
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    model = wrap_model(model, "fsdp", world_of_one, compile_blocks=True, compile_backend="aot_eager")
    optimized = torch._dynamo.eval_frame.OptimizedModule
    assert all(isinstance(b, optimized) for b in model.layers) and not isinstance(model, optimized)
    assert "2 blocks compiled" in describe_wrapping(model)
    _, loss = model(x, y)
    loss.backward()
    assert not torch._dynamo.utils.counters["graph_break"]  # each block is one graph (fullgraph=True)
    torch.testing.assert_close(loss, ref_loss)
    for p, r in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad.full_tensor(), r.grad, atol=1e-6, rtol=1e-5)
    # a compiled, sharded model's checkpoint has the plain names and loads into an unwrapped model
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    assert set(state) == set(ref.state_dict())
    fresh = Llama(get_config("tiny", **CFG))
    fresh.load_state_dict(state, strict=True)
    torch.testing.assert_close(fresh(x, y)[1], ref_loss)


def test_adamw_is_fused_on_cuda_only():
    model = Llama(get_config("tiny", **CFG))
    assert not use_fused(model)
    assert not build_optimizer(model, OptimConfig()).defaults["fused"]
    assert build_optimizer(model, OptimConfig(), fused=True).defaults["fused"]  # the switch reaches AdamW
    with torch.device("meta"):
        assert not use_fused(Llama(get_config("tiny", **CFG)))


def test_peak_flops_table_knows_both_h200_parts(monkeypatch):
    for name, peak in (("NVIDIA H200", 989e12), ("NVIDIA H200 NVL", 835e12), ("NVIDIA H100 80GB HBM3", 989e12),
                       ("NVIDIA H100 NVL", 835e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("Some GPU", None)):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device, name=name: name)
        assert device_peak_flops(torch.device("cuda")) == (name, peak)
    assert device_peak_flops(torch.device("cpu")) == ("cpu", None)


@pytest.mark.parametrize("vocab", [256, 512, 4000, 32000, 50257, 128256])
def test_loss_chunks_are_multiples_of_128_rows(vocab):
    for device in ("cpu", "cuda"):
        rows = default_chunk_rows(vocab, device)
        assert rows % 128 == 0 and rows >= 256
    assert default_chunk_rows(32000, "cuda") == 2048


def test_compile_toolchain_check(monkeypatch, tmp_path):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    assert "C++ compiler" in toolchain.compile_unavailable("cpu")
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(toolchain.sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    assert "Python.h" in toolchain.compile_unavailable("cpu")
    (tmp_path / "Python.h").write_text("")
    assert toolchain.compile_unavailable("cpu") is None
    monkeypatch.setattr(toolchain.importlib.util, "find_spec", lambda name: None)
    assert "triton" in toolchain.compile_unavailable("cuda")


def test_bench_falls_back_to_eager_without_a_compiler(tmp_path):
    env = dict(child_env(), CXX=str(tmp_path / "no-such-compiler"))
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "bench/train_gpu.py", "--device", "cpu", "--config", "tiny", "--vocab",
                           "256", "--seq", "32", "--batch", "1", "--steps", "1", "--warmup", "1", "--dtype", "fp32",
                           "--json", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("compile: off, running eager (no C++ compiler") == 1
    import json
    result = json.loads(out.read_text())
    assert result["compile_requested"] and not result["compiled"] and result["tokens_per_s"] > 0
    assert result["mfu"] is None  # no peak FLOP/s for a CPU


def test_resume_reads_memory_mapped_and_keeps_no_alias_of_the_file(tmp_path, monkeypatch):
    torch.manual_seed(0)
    cfg = get_config("tiny", **CFG)
    model = Llama(cfg)
    opt = build_optimizer(model, OptimConfig())
    x, y = batch()
    model(x, y)[1].backward()
    opt.step()
    d = Dist(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    ckpt = checkpoint.save_checkpoint(tmp_path, 1, model, opt, cfg, {"loader": {}}, {}, d, keep_last=1)
    mapped = set()
    real_load = checkpoint._load

    def spy(path):  # the storages of every tensor read from the memory-mapped files
        loaded = real_load(path)
        mapped.update(checkpoint._storages(loaded) - {0})
        return loaded

    monkeypatch.setattr(checkpoint, "_load", spy)
    fresh = Llama(cfg)
    fresh_opt = build_optimizer(fresh, OptimConfig())
    checkpoint.load_checkpoint(ckpt, fresh, fresh_opt)
    assert mapped
    state = [t for s in fresh_opt.state.values() for t in s.values() if torch.is_tensor(t)]
    assert state and not any(t.untyped_storage().data_ptr() in mapped for t in state)
    assert not any(p.untyped_storage().data_ptr() in mapped for p in fresh.parameters())
    for a, b in zip(opt.state.values(), fresh_opt.state.values()):
        torch.testing.assert_close(a["exp_avg_sq"], b["exp_avg_sq"], rtol=0, atol=0)
