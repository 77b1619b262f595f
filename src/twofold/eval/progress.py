"""Progress bars for long evaluation work (tqdm, on stderr)."""

from __future__ import annotations

from tqdm.auto import tqdm


def progress(subject_name: str, task: str, total: int, unit: str):
    # disable=None: no bar when stderr is not a terminal (logs, pipes, CI)
    return tqdm(total=total, desc=f"{subject_name} {task}", unit=unit, dynamic_ncols=True, disable=None)
