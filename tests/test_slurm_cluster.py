"""The Slurm paths on a real scheduler: a one-node cluster (tools/slurm-local.sh, the ``slurm_cluster``
fixture) runs ``python -m pipeline run --executor slurm`` and the sbatch training example.

* The sample corpus built as Slurm job arrays equals the recorded local build
  (tests/data/sample_corpus_digest.json) byte for byte: token shards, tokenizer, models, Parquet rows,
  the counts of every stage.
* One array element cancelled (``scancel JOB_INDEX``) while it runs: the driver fails with one line, the
  rerun submits only the tasks without completion markers, and the result equals a local build. This
  one builds GitHub only (10 tasks per pass, a three-pass dedup stage; 6 of the sample's 38 passes) to
  keep CI time down: the full sample on Slurm already runs in the test before.
* A job sbatch refuses (an unknown partition) ends the driver with one line; Ctrl-C in the driver cancels
  the running pass's jobs.
* train/slurm/train_fsdp.sbatch trains the tiny config with torchrun (2 processes, gloo, FSDP2, CPU) as a
  Slurm job; the job is cancelled after a checkpoint and a second job resumes it; the loss curve equals
  a one-process run of the same micro-batch size within 1e-4 relative (see test_train_distributed.py).

The manifests' ``resources`` fit the one-node cluster (partition ``llamix``, 1 CPU and 1 GB per task;
``tasks_per_job: 5`` runs five small tasks per array element: each element's Python start-up costs more
than the sample's tasks themselves). The driver polls every 0.5 s (``executor.poll_s``).
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ops.drill import compare_fingerprints, corpus_fingerprint, drill_manifest, leftovers
from slurm_support import PARTITION, REPO
from train_support import last_logged_step, make_corpus, tiny_config, write_config

DIGEST = REPO / "tests" / "data" / "sample_corpus_digest.json"
RESOURCES = {
    "default": {"partition": PARTITION, "time": "00:20:00", "cpus_per_task": 1, "mem_per_cpu_gb": 1, "tasks_per_job": 5,
                "sbatch_args": {"account": "llamix"}},  # accepted as is: the test cluster keeps no accounts
    "stages": {
        "minhash": {"mem_per_cpu_gb": 1.5},  # sent as --mem-per-cpu=1536M
        "tokenize": {"max_array_size": 1},  # a pass of 2 elements becomes 2 arrays (RUN_OFFSET), chained
    },
}


def slurm_manifest(path: Path, out_dir: Path, sources: list[str] | None = None) -> Path:
    manifest = drill_manifest(path, out_dir, sources)
    raw = yaml.safe_load(manifest.read_text())
    raw["resources"] = RESOURCES
    raw["executor"] = {"name": "slurm", "poll_s": 0.5}
    manifest.write_text(yaml.safe_dump(raw, sort_keys=False))
    return manifest


def pipeline_cmd(manifest: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", "run", "--manifest", str(manifest), *args]


def run_pipeline(manifest: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(pipeline_cmd(manifest, *args), cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def passes(root: Path) -> list[Path]:
    """Every pass folder: stages' (<stage>/<source>/), models' (models/<name>/) and the tokenizer's build."""
    return sorted({*root.glob("*/*/.work/passes/*"), *root.glob("*/.work/passes/*")})


@pytest.fixture
def lid_model():
    from filters.lid_model import LidModelMissing, lid_model_path

    try:
        lid_model_path()
    except LidModelMissing as e:
        pytest.skip(f"{e} (run `make setup`)")


@pytest.mark.slow
def test_sample_corpus_on_slurm_equals_the_local_build(lid_model, slurm_cluster, tmp_path):
    manifest = slurm_manifest(tmp_path / "manifest.yaml", tmp_path / "out")
    p = run_pipeline(manifest, "--executor", "slurm", env=slurm_cluster.env())
    assert p.returncode == 0, p.stderr[-3000:]
    root = tmp_path / "out" / "sample"
    diffs = compare_fingerprints(json.loads(DIGEST.read_text()), corpus_fingerprint(root))
    assert not diffs, "\n".join(diffs[:40])
    assert leftovers(root) == ([], [])
    # every pass ran as Slurm job arrays, submitted once: the jobs' output files are in each pass's folder
    submitted = [line for line in p.stderr.splitlines() if ": Slurm job " in line]
    assert len(submitted) == len(passes(root)) > 30
    for folder in passes(root):
        assert list((folder / "slurm_logs").glob("*.out")), f"{folder}: no Slurm output"
    assert "#SBATCH --account=llamix" in (root / "extract/c4/.work/passes/main/launch_script.slurm").read_text()
    assert "#SBATCH --mem-per-cpu=1536M" in (root / "minhash/c4/.work/passes/main/launch_script.slurm").read_text()
    assert "srun --cpus-per-task=1 -l -n 1 launch_pickled_pipeline" in (root / "tokens/github/.work/passes/main/launch_script.slurm").read_text()
    assert any("tokenize/github/main: Slurm job " in line and "," in line.split("Slurm job ")[1].split()[0]
               for line in p.stderr.splitlines()), "tokenize/github was not split into two arrays"
    assert slurm_cluster.queue() == []


def _cancel_one_running_element(cluster, name: str, driver: subprocess.Popen, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None:
        running = [q for q in cluster.queue() if q["name"] == name and q["state"] == "RUNNING" and q["task"] != "N/A"]
        if running:
            cluster.run("scancel", f"{running[0]['job']}_{running[0]['task']}")
            return running[0]
        time.sleep(0.1)
    raise AssertionError(f"no element of {name} seen running (driver exit {driver.poll()})")


@pytest.mark.slow
def test_cancelled_array_element_reruns_only_its_tasks(lid_model, slurm_cluster, tmp_path):
    sources = ["github"]
    reference = drill_manifest(tmp_path / "local.yaml", tmp_path / "local", sources)
    p = run_pipeline(reference, "--workers", "2")
    assert p.returncode == 0, p.stderr[-3000:]

    manifest = slurm_manifest(tmp_path / "slurm.yaml", tmp_path / "slurm", sources)
    root = tmp_path / "slurm" / "sample"
    hash_pass = root / "exactdedup" / "github" / ".work" / "passes" / "hash"
    driver = subprocess.Popen(pipeline_cmd(manifest, "--executor", "slurm"), cwd=REPO, env=slurm_cluster.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cancelled = _cancel_one_running_element(slurm_cluster, "llamix-exactdedup-github-hash", driver)
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 1, err[-3000:]
    failure = err.strip().splitlines()[-1]
    assert failure.startswith("failed: SlurmError: exactdedup/github/hash: Slurm job ") and "incomplete" in failure, failure
    tasks = json.loads((hash_pass / "ranks_to_run.json").read_text())
    done = {int(f.name) for f in (hash_pass / "completions").iterdir()}
    missing = sorted(set(tasks) - done)
    assert tasks == list(range(10)) and 0 < len(missing) < 10, (cancelled, done)

    p = run_pipeline(manifest, "--executor", "slurm", env=slurm_cluster.env())
    assert p.returncode == 0, p.stderr[-3000:]
    # the rerun skipped the complete stages and submitted exactly the missing tasks of the cancelled pass
    submitted = [re.search(r"[\w*]+/[\w*]+/\w+: Slurm job .*", line).group(0)  # the message, without the log prefix
                 for line in p.stderr.splitlines() if ": Slurm job " in line]
    assert submitted[0].startswith("exactdedup/github/hash: Slurm job ") and f"({len(missing)} of 10 tasks)" in submitted[0], submitted
    assert not any(s.startswith(("extract/", "code_quality/")) for s in submitted)
    assert json.loads((hash_pass / "ranks_to_run.json").read_text()) == missing
    assert sorted(int(f.name) for f in (hash_pass / "completions").iterdir()) == list(range(10))

    diffs = compare_fingerprints(corpus_fingerprint(tmp_path / "local" / "sample"), corpus_fingerprint(root))
    assert not diffs, "\n".join(diffs[:40])
    assert leftovers(root) == ([], [])
    assert slurm_cluster.queue() == []


@pytest.mark.slow
def test_a_refused_job_and_ctrl_c_end_the_driver_with_one_line(slurm_cluster, tmp_path):
    manifest = slurm_manifest(tmp_path / "slurm.yaml", tmp_path / "slurm", ["github"])
    raw = yaml.safe_load(manifest.read_text())
    raw["resources"]["stages"]["extract"] = {"partition": "gpu-h100"}
    manifest.with_name("refused.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    p = run_pipeline(manifest.with_name("refused.yaml"), "--executor", "slurm", env=slurm_cluster.env())
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.stderr.strip().splitlines()[-1] == ("failed: SlurmError: extract/github/main: sbatch refused the job: "
                                                 "invalid partition specified: gpu-h100; Batch job submission failed: "
                                                 "Invalid partition name specified")

    # Ctrl-C while a pass runs: its jobs are cancelled, so the rerun will not find them still running
    driver = subprocess.Popen(pipeline_cmd(manifest, "--executor", "slurm"), cwd=REPO, env=slurm_cluster.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(q["name"] == "llamix-extract-github-main" for q in slurm_cluster.queue()):
        assert time.monotonic() < deadline and driver.poll() is None, driver.communicate()[1][-3000:]
        time.sleep(0.1)
    time.sleep(0.3)  # sbatch has answered the driver
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err[-3000:]
    assert "extract/github/main: cancelled Slurm job" in err and "interrupted: rerun the same command to resume" in err
    deadline = time.monotonic() + 60
    while slurm_cluster.queue():  # cancelled elements leave the queue after KillWait at most
        assert time.monotonic() < deadline, slurm_cluster.queue()
        time.sleep(0.2)


REL = 1e-4  # as tests/test_train_distributed.py: fp32, only the order of reductions differs


def _curve(run: Path):
    from train.metrics import read_metrics

    recs = read_metrics(run / "metrics.jsonl")
    return [r["step"] for r in recs if "loss" in r], [r["loss"] for r in recs if "loss" in r], [r["eval"] for r in recs if "eval" in r]


def _job_processes(marker: str) -> list[int]:
    """Processes whose command line mentions marker (the job's config path): none once Slurm is done."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_sbatch_example_trains_and_a_second_job_resumes(slurm_cluster, tmp_path, one_torch_thread):
    from train.checkpoint import complete_checkpoints
    from train.config import config_from_dict
    from train.loop import train

    corpus = make_corpus(tmp_path / "corpus")

    def config(run: Path, **extra) -> dict:
        cfg = tiny_config(corpus, run, max_steps=40, eval_every=10, ckpt_every=10, keep_last=5, **extra)
        cfg["batch"] = {**cfg["batch"], "micro_batch": 2}
        return cfg

    train(config_from_dict(config(tmp_path / "one")))  # uninterrupted, one process, same micro-batch
    steps_ref, losses_ref, evals_ref = _curve(tmp_path / "one")

    run = tmp_path / "slurm"
    cfg_path = write_config(config(run, parallel="fsdp"), tmp_path / "fsdp.yaml")
    env = slurm_cluster.env(CONFIG=str(cfg_path), PROCS_PER_NODE="2", PYTHON=sys.executable, OMP_NUM_THREADS="1",
                            PYTHONPATH=str(REPO))
    sbatch = ["sbatch", "--parsable", "--nodes=1", "--gpus-per-node=0", "--cpus-per-task=2", "--time=00:15:00",
              "--job-name=llamix-tiny", f"--output={tmp_path}/%x-%j.out", str(REPO / "train/slurm/train_fsdp.sbatch")]

    def submit() -> str:
        p = subprocess.run(sbatch, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip().split(";")[0]

    first = submit()
    deadline = time.monotonic() + 300
    while last_logged_step(run / "metrics.jsonl") < 12:  # past the step-10 checkpoint
        assert time.monotonic() < deadline and any(q["id"] == first for q in slurm_cluster.queue()), \
            (tmp_path / f"llamix-tiny-{first}.out").read_text()[-3000:]
        time.sleep(0.02)
    slurm_cluster.run("scancel", first)
    slurm_cluster.wait_gone(first)
    killed_at = last_logged_step(run / "metrics.jsonl")
    assert 12 <= killed_at < 40 and not (run / "summary.json").exists(), killed_at
    assert complete_checkpoints(run)
    log1 = (tmp_path / f"llamix-tiny-{first}.out").read_text()
    assert "world 2 (fsdp) on cpu" in log1 and "fresh start" in log1
    assert _job_processes(str(cfg_path)) == []  # scancel took torchrun and both workers down

    second = submit()
    slurm_cluster.wait_gone(second, timeout=300)
    log2 = (tmp_path / f"llamix-tiny-{second}.out").read_text()
    assert (run / "summary.json").is_file(), log2[-3000:]
    assert "resuming at step" in log2 and "world 2 (fsdp) on cpu" in log2
    resumed_at = int(log2.split("resuming at step")[1].split()[0])
    assert 10 <= resumed_at <= killed_at

    steps, losses, evals = _curve(run)
    assert steps == steps_ref == list(range(1, 41))  # no step lost or repeated across the two jobs
    for a, b in zip(losses_ref, losses):
        assert abs(a - b) <= REL * abs(a), (losses_ref, losses)
    assert len(evals) == len(evals_ref)
    for ea, eb in zip(evals_ref, evals):
        for k in ea:
            assert abs(ea[k] - eb[k]) <= REL * abs(ea[k]), (evals_ref, evals)
