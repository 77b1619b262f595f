"""Order: how many global sequences make step s, which they are, and which each rank gets.

The global batch of step s is the run of global sequence indices
`[first_sequence(s), first_sequence(s) + size(s))`. Its size follows a `BatchSchedule`: a
constant number of sequences, or a linear ramp from `start_sequences` over the first
`warmup_tokens` (batch-size warmup). The ramp is linear either in tokens (each step takes the
size due at the tokens seen before it) or in steps, as ModernBERT's sequence packer grows the
batch (orionw/bert24 src/sequence_packer.py, `BatchSizeWarmupScheduler`: every size holds for
the same number of steps, and the ramp ends when its tokens are consumed). Tokens are counted
in sequence slots (sequences × seq_len), so the schedule never depends on how ranks split a
batch nor on the rows' real lengths. Rank r of W gets a contiguous slice; the slices are
disjoint, cover the global batch, and differ in size by at most one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from twofold.errors import TwofoldError


@dataclass(frozen=True)
class BatchSchedule:
    """Global batch in sequences, ramped linearly from `start_sequences` over the first tokens."""

    sequences: int
    start_sequences: int | None = None  # None: no batch-size warmup
    warmup_tokens: int = 0
    ramp: str = "tokens"  # linear in tokens seen, or in steps

    def __post_init__(self) -> None:
        start = self.start_sequences
        if self.sequences < 1 or (start is not None and not 1 <= start <= self.sequences):
            raise TwofoldError(f"batch schedule: {self.sequences} sequences starting at {start} is impossible; "
                               "the batch needs at least 1 sequence and a warmup start in [1, sequences]")
        if self.warmup_tokens < 0:
            raise TwofoldError(f"batch schedule: warmup_tokens must be >= 0, got {self.warmup_tokens}")
        if self.ramp not in ("tokens", "steps"):
            raise TwofoldError(f"batch schedule: ramp {self.ramp!r} is unknown; use tokens or steps")

    @property
    def warms_up(self) -> bool:
        return self.start_sequences is not None and self.warmup_tokens > 0

    def sequences_at(self, tokens: float, multiple_of: int = 1) -> int:
        """The global batch due after `tokens`, rounded down to a multiple of `multiple_of`
        (e.g. ranks × micro-batch) and never below one such multiple."""
        sequences = self.sequences
        if self.warms_up and tokens < self.warmup_tokens:
            ramp = min(1.0, max(0.0, tokens / self.warmup_tokens))
            sequences = int(self.start_sequences + (self.sequences - self.start_sequences) * ramp)
        return max(multiple_of, sequences // multiple_of * multiple_of)

    def warmup_steps(self, seq_len: int) -> int:
        """Steps of a ramp linear in steps: the mean batch (start + end) / 2 over them makes
        `warmup_tokens` slots."""
        return math.ceil(2 * self.warmup_tokens / ((self.start_sequences + self.sequences) * seq_len))

    def sequences_at_step(self, step: int, seq_len: int, multiple_of: int = 1) -> int:
        """The global batch of `step` when the ramp is linear in steps."""
        sequences = self.sequences
        if self.warms_up and step < self.warmup_steps(seq_len):
            ramp_steps = self.warmup_steps(seq_len)
            sequences = self.start_sequences + (self.sequences - self.start_sequences) * step // ramp_steps
        return max(multiple_of, sequences // multiple_of * multiple_of)


class StepPlan:
    """A `BatchSchedule` seen by step: sequences of step s, its first global sequence, and
    the tokens (sequence slots) before it."""

    def __init__(self, schedule: BatchSchedule | int, seq_len: int):
        self.schedule = schedule if isinstance(schedule, BatchSchedule) else BatchSchedule(int(schedule))
        self.seq_len = seq_len
        self._sizes: list[int] = []
        self._starts = [0]  # _starts[s] = first global sequence of step s (grown on demand)

    def size(self, step: int) -> int:
        """Global batch size of `step`, in sequences."""
        if not self.schedule.warms_up:
            return self.schedule.sequences
        while len(self._sizes) <= step:
            if self.schedule.ramp == "steps":
                self._sizes.append(self.schedule.sequences_at_step(len(self._sizes), self.seq_len))
            else:
                self._sizes.append(self.schedule.sequences_at(self._starts[-1] * self.seq_len))
            self._starts.append(self._starts[-1] + self._sizes[-1])
        return self._sizes[step]

    def first_sequence(self, step: int) -> int:
        if step < 0:
            raise TwofoldError(f"step must be >= 0, got {step}")
        if not self.schedule.warms_up:
            return step * self.schedule.sequences
        self.size(step)
        return self._starts[step]

    def tokens_before(self, step: int) -> int:
        return self.first_sequence(step) * self.seq_len


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
