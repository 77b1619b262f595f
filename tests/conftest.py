import os
import shutil
import subprocess

import pytest
import torch
from tests.cache import cached
from tests.disk import Disk

from twofold.data.stdlib import stdlib_documents
from twofold.data.tokenizer import load_tokenizer, train_tokenizer

# Keep torch from oversubscribing the cores: one thread per pytest-xdist worker (`make test` runs
# one worker per core), at most two otherwise.
# TWOFOLD_TEST_THREADS=1 (tools/mutation.py): mutmut forks test processes from one that has run
# tests, and an OpenMP pool does not survive a fork (the child spins until it is killed).
_DEFAULT_THREADS = 1 if "PYTEST_XDIST_WORKER" in os.environ else min(2, os.cpu_count() or 1)
torch.set_num_threads(int(os.environ.get("TWOFOLD_TEST_THREADS", _DEFAULT_THREADS)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def disk(monkeypatch):
    """What reaches the disk (fsyncs and renames), in order: see tests/disk.py."""
    return Disk(monkeypatch)


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    """A real 512-token byte-level BPE, trained on the train part of two stdlib packages (so the
    held-out functions the evaluation scores are not in its training text)."""
    texts = lambda: [d.text for d in stdlib_documents("train", packages=["json", "textwrap"])]
    return load_tokenizer(cached(tmp_path_factory, "tokenizer", lambda out: train_tokenizer(texts(), 512, out)))


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may write into (root ignores permissions, but not the immutable flag)."""
    path = tmp_path / "read-only"
    path.mkdir()
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode:
            pytest.skip("running as root where chattr +i is not possible")
        yield path
        subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
