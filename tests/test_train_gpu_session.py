"""bench/gpu_session.py --dry-run: the prepared GPU session runs every phase on a CPU at toy sizes and leaves
its three result files, with numbers that make sense (issue 18). On a CPU both training legs run fp32, so
the "GPU" leg (torchrun + FSDP2 on one rank) must match the plain one almost exactly."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from train_support import REPO, child_env


@pytest.mark.slow
def test_dry_run_leaves_sane_results(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "bench/gpu_session.py", "--dry-run", "--out", str(out)], cwd=REPO,
                          env=child_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_session.json", "gpu_session.log", "gpu_session.md"]
    r = json.loads((out / "gpu_session.json").read_text())
    assert r["ok"] and r["mode"].startswith("dry-run")
    assert list(r["phases"]) == ["bench", "parity", "crossover"]
    bench = r["phases"]["bench"]["runs"]
    assert set(bench) == {"none", "selective"}
    for b in bench.values():
        assert b["ok"] and b["tokens_per_s"] > 0 and b["steps"] == 2 and b["compiled"] is False
        assert b["mfu"] is None and b["graph_breaks"] == 0
    parity = r["phases"]["parity"]
    assert parity["ok"] and parity["gpu_leg_sharded"] and parity["rel_diff"] < 1e-3
    gpu, cpu = parity["legs"]["gpu"], parity["legs"]["cpu"]
    assert "world 1 (fsdp)" in gpu["header"] and "[FSDP2, 3 units, DTensor params" in gpu["header"]
    assert "[unwrapped]" in cpu["header"]
    assert gpu["steps"] == cpu["steps"] == parity["step"] == 6
    assert math.isfinite(gpu["final_loss"]) and 0 < gpu["final_loss"] < math.log(1024) + 1
    cases = r["phases"]["crossover"]["cases"]
    assert set(cases) == {"gpu_to_cpu", "cpu_to_gpu"}
    for c in cases.values():
        assert c["ok"] and c["resumed_from"] == 4 and c["step"] == 5 and c["rel_diff"] < 1e-3
    md = (out / "gpu_session.md").read_text()
    assert "overall: PASS" in md and "| gpu_to_cpu | 4 | 5 |" in md
    log = (out / "gpu_session.log").read_text()
    for name in ("bench ac=none", "bench ac=selective", "train gpu", "train cpu", "resume gpu_to_cpu",
                 "resume cpu_to_gpu"):
        assert f"===== {name}: rc=0" in log
