"""The GPU session of issue 18 in one go (about 6-9 minutes on one H200): throughput, CPU/GPU parity, and
checkpoints that cross between the two.

    python3 bench/gpu_session.py --out "$OUT"          # on the GPU machine (TORCH_LOGS set for every run)
    python3 bench/gpu_session.py --dry-run --out DIR   # the same phases on a CPU at toy sizes

Phases, in the order bench (AC none), parity, crossover, bench (AC selective), so that a session cut short
by slow compilation still has the correctness checks; each result is written as soon as it exists:
  1. bench      bench/train_gpu.py, ~1B model (config "1b"), seq 2048, batch 8, bf16 autocast, torch.compile,
                fused AdamW; activation checkpointing none, then selective: tokens/s, ms/step, peak memory,
                MFU against train.metrics.device_peak_flops.
  2. parity     `python -m train` on the token shards shipped in bench/data (see its data_manifest.yaml for how
                they were made): 50 steps on the GPU under `torchrun --nproc-per-node 1` with parallel=fsdp
                (FSDP2, bf16 mixed precision, per-block compile, selective AC), and the same 50 steps in one
                CPU process in fp32 with the same data order; the step-50 losses must agree within 2 %.
  3. crossover  the GPU run's step-40 checkpoint resumed on the CPU, and the CPU run's on the GPU: the loss of
                the next step (41) must match the step-41 loss of the run that wrote the checkpoint within
                1 % (bf16 against fp32 arithmetic on the same weights and batch).
Outputs in --out (at most 3 files, as the device tool brings back 8): gpu_session.json (everything),
gpu_session.md (the summary for bench/RESULTS.md), gpu_session.log (every command with its output tail,
graph-break and recompile counts from TORCH_LOGS=graph_breaks,recompiles). Exit status 0 when every check
passed, 1 otherwise.

--dry-run runs every phase on the CPU at toy sizes (tiny model, a few steps, no compilation; the "GPU" leg is
then torchrun + FSDP2 over gloo in fp32), so the script itself is tested here (tests/test_train_gpu_session.py).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / "data"
TAIL = 6000  # characters of each command's output kept in the log

# Full-size settings (one H200) and toy settings (--dry-run on a CPU).
SIZES = {
    "gpu": {
        "bench": ["--config", "1b", "--seq", "2048", "--batch", "8", "--steps", "20", "--warmup", "5",
                  "--dtype", "bf16"],
        "model": {"name": "tiny"},  # dim 192, 4 layers, 6 heads
        "seq_len": 256, "micro_batch": 8, "tokens_per_step": 4096, "max_steps": 50, "ckpt_every": 40,
        "warmup_steps": 10, "timeouts": {"bench": 240, "train": 180},
    },
    "dry": {
        "bench": ["--device", "cpu", "--config", "tiny", "--vocab", "1024", "--seq", "64", "--batch", "2",
                  "--steps", "2", "--warmup", "1", "--dtype", "fp32", "--no-compile"],
        "model": {"name": "tiny", "dim": 64, "n_layers": 2, "n_heads": 4, "multiple_of": 16},
        "seq_len": 64, "micro_batch": 4, "tokens_per_step": 512, "max_steps": 6, "ckpt_every": 4,
        "warmup_steps": 2, "timeouts": {"bench": 180, "train": 180},
    },
}
PARITY_REL = 0.02
CROSS_REL = 0.01


class Session:
    def __init__(self, out: Path, dry: bool, budget_s: float):
        self.out, self.dry, self.deadline = out, dry, time.time() + budget_s
        self.size = SIZES["dry" if dry else "gpu"]
        self.work = Path(tempfile.mkdtemp(prefix="llamix-gpu-session-"))
        self.log_path = out / "gpu_session.log"
        self.results: dict = {"mode": "dry-run (CPU, toy sizes)" if dry else "gpu", "started": time.strftime(
            "%Y-%m-%d %H:%M:%S %Z"), "python": sys.version.split()[0], "phases": {}}
        self.log_path.write_text("")

    # ----- plumbing ------------------------------------------------------------------------------
    def env(self, cpu_only: bool = False) -> dict:
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", TORCH_LOGS="graph_breaks,recompiles")
        if cpu_only or self.dry:
            env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU leg must not see the GPU (the loop picks CUDA if present)
        if self.dry:
            env["OMP_NUM_THREADS"] = "1"
        return env

    def run(self, name: str, cmd: list[str], timeout: float, cpu_only: bool = False) -> dict:
        """Run one command; returns {rc, wall_s, graph_breaks, recompiles, output}; logs its tail."""
        timeout = max(1.0, min(timeout, self.deadline - time.time()))
        t0 = time.time()
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=self.env(cpu_only), capture_output=True, text=True,
                                  timeout=timeout)
            rc, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            rc = "timeout"
            output = "".join(x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
                             for x in (e.stdout, e.stderr))
        info = {"rc": rc, "wall_s": round(time.time() - t0, 1),
                "graph_breaks": len(re.findall(r"Graph break", output)),
                "recompiles": len(re.findall(r"Recompiling function", output)),
                "output": output}
        with self.log_path.open("a") as f:
            f.write(f"\n===== {name}: rc={rc} wall={info['wall_s']}s graph_breaks={info['graph_breaks']} "
                    f"recompiles={info['recompiles']}\n$ {' '.join(map(str, cmd))}\n")
            f.write(("[... output cut ...]\n" if len(output) > TAIL else "") + output[-TAIL:] + "\n")
        return info

    def save(self) -> None:
        self.results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.results["ok"] = bool(self.results["phases"]) and all(
            p.get("ok") for p in self.results["phases"].values())
        (self.out / "gpu_session.json").write_text(json.dumps(self.results, indent=2))
        (self.out / "gpu_session.md").write_text(markdown(self.results))

    # ----- phase 1: throughput -------------------------------------------------------------------
    def bench(self, ac: str) -> None:
        out = self.work / f"bench_{ac}.json"
        info = self.run(f"bench ac={ac}", [sys.executable, "bench/train_gpu.py", *self.size["bench"], "--ac", ac,
                                           "--json", str(out)], self.size["timeouts"]["bench"])
        row = json.loads(out.read_text()) if info["rc"] == 0 and out.is_file() else {}
        row.update(rc=info["rc"], wall_s=info["wall_s"], graph_breaks=info["graph_breaks"],
                   recompiles=info["recompiles"])
        row["ok"] = info["rc"] == 0 and _finite(row.get("tokens_per_s")) and row["tokens_per_s"] > 0 and (
            self.dry or (row.get("mfu") is not None and 0 < row["mfu"] < 1))
        rows = {**self.results["phases"].get("bench", {}).get("runs", {}), ac: row}
        self.results["phases"]["bench"] = {"ok": all(r["ok"] for r in rows.values()), "runs": rows}
        self.save()

    # ----- phase 2: GPU (FSDP2 on one rank) vs CPU (fp32) ----------------------------------------------
    def config(self, leg: str) -> Path:
        s = self.size
        gpu = leg == "gpu"
        cfg = {
            "run": f"session-{leg}", "out_dir": str(self.work / leg), "model": dict(s["model"]),
            "data": {"tokens_dir": str(DATA / "tokens"), "manifest": str(DATA / "data_manifest.yaml"),
                     "tokenizer": str(DATA / "tokenizer" / "tokenizer.model"), "seq_len": s["seq_len"],
                     "eval_fraction": 0.02},
            "batch": {"micro_batch": s["micro_batch"], "tokens_per_step": s["tokens_per_step"]},
            "optim": {"lr": 2.0e-3, "warmup_steps": s["warmup_steps"]},
            "max_steps": s["max_steps"], "eval_every": 0, "eval_tokens": 4 * s["seq_len"] * s["micro_batch"],
            "ckpt_every": s["ckpt_every"], "keep_last": 3, "log_every": 1, "seed": 1337,
            "threads": 1 if self.dry else 0,
            "dtype": "bf16" if gpu else "fp32",
            "parallel": "fsdp" if gpu else "none",
            "compile": gpu and not self.dry,
            "activation_checkpointing": "selective" if gpu else "none",
        }
        path = self.work / f"{leg}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    def train_cmd(self, leg: str, *extra: str) -> list[str]:
        args = ["--config", str(self.config(leg)), *extra]
        if leg == "gpu":  # torchrun with one process: the real FSDP2 code path on one device
            return [sys.executable, "-m", "train.launch", "--nodes", "1", "--gpus-per-node", "1", "--", *args]
        return [sys.executable, "-m", "train", *args]

    def parity(self) -> None:
        legs = {}
        for leg in ("gpu", "cpu"):
            info = self.run(f"train {leg}", self.train_cmd(leg), self.size["timeouts"]["train"], cpu_only=leg == "cpu")
            losses = _losses(self.work / leg)
            header = next((line for line in info["output"].splitlines() if line.startswith("train: session-")), "")
            legs[leg] = {"rc": info["rc"], "wall_s": info["wall_s"], "graph_breaks": info["graph_breaks"],
                         "recompiles": info["recompiles"], "header": header, "steps": len(losses),
                         "final_loss": losses.get(self.size["max_steps"]),
                         "tokens_per_s": _last(self.work / leg, "tokens_per_s"),
                         "mem_mb": _last(self.work / leg, "mem_mb")}
            self.results["phases"]["parity"] = {"ok": False, "legs": legs}
            self.save()
        n = self.size["max_steps"]
        g, c = legs["gpu"]["final_loss"], legs["cpu"]["final_loss"]
        rel = abs(g - c) / abs(c) if _finite(g) and _finite(c) else None
        curve_g, curve_c = _losses(self.work / "gpu"), _losses(self.work / "cpu")
        common = sorted(set(curve_g) & set(curve_c))
        worst = max((abs(curve_g[s] - curve_c[s]) / abs(curve_c[s]) for s in common), default=None)
        wrapped = "FSDP2" in legs["gpu"]["header"] and "DTensor params" in legs["gpu"]["header"]
        self.results["phases"]["parity"] = {
            "ok": all(v["rc"] == 0 for v in legs.values()) and wrapped and rel is not None and rel <= PARITY_REL,
            "step": n, "rel_diff": rel, "limit": PARITY_REL, "worst_rel_diff_any_step": worst,
            "gpu_leg_sharded": wrapped, "legs": legs}
        self.save()

    # ----- phase 3: checkpoints across devices -------------------------------------------------------
    def crossover(self) -> None:
        ckpt, n = self.size["ckpt_every"], self.size["max_steps"]
        nxt = ckpt + 1
        cases = {}
        for src, dst in (("gpu", "cpu"), ("cpu", "gpu")):
            name = f"{src}_to_{dst}"
            run = self.work / name
            shutil.rmtree(run, ignore_errors=True)
            if not (self.work / src / "checkpoints" / f"step_{ckpt:07d}").is_dir():
                cases[name] = {"ok": False, "error": f"the {src} run left no step-{ckpt} checkpoint"}
                continue
            shutil.copytree(self.work / src, run)
            for later in (run / "checkpoints").glob("step_*"):
                if int(later.name.split("_")[1]) > ckpt:
                    shutil.rmtree(later)
            (run / "summary.json").unlink(missing_ok=True)
            info = self.run(f"resume {name}", self.train_cmd(dst, "--resume", "--set", f"out_dir={run}",
                                                             "--set", f"run=session-{name}"),
                            self.size["timeouts"]["train"], cpu_only=dst == "cpu")
            got, ref = _losses(run).get(nxt), _losses(self.work / src).get(nxt)
            rel = abs(got - ref) / abs(ref) if _finite(got) and _finite(ref) else None
            cases[name] = {"ok": info["rc"] == 0 and f"resuming at step {ckpt}" in info["output"]
                           and rel is not None and rel <= CROSS_REL and len(_losses(run)) == n,
                           "rc": info["rc"], "wall_s": info["wall_s"], "resumed_from": ckpt, "step": nxt,
                           "loss_resumed": got, "loss_writer": ref, "rel_diff": rel, "limit": CROSS_REL,
                           "graph_breaks": info["graph_breaks"], "recompiles": info["recompiles"]}
            self.results["phases"]["crossover"] = {"ok": False, "cases": cases}
            self.save()
        self.results["phases"]["crossover"] = {"ok": all(c["ok"] for c in cases.values()), "cases": cases}
        self.save()


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in _records(run) if "loss" in r}


def _last(run: Path, key: str):
    values = [r[key] for r in _records(run) if r.get(key) is not None]
    return values[-1] if values else None


def _fmt(x, spec=".4g") -> str:
    return "–" if x is None else (format(x, spec) if isinstance(x, (int, float)) else str(x))


def markdown(r: dict) -> str:
    lines = [f"GPU session ({r['mode']}), {r['started']}; python {r['python']}; overall: "
             f"{'PASS' if r.get('ok') else 'FAIL'}", ""]
    bench = r["phases"].get("bench")
    if bench:
        lines += ["| bench (bench/train_gpu.py) | tokens/s | ms/step | MFU | peak GiB | compiled | graph breaks | "
                  "recompiles |", "|---|---|---|---|---|---|---|---|"]
        for ac, b in bench.get("runs", {}).items():
            mfu = f"{100 * b['mfu']:.1f}% of {b['peak_flops'] / 1e12:g} TF" if b.get("mfu") else "–"
            lines.append(f"| {b.get('config', '?')} seq {b.get('seq', '?')} batch {b.get('batch', '?')} "
                         f"{b.get('dtype', '?')}, AC {ac} on {b.get('device', '?')} | {_fmt(b.get('tokens_per_s'), ',.0f')} "
                         f"| {_fmt(b.get('ms_per_step'), '.0f')} | {mfu} | {_fmt(b.get('peak_mem_gib'), '.1f')} | "
                         f"{b.get('compiled', '–')} | {b['graph_breaks']} | {b['recompiles']} |")
        lines.append("")
    parity = r["phases"].get("parity")
    if parity:
        lines += [f"Parity (step {parity.get('step', '?')} loss, limit {PARITY_REL:.0%}): relative difference "
                  f"{_fmt(parity.get('rel_diff'), '.4%')}; worst over all steps "
                  f"{_fmt(parity.get('worst_rel_diff_any_step'), '.4%')}; "
                  f"{'PASS' if parity['ok'] else 'FAIL'}", "",
                  "| leg | final loss | tokens/s (last) | mem MiB | wall s | graph breaks | recompiles | first line |",
                  "|---|---|---|---|---|---|---|---|"]
        for leg, v in parity.get("legs", {}).items():
            header = v["header"][:200].replace("|", r"\|")  # a pipe inside a table cell
            lines.append(f"| {leg} | {_fmt(v['final_loss'], '.4f')} | {_fmt(v['tokens_per_s'], ',.0f')} | "
                         f"{_fmt(v['mem_mb'], '.0f')} | {v['wall_s']} | {v['graph_breaks']} | {v['recompiles']} | "
                         f"`{header}` |")
        lines.append("")
    cross = r["phases"].get("crossover")
    if cross:
        lines += [f"Checkpoints across devices (next-step loss, limit {CROSS_REL:.0%}): "
                  f"{'PASS' if cross['ok'] else 'FAIL'}", "",
                  "| case | resumed from | step | loss (resumed) | loss (writer) | rel diff | wall s |",
                  "|---|---|---|---|---|---|---|"]
        for name, c in cross.get("cases", {}).items():
            lines.append(f"| {name} | {c.get('resumed_from', '–')} | {c.get('step', '–')} | "
                         f"{_fmt(c.get('loss_resumed'), '.5f')} | {_fmt(c.get('loss_writer'), '.5f')} | "
                         f"{_fmt(c.get('rel_diff'), '.4%')} | {c.get('wall_s', c.get('error', '–'))} |")
        lines.append("")
    for name, phase in r["phases"].items():
        if phase.get("error"):
            lines.append(f"Phase {name} stopped with an error: {phase['error']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "bench" / "out"),
                    help="folder for gpu_session.{json,md,log} (default $OUT)")
    ap.add_argument("--dry-run", action="store_true", help="every phase on the CPU at toy sizes")
    ap.add_argument("--budget-s", type=float, default=560, help="cut every command off at this total time")
    ap.add_argument("--phases", default="bench:none,parity,crossover,bench:selective",
                    help="comma-separated phases, in order (bench:AC, parity, crossover)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (run dirs, checkpoints)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.dry_run:
        import torch
        if not torch.cuda.is_available():
            print("gpu_session: no CUDA device visible; use --dry-run on a CPU", file=sys.stderr)
            return 2
    s = Session(out, args.dry_run, args.budget_s)
    try:
        for phase in args.phases.split(","):
            print(f"gpu_session: {phase} ...", flush=True)
            name, _, arg = phase.partition(":")
            try:
                getattr(s, name)(*([arg] if arg else []))
            except Exception as e:  # a one-shot device session goes on with the other phases
                s.results["phases"].setdefault(name, {})["ok"] = False
                s.results["phases"][name]["error"] = f"{type(e).__name__}: {e}"
                print(f"gpu_session: {phase} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    finally:
        s.save()
        if not args.keep:
            shutil.rmtree(s.work, ignore_errors=True)
    print((out / "gpu_session.md").read_text(), flush=True)
    return 0 if s.results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
