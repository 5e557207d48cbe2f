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
