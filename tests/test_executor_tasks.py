"""#15 items 3 and 4: task counts sized by data (extract: one task per input entry, or per ``task_mb``, no
cap) and every byte of work on the executor (downloads as executor tasks over a real 127.0.0.1 server,
killed part-way and resumed; model builds as a one-task ``build`` pass in a worker process; the Slurm dry
run writes both)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ingest.extract import ExtractStage, assign_entries
from ops.drill import drill_manifest
from pipeline.executors import make_executor
from pipeline.manifest import load
from pipeline.runner import Runner
from pipeline.stages import StageIO
from tests.test_download import server  # noqa: F401 (the 127.0.0.1 HTTP server fixture)

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def _io(input_dir: Path, out: Path, executor=None) -> StageIO:
    return StageIO(stage="extract", source="c4", params={}, input_dir=input_dir, output_dir=out, work_dir=out / ".work",
                   out_root=out.parent, executor=executor or make_executor("local", workers=2))


def _c4_files(folder: Path, n: int, docs_each: int = 2) -> list[Path]:
    import gzip

    folder.mkdir(parents=True)
    files = []
    for i in range(n):
        path = folder / f"c4-train.{i:05d}-of-01024.json.gz"
        rows = [json.dumps({"text": f"document {d} of file {i}. " * 20, "url": f"https://x.org/{i}/{d}"}) for d in range(docs_each)]
        path.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
        files.append(path)
    return files


# ---- extract: task counts by data ------------------------------------------------------------
def test_assignment_one_task_per_entry_or_per_task_mb_or_explicit():
    assert assign_entries([5] * 70) == [[i] for i in range(70)]  # no cap: 70 entries, 70 tasks
    assert assign_entries([5] * 5, tasks=2) == [[0, 2, 4], [1, 3]]  # as before: entry i to task i % tasks
    assert assign_entries([5] * 3, tasks=9) == [[0], [1], [2]]  # never an empty task
    mb = 1_000_000
    # consecutive entries up to about task_mb; an entry bigger than task_mb is a task of its own
    assert assign_entries([mb, mb, 3 * mb, mb // 2, mb // 2, mb // 2], task_mb=2) == [[0, 1], [2], [3, 4, 5]]
    assert assign_entries([], task_mb=2) == [[]]


def test_extract_runs_one_task_per_input_file_without_a_cap(tmp_path):
    files = _c4_files(tmp_path / "raw", 70)
    (tmp_path / "raw" / "_SUCCESS").write_text("{}")
    out = tmp_path / "extract"
    io = _io(tmp_path / "raw", out)
    stage = ExtractStage({})
    assert stage.tasks(io) == 70
    assert ExtractStage.estimate_tasks({}, tmp_path / "raw", [], tmp_path, None) == 70
    assert ExtractStage.estimate_tasks({}, None, [str(tmp_path / "raw" / "*.json.gz")], tmp_path, None) == 70  # before download
    stage.run(io)
    assert len(list((out / ".work" / "passes" / "main" / "completions").iterdir())) == 70
    assert len(list(out.glob("*.parquet"))) == 70
    records = [json.loads(p.read_text()) for p in sorted((out / ".work" / "accounting").glob("in-*.json"))]
    assert len(records) == 70 and {r["files"] for r in records} == {1} and sum(r["docs_in"] for r in records) == 140
    # task_mb: consecutive files grouped by size, the same grouping in the estimate
    size = max(f.stat().st_size for f in files)  # the files differ by a few bytes: 10 of them fit 10.5 x the largest
    params = {"task_mb": 10.5 * size / 1e6}
    assert ExtractStage(params).tasks(io) == 7 == ExtractStage.estimate_tasks(params, tmp_path / "raw", [], tmp_path, None)
    assert ExtractStage({"tasks": 3}).tasks(io) == 3


# ---- download: executor tasks ---------------------------------------------------------------
def _download_manifest(tmp_path: Path, urls: list[str], **params) -> Path:
    return drill_manifest(tmp_path / "m.yaml", tmp_path / "out", ["c4"],
                          {"download": {"inputs": urls, "max_concurrency": 1, "retries": 0, "backoff": 0, **params}})


def test_download_runs_as_tasks_and_a_killed_task_resumes_fetching_only_what_is_missing(server, tmp_path):  # noqa: F811
    names = [f"c4-{c}.json.gz" for c in "abcdefg"]
    for i, name in enumerate(names):
        server.files[f"/{name}"] = bytes([i]) * (3_000_000 if name == "c4-d.json.gz" else 20_000)
    server.rules["/c4-d.json.gz"] = "trickle"  # 3 MB at 10 kB / 20 ms: task 1 is still on it when killed
    urls = [f"{server.url}/{n}" for n in names] + [f"{server.url}/missing.json.gz"]  # 8 items, 2 a task: 4 tasks
    manifest = _download_manifest(tmp_path, urls, files_per_task=2)
    dest = tmp_path / "out" / "sample" / "download" / "c4"
    cmd = [PY, "-m", "pipeline", "run", "--manifest", str(manifest), "--stages", "download", "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:  # kill the whole build once task 1 has finished c and is half-way through d
        deadline = time.monotonic() + 120
        while not ((dest / ".done" / "c4-c.json.gz.done.json").exists() and server.count("/c4-d.json.gz")
                   and (dest / "c4-d.json.gz.part").exists()):
            assert proc.poll() is None and time.monotonic() < deadline, "the download ended before it could be killed"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    work = dest / ".work"
    done = sorted(p.name for p in (work / "passes" / "main" / "completions").iterdir())
    assert done == ["00000"]  # task 0 finished; task 1 was killed part-way; 2 and 3 never started
    assert not (dest / "_SUCCESS").exists()

    del server.rules["/c4-d.json.gz"]
    before = {n: server.count(f"/{n}") for n in names}
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    after = {n: server.count(f"/{n}") - before[n] for n in names}
    # task 0 skipped (complete); task 1 reran but c (finished before the kill) was not fetched again
    assert after == {"c4-a.json.gz": 0, "c4-b.json.gz": 0, "c4-c.json.gz": 0, "c4-d.json.gz": 1,
                     "c4-e.json.gz": 1, "c4-f.json.gz": 1, "c4-g.json.gz": 1}
    resumed_from = [r for path, r in server.requests if path == "/c4-d.json.gz"][-1]
    assert resumed_from and resumed_from.startswith("bytes=")  # the part left by the kill was resumed
    for i, name in enumerate(names):
        assert (dest / name).read_bytes() == server.files[f"/{name}"]
    stats = json.loads((dest / "_SUCCESS").read_text())
    assert stats["tasks"] == 4 and stats["docs_in"] == 8 and stats["docs_out"] == 7
    assert sum(stats["excluded"].values()) == 1 and stats["bytes_out"] == sum(len(b) for b in server.files.values())
    per_task = [json.loads((work / "transfer" / f"{r:05d}.json").read_text()) for r in range(4)]
    transfer = json.loads((work / "transfer.json").read_text())
    # what the tasks that count moved: task 0 in the first run (a, b), the rest in the rerun (d, e, f, g; c was done)
    assert transfer["downloaded"] == sum(t["downloaded"] for t in per_task) == 6
    assert transfer["resumed"] == 1
    assert [json.loads((work / "accounting" / f"in-{r:05d}.json").read_text())["docs_in"] for r in range(4)] == [2, 2, 2, 2]


def test_download_task_count_param_and_names_shared_out_before_the_tasks(server, tmp_path):  # noqa: F811
    server.files["/one/f.json.gz"] = b"1" * 1000
    server.files["/two/f.json.gz"] = b"2" * 1000  # same destination name: the second is refused, in any task
    server.files["/g.json.gz"] = b"3" * 1000
    urls = [f"{server.url}/one/f.json.gz", f"{server.url}/g.json.gz", f"{server.url}/two/f.json.gz"]
    manifest = _download_manifest(tmp_path, urls, tasks=3)
    m = load(manifest)
    Runner(m, make_executor("local", workers=2), stages=["download"]).run()
    stats = json.loads((m.out_root / "download" / "c4" / "_SUCCESS").read_text())
    assert stats["tasks"] == 3 and stats["docs_out"] == 2 and stats["excluded"] == {"duplicate_name": 1}
    assert (m.out_root / "download" / "c4" / "f.json.gz").read_bytes() == b"1" * 1000
    assert server.count("/two/f.json.gz") == 0


# ---- model builds: a one-task pass, not the driver --------------------------------------------
@pytest.mark.slow
def test_model_build_runs_as_an_executor_pass_in_a_worker_and_slurm_dry_run_writes_it(tmp_path):
    manifest = drill_manifest(tmp_path / "m.yaml", tmp_path / "out", ["github"], {"download": {"files_per_task": 8}})
    raw = yaml.safe_load(manifest.read_text())
    raw["resources"] = {"default": {"partition": "cpu", "time": "04:00:00", "cpus_per_task": 1, "mem_per_cpu_gb": 2},
                        "stages": {"tokenizer": {"partition": "big", "cpus_per_task": 4, "mem_per_cpu_gb": 3},
                                   "download": {"time": "12:00:00"}}}
    manifest.write_text(yaml.safe_dump(raw, sort_keys=False))
    m = load(manifest)
    root = m.out_root

    # a dry run before anything ran: the download's tasks are a job array; extract estimated from its item list
    dry = subprocess.run([PY, "-m", "pipeline", "run", "--manifest", str(manifest), "--executor", "slurm", "--dry-run"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    plan = {(e["stage"], e["source"]): e for e in json.loads((root / "slurm" / "plan.json").read_text())["entries"]}
    items = sum(1 for _ in open(root / "download" / "github" / ".work" / "items.jsonl")) - 1
    assert plan[("download", "github")]["status"] == "scripts" and plan[("download", "github")]["tasks"] == -(-items // 8)
    script = (root / "slurm" / "download" / "github" / "main.sbatch").read_text()
    assert f"#SBATCH --array=0-{-(-items // 8) - 1}" in script and "#SBATCH --time=12:00:00" in script
    assert plan[("extract", "github")]["status"] == "estimated" and plan[("extract", "github")]["tasks"] == 10  # 10 repositories
    assert plan[("tokenizer", "*")]["status"] == "estimated"

    Runner(m, make_executor("local", workers=2), stages=["exactdedup"]).run()
    assert json.loads((root / "extract" / "github" / "_SUCCESS").read_text())["tasks"] == 10
    # the tokenizer's inputs are complete: the dry run writes its one-task build job with its own resources
    dry = subprocess.run([PY, "-m", "pipeline", "run", "--manifest", str(manifest), "--executor", "slurm", "--dry-run"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    build = (root / "slurm" / "tokenizer" / "build.sbatch").read_text()
    for line in ("--array=0-0", "--partition=big", "--cpus-per-task=4", "--mem-per-cpu=3G", "--job-name=llamix-tokenizer-build"):
        assert f"#SBATCH {line}" in build
    plan = {(e["stage"], e["source"]): e for e in json.loads((root / "slurm" / "plan.json").read_text())["entries"]}
    assert plan[("tokenizer", "*")]["status"] == "scripts"
    assert "build.sbatch" in (root / "slurm" / "submit.sh").read_text()

    # run locally: the build is the pass "build" of the tokenizer's folder, trained in a worker process
    Runner(m, make_executor("local", workers=2), stages=["tokenizer"]).run()
    tok = root / "tokenizer"
    assert (tok / ".work" / "passes" / "build" / "completions" / "00000").exists()
    summary = json.loads((tok / "_SUCCESS").read_text())
    assert summary["built_by"]["pid"] != os.getpid() and summary["sources"]["github"]["lines_used"] > 0
    stats = json.loads((root / "report" / "stats.json").read_text())
    assert stats["models"]["tokenizer"]["built_by"] == summary["built_by"]
    # the driver killed after the build task finished but before it marked the model: the rerun does not retrain
    model_mtime = (tok / "tokenizer.model").stat().st_mtime_ns
    (tok / "_SUCCESS").unlink()
    Runner(m, make_executor("local", workers=2), stages=["tokenizer"]).run()
    assert (tok / "tokenizer.model").stat().st_mtime_ns == model_mtime
    assert json.loads((tok / "_SUCCESS").read_text())["built_by"] == summary["built_by"]
