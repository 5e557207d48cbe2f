"""`python -m train --config train/configs/NAME.yaml [--set key=value ...] [--resume]`

Single process, or under `torchrun --nproc_per_node N -m train ... --set parallel=ddp|fsdp`.
"""
from __future__ import annotations

import argparse
import sys

from train.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train", description="Train a LLaMA-style model on token shards.")
    ap.add_argument("--config", required=True, help="YAML run configuration")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, dotted keys (e.g. optim.lr=1e-3); repeatable")
    ap.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint")
    args = ap.parse_args(argv)
    from train.loop import train
    try:
        cfg = load_config(args.config, args.overrides)
        summary = train(cfg, resume=args.resume)
    except (ConfigError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 2
    if str(summary.get("stop_reason", "")).startswith("diverged"):
        print(f"train: error: {summary['stop_reason']}; the latest checkpoint is the last good one",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
