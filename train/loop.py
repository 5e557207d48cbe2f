"""The training loop: build, (resume), step, evaluate, checkpoint, summarise.

Why one function: like nanoGPT, the whole life of a run reads top to bottom in `train()`; model
definition, parallel wrapping, checkpoint I/O, the data mixture and logging live in their own modules
(torchtitan's separation) so this file only sequences them.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import torch

try:  # progress bar when available; the loop does not depend on it
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

from model.recompute import apply_activation_checkpointing
from model.config import ModelConfig, get_config
from model.llama import Llama
from model.toolchain import compile_unavailable
from storage.atomic import atomic_write_text
from storage.checksum import sha256_file
from tokenizer.spm import TokenizerError, load_tokenizer
from train.checkpoint import latest_checkpoint, load_checkpoint, remove_partial, save_checkpoint
from train.config import ConfigError, TrainConfig
from train.eval import evaluate_heldout
from train.metrics import MetricsLog, device_peak_flops, memory_mb, read_metrics
from train.mixture import MixtureExhausted, MixtureLoader
from train.optim import build_optimizer, lr_at, set_lr
from train.parallel import (all_reduce_min, all_reduce_sum, as_float, describe_wrapping, grad_sync, init_distributed,
                            shutdown, wrap_model)


def tokenizer_vocab(path: str) -> tuple[int, str]:
    """(vocab size, sha256) of the SentencePiece model the token shards were made with."""
    try:
        sp = load_tokenizer(path)
    except TokenizerError as e:
        raise ConfigError(f"{e} (build it first, or set data.tokenizer=...)") from None
    return sp.vocab_size(), sha256_file(path)


def check_shards(loader: MixtureLoader, vocab_size: int, tokenizer_sha: str) -> None:
    """Refuse token shards written with another tokenizer: the model would learn garbage ids."""
    for name, sw in loader.windows.items():
        for shard in sw.stream.shards:
            vs, sha = shard.meta.get("vocab_size"), shard.meta.get("tokenizer_sha256")
            if vs is not None and int(vs) != vocab_size:
                raise ConfigError(f"{shard.path}: written for vocab {vs}, tokenizer has {vocab_size}")
            if sha and sha != tokenizer_sha:
                raise ConfigError(f"{shard.path}: tokenizer_sha256 {sha[:12]}… differs from the configured "
                                  f"tokenizer ({tokenizer_sha[:12]}…)")


def model_config(cfg: TrainConfig, vocab_size: int) -> ModelConfig:
    overrides = {k: v for k, v in cfg.model.items() if k != "name"}
    overrides.setdefault("max_seq_len", cfg.data.seq_len)
    return get_config(cfg.model["name"], vocab_size=vocab_size, **overrides)


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Run (or continue) training as configured; returns the summary (also written to summary.json)."""
    d = init_distributed(cfg.parallel, cfg.dist_timeout_s)
    try:
        return _train(cfg, resume, d)
    finally:
        shutdown(d)


def _train(cfg: TrainConfig, resume: bool, d) -> dict:
    t_start, cpu_start = time.time(), time.process_time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    run_dir = Path(cfg.out_dir)
    accum = cfg.grad_accum(d.world_size)
    vocab_size, tok_sha = tokenizer_vocab(cfg.data.tokenizer)

    loader = MixtureLoader(cfg.data.tokens_dir, cfg.data.manifest, cfg.data.seq_len, cfg.data.eval_fraction,
                           seed=cfg.seed, rank=d.rank, world_size=d.world_size, pin_memory=d.device.type == "cuda")
    check_shards(loader, vocab_size, tok_sha)

    mcfg = model_config(cfg, vocab_size)
    model = Llama(mcfg).to(d.device)
    n_params, flops_per_token = model.num_params(), model.flops_per_token(cfg.data.seq_len)
    if cfg.activation_checkpointing != "none":
        apply_activation_checkpointing(model, cfg.activation_checkpointing)
    use_bf16 = d.device.type == "cuda" and cfg.dtype == "bf16"  # CPU always runs fp32
    fsdp = cfg.parallel == "fsdp" and d.distributed
    compile_model = cfg.compile
    if compile_model and (why := compile_unavailable(d.device)):
        compile_model = False
        if d.is_main:
            print(f"train: compile=true but {why}: running eager", flush=True)
    # FSDP2: blocks compiled one by one before sharding, and bf16 through its mixed-precision policy
    # (parameters gathered in bf16, gradients reduced in fp32), so no autocast re-casting the weights at
    # every forward. Otherwise the whole model is compiled and autocast runs the matmuls in bf16.
    param_dtype = torch.bfloat16 if use_bf16 and fsdp else None
    model = wrap_model(model, cfg.parallel, d, param_dtype=param_dtype, compile_blocks=compile_model and fsdp)
    raw_model = model.module if hasattr(model, "module") else model  # DDP keeps the module inside
    optimizer = build_optimizer(raw_model, cfg.optim)  # fused on CUDA
    step_fn = torch.compile(model) if compile_model and not fsdp else model
    autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 and param_dtype is None
                else contextlib.nullcontext)

    start_step, elapsed_before, cpu_before, tokens_seen = 0, 0.0, 0.0, 0
    if d.is_main:
        remove_partial(run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None and not resume:
        raise ConfigError(f"{run_dir} already holds checkpoints (latest {ckpt.name}); pass --resume to "
                          f"continue it or set run=/out_dir= to start a new run")
    if ckpt is not None:
        state = load_checkpoint(ckpt, raw_model, optimizer)
        loader.load_state_dict(state["loader"])
        start_step, elapsed_before, tokens_seen = state["step"], state["elapsed_s"], state["tokens"]
        cpu_before = state.get("cpu_s", 0.0)
    log = MetricsLog(run_dir, d.is_main, resume_step=start_step if ckpt is not None else None, cfg=cfg,
                     mixture=loader.realised)
    device_name, peak = device_peak_flops(d.device)
    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        print(f"train: {cfg.run} | {n_params / 1e6:.2f}M params | vocab {vocab_size} | world {d.world_size} "
              f"({cfg.parallel}) on {device_name} [{describe_wrapping(model, param_dtype)}] | "
              f"{cfg.batch.tokens_per_step} tokens/step "
              f"(micro {cfg.batch.micro_batch} x seq {cfg.data.seq_len} x accum {accum}) | "
              f"{'resuming at step ' + str(start_step) if ckpt else 'fresh start'}", flush=True)

    def checkpoint(step: int) -> None:
        save_checkpoint(run_dir, step, raw_model, optimizer, mcfg,
                        {"loader": loader.state_dict(), "tokens": tokens_seen,
                         "scheduler": {"name": "warmup_cosine", "next_lr": lr_at(step, cfg.optim, cfg.max_steps)},
                         "elapsed_s": elapsed_before + time.time() - t_start,
                         "cpu_s": cpu_before + time.process_time() - cpu_start},
                        cfg.to_dict(), d, cfg.keep_last)

    def evaluate(step: int) -> dict:
        losses = evaluate_heldout(model, loader, cfg.batch.micro_batch, cfg.eval_tokens, d, autocast)
        log.write({"step": step, "eval": losses})
        return losses

    step, stop_reason, last_eval, last_eval_step = start_step, "max_steps", {}, None
    last_ckpt = start_step if ckpt else None
    # The host reads device scalars (loss, grad norm) only on "sync" steps: logging, evaluation and
    # checkpoint steps, the first step and the last. In between, a GPU step is queued without waiting
    # for the previous one. Divergence is still caught at every step: a device-side tensor keeps the
    # first step whose loss was non-finite, read (min over ranks) on sync steps, before any evaluation
    # or checkpoint, so a checkpoint never holds diverged weights. tokens/s is measured over the steps
    # since the previous sync. With log_every=1 (the tests) every step is a sync step, as before.
    never = cfg.max_steps + 1
    first_bad = torch.full((), never, dtype=torch.int64, device=d.device)
    step_loss, grad_norm, tps, mfu = float("nan"), float("nan"), 0.0, None
    last_sync, window_tokens, window_s = start_step, 0, 0.0
    bar = _progress(cfg, start_step, d.is_main)
    model.train()
    while step < cfg.max_steps:
        try:
            loader.plan_sources(accum * cfg.batch.micro_batch * d.world_size)  # whole step available, or stop now
        except MixtureExhausted as e:
            stop_reason = f"data exhausted: {e}"
            break
        t0 = time.time()
        lr = lr_at(step, cfg.optim, cfg.max_steps)
        set_lr(optimizer, lr)
        loss_sum = torch.zeros((), device=d.device)
        for micro in range(accum):
            x, y = loader.next_batch(cfg.batch.micro_batch)  # pinned on CUDA: the copies below are asynchronous
            with grad_sync(model, sync=micro == accum - 1), autocast():
                _, loss = step_fn(x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True))
                (loss / accum).backward()
            loss_sum += loss.detach()
        grad_norm_t = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        first_bad = torch.minimum(first_bad, torch.where(torch.isfinite(loss_sum), never, step))
        tokens_seen += cfg.batch.tokens_per_step
        window_tokens += cfg.batch.tokens_per_step
        is_log = step % cfg.log_every == 0 or step == cfg.max_steps
        is_eval = bool(cfg.eval_every and step % cfg.eval_every == 0)
        is_ckpt = bool(cfg.ckpt_every and step % cfg.ckpt_every == 0)
        bad = never
        if is_log or is_eval or is_ckpt or step == start_step + 1:
            step_loss = all_reduce_sum([float(loss_sum) / accum], d)[0] / d.world_size  # waits for the step
            grad_norm = as_float(grad_norm_t)
            bad = all_reduce_min(int(first_bad), d)
            window_s += time.time() - t0
            tps = window_tokens / window_s
            mfu = (tps / d.world_size) * flops_per_token / peak if peak else None
            last_sync, window_tokens, window_s = step, 0, 0.0
        else:
            window_s += time.time() - t0
        if is_log:
            log.write({"step": step, "loss": step_loss, "lr": lr, "grad_norm": grad_norm, "tokens": tokens_seen,
                       "tokens_per_s": tps, "mfu": mfu, "mem_mb": memory_mb(d.device)})
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}")
        if bad != never:  # keep the last good checkpoint as the latest one
            stop_reason = _diverged(bad, step)
            break
        if is_eval:
            last_eval, last_eval_step = evaluate(step), step
        if is_ckpt:
            checkpoint(step)
            last_ckpt = step
    if last_sync != step and not stop_reason.startswith("diverged"):  # stopped between sync steps
        bad = all_reduce_min(int(first_bad), d)
        if bad != never:
            stop_reason = _diverged(bad, step)
    bar.close()
    if ckpt is not None and step == start_step and (run_dir / "summary.json").is_file():
        log.close()  # resumed a finished run (max_steps reached or data exhausted): nothing to add
        if d.is_main:
            print(f"train: {run_dir} is already complete at step {step} ({stop_reason})", flush=True)
        return json.loads((run_dir / "summary.json").read_text()) if d.is_main else {}
    diverged = stop_reason.startswith("diverged")
    if last_eval_step != step and not diverged:
        last_eval = evaluate(step)
    if last_ckpt != step and not diverged:
        checkpoint(step)
    summary = {}
    if d.is_main:
        summary = _summary(cfg, run_dir, loader, step, stop_reason, last_eval, tokens_seen,
                           elapsed_before + time.time() - t_start, cpu_before + time.process_time() - cpu_start,
                           n_params, device_name)
    log.close()
    return summary


def _diverged(first_bad: int, step: int) -> str:
    seen = "" if first_bad == step else f" (seen at step {step})"
    return f"diverged: non-finite loss at step {first_bad}{seen}"


class _NoBar:
    def update(self, n): pass
    def set_postfix(self, **kw): pass
    def close(self): pass


class _LineProgress:
    """Progress for logs: off a terminal, tqdm's '\r' redraws would fill a log file (hundreds of KB for a
    300-step run), so print one plain line every `every` steps (~20 per run) or minute, and the last step."""

    def __init__(self, cfg: TrainConfig, start_step: int):
        self.n, self.total, self.run = start_step, cfg.max_steps, cfg.run
        self.every, self.last = max(1, cfg.log_every, math.ceil(cfg.max_steps / 20)), time.time()

    def update(self, n): self.n += n

    def set_postfix(self, **kw):  # called once per step, after update()
        if self.n % self.every and self.n != self.total and time.time() - self.last < 60:
            return
        self.last = time.time()
        print(f"{self.run}: step {self.n}/{self.total} | " + " ".join(f"{k} {v}" for k, v in kw.items()), flush=True)

    def close(self): pass


def _progress(cfg: TrainConfig, start_step: int, enabled: bool):
    import sys

    if not enabled:
        return _NoBar()
    if tqdm is None or not (sys.stdout.isatty() and sys.stderr.isatty()):
        return _LineProgress(cfg, start_step)
    return tqdm(total=cfg.max_steps, initial=start_step, desc=cfg.run, dynamic_ncols=True)


def _summary(cfg, run_dir, loader, step, stop_reason, last_eval, tokens, elapsed, cpu_s, n_params,
             device_name) -> dict:
    losses = [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]
    tail = losses[-10:]
    summary = {
        "run": cfg.run, "steps": step, "stop_reason": stop_reason,
        "final_loss": losses[-1] if losses else None,
        "final_loss_mean_last10": sum(tail) / len(tail) if tail else None,
        "unigram_entropy": loader.unigram_entropy(),
        "eval": last_eval, "tokens": tokens, "time_s": elapsed, "cpu_s": cpu_s, "params": n_params,
        "device": device_name,
        "mixture": loader.realised(),
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))  # --resume reads it: whole or absent
    if not losses or not math.isfinite(losses[-1]):
        print(f"train: {stop_reason} after {step} steps", flush=True)
        return summary
    print(f"train: {stop_reason} after {step} steps, {tokens:,} tokens, {elapsed:.0f} s ({cpu_s:.0f} s CPU) | "
          f"final loss "
          f"{summary['final_loss_mean_last10']:.4f} (mean of last {len(tail)} steps) vs unigram entropy "
          f"{summary['unigram_entropy']:.4f} nats | held-out "
          + ", ".join(f"{k} {v:.3f}" for k, v in last_eval.items()), flush=True)
    return summary
