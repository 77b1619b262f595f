import os

import pytest
import torch

# Two cores: keep torch from oversubscribing them when pytest runs several things.
# TWOFOLD_TEST_THREADS=1 (tools/mutation.py): mutmut forks test processes from one that has run
# tests, and an OpenMP pool does not survive a fork (the child spins until it is killed).
torch.set_num_threads(int(os.environ.get("TWOFOLD_TEST_THREADS", min(2, os.cpu_count() or 1))))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
