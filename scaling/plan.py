"""Budget planner: compute-optimal vs inference-aware model size, and a training config for the pick.

    python -m scaling.plan --compute 1e23 --inference-tokens 2e12 --write-config run.yaml
    python -m scaling.plan --target-loss 2.0 --inference-tokens 1e13 --law chinchilla
    python -m scaling.plan --evaluate 7e9:1e12            # LLaMA-7B's 1T tokens vs compute-optimal

Why: LLaMA's thesis.  Hoffmann et al. choose the N reaching a loss with the least *training* compute
(~20 tokens/parameter); Touvron et al. argue that the *inference* budget dominates, so a smaller model
trained longer is cheaper overall.  Sardana et al. 2024 make that precise: at a fixed target loss
minimise 6·N·D_train + 2·N·D_inference.  This tool prints both picks side by side.

The default law is Besiroglu et al.'s refit of Hoffmann et al.'s Approach 3 (``besiroglu``): it gives
the 10B parameters on ~200B tokens for ~1.2e22 FLOPs that LLaMA cites from Hoffmann et al., where the
constants printed in that paper (``chinchilla``) give 5.7B on 362B (see scaling/laws.py).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy import optimize

from scaling.shape import Shape, shape_for_params
from scaling.laws import DEFAULT_LAW, FLOPS_PER_PARAM_TOKEN, ChinchillaLaw, compute_for_params, load_law, why_law

INFERENCE_FLOPS_PER_PARAM_TOKEN = 2.0  # forward pass only


@dataclass(frozen=True)
class Pick:
    """One choice of (N, D_train) with its loss and its costs."""

    label: str
    N: float
    D: float
    loss: float
    inference_tokens: float = 0.0

    @property
    def train_flops(self) -> float:
        return FLOPS_PER_PARAM_TOKEN * self.N * self.D

    @property
    def inference_flops(self) -> float:
        return INFERENCE_FLOPS_PER_PARAM_TOKEN * self.N * self.inference_tokens

    @property
    def total_flops(self) -> float:
        return self.train_flops + self.inference_flops

    @property
    def tokens_per_param(self) -> float:
        return self.D / self.N


def compute_optimal_pick(law, compute: float, inference_tokens: float = 0.0) -> Pick:
    """Hoffmann et al.: the (N, D) with 6ND = compute and the lowest loss."""
    if not compute > 0:
        raise ValueError(f"compute must be positive, got {compute:g}")
    N, D = law.compute_optimal(compute)
    return Pick("compute-optimal", N, D, law.loss(N, D), inference_tokens)


def cheapest_pick_at_loss(law, target_loss: float, inference_tokens: float = 0.0,
                          label: str = "inference-aware") -> Pick:
    """Sardana et al. 2024: min over N of 6·N·D(N) + 2·N·D_inf with L(N, D(N)) = target_loss.
    With inference_tokens = 0 this is the compute-optimal model for that loss."""
    if inference_tokens < 0:
        raise ValueError(f"inference tokens must be >= 0, got {inference_tokens:g}")
    n_min = law.min_params_for_loss(target_loss)

    def total(log_n):
        N = math.exp(log_n)
        return (FLOPS_PER_PARAM_TOKEN * N * law.tokens_for_loss(N, target_loss)
                + INFERENCE_FLOPS_PER_PARAM_TOKEN * N * inference_tokens)

    # Cost -> inf at N -> n_min (infinite data) and grows ~N for large N: scan a log grid, then refine.
    grid = math.log(n_min) + np.geomspace(1e-6, 40.0, 4000)
    costs = np.array([total(x) for x in grid])
    i = int(np.argmin(costs))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = optimize.minimize_scalar(total, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
    N = math.exp(res.x if res.fun <= costs[i] else grid[i])
    D = law.tokens_for_loss(N, target_loss)
    return Pick(label, N, D, law.loss(N, D), inference_tokens)


@dataclass(frozen=True)
class Plan:
    law: object
    compute_optimal: Pick
    inference_aware: Pick
    compute_budget: float | None

    @property
    def saving(self) -> float:
        """Fraction of total (training + inference) FLOPs the inference-aware pick saves."""
        return 1.0 - self.inference_aware.total_flops / self.compute_optimal.total_flops


def make_plan(law, compute: float | None = None, target_loss: float | None = None,
              inference_tokens: float = 0.0) -> Plan:
    """Both picks at one loss: target_loss if given, else the loss the compute budget reaches."""
    if compute is None and target_loss is None:
        raise ValueError("give --compute and/or --target-loss")
    if target_loss is None:
        target_loss = compute_optimal_pick(law, compute).loss
    opt = cheapest_pick_at_loss(law, target_loss, 0.0, label="compute-optimal")
    opt = Pick(opt.label, opt.N, opt.D, opt.loss, inference_tokens)
    aware = cheapest_pick_at_loss(law, target_loss, inference_tokens)
    return Plan(law, opt, aware, compute)


def beyond_compute_optimal(law, N: float, D: float) -> tuple[float, float]:
    """(compute-optimal token count for a model of N params, D / that count)."""
    C = compute_for_params(law, N)
    d_opt = law.compute_optimal(C)[1]
    return d_opt, D / d_opt


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def describe_law(law) -> str:
    if isinstance(law, ChinchillaLaw):
        return (f"{law.name}: L(N,D) = {law.E:.4g} + {law.A:.4g}/N^{law.alpha:.4g} + {law.B:.4g}/D^{law.beta:.4g}"
                f"  (N_opt ∝ C^{law.a:.3f}, D_opt ∝ C^{law.b:.3f})")
    return (f"{law.name}: L(N,D) = [(Nc/N)^(aN/aD) + Dc/D]^aD, Nc={law.Nc:.3g}, aN={law.alpha_N}, Dc={law.Dc:.3g}, "
            f"aD={law.alpha_D} (non-embedding N, WebText2 nats: not comparable with Chinchilla losses)")


def format_plan(plan: Plan, why: str = "") -> str:
    a, b = plan.compute_optimal, plan.inference_aware
    rows = [
        ("parameters N", f"{a.N:.4g}", f"{b.N:.4g}"),
        ("training tokens D", f"{a.D:.4g}", f"{b.D:.4g}"),
        ("tokens per parameter", f"{a.tokens_per_param:.1f}", f"{b.tokens_per_param:.1f}"),
        ("loss", f"{a.loss:.4f}", f"{b.loss:.4f}"),
        ("training FLOPs", f"{a.train_flops:.4g}", f"{b.train_flops:.4g}"),
        ("inference FLOPs", f"{a.inference_flops:.4g}", f"{b.inference_flops:.4g}"),
        ("total FLOPs", f"{a.total_flops:.4g}", f"{b.total_flops:.4g}"),
    ]
    lines = [f"law      {describe_law(plan.law)}"]
    if why:
        lines.append(f"why      {why}")
    if plan.compute_budget is not None:
        reach = plan.law.loss(*plan.law.compute_optimal(plan.compute_budget))
        lines.append(f"budget   {plan.compute_budget:.4g} training FLOPs reach loss {reach:.4f} compute-optimally")
    lines.append(f"target   loss {a.loss:.4f}; inference {a.inference_tokens:.4g} tokens at 2·N FLOPs each")
    lines.append("")
    lines.append(f"{'':24s}{'compute-optimal':>18s}{'inference-aware':>18s}")
    lines += [f"{k:24s}{x:>18s}{y:>18s}" for k, x, y in rows]
    lines.append("")
    lines.append(f"saving   inference-aware total cost is {plan.saving:.1%} lower "
                 f"({a.total_flops - b.total_flops:.3g} FLOPs): {a.N / b.N:.2f}x fewer parameters, "
                 f"{b.D / a.D:.2f}x more training tokens, {b.train_flops / a.train_flops:.2f}x training FLOPs")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Training config for the pick
# --------------------------------------------------------------------------------------------

DEFAULT_BASES = (("train/configs/tiny.yaml", 0.0), ("train/configs/llama-7b.yaml", 1e9))


def base_config_for(n_params: float, root: Path = Path(__file__).resolve().parents[1]) -> Path:
    """The project's config closest in kind: tiny.yaml for CPU-sized N, llama-7b.yaml from 1B up."""
    chosen = None
    for rel, from_n in DEFAULT_BASES:
        if n_params >= from_n:
            chosen = rel
    return root / chosen


def learning_rate_for(n_params: float) -> float | None:
    """LLaMA Table 2: 3e-4 up to 13B, 1.5e-4 for 33B and 65B; None keeps the base config's LR."""
    if n_params < 1e9:
        return None
    return 3.0e-4 if n_params < 20e9 else 1.5e-4


def training_config(pick: Pick, shape: Shape, base: dict, run: str, law_name: str) -> dict:
    """The base config with the planned model shape and a step count covering D tokens."""
    cfg = dict(base)
    cfg["run"] = run
    cfg.pop("out_dir", None)
    model = {"name": base.get("model", {}).get("name", "tiny")}
    model.update({k: v for k, v in shape.model_overrides().items() if k not in ("vocab_size", "max_seq_len")})
    cfg["model"] = model
    tokens_per_step = int(base.get("batch", {}).get("tokens_per_step", 4096))
    cfg["max_steps"] = max(1, math.ceil(pick.D / tokens_per_step))
    lr = learning_rate_for(pick.N)
    if lr is not None:
        cfg["optim"] = {**base.get("optim", {}), "lr": lr}
    return cfg


def write_config(pick: Pick, shape: Shape, path: Path, base_path: Path, law_name: str) -> dict:
    try:
        base = yaml.safe_load(base_path.read_text()) or {}
    except FileNotFoundError:
        raise ValueError(f"base config not found: {base_path} (pass --base-config)") from None
    cfg = training_config(pick, shape, base, path.stem, law_name)
    header = (f"# Written by `python -m scaling.plan` ({pick.label} pick, law {law_name}) from {base_path}.\n"
              f"# Planned N = {pick.N:.4g} params, D = {pick.D:.4g} tokens ({pick.tokens_per_param:.1f} per param), "
              f"predicted loss {pick.loss:.4f}.\n"
              f"# Shape: {shape.describe()}.\n"
              f"# max_steps = ceil(D / batch.tokens_per_step).  Vocabulary comes from the tokenizer at run time.\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(cfg, sort_keys=False))
    return cfg


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite non-negative number: {text!r}")
    return value


def _n_and_d(text: str) -> tuple[float, float]:
    try:
        n, d = (float(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N:D such as 7e9:1e12, got {text!r}") from None
    if n <= 0 or d <= 0:
        raise argparse.ArgumentTypeError(f"N and D must be positive, got {text!r}")
    return n, d


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m scaling.plan", description=__doc__.split("\n\n")[0])
    ap.add_argument("--compute", type=_positive_float, help="training compute budget in FLOPs (C = 6ND)")
    ap.add_argument("--target-loss", type=_positive_float, help="loss to reach (overrides the budget's loss)")
    ap.add_argument("--inference-tokens", type=_positive_float, default=0.0,
                    help="tokens the model will serve over its life (2·N FLOPs each)")
    ap.add_argument("--law", default=DEFAULT_LAW,
                    help=f"besiroglu | chinchilla | kaplan | fitted:PATH (default {DEFAULT_LAW}: the refit that "
                         "reproduces Hoffmann et al.'s 10B-on-200B-tokens figure)")
    ap.add_argument("--write-config", type=Path, metavar="PATH", help="write a training YAML for the pick")
    ap.add_argument("--pick", choices=("auto", "compute-optimal", "inference-aware"), default="auto",
                    help="which pick the config is for (auto: inference-aware when inference tokens > 0)")
    ap.add_argument("--base-config", type=Path, help="config to start from (default by size: tiny/llama-7b)")
    ap.add_argument("--vocab-size", type=int, default=32000, help="vocabulary for the parameter count")
    ap.add_argument("--seq-len", type=int, default=None, help="context length (default: the base config's)")
    ap.add_argument("--evaluate", type=_n_and_d, metavar="N:D",
                    help="compare a given model/token count (e.g. 7e9:1e12) with the compute-optimal one")
    return ap


def _evaluate(law, n: float, d: float) -> str:
    d_opt, multiple = beyond_compute_optimal(law, n, d)
    same_c = compute_optimal_pick(law, FLOPS_PER_PARAM_TOKEN * n * d)
    return (f"evaluate N={n:.4g} on D={d:.4g} tokens ({d / n:.1f} tokens/param): loss {law.loss(n, d):.4f}, "
            f"{FLOPS_PER_PARAM_TOKEN * n * d:.4g} training FLOPs\n"
            f"         compute-optimal tokens for N={n:.4g}: {d_opt:.4g} ({d_opt / n:.1f}/param); "
            f"D is {multiple:.2f}x that\n"
            f"         compute-optimal at the same FLOPs: N={same_c.N:.4g}, D={same_c.D:.4g}, "
            f"loss {same_c.loss:.4f}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        law = load_law(args.law)
        if args.compute is None and args.target_loss is None and args.evaluate is None:
            raise ValueError("give --compute FLOPs and/or --target-loss L (or --evaluate N:D)")
        if args.evaluate is not None:
            print(f"law      {describe_law(law)}\nwhy      {why_law(args.law)}")
            print(_evaluate(law, *args.evaluate))
        if args.compute is None and args.target_loss is None:
            return 0
        plan = make_plan(law, args.compute, args.target_loss, args.inference_tokens)
        print(format_plan(plan, "" if args.evaluate is not None else why_law(args.law)))
        if args.write_config:
            which = args.pick if args.pick != "auto" else (
                "inference-aware" if args.inference_tokens > 0 else "compute-optimal")
            pick = plan.inference_aware if which == "inference-aware" else plan.compute_optimal
            base_path = args.base_config or base_config_for(pick.N)
            base = yaml.safe_load(base_path.read_text()) if base_path.is_file() else {}
            seq_len = args.seq_len or int((base or {}).get("data", {}).get("seq_len", 2048))
            shape = shape_for_params(pick.N, args.vocab_size, seq_len)
            write_config(pick, shape, args.write_config, base_path, law.name)
            print(f"config   {args.write_config} ({which} pick): {shape.describe()}")
    except ValueError as e:
        print(f"plan: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
