"""Training-loop overhead on CPU: `train.loop.train` vs a bare fwd+bwd+AdamW loop, same run, same machine.

Both use the same model shape, batch, thread count and optimiser; the bare loop feeds pre-built random
batches, the real loop draws windows from token shards through the mixture loader, accumulates, clips,
sets the LR and logs metrics.jsonl. Rounds alternate between the two so background load hits both
alike; the median steady-state step (first step of each round dropped) is reported, plus the mixture
loader's own draw rate.

    nice python bench/train_loop.py [--rounds 3 --steps 6 --threads 1]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # import from the repo root, not bench/

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from model.llama import Llama  # noqa: E402
from train.config import config_from_dict  # noqa: E402
from train.loop import model_config, train  # noqa: E402
from train.mixture import MixtureExhausted, MixtureLoader  # noqa: E402
from train.optim import build_optimizer  # noqa: E402
from train.synthetic import build  # noqa: E402


def bare_round(cfg, vocab: int, steps: int) -> list[float]:
    torch.manual_seed(0)
    model = Llama(model_config(cfg, vocab))
    opt = build_optimizer(model, cfg.optim)
    accum = cfg.grad_accum(1)
    batches = [torch.randint(0, vocab, (cfg.batch.micro_batch, cfg.data.seq_len + 1)) for _ in range(accum)]
    rates = []
    for _ in range(steps):
        t0 = time.time()
        for b in batches:
            _, loss = model(b[:, :-1], b[:, 1:])
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        rates.append(cfg.batch.tokens_per_step / (time.time() - t0))
    return rates[1:]


def loop_round(raw: dict, out: Path, steps: int) -> list[float]:
    cfg = config_from_dict({**raw, "out_dir": str(out), "max_steps": steps})
    train(cfg)
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["tokens_per_s"] for r in recs if "loss" in r][1:]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    corpus = build(tmp / "corpus", vocab_size=4000, max_bytes=3_000_000)
    raw = {"run": "bench", "model": {"name": "tiny"}, "threads": args.threads,
           "data": {"tokens_dir": corpus["tokens_dir"], "manifest": corpus["manifest"],
                    "tokenizer": corpus["tokenizer"], "seq_len": 256, "eval_fraction": 0.02},
           "batch": {"micro_batch": 8, "tokens_per_step": 4096}, "optim": {"lr": 2e-3, "warmup_steps": 10},
           "eval_every": 0, "ckpt_every": 0}
    cfg = config_from_dict({**raw, "out_dir": str(tmp / "x")})
    bare, loop = [], []
    for r in range(args.rounds):
        bare += bare_round(cfg, 4000, args.steps)
        loop += loop_round(raw, tmp / f"run{r}", args.steps)
    loader = MixtureLoader(corpus["tokens_dir"], corpus["manifest"], 256, 0.02, seed=1)
    t0, n = time.time(), 0
    fresh = loader.state_dict()
    while time.time() - t0 < 2.0:
        try:
            loader.next_batch(64)
        except MixtureExhausted:  # small corpus: start the stream over
            loader.load_state_dict(fresh)
        n += 64
    draws = n / (time.time() - t0)
    b, l = statistics.median(bare), statistics.median(loop)
    print(f"machine: {platform.machine()} {platform.processor() or ''} torch {torch.__version__}, "
          f"{args.threads} thread(s), model tiny (vocab 4000), micro 8 x seq 256 x accum 2")
    print(f"bare fwd+bwd+AdamW loop : {b:8.0f} tokens/s (median of {len(bare)} steps)")
    print(f"train.loop (real loader): {l:8.0f} tokens/s (median of {len(loop)} steps)")
    print(f"ratio loop / bare       : {l / b:.3f}")
    print(f"mixture loader alone    : {draws:8.0f} windows/s = {draws * 256 / 1e6:.1f}M tokens/s")


if __name__ == "__main__":
    main()
