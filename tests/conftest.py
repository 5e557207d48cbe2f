"""Fixtures shared by several test files."""

import pytest


@pytest.fixture
def one_torch_thread():
    """Small-model tests on a shared 2-core box: oversubscribed intra-op threads run ~10x slower."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A one-node Slurm cluster (tools/slurm-local.sh) for the session's tests, stopped at the end.
    Skipped with one line where it cannot run (not root; packages missing and no apt-get)."""
    from slurm_support import SlurmCluster, why_no_slurm

    why = why_no_slurm()
    if why:
        pytest.skip(f"real Slurm cluster: {why}")
    cluster = SlurmCluster.start(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def built_sample(tmp_path_factory):
    """The whole sample profile built once by ``python -m pipeline run`` into a temporary folder (a copy of
    the repo's manifest pointing there): ``(manifest path, out/sample root)``. Shared by the tests that
    check what the pipeline produced (the recorded digest; training on its token shards)."""
    import subprocess
    import sys
    from pathlib import Path

    from filters.lid_model import LidModelMissing, lid_model_path
    from ops.drill import drill_layout, drill_manifest

    try:
        lid_model_path()
    except LidModelMissing as e:
        pytest.skip(f"{e} (run `make setup`)")
    tmp = tmp_path_factory.mktemp("sample-build")
    manifest = drill_manifest(tmp / "manifest.yaml", tmp / "out")
    p = subprocess.run([sys.executable, "-m", "pipeline", "run", "--manifest", str(manifest), "--workers", "2"],
                       cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return manifest, drill_layout(tmp / "out").root
