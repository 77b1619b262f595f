"""Order: which global sequences make step s, and which of them each rank gets.

The global batch of step s is the run of global sequence indices
`[first_sequence(s), first_sequence(s) + size(s))`. Its size may change from step to step
(batch-size warmup), given in sequences or in tokens (tokens // seq_len sequences). Rank r of
W gets a contiguous slice; the slices are disjoint, cover the global batch, and differ in
size by at most one, so the global batch never depends on W.
"""

from __future__ import annotations

from collections.abc import Callable

from twofold.errors import TwofoldError

UNITS = ("sequences", "tokens")


class BatchSchedule:
    """Global batch size per step, and the index of each step's first global sequence."""

    def __init__(self, batch_size: int | Callable[[int], int], unit: str = "sequences",
                 seq_len: int = 1):
        if unit not in UNITS:
            raise TwofoldError(f"batch size unit {unit!r} is unknown; use one of {', '.join(UNITS)}")
        self._size = batch_size if callable(batch_size) else (lambda step, size=batch_size: size)
        self.unit = unit
        self.seq_len = seq_len
        self._constant = None if callable(batch_size) else self.size(0)
        self._starts = [0]  # _starts[s] = first global sequence of step s (grown on demand)

    def size(self, step: int) -> int:
        """Global batch size of `step`, in sequences."""
        value = int(self._size(step))
        sequences = value // self.seq_len if self.unit == "tokens" else value
        if sequences < 1:
            raise TwofoldError(
                f"batch size at step {step} is {value} {self.unit}: less than one sequence of "
                f"{self.seq_len} tokens; raise the batch size"
            )
        return sequences

    def first_sequence(self, step: int) -> int:
        if step < 0:
            raise TwofoldError(f"step must be >= 0, got {step}")
        if self._constant is not None:
            return step * self._constant
        while len(self._starts) <= step:
            self._starts.append(self._starts[-1] + self.size(len(self._starts) - 1))
        return self._starts[step]


def rank_slice(global_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank's part of a global batch of `global_size` sequences."""
    if not 0 <= rank < world_size:
        raise TwofoldError(f"rank {rank} is outside world size {world_size}")
    if global_size < world_size:
        raise TwofoldError(
            f"global batch of {global_size} sequences cannot feed {world_size} ranks; "
            "raise the batch size to at least the world size"
        )
    base, extra = divmod(global_size, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)
