"""Cluster executors: Slurm scripts (resources, arrays, dependencies; run as Slurm would run them) and Ray
(the same corpus as the local executor, byte for byte)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ops.drill import compare_fingerprints, corpus_fingerprint, drill_manifest
from pipeline.executors import make_executor
from pipeline.executors.resources import split_name, stage_resources
from pipeline.manifest import load
from pipeline.runner import Runner

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
RESOURCES = {
    "default": {"partition": "cpu", "time": "04:00:00", "cpus_per_task": 1, "mem_per_cpu_gb": 2},
    "stages": {"exactdedup": {"partition": "bigmem", "time": "01:30:00", "cpus_per_task": 3, "mem_per_cpu_gb": 5}},
}


def _pipeline(manifest: Path, *args: str, env=None) -> str:
    p = subprocess.run([PY, "-m", "pipeline", "run", "--manifest", str(manifest), *args], cwd=REPO, capture_output=True,
                       text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout + p.stderr


def _sbatch(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=?(.*)$", path.read_text(), re.M))


# Stand-ins for the Slurm commands a submission touches, for a machine without Slurm: `sbatch` runs the
# array's indices one after another in the background, `squeue` lists it while it runs, `srun` runs its
# command once, `scontrol show hostnames` echoes the node list.
FAKE_SLURM = {
    "sbatch": r"""#!/bin/bash
state="$FAKE_SLURM_STATE"; mkdir -p "$state"; offset=0
for a in "$@"; do case "$a" in --export=*RUN_OFFSET=*) offset="${a##*RUN_OFFSET=}";; esac; done
script="${@: -1}"; id=$(( $(ls "$state" | grep -c '\.sh$') + 1 ))
cp "$script" "$state/$id.sh"; touch "$state/$id.running"
read lo hi < <(sed -n 's/^#SBATCH --array=\([0-9]*\)-\([0-9]*\).*/\1 \2/p' "$state/$id.sh")
( for i in $(seq "$lo" "$hi"); do
    SLURM_ARRAY_TASK_ID=$i RUN_OFFSET=$offset SLURM_NODELIST=localhost SLURM_JOB_ID=$id bash "$state/$id.sh" > "$state/$id.$i.log" 2>&1
  done; rm -f "$state/$id.running" ) > /dev/null 2>&1 &
echo "Submitted batch job $id"
""",
    "squeue": """#!/bin/bash
while [ $# -gt 0 ]; do [ "$1" = -j ] && id=$2; shift; done
[ -e "$FAKE_SLURM_STATE/$id.running" ] && echo "$id"; exit 0
""",
    "srun": '#!/bin/bash\nwhile [[ "$1" == -* ]]; do [[ "$1" == -n ]] && shift; shift; done\nexec "$@"\n',
    "scontrol": '#!/bin/bash\necho "$3"\n',
}


def _fake_slurm(tmp_path: Path) -> Path:
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    for tool, body in FAKE_SLURM.items():
        (shim / tool).write_text(body)
        (shim / tool).chmod(0o755)
    return shim


def test_stage_resources_overlay_default_and_reject_unknown_keys():
    r = stage_resources(RESOURCES, "exactdedup")
    assert r == {"partition": "bigmem", "time": "01:30:00", "cpus_per_task": 3, "mem_per_cpu_gb": 5}
    assert stage_resources(RESOURCES, "extract")["partition"] == "cpu"
    with pytest.raises(ValueError, match=r"resources.stages.lm: unknown key\(s\) gpus"):
        stage_resources({"stages": {"lm": {"gpus": 1}}}, "lm")
    assert split_name("minhash/c4/buckets") == ("minhash", "c4", "buckets")


def test_slurm_job_ids_memory_and_time_as_a_real_scheduler_takes_them(tmp_path):
    from pipeline.executors.slurm import SlurmError, SlurmExecutor, job_id_from_sbatch

    assert job_id_from_sbatch("Submitted batch job 42\n") == "42"
    assert job_id_from_sbatch("Submitted batch job 42 on cluster west\n") == "42"
    assert job_id_from_sbatch("42;west\n") == "42"
    with pytest.raises(SlurmError, match="cannot read a job id"):
        job_id_from_sbatch("sbatch: error: Batch job submission failed\n")
    # YAML reads an unquoted 4:00:00 as 14400, which Slurm would take as minutes
    with pytest.raises(ValueError, match=r"resources.stages.extract.time: write Slurm's time limit as a quoted string"):
        stage_resources({"stages": {"extract": {"time": 14400}}}, "extract")
    resources = {"default": {"partition": "p", "time": "01:00:00", "cpus_per_task": 3, "mem_per_cpu_gb": 1.5, "tasks_per_job": 4}}
    ex = SlurmExecutor(resources=resources, dry_run=True, out_root=tmp_path).make([], 10, tmp_path / "logs", "minhash/c4/main")
    args = ex.get_sbatch_args(3)
    assert args["mem-per-cpu"] == "1536M" and args["cpus-per-task"] == 3 and args["array"] == "0-2"
    assert ex.tasks_per_job == 4 and ex.srun_args == {"cpus-per-task": 3} and "qos" not in args


@pytest.mark.slow
def test_slurm_dry_run_scripts_and_running_them_as_slurm_would(tmp_path, monkeypatch):
    params = {"extract": {"tasks": 2}, "exactdedup": {"prefix_bits": 2}}
    manifest = drill_manifest(tmp_path / "m.yaml", tmp_path / "out", ["github"], params)
    raw = yaml.safe_load(manifest.read_text())
    raw["resources"] = RESOURCES
    manifest.write_text(yaml.safe_dump(raw, sort_keys=False))
    _pipeline(manifest, "--stages", "code_quality")
    out = _pipeline(manifest, "--executor", "slurm", "--dry-run")
    root = tmp_path / "out" / "sample"
    slurm = root / "slurm"

    # every pass of the first stage whose input exists: resources from the stage's override, exact arrays
    arrays = {"hash": "0-1", "first": "0-3", "main": "0-1"}  # 2 input shards; 2**prefix_bits groups
    for name, array in arrays.items():
        args = _sbatch(slurm / "exactdedup" / "github" / f"{name}.sbatch")
        assert (args["partition"], args["time"], args["cpus-per-task"], args["mem-per-cpu"]) == ("bigmem", "01:30:00", "3", "5G")
        assert args["array"] == array and args["job-name"] == f"llamix-exactdedup-github-{name}"
    # the stage after it cannot be written yet: estimated, with the default resources
    plan = {(e["stage"], e["source"]): e for e in json.loads((slurm / "plan.json").read_text())["entries"]}
    assert plan[("tokenize", "github")]["status"] == "estimated" and plan[("tokenize", "github")]["tasks"] == 2
    assert plan[("exactdedup", "github")]["status"] == "scripts"
    assert not (slurm / "tokenize").exists()
    assert "estimated" in out
    # dependencies: each pass after the one before
    submit = (slurm / "submit.sh").read_text()
    calls = re.findall(r"^(DRYRUN\d+)=\$\(sbatch --parsable (.*?) (\S+\.sbatch)", submit, re.M)
    assert [Path(c[2]).stem for c in calls] == ["hash", "first", "main"]
    assert "--dependency" not in calls[0][1]
    assert f'"--dependency=afterok:${{{calls[0][0]}}}"' in calls[1][1]
    assert f'"--dependency=afterok:${{{calls[1][0]}}}"' in calls[2][1]
    subprocess.run(["bash", "-n", str(slurm / "submit.sh")], check=True)

    # run each script as Slurm would: one process per array index (srun runs the command once)
    shim = _fake_slurm(tmp_path)
    for _, _, script in calls:
        lo, hi = map(int, _sbatch(Path(script))["array"].split("-"))
        for i in range(lo, hi + 1):
            env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": str(i), "RUN_OFFSET": "0",
                   "SLURM_NODELIST": "localhost", "SLURM_JOB_ID": "1"}
            p = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=300)
            assert p.returncode == 0, p.stderr[-3000:]
    # the driver then finds every task complete, balances the accounting and marks the stage done
    log = _pipeline(manifest, "--stages", "exactdedup")
    assert "exactdedup/github:" in log
    stats = json.loads((root / "exactdedup" / "github" / "_SUCCESS").read_text())
    assert stats["docs_in"] == json.loads((root / "code_quality" / "github" / "_SUCCESS").read_text())["docs_out"]

    # real mode: the driver submits the tokenizer's build job, then the tokenize array, to (a stand-in for)
    # sbatch and waits on the completion markers while each job runs in the background
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_STATE", str(tmp_path / "slurm-state"))
    m = load(manifest)
    Runner(m, make_executor("slurm", resources=m.resources, dry_run=False, out_root=m.out_root, poll_s=0.2)).run()
    submitted = sorted((tmp_path / "slurm-state").glob("*.sh"), key=lambda p: int(p.stem))
    assert len(submitted) == 2 and "#SBATCH --job-name=llamix-tokenizer-build" in submitted[0].read_text()
    assert "#SBATCH --job-name=llamix-tokenize-github-main" in submitted[1].read_text()
    assert "#SBATCH --cpus-per-task=1" in submitted[1].read_text()  # tokenize has no override in RESOURCES

    reference = drill_manifest(tmp_path / "ref.yaml", tmp_path / "ref", ["github"], params)
    _pipeline(reference)
    a = corpus_fingerprint(tmp_path / "ref" / "sample")
    b = corpus_fingerprint(root)
    assert any(k.startswith("exactdedup/") for k in a["files"]) and any(k.startswith("tokens/") for k in a["files"])
    assert compare_fingerprints(a, b) == []


@pytest.mark.slow
def test_ray_builds_the_same_corpus_as_the_local_executor(tmp_path):
    """github, stackexchange and arxiv through tokenize (tokenizer included) on a local 2-CPU Ray."""
    sources = ["github", "stackexchange", "arxiv"]
    params = {"extract": {"tasks": 2}, "exactdedup": {"prefix_bits": 1}}  # 2 tasks per pass: parallel, but few Ray actors
    local = drill_manifest(tmp_path / "local.yaml", tmp_path / "local", sources, params)
    ray = drill_manifest(tmp_path / "ray.yaml", tmp_path / "ray", sources, params)
    _pipeline(local, "--workers", "2")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray, not a cluster
    log = _pipeline(ray, "--executor", "ray", "--workers", "2", env=env)
    assert "Started a local Ray instance" in log
    a, b = corpus_fingerprint(tmp_path / "local" / "sample"), corpus_fingerprint(tmp_path / "ray" / "sample")
    assert sum(1 for f in a["files"] if f.startswith("tokens/") and f.endswith(".ds")) == 6  # 3 sources x 2 tasks
    assert set(a["counts"]) >= {f"tokenize/{s}" for s in sources}
    assert compare_fingerprints(a, b) == []
    # Ray ran the passes: datatrove's Ray executor left its per-task completion markers
    assert len(list((tmp_path / "ray/sample/tokens/github/.work/passes/main/completions").iterdir())) == 2
