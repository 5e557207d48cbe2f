"""Fault drill (``make drill``): kill -9 the corpus build in every stage, fill the disk, then check nothing was lost.

Resumability is a claim about every stage, so the drill tests every stage: it first builds the corpus once
cleanly and reads from the log when each stage starts and how long it runs; then it starts the build again in
a fresh output folder, waits for a chosen stage to start, kills the whole process group with SIGKILL at a
random moment inside that stage's window, reruns, and so on through all stages. The survivor must equal the
clean build: token shards byte for byte, every stage's documents row for row, the same accounting counts.
A short training run is killed and resumed too (same loss curve), and a build into a small tmpfs must
stop with one clear line and leave only readable Parquet files.

Everything is written under ``out/drill/`` (``--out``): the runs, their manifests and ``drill.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from pipeline import accounting
from pipeline.manifest import DEFAULT_MANIFEST, REPO_ROOT
from storage.atomic import atomic_write_json, atomic_write_text
from storage.checksum import sha256_file
from storage.layout import STATS_FILE, SUCCESS, Layout

SHORT_SOURCES = ("github", "arxiv", "stackexchange")
COUNT_KEYS = ("docs_in", "docs_out", "excluded", "bytes_in", "bytes_out", "tokens")
_STAGE_START = re.compile(r"\| (?:(?P<stage>[\w]+)/(?P<source>[\w*]+): running|model (?P<model>\w+): building)")
PROFILE = "sample"  # the drill builds the sample profile


def _label(m: re.Match) -> str:
    return f"model:{m['model']}" if m["model"] else f"{m['stage']}/{m['source']}"


# ---- manifests and runs ----------------------------------------------------------------------
def drill_manifest(path: Path, out_dir: Path, sources: list[str] | None = None, params: dict | None = None,
                   profile: str = PROFILE) -> Path:
    """A copy of the repo's manifest writing into ``out_dir``, restricted to ``sources`` (weights
    renormalised to sum to 1), inputs made absolute, ``params`` merged into the profile's overrides."""
    raw = yaml.safe_load(DEFAULT_MANIFEST.read_text())
    raw["out_dir"] = str(out_dir)
    if sources:
        raw["sources"] = {s: raw["sources"][s] for s in sources}
        total = sum(spec["weight"] for spec in raw["sources"].values())
        for spec in raw["sources"].values():
            spec["weight"] = spec["weight"] / total
        last = next(reversed(raw["sources"].values()))
        last["weight"] += 1.0 - sum(spec["weight"] for spec in raw["sources"].values())
    for spec in raw["sources"].values():
        spec["inputs"][profile] = [str(REPO_ROOT / p) if isinstance(p, str) and "://" not in p else p for p in spec["inputs"][profile]]
    overrides = raw["profiles"][profile].setdefault("params", {})
    for stage, values in (params or {}).items():
        overrides[stage] = {**overrides.get(stage, {}), **values}
    atomic_write_text(path, yaml.safe_dump(raw, sort_keys=False))
    return path


def drill_layout(out_dir: Path, profile: str = PROFILE) -> Layout:
    """The output tree a drill manifest written with ``out_dir`` builds."""
    return Layout.of_profile(out_dir, profile)


@dataclass
class DrillRun:
    """One build (or training) process the drill ran: its log lines with their times, and where a kill landed."""

    returncode: int | None
    lines: list[tuple[float, str]] = field(default_factory=list)
    killed_in: str | None = None  # the stage that was running when the kill landed
    target: str | None = None  # the stage whose start scheduled the kill
    delay: float = 0.0

    def tail(self, n: int = 20) -> str:
        return "\n".join(line for _, line in self.lines[-n:])

    def starts(self) -> list[tuple[float, str]]:
        """(seconds since start, stage label) of each stage start in the log."""
        out = []
        for t, line in self.lines:
            m = _STAGE_START.search(line)
            if m:
                out.append((t, _label(m)))
        return out


def run_pipeline(cmd: list[str], kill_after: Callable[[str], float | None] | None = None, timeout: float = 1800, env=None) -> DrillRun:
    """Run ``cmd`` in its own process group. ``kill_after(label)`` is asked at each stage start (label
    ``extract/github``, ``model:tokenizer``); the first number it returns schedules a SIGKILL of the whole
    group that many seconds later."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True, env=env)
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in p.stdout:
            lines.put((time.monotonic() - start, line.rstrip("\n")))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    run = DrillRun(None)
    deadline = None
    current = None
    eof = False
    while True:
        try:
            item = lines.get(timeout=0.05)
        except queue.Empty:
            item = ""
        if item is None:
            eof = True
        elif item:
            run.lines.append(item)
            m = _STAGE_START.search(item[1])
            if m:
                current = _label(m)
                delay = kill_after(current) if kill_after and deadline is None else None
                if delay is not None:
                    deadline, run.target, run.delay = time.monotonic() + delay, current, delay
        if deadline is not None and time.monotonic() >= deadline and p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            run.killed_in = current
            deadline = float("inf")
        if eof and p.poll() is not None:
            break
        if time.monotonic() - start > timeout:
            os.killpg(p.pid, signal.SIGKILL)
            raise TimeoutError(f"{' '.join(cmd[:4])}: no result in {timeout:.0f}s")
    run.returncode = p.wait()
    _reap_group(p.pid)
    return run


def _reap_group(pgid: int) -> None:
    """A killed build's worker processes die with the group; make sure none outlives the drill."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def pipeline_cmd(manifest: Path, extra: list[str] = ()) -> list[str]:
    return [sys.executable, "-m", "pipeline", "run", "--manifest", str(manifest), *extra]


# ---- fingerprints ------------------------------------------------------------------------------
def _rows_digest(path: Path) -> str:
    import pyarrow.parquet as pq

    h = hashlib.sha256()
    for row in pq.read_table(path).to_pylist():
        h.update(json.dumps(row, sort_keys=True, default=str).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _sentencepiece_digest(path: Path) -> str:
    """A SentencePiece model's bytes without where it was built (trainer_spec.model_prefix and input name
    the build folder, so the CCNet LM's model differs between two output folders while the vocabulary and
    scores are the same; the tokenizer stage strips these itself and is compared byte for byte)."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception:  # noqa: BLE001 - not a SentencePiece model: compare the bytes
        return sha256_file(path)
    for name in ("model_prefix", "input", "num_threads"):
        proto.trainer_spec.ClearField(name)
    return hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()


def corpus_fingerprint(out_root: str | Path) -> dict[str, Any]:
    """What must not change when a build is interrupted or run elsewhere: every Parquet shard's rows,
    every token shard, model and tokenizer file's bytes, and the accounting counts of every stage."""
    out_root = Path(out_root)
    layout = Layout(out_root)

    def top(path: Path) -> str:  # tokens_dir() -> "tokens"
        return path.relative_to(layout.root).parts[0]

    # not corpus: scratch, the report, Slurm scripts and training runs may differ between two equal builds
    skip = {top(p) for p in (layout.scratch_dir, layout.report_dir, layout.slurm_dir, layout.train_dir())}
    byte_dirs = {top(p) for p in (layout.tokens_dir(), layout.tokenizer_dir, layout.models_dir)}
    files: dict[str, str] = {}
    for path in sorted(out_root.rglob("*")):
        rel = path.relative_to(out_root)
        if not path.is_file() or rel.parts[0] in skip or any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix == ".parquet":
            files[str(rel)] = _rows_digest(path)
        elif rel.parts[0] == top(layout.models_dir) and path.suffix == ".model":
            files[str(rel)] = _sentencepiece_digest(path)
        elif rel.parts[0] in byte_dirs and path.name not in (SUCCESS, STATS_FILE):
            files[str(rel)] = sha256_file(path)
    stats = accounting.load_stats(layout.stats_path)
    counts = {f"{stage}/{source}": {k: rec.get(k) for k in COUNT_KEYS if k in rec}
              for stage, per in stats.get("stages", {}).items() for source, rec in per.items()}
    return {"files": files, "counts": counts}


def compare_fingerprints(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Human-readable differences (empty when identical)."""
    diffs = []
    for kind in ("files", "counts"):
        for key in sorted(set(a[kind]) | set(b[kind])):
            if a[kind].get(key) != b[kind].get(key):
                diffs.append(f"{kind[:-1]} {key}: {a[kind].get(key)!r} != {b[kind].get(key)!r}")
    return diffs


def leftovers(out_root: Path) -> tuple[list[str], list[str]]:
    """(temporary files left in the output, Parquet files that do not open)."""
    import pyarrow.parquet as pq

    litter = sorted(str(p) for pattern in ("*.tmp", "*.part") for p in out_root.rglob(pattern))
    corrupt = []
    for p in out_root.rglob("*.parquet"):
        try:
            pq.ParquetFile(p).read()
        except Exception as e:  # noqa: BLE001 - any failure to read is a corrupt shard
            corrupt.append(f"{p}: {type(e).__name__}: {e}")
    return litter, corrupt


# ---- the drills --------------------------------------------------------------------------------
def stage_kind(label: str) -> str:
    """``extract/github`` -> ``extract``; ``model:lm`` stays."""
    return label.split("/")[0]


def kill_drill(work: Path, sources: list[str], params: dict, kills_per_stage: int, max_kills: int | None, rng: random.Random,
               log=print) -> dict[str, Any]:
    clean_m = drill_manifest(work / "clean.yaml", work / "clean", sources, params)
    killed_m = drill_manifest(work / "killed.yaml", work / "killed", sources, params)
    t0 = time.monotonic()
    clean = run_pipeline(pipeline_cmd(clean_m))
    if clean.returncode != 0:
        raise RuntimeError("clean build failed:\n" + clean.tail())
    clean_s = time.monotonic() - t0
    starts = clean.starts()
    window: dict[str, float] = {}  # stage kind -> how long its first run lasted in the clean build
    for i, (t, label) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else clean_s
        window.setdefault(stage_kind(label), max(0.2, end - t))
    log(f"clean build: {clean_s:.1f}s, stages: {', '.join(window)}")
    kinds = list(window)
    if max_kills is not None and max_kills < len(kinds) * kills_per_stage:
        kinds = sorted(rng.sample(kinds, min(max_kills, len(kinds))), key=list(window).index)
    remaining = {k: (kills_per_stage if max_kills is None else 1) for k in kinds}

    def choose(label: str) -> float | None:
        """Kill in this stage (it just started) if it still has kills to take: after how long."""
        kind = stage_kind(label)
        return rng.uniform(0.0, window[kind]) if remaining.get(kind) else None

    kills: list[dict[str, Any]] = []
    while any(remaining.values()):
        run = run_pipeline(pipeline_cmd(killed_m), kill_after=choose)
        if run.target is None:  # no stage with kills left started again: they are all complete
            break
        remaining[stage_kind(run.target)] -= 1
        if run.killed_in is None:
            log(f"  {run.target}: the build finished before the kill ({run.returncode=})")
            if run.returncode != 0:
                raise RuntimeError("an unkilled resume failed:\n" + run.tail())
            break
        kills.append({"target": run.target, "delay_s": round(run.delay, 2), "killed_in": run.killed_in})
        log(f"  kill -9 #{len(kills)}: {run.delay:5.2f}s after {run.target} started, landed in {run.killed_in}")
    final = run_pipeline(pipeline_cmd(killed_m))
    if final.returncode != 0:
        raise RuntimeError("final resume failed:\n" + final.tail())
    clean_tree, killed_tree = drill_layout(work / "clean"), drill_layout(work / "killed")
    diffs = compare_fingerprints(corpus_fingerprint(clean_tree.root), corpus_fingerprint(killed_tree.root))
    litter, corrupt = leftovers(killed_tree.root)
    fp = corpus_fingerprint(killed_tree.root)
    shards_dir = killed_tree.tokens_dir().relative_to(killed_tree.root)
    return {
        "sources": sources, "clean_seconds": round(clean_s, 1), "kills": kills,
        "stages_hit": sorted({k["killed_in"].split("/")[0] for k in kills}),
        "token_shards": sum(1 for f in fp["files"] if f.startswith(f"{shards_dir}/") and f.endswith(".ds")),
        "differences": diffs[:50], "corrupt_parquet": corrupt[:50], "ok": not diffs and not corrupt,
        # stale temporary files (a kill between writing and renaming them): harmless, but reported
        "temporary_files_left": litter[:50],
    }


def train_drill(work: Path, tokens_root: Path, manifest: Path, rng: random.Random, steps: int = 12, log=print) -> dict[str, Any]:
    """A short training run killed once after its first checkpoint and resumed, against an unkilled one.
    ``tokens_root`` is the built output tree (``out/<profile>``) whose shards and tokenizer it trains on."""
    tree = Layout(tokens_root)
    common = [
        "--config", str(REPO_ROOT / "train/configs/tiny.yaml"),
        "--set", f"data.tokens_dir={tree.tokens_dir()}", "--set", f"data.tokenizer={tree.tokenizer_model}",
        "--set", f"data.manifest={manifest}", "--set", f"max_steps={steps}", "--set", "ckpt_every=4", "--set", "eval_every=0",
        "--set", "eval_tokens=1024", "--set", "batch.tokens_per_step=1024", "--set", "batch.micro_batch=4",
        "--set", "data.seq_len=64", "--set", "dtype=fp32", "--set", "threads=1", "--set", "optim.warmup_steps=2",
    ]

    def cmd(run_dir: Path, resume: bool) -> list[str]:
        return [sys.executable, "-m", "train", *common, "--set", f"out_dir={run_dir}", *(["--resume"] if resume else [])]

    clean = run_pipeline(cmd(work / "train-clean", False), timeout=900)
    if clean.returncode != 0:  # a trainer that cannot train is the drill's finding, not a reason to skip it
        return {"ok": False, "kills": 0, "error": "the unkilled training run failed: " + " | ".join(line for _, line in clean.lines[-3:])}
    kills = 0
    run_dir = work / "train-killed"
    for attempt in range(3):
        p = subprocess.Popen(cmd(run_dir, attempt > 0), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 600
        # kill after the first checkpoint (step 4) and a step or more past where this attempt started
        target = rng.randint(max(5, _metric_steps(run_dir) + 1), steps - 1) if _metric_steps(run_dir) + 1 < steps else steps
        while p.poll() is None and time.monotonic() < deadline:
            if _metric_steps(run_dir) >= target:
                os.killpg(p.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.05)
        p.wait()
        _reap_group(p.pid)
        if kills >= 2:
            break
    resumed = run_pipeline(cmd(run_dir, True), timeout=900)
    a, b = _losses(work / "train-clean"), _losses(run_dir)
    ok = resumed.returncode == 0 and len(a) == steps and a == b
    log(f"training: {kills} kill(s), loss curves {'identical' if ok else 'DIFFER'} over {len(a)} steps")
    return {"kills": kills, "steps": steps, "identical_loss_curve": ok, "clean_losses": a[:steps], "resumed_losses": b[:steps], "ok": ok}


def _metric_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # the line being written when the process was killed
    return rows


def _metric_steps(run_dir: Path) -> int:
    return sum(1 for r in _metric_rows(run_dir) if "loss" in r)


def _losses(run_dir: Path) -> list[float]:
    by_step = {r["step"]: r["loss"] for r in _metric_rows(run_dir) if "loss" in r and "step" in r}
    return [by_step[s] for s in sorted(by_step)]


def full_disk_drill(work: Path, sizes_kb: tuple[int, ...] = (96, 256, 480), log=print) -> dict[str, Any]:
    """Build GitHub's extract into a tmpfs too small for it: one clear line, no corrupt shard."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return {"skipped": "needs root to mount a size-capped tmpfs"}
    results = []
    for size in sizes_kb:
        mnt = work / f"disk-{size}k"
        mnt.mkdir(parents=True, exist_ok=True)
        m = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}k", "tmpfs", str(mnt)], capture_output=True, text=True)
        if m.returncode != 0:
            return {"skipped": f"mount failed: {m.stderr.strip()}"}
        try:
            manifest = drill_manifest(work / f"disk-{size}k.yaml", mnt / "out", ["github"], {})
            p = subprocess.run(pipeline_cmd(manifest, ["--stages", "extract"]), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
            lines = [line for line in p.stderr.splitlines() if line.strip()]
            last = lines[-1] if lines else ""
            litter, corrupt = leftovers(mnt / "out")
            clean_error = p.returncode != 0 and "Traceback" not in p.stderr and "No space left" in last
            ok = (p.returncode == 0 or clean_error) and not corrupt
            results.append({"size_kb": size, "returncode": p.returncode, "last_line": last[:300], "corrupt_parquet": corrupt,
                            "temporary_files_left": litter, "ok": ok})
            log(f"full disk {size:>4} KB: rc={p.returncode} {'ok' if ok else 'FAILED'}: {last[:120]}")
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True)
    return {"runs": results, "faults": sum(1 for r in results if r["returncode"] != 0), "ok": all(r["ok"] for r in results)}


# ---- CLI -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ops.drill", description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="CI form: 3 kills over github, arxiv, stackexchange")
    ap.add_argument("--sources", default=None, help="comma-separated sources (default: all; --short: github,arxiv,stackexchange)")
    ap.add_argument("--kills-per-stage", type=int, default=2)
    ap.add_argument("--max-kills", type=int, default=None, help="spread at most this many kills over the stages")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", default=str(REPO_ROOT / "out" / "drill"))
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-disk", action="store_true")
    args = ap.parse_args(argv)

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    out = Path(args.out)
    work = out / "runs"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    if args.sources:
        sources = [s for s in args.sources.split(",") if s]
    else:
        sources = list(SHORT_SOURCES) if args.short else None
    max_kills = args.max_kills if args.max_kills is not None else (3 if args.short else None)
    # fewer, larger tasks keep the drill quick; resumption is per task either way
    params = {"extract": {"tasks": 2}} if args.short else {}
    print(f"fault drill: seed {seed}, sources {','.join(sources or ['all'])}, output {out}")
    report: dict[str, Any] = {"seed": seed, "short": args.short}
    report["pipeline"] = kill_drill(work, sources, params, args.kills_per_stage, max_kills, rng)
    if args.no_train:
        report["train"] = {"skipped": "--no-train"}
    else:
        report["train"] = train_drill(work, drill_layout(work / "killed").root, work / "killed.yaml", rng, steps=8 if args.short else 16)
    report["full_disk"] = {"skipped": "--no-disk"} if args.no_disk else full_disk_drill(work, (96, 320) if args.short else (96, 256, 480))
    parts = [v for v in (report["pipeline"], report["train"], report["full_disk"]) if "skipped" not in v]
    report["ok"] = all(v["ok"] for v in parts)
    atomic_write_json(out / "drill.json", report)
    _print_summary(report)
    print(f"written: {out / 'drill.json'}")
    return 0 if report["ok"] else 1


def _print_summary(r: dict[str, Any]) -> None:
    p, t, d = r["pipeline"], r["train"], r["full_disk"]
    rows = [
        ("kill -9 during the corpus build", len(p["kills"]), "survived" if p["ok"] else "FAILED",
         f"stages hit: {', '.join(p['stages_hit'])}; {p['token_shards']} token shards identical"
         + (f"; {len(p['temporary_files_left'])} stale temp file(s) left" if p["temporary_files_left"] else "") if p["ok"] else "; ".join((p["differences"] + p["corrupt_parquet"])[:3])),
        ("kill -9 during training", t.get("kills", 0), "skipped" if "skipped" in t else ("survived" if t["ok"] else "FAILED"),
         t.get("skipped") or t.get("error") or f"{t['steps']} steps, loss curve {'identical' if t['identical_loss_curve'] else 'differs'}"),
        ("full disk (tmpfs)", d.get("faults", 0), "skipped" if "skipped" in d else ("survived" if d["ok"] else "FAILED"),
         d.get("skipped") or "; ".join(f"{x['size_kb']}KB rc={x['returncode']}" for x in d["runs"])),
    ]
    print(f"\n{'fault':<34}{'count':>6}  {'result':<9} detail")
    for name, n, res, detail in rows:
        print(f"{name:<34}{n:>6}  {res:<9} {detail}")
    print(f"{'overall':<34}{'':>6}  {'OK' if r['ok'] else 'FAILED'}")


def cli(argv: list[str] | None = None) -> int:
    """``main`` with a failed build reported as its message and log tail, not a traceback."""
    try:
        return main(argv)
    except (RuntimeError, TimeoutError) as e:
        print(f"drill: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(cli())
