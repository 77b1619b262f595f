"""Test data that takes seconds to build (tokenizers, token stores), built once per pytest run —
or, with TWOFOLD_TEST_CACHE set, once into that folder and reused by later runs: mutmut
(tools/mutation.py) starts a pytest session for every mutant."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def cached(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """`build(directory)` into a fresh temporary directory, or reuse the cached one."""
    root = os.environ.get("TWOFOLD_TEST_CACHE")
    if not root:
        directory = tmp_path_factory.mktemp(name)
        build(directory)
        return directory
    directory = Path(root) / name
    if not (directory / ".built").exists():
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        build(directory)
        (directory / ".built").touch()
    return directory
