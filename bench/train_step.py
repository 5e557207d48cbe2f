"""Training-step throughput on CPU: our Llama vs transformers' LlamaForCausalLM, same run, same machine.

Both models get identical dimensions, batch, dtype, optimizer (AdamW, LLaMA hyper-parameters) and thread
count; each timed round runs a few fwd+bwd+AdamW steps of one model, rounds alternate between the two so
that background load hits both alike. Reported: tokens per wall-second (best and median round) and tokens
per CPU-second of this process (median round), the figure least disturbed by other processes on a shared
machine when --threads 1.

    nice python bench/train_step.py [--dim 256 --layers 4 --heads 8 --vocab 8000 --seq 256 --batch 8
                                     --threads 2 --rounds 6 --steps 3 --bf16]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where sibling scripts could shadow stdlib modules
# (e.g. a bench/tokenize.py); import from the repository root instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from model.config import ModelConfig  # noqa: E402
from model.llama import Llama  # noqa: E402


def hf_model(cfg: ModelConfig) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_cfg = LlamaConfig(hidden_size=cfg.dim, intermediate_size=cfg.hidden_dim, num_hidden_layers=cfg.n_layers,
                         num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.kv_heads, vocab_size=cfg.vocab_size,
                         max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps, tie_word_embeddings=False)
    return LlamaForCausalLM._from_config(hf_cfg, attn_implementation="sdpa")


def step_fn(model: torch.nn.Module, hf: bool, bf16: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)

    def step(x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=x, labels=y).loss if hf else model(x, y)[1]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3, help="steps per timed round")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (default fp32)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ModelConfig(dim=args.dim, n_layers=args.layers, n_heads=args.heads, vocab_size=args.vocab,
                      max_seq_len=args.seq)
    ours = Llama(cfg)
    theirs = hf_model(cfg)
    n_ours = ours.num_params()
    n_theirs = sum(p.numel() for p in theirs.parameters())
    assert n_ours == n_theirs, (n_ours, n_theirs)
    x = torch.randint(0, args.vocab, (args.batch, args.seq))
    # ours shifts nothing (targets given aligned); HF shifts labels internally -> give it the same next-token task
    y = torch.roll(x, -1, dims=1)
    y_hf = x.clone()
    steps = {"ours": (step_fn(ours, False, args.bf16), (x, y)), "transformers": (step_fn(theirs, True, args.bf16), (x, y_hf))}
    for fn, batch in steps.values():  # warm-up (allocator, first-call overheads)
        fn(*batch)
    wall: dict[str, list[float]] = {k: [] for k in steps}
    cpu: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, (fn, batch) in steps.items():
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                fn(*batch)
            wall[name].append((time.perf_counter() - w0) / args.steps)
            cpu[name].append((time.process_time() - c0) / args.steps)
    tokens = args.batch * args.seq
    rate = {  # tokens per second of wall time (best round, median round) and per CPU-second (median round)
        "wall best": {k: tokens / min(v) for k, v in wall.items()},
        "wall median": {k: tokens / statistics.median(v) for k, v in wall.items()},
        "per CPU-s": {k: tokens / statistics.median(v) for k, v in cpu.items()},
    }
    dtype = "bf16 autocast" if args.bf16 else "fp32"
    print(f"machine: {platform.machine()} {platform.processor() or ''} cores={os.cpu_count()} "
          f"load={os.getloadavg()[0]:.1f} threads={args.threads} torch={torch.__version__}")
    print(f"model: dim={args.dim} layers={args.layers} heads={args.heads} vocab={args.vocab} params={n_ours/1e6:.2f}M; "
          f"batch {args.batch}x{args.seq}, {dtype}, AdamW; {args.rounds} rounds x {args.steps} steps")
    print(f"{'tokens/s':>13} " + " ".join(f"{k:>12}" for k in rate))
    for name in steps:
        print(f"{name:>13} " + " ".join(f"{r[name]:12.0f}" for r in rate.values()))
    print(f"{'ratio':>13} " + " ".join(f"{r['ours'] / r['transformers']:11.2f}x" for r in rate.values()))

if __name__ == "__main__":
    main()
