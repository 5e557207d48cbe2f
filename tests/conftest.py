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
