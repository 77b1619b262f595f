"""Reading a local copy of a hub dataset with `datasets`, each copy through a cache of its own.

`datasets` names the cache of a local folder by the folder's name and its README, not by its
files: a second copy named alike (another sample of the set, an edited copy, the same name under
another parent) is served the first one's data. Each local folder is therefore read through a
cache of its own, removed when the process ends (the data is memory-mapped from it until then).
Hub names keep the shared cache.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

_LOCAL_CACHES: list[tempfile.TemporaryDirectory] = []  # kept while the process runs: data is mapped from them


@contextlib.contextmanager
def own_cache() -> Iterator[None]:
    """Everything `datasets` caches inside the block goes to a new folder of its own, and the
    progress bars of its conversion stay hidden."""
    import datasets
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    root = Path(datasets.config.HF_DATASETS_CACHE)
    root.mkdir(parents=True, exist_ok=True)
    _LOCAL_CACHES.append(tempfile.TemporaryDirectory(prefix="twofold-local-copy-", dir=root))
    previous, datasets.config.HF_DATASETS_CACHE = datasets.config.HF_DATASETS_CACHE, Path(_LOCAL_CACHES[-1].name)
    shown = not are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        datasets.config.HF_DATASETS_CACHE = previous
        if shown:
            enable_progress_bars()


def load_dataset(name: str, *args, **kwargs):
    """`datasets.load_dataset`; a local folder is read through a cache of its own (`own_cache`)."""
    import datasets

    if not Path(name).is_dir():
        return datasets.load_dataset(name, *args, **kwargs)
    with own_cache():
        return datasets.load_dataset(name, *args, **kwargs)
