"""Learning-rate and batch-size schedules as pure functions of tokens seen.

Tokens, not steps, are the clock: the batch size changes during training (batch-size warmup)
and between phases, so a step count would not say where a run is. The trainer evaluates these
at the tokens seen *after* the current step, so the first step has a non-zero LR and the last
step of a phase lands exactly on the phase's final ratio.
"""

from __future__ import annotations

import math

from twofold.config import BatchSchedule, Phase, Recipe, Schedule


def warmup(tokens: float, warmup_tokens: float) -> float:
    """Linear warmup factor in [0, 1]."""
    if warmup_tokens <= 0:
        return 1.0
    return min(1.0, max(0.0, tokens / warmup_tokens))


def linear_decay(progress: float) -> float:
    return 1.0 - progress


def cosine_decay(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def one_minus_sqrt_decay(progress: float) -> float:
    """Ettin's decay shape: drops fast early and flattens towards the end."""
    return 1.0 - math.sqrt(progress)


DECAY_SHAPES = {
    "none": lambda progress: 1.0,
    "linear": linear_decay,
    "cosine": cosine_decay,
    "one_minus_sqrt": one_minus_sqrt_decay,
}


def decay_ratio(shape: str, progress: float, start: float, end: float) -> float:
    """`end + (start - end) · shape(progress)`: from `start` at 0 to `end` at 1.

    With `one_minus_sqrt`, start 1 and end α_f this is the facts file's
    `α_f + (1 − α_f)(1 − sqrt(t / T))`.
    """
    progress = min(1.0, max(0.0, progress))
    return end + (start - end) * DECAY_SHAPES[shape](progress)


def lr_at(schedule: Schedule, tokens: float) -> float:
    """Warmup to `start_ratio · peak`, hold, then decay over the last `decay_tokens`."""
    tokens = min(max(tokens, 0), schedule.tokens)
    if tokens < schedule.warmup_tokens:
        return schedule.peak * schedule.start_ratio * warmup(tokens, schedule.warmup_tokens)
    decay_begins = schedule.tokens - schedule.decay_tokens
    if schedule.decay == "none" or tokens <= decay_begins:
        return schedule.peak * schedule.start_ratio
    progress = (tokens - decay_begins) / schedule.decay_tokens
    return schedule.peak * decay_ratio(schedule.decay, progress, schedule.start_ratio, schedule.min_ratio)


def batch_sequences_at(batch: BatchSchedule, tokens: float, multiple_of: int = 1) -> int:
    """Global batch in sequences: a linear ramp from `start_sequences` to `sequences`.

    Rounded down to a multiple of `multiple_of` (e.g. ranks × micro-batch) so that every
    rank gets an equal share, and never below one such multiple.
    """
    sequences = batch.sequences
    if tokens < batch.warmup_tokens:
        ramp = warmup(tokens, batch.warmup_tokens)
        sequences = int(batch.start_sequences + (batch.sequences - batch.start_sequences) * ramp)
    return max(multiple_of, sequences // multiple_of * multiple_of)


class StepBatches:
    """The batch-size warmup seen by step: global sequences of step s, and tokens before it.

    Each step takes the batch due at the tokens seen before it; counting is in sequence slots
    (`sequences × seq_len`), so it never depends on how ranks split a batch.
    """

    def __init__(self, batch: BatchSchedule, seq_len: int):
        self.batch, self.seq_len = batch, seq_len
        self._sizes: list[int] = []
        self._tokens = [0]  # _tokens[s] = tokens before step s

    def size(self, step: int) -> int:
        while len(self._sizes) <= step:
            sequences = batch_sequences_at(self.batch, self._tokens[-1])
            self._sizes.append(sequences)
            self._tokens.append(self._tokens[-1] + sequences * self.seq_len)
        return self._sizes[step]

    def tokens_before(self, step: int) -> int:
        self.size(step)
        return self._tokens[step]


def phase_steps(phase: Phase, multiple_of: int = 1) -> int:
    """Optimizer steps a phase takes: each draws the batch due at the tokens seen before it,
    and the step that reaches the phase's budget is its last."""
    tokens, steps = 0, 0
    while tokens < min(phase.tokens, phase.batch.warmup_tokens):
        tokens += batch_sequences_at(phase.batch, tokens, multiple_of) * phase.seq_len
        steps += 1
    full = batch_sequences_at(phase.batch, phase.tokens, multiple_of) * phase.seq_len
    return steps + max(0, math.ceil((phase.tokens - tokens) / full))


def locate(phases: tuple[Phase, ...], tokens: float) -> tuple[int, float]:
    """Which phase (index) a run is in after `tokens` in total, and the tokens into it.

    A phase owns the half-open interval (start, end], so a run exactly at a boundary has
    finished the earlier phase; past the last phase the run stays at its end.
    """
    start = 0
    for index, phase in enumerate(phases):
        if tokens <= start + phase.tokens or index == len(phases) - 1:
            return index, min(tokens - start, phase.tokens)
        start += phase.tokens
    raise ValueError("no phases")


def run_lr(recipe: Recipe, tokens: float) -> float:
    """The LR of a run from scratch through the recipe's phases, at `tokens` in total."""
    index, into = locate(recipe.phases, tokens)
    return lr_at(recipe.phases[index].lr_schedule(recipe.optimizer.lr), into)


def phase_starts(phases: tuple[Phase, ...]) -> list[int]:
    """Cumulative tokens at which each phase begins."""
    starts, total = [], 0
    for phase in phases:
        starts.append(total)
        total += phase.tokens
    return starts
