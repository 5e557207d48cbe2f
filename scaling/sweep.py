"""Scaling-law sweep on our own corpus: train a grid of sizes x token budgets, fit L(N, D), plot.

    python -m scaling.sweep --config train/configs/sweep.yaml [--out out/sample] [--dry-run]

Why: the published constants (scaling/laws.py) describe other corpora and tokenizers; the planner
can only advise on *this* corpus with a law fitted on it (`python -m scaling.plan --law
fitted:out/<profile>/report/scaling.json`).  Every run is a real `python -m train` process; the sweep
only sequences them, reads each run's summary.json, fits, and reports.  Resumable: finished runs
(summary.json at the planned step count) are reused, interrupted ones continue with --resume.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from model.config import get_config
from scaling import SCALING_JSON, SCALING_PNG
from scaling.plan import make_plan
from scaling.shape import param_count
from scaling.laws import FLOPS_PER_PARAM_TOKEN, extrapolate, fit_law
from storage.atomic import atomic_path, atomic_write_text
from storage.layout import Layout

REPO = Path(__file__).resolve().parents[1]


class SweepError(ValueError):
    """The sweep configuration is unusable or too few runs finished to fit a law."""


@dataclass
class SweepConfig:
    base_config: str
    sizes: list
    steps: list
    profile: str = "sample"
    run_prefix: str = "sweep"
    params: str = "non_embedding"
    set: list = None
    bootstrap: int = 200
    inference_tokens: float = 1e8
    out: str = ""

    @property
    def layout(self) -> Layout:
        """The output tree the sweep's runs and its fit go into (``out``, default out/<profile>)."""
        return Layout(self.out)

    def __post_init__(self):
        self.set = list(self.set or [])
        self.out = self.out or f"out/{self.profile}"
        if self.params not in ("non_embedding", "total"):
            raise SweepError(f"params must be non_embedding|total, got {self.params!r}")
        if not self.sizes or not self.steps:
            raise SweepError("sweep config needs non-empty `sizes` and `steps`")
        if len(self.sizes) * len(self.steps) < 5:
            raise SweepError(f"{len(self.sizes)} sizes x {len(self.steps)} budgets = "
                             f"{len(self.sizes) * len(self.steps)} runs; fitting 5 constants needs >= 5")
        for size in self.sizes:
            if not isinstance(size, dict) or "dim" not in size:
                raise SweepError(f"each size must be a mapping with at least `dim`, got {size!r}")


def load_sweep_config(path: str, out: str | None = None) -> SweepConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise SweepError(f"sweep config not found: {path}") from None
    try:
        cfg = SweepConfig(**raw)
    except TypeError as e:
        raise SweepError(f"{path}: {e}") from None
    if out:
        cfg.out = out
    return cfg


@dataclass
class RunSpec:
    name: str
    model: dict  # model overrides for this size
    steps: int

    def run_dir(self, cfg: SweepConfig) -> Path:
        return cfg.layout.train_dir(self.name)


def plan_runs(cfg: SweepConfig) -> list[RunSpec]:
    runs = []
    for size in cfg.sizes:
        tag = "d{dim}l{n_layers}".format(dim=size["dim"], n_layers=size.get("n_layers", "x"))
        for steps in cfg.steps:
            runs.append(RunSpec(f"{cfg.run_prefix}-{tag}-s{int(steps)}", dict(size), int(steps)))
    return runs


def _base(cfg: SweepConfig) -> dict:
    try:
        return yaml.safe_load(Path(cfg.base_config).read_text()) or {}
    except FileNotFoundError:
        raise SweepError(f"base training config not found: {cfg.base_config}") from None


def trainer_command(cfg: SweepConfig, spec: RunSpec, resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "train", "--config", cfg.base_config,
           "--set", f"run={spec.name}", "--set", f"profile={cfg.profile}",
           "--set", f"out_dir={spec.run_dir(cfg)}", "--set", f"max_steps={spec.steps}"]
    for key, value in spec.model.items():
        cmd += ["--set", f"model.{key}={value}"]
    for item in cfg.set:
        cmd += ["--set", str(item)]
    return cmd + (["--resume"] if resume else [])


def _finished(spec: RunSpec, cfg: SweepConfig) -> dict | None:
    summary = spec.run_dir(cfg) / "summary.json"
    if summary.is_file():
        data = json.loads(summary.read_text())
        if data.get("steps") == spec.steps:
            return data
    return None


def run_one(cfg: SweepConfig, spec: RunSpec, log) -> tuple[dict | None, str | None]:
    """(summary, None) or (None, reason): a failed run is an excluded point with its reason."""
    done = _finished(spec, cfg)
    if done is not None:
        log(f"sweep: {spec.name}: already finished, reusing summary.json")
        return done, None
    resume = (spec.run_dir(cfg) / "checkpoints").is_dir() and any((spec.run_dir(cfg) / "checkpoints").iterdir())
    log(f"sweep: {spec.name}: training {spec.model} for {spec.steps} steps{' (resuming)' if resume else ''}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(trainer_command(cfg, spec, resume), cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"trainer exit {proc.returncode}: {last}"
    done = _finished(spec, cfg)
    if done is None:
        summary = spec.run_dir(cfg) / "summary.json"
        stop = json.loads(summary.read_text()).get("stop_reason") if summary.is_file() else "no summary.json"
        return None, f"run stopped before {spec.steps} steps: {stop}"
    return done, None


def final_loss(summary: dict) -> tuple[float, str]:
    """Mean held-out loss over sources at the end of the run (training-loss tail as fallback)."""
    ev = {k: v for k, v in (summary.get("eval") or {}).items() if v is not None and np.isfinite(v)}
    if ev:
        return float(np.mean(list(ev.values()))), "eval"
    return float(summary["final_loss_mean_last10"]), "train_tail"


def model_params(cfg: SweepConfig, spec: RunSpec, summary: dict) -> tuple[float, float]:
    """(N used in the fit, total N).  Non-embedding N does not depend on the vocabulary."""
    base_model = _base(cfg).get("model", {"name": "tiny"})
    overrides = {k: v for k, v in {**base_model, **spec.model}.items() if k != "name"}
    shape = get_config(base_model.get("name", "tiny"), **{**overrides, "vocab_size": 1})
    non_embedding = param_count(shape) - 2 * shape.dim
    total = float(summary.get("params") or 0)
    return (float(non_embedding) if cfg.params == "non_embedding" else total), total


def collect(cfg: SweepConfig, log=print) -> tuple[list[dict], list[dict]]:
    points, excluded = [], []
    for spec in plan_runs(cfg):
        summary, reason = run_one(cfg, spec, log)
        if summary is None:
            log(f"sweep: {spec.name}: excluded ({reason})")
            excluded.append({"run": spec.name, "reason": reason})
            continue
        loss, kind = final_loss(summary)
        n_fit, n_total = model_params(cfg, spec, summary)
        D = float(summary["tokens"])
        points.append({"run": spec.name, "model": spec.model, "steps": spec.steps, "N": n_fit,
                       "N_total": n_total, "D": D, "flops": FLOPS_PER_PARAM_TOKEN * n_fit * D,
                       "loss": loss, "loss_kind": kind, "time_s": summary.get("time_s")})
        log(f"sweep: {spec.name}: N={n_fit:.4g} D={D:.4g} loss={loss:.4f} ({kind})")
    return points, excluded


def curve_check(cfg: SweepConfig, points: list[dict]) -> dict | None:
    """Early-curve extrapolation on the longest run: fit 30% of its training-loss curve, predict the end."""
    if not points:
        return None
    longest = max(points, key=lambda p: (p["steps"], p["N"]))
    records = [json.loads(line) for line in
               (cfg.layout.train_dir(longest["run"]) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in records if "loss" in r]
    losses = [r["loss"] for r in records if "loss" in r]
    try:
        ex = extrapolate(steps, losses, fraction=0.3)
    except (ValueError, RuntimeError) as e:
        return {"run": longest["run"], "error": str(e)}
    tail = float(np.mean(losses[-10:]))
    return {"run": longest["run"], "fit_until_step": ex.fit_until_step, "a": ex.a, "b": ex.b, "c": ex.c,
            "predicted_final_train_loss": ex.predicted, "observed_final_train_loss_mean_last10": tail,
            "relative_error": abs(ex.predicted - tail) / tail}


def plot(path: Path, points: list[dict], law, plan) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    flops = np.array([p["flops"] for p in points])
    c_grid = np.geomspace(flops.min() / 3, flops.max() * 30, 200)
    for n in sorted({p["N"] for p in points}):
        mine = [p for p in points if p["N"] == n]
        line = ax.scatter([p["flops"] for p in mine], [p["loss"] for p in mine], s=36, zorder=3,
                          label=f"runs, N={n / 1e6:.3g}M")
        ax.plot(c_grid, law.loss(n, c_grid / (FLOPS_PER_PARAM_TOKEN * n)), color=line.get_facecolor()[0],
                lw=0.8, alpha=0.6)
    frontier = [law.loss(*law.compute_optimal(c)) for c in c_grid]
    ax.plot(c_grid, frontier, "k--", lw=1.5, label="fitted compute-optimal frontier")
    for pick, marker in ((plan.compute_optimal, "*"), (plan.inference_aware, "P")):
        ax.scatter([pick.train_flops], [pick.loss], marker=marker, s=160, color="black", zorder=4,
                   label=f"{pick.label}: N={pick.N / 1e6:.3g}M, D={pick.D / 1e6:.3g}M")
    ax.set_xscale("log")
    ax.set_xlabel("training compute C = 6ND (FLOPs)")
    ax.set_ylabel("final held-out loss (nats/token)")
    ax.set_title(f"L = {law.E:.3g} + {law.A:.3g}/N^{law.alpha:.3g} + {law.B:.3g}/D^{law.beta:.3g}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:  # the report may embed it at any moment: never half a PNG
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def sweep(cfg: SweepConfig, log=print) -> dict:
    points, excluded = collect(cfg, log)
    if len(points) < 5:
        raise SweepError(f"only {len(points)} of {len(points) + len(excluded)} runs finished; fitting needs 5 "
                         f"(excluded: {'; '.join(e['run'] + ': ' + e['reason'] for e in excluded) or 'none'})")
    fit = fit_law([p["N"] for p in points], [p["D"] for p in points], [p["loss"] for p in points],
                  bootstrap=cfg.bootstrap, name="fitted")
    law = fit.law
    for p in points:
        p["predicted"] = float(law.loss(p["N"], p["D"]))
    budget = max(p["flops"] for p in points)
    plan = make_plan(law, compute=budget, inference_tokens=cfg.inference_tokens)
    report_dir = cfg.layout.report_dir
    png = report_dir / SCALING_PNG
    plot(png, points, law, plan)
    result = {
        **fit.to_dict(),
        "params": cfg.params,
        "runs": points,
        "excluded": excluded,
        "accounting": {"planned": len(points) + len(excluded), "fitted": len(points), "excluded": len(excluded)},
        "picks": {"compute": budget, "inference_tokens": cfg.inference_tokens,
                  "compute_optimal": {**asdict(plan.compute_optimal), "train_flops": plan.compute_optimal.train_flops,
                                      "total_flops": plan.compute_optimal.total_flops},
                  "inference_aware": {**asdict(plan.inference_aware), "train_flops": plan.inference_aware.train_flops,
                                      "total_flops": plan.inference_aware.total_flops},
                  "saving": plan.saving},
        "curve_extrapolation": curve_check(cfg, points),
        "plot": png.name,
    }
    atomic_write_text(report_dir / SCALING_JSON, json.dumps(result, indent=2))  # a reader never sees half of it
    return result


def format_result(result: dict) -> str:
    lines = [f"sweep: fitted on {result['n_points']} runs ({result['params']} N), "
             f"{result['accounting']['excluded']} excluded; bootstrap n={result['n_bootstrap']}"]
    if result.get("at_bounds"):
        lines.append(f"  warning: {', '.join(result['at_bounds'])} pinned at the fit's box bounds: these runs do not "
                     f"identify them (e.g. no loss floor visible yet); widen the grid of sizes/budgets")
    for k, v in result["law"].items():
        lo, hi = result["ci95"].get(k, (float("nan"), float("nan")))
        lines.append(f"  {k:6s} = {v:10.4g}   95% CI [{lo:.4g}, {hi:.4g}]")
    for p in result["runs"]:
        lines.append(f"  {p['run']:24s} N={p['N']:.4g} D={p['D']:.4g} loss {p['loss']:.4f} "
                     f"fit {p['predicted']:.4f}")
    picks = result["picks"]
    lines.append(f"  picks at the loss {picks['compute']:.3g} FLOPs reach (largest run), "
                 f"{picks['inference_tokens']:.3g} inference tokens:")
    for key in ("compute_optimal", "inference_aware"):
        q = picks[key]
        lines.append(f"    {key:16s} N={q['N']:.4g} D={q['D']:.4g} ({q['D'] / q['N']:.1f} tok/param) "
                     f"loss {q['loss']:.4f}, total {q['total_flops']:.4g} FLOPs")
    lines.append(f"    inference-aware saving: {picks['saving']:.1%}")
    ce = result.get("curve_extrapolation")
    if ce and "relative_error" in ce:
        lines.append(f"  early-curve extrapolation ({ce['run']}, first 30%): predicted "
                     f"{ce['predicted_final_train_loss']:.4f} vs observed {ce['observed_final_train_loss_mean_last10']:.4f} "
                     f"({ce['relative_error']:.1%})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scaling.sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="train/configs/sweep.yaml")
    ap.add_argument("--out", help="output folder (default out/<profile>)")
    ap.add_argument("--dry-run", action="store_true", help="print the trainer commands and exit")
    args = ap.parse_args(argv)
    try:
        cfg = load_sweep_config(args.config, args.out)
        if args.dry_run:
            for spec in plan_runs(cfg):
                print(" ".join(trainer_command(cfg, spec, resume=False)))
            return 0
        result = sweep(cfg)
    except SweepError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 2
    print(format_result(result))
    print(f"sweep: wrote {cfg.layout.report_dir / SCALING_JSON} and {result['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
