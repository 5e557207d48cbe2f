"""Single-GPU training throughput and MFU of the ~1B LLaMA (bf16 autocast, torch.compile, random tokens).

Self-contained apart from the repository's model/ package (which needs only torch) and train.metrics'
table of peak FLOP/s: no data pipeline, no network, no tokenizer. MFU = model FLOPs per token
(Llama.flops_per_token: 6N + attention) x tokens/s / peak; the peak is train.metrics.device_peak_flops
for the device (H100/H200 SXM 989, H200 NVL 835 TFLOP/s dense bf16) unless --peak-tflops is given.
Compilation is checked first (model.toolchain: a C compiler and Python.h): without them the run falls
back to eager and says so in one line, instead of dying after the model is built.

    python bench/train_gpu.py [--config 1b --seq 2048 --batch 8 --steps 30 --warmup 8 --ac none|selective|full
                               --no-compile --peak-tflops 989 --json out.json]
    python bench/train_gpu.py --device cpu --config tiny --seq 128 --batch 2 --steps 2 --warmup 1 --no-compile
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # import model/ from the repo, not sibling scripts

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from model.recompute import apply_activation_checkpointing  # noqa: E402
from model.config import get_config  # noqa: E402
from model.llama import Llama  # noqa: E402
from model.toolchain import compile_unavailable  # noqa: E402
from train.metrics import device_peak_flops  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="1b")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--steps", type=int, default=30, help="timed steps")
    ap.add_argument("--warmup", type=int, default=8, help="untimed steps (compilation happens here)")
    ap.add_argument("--ac", choices=("none", "selective", "full"), default="none", help="activation checkpointing")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="dense peak of the device (default: train.metrics.device_peak_flops; H100 SXM bf16: 989)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device visible (use --device cpu for a smoke run)", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cfg = get_config(args.config, vocab_size=args.vocab, max_seq_len=args.seq)
    with torch.device(device):
        model = Llama(cfg)
    apply_activation_checkpointing(model, args.ac)
    compiled = not args.no_compile
    if compiled and (why := compile_unavailable(device)):
        print(f"compile: off, running eager ({why})", flush=True)
        compiled = False
    step_model = torch.compile(model) if compiled else model
    fused = device.type in ("cuda", "cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=fused)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")

    def step(x, y) -> torch.Tensor:
        with amp:
            _, loss = step_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    def batch():
        tokens = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1), device=device)
        return tokens[:, :-1], tokens[:, 1:]

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        loss = step(*batch())
    sync()
    warm_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step(*batch())
    sync()
    dt = time.perf_counter() - t0

    tokens_per_s = args.batch * args.seq * args.steps / dt
    flops = model.flops_per_token(args.seq)
    name, table_peak = device_peak_flops(device)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else table_peak
    mfu = flops * tokens_per_s / peak if peak else None
    if device.type != "cuda":
        name = platform.processor() or "cpu"
    peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    print(f"device: {name}; torch {torch.__version__}; python {platform.python_version()}")
    print(f"model: {args.config} {model.num_params() / 1e9:.3f}B params (dim {cfg.dim}, {cfg.n_layers} layers, "
          f"{cfg.n_heads} heads, vocab {cfg.vocab_size}); batch {args.batch}x{args.seq}; {args.dtype}; "
          f"compile={compiled}; fused AdamW={fused}; activation checkpointing={args.ac}")
    print(f"warm-up: {args.warmup} steps in {warm_s:.1f}s; final loss {float(loss):.3f}")
    print(f"throughput: {tokens_per_s:,.0f} tokens/s ({dt / args.steps * 1e3:.0f} ms/step)")
    print(f"model FLOPs/token: {flops / 1e9:.2f} GFLOP; MFU: "
          + (f"{100 * mfu:.1f}% of {peak / 1e12:g} TFLOP/s" if mfu is not None else "n/a (no peak FLOP/s known)"))
    if peak_mem is not None:
        print(f"peak memory: {peak_mem:.1f} GiB")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": name, "torch": torch.__version__, "config": args.config, "params": model.num_params(),
            "batch": args.batch, "seq": args.seq, "dtype": args.dtype, "compile_requested": not args.no_compile,
            "compiled": compiled, "fused_adamw": fused, "ac": args.ac, "warmup_steps": args.warmup,
            "warmup_s": warm_s, "steps": args.steps, "ms_per_step": dt / args.steps * 1e3,
            "tokens_per_s": tokens_per_s, "flops_per_token": flops, "peak_flops": peak, "mfu": mfu,
            "peak_mem_gib": peak_mem, "final_loss": float(loss)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
