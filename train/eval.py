"""Held-out loss: used by the training loop every `eval_every` steps and as a standalone CLI.

    python -m train.eval --checkpoint CKPT --data DIR [--max-tokens N] [--split heldout|all] --json

CKPT is a run directory (latest checkpoint), a `step_*` checkpoint or a bare model directory; DIR is
one `tokens/<source>` folder or the tokens root. With `--split heldout` (the default when the
checkpoint carries its training config) only the tail windows the trainer never trained on are
scored, exactly as during training; `--split all` scores every window (for a separate test set).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch

from train.mixture import SourceWindows, window_batches
from train.parallel import Dist, all_reduce_sum
from tokenizer.shards import ShardError, TokenStream, list_shards


@torch.no_grad()
def evaluate_batches(model: torch.nn.Module, batches, d: Dist, autocast=contextlib.nullcontext) -> tuple[float, int]:
    """(mean loss over all target tokens on all ranks, number of target tokens)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in batches:
        with autocast():
            _, loss = model(x.to(d.device), y.to(d.device))
        total += float(loss) * y.numel()
        count += y.numel()
    model.train(was_training)
    total, count = all_reduce_sum([total, count], d)
    return (total / count if count else float("nan")), int(count)


def evaluate_heldout(model, loader, batch_size: int, max_tokens: int, d: Dist,
                     autocast=contextlib.nullcontext) -> dict[str, float]:
    """Per-source loss on the loader's held-out windows (max_tokens per source).

    Sources with fewer held-out windows than ranks have nothing to score and are left out."""
    losses = {}
    for name in loader.names:
        loss, count = evaluate_batches(model, loader.heldout_batches(name, batch_size, max_tokens), d, autocast)
        if count:
            losses[name] = loss
    return losses


def resolve_checkpoint(path: Path) -> tuple[Path, dict | None]:
    """(model directory, training config or None) for a run dir, step dir or model dir."""
    from train.checkpoint import latest_checkpoint
    if (path / "checkpoints").is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"{path}: run directory has no complete checkpoint")
        path = latest
    if (path / "model" / "model.pt").is_file():
        cfg_file = path / "train_config.json"
        return path / "model", (json.loads(cfg_file.read_text()) if cfg_file.is_file() else None)
    if (path / "model.pt").is_file():
        return path, None
    raise FileNotFoundError(f"{path}: not a run, checkpoint or model directory")


def source_folders(data: Path) -> dict[str, Path]:
    if list_shards(data):
        return {data.name: data}
    found = {p.name: p for p in sorted(data.iterdir()) if p.is_dir() and list_shards(p)} if data.is_dir() else {}
    if not found:
        raise FileNotFoundError(f"{data}: no .ds token shards here or in its sub-folders")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.eval", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--max-tokens", type=int, default=None, help="per source")
    ap.add_argument("--split", choices=["heldout", "all"], default=None)
    ap.add_argument("--seq-len", type=int, default=None)
    ap.add_argument("--eval-fraction", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    from model.weights import CheckpointError, load_model
    try:
        model_dir, train_cfg = resolve_checkpoint(args.checkpoint)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model, mcfg = load_model(model_dir, device=device)
        data_cfg = (train_cfg or {}).get("data", {})
        seq_len = args.seq_len or data_cfg.get("seq_len") or mcfg.max_seq_len
        split = args.split or ("heldout" if train_cfg else "all")
        fraction = args.eval_fraction if args.eval_fraction is not None else data_cfg.get("eval_fraction")
        if split == "heldout" and fraction is None:
            raise ValueError("--split heldout needs --eval-fraction (the checkpoint has no training config)")
        d = Dist(0, 1, 0, device)
        results, total, count = {}, 0.0, 0
        for name, folder in source_folders(args.data).items():
            stream = TokenStream(folder)
            if stream.vocab_sizes() - {mcfg.vocab_size}:
                raise ValueError(f"{folder}: shards have vocab {sorted(stream.vocab_sizes())}, "
                                 f"model has {mcfg.vocab_size}")
            sw = SourceWindows(stream, seq_len, fraction if split == "heldout" else 0.0)
            windows = sw.heldout_range() if split == "heldout" else range(sw.n_windows)
            loss, n = evaluate_batches(model, window_batches(sw, windows, args.batch_size, args.max_tokens), d)
            results[name] = {"loss": loss, "tokens": n}
            if n:
                total, count = total + loss * n, count + n
    except (FileNotFoundError, ValueError, CheckpointError, ShardError) as e:
        print(f"train.eval: error: {e}", file=sys.stderr)
        return 2
    out = {"loss": total / count if count else None, "tokens": count, "split": split, "seq_len": seq_len,
           "sources": results}
    if args.json:
        print(json.dumps(out))
    else:
        for name, r in results.items():
            print(f"{name:>16}: loss {r['loss']:.4f} over {r['tokens']} tokens")
        print(f"{'all':>16}: loss {out['loss']} over {count} tokens ({split}, seq_len {seq_len})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
