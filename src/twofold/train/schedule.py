"""Learning-rate and batch-size schedules as pure functions of tokens seen.

Tokens, not steps, are the clock: the batch size changes during training (batch-size warmup)
and between phases, so a step count would not say where a run is. The trainer evaluates these
at the tokens seen *after* the current step, so the first step has a non-zero LR and the last
step of a phase lands exactly on the phase's final ratio.
"""

from __future__ import annotations

import math

from twofold.train.recipe import Phase, Schedule


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

    With `one_minus_sqrt`, start 1 and end α_f this is Ettin's (arXiv 2507.11412)
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


def phase_steps(phase: Phase, multiple_of: int = 1) -> int:
    """Optimizer steps a phase takes: each draws the batch its ramp gives, and the step that
    reaches the phase's budget is its last. With a row per document chunk the rows' lengths
    vary: the count is the expected one at the phase's `mean_row_tokens` (seq_len if unknown)."""
    tokens, steps = 0, 0
    batch, row = phase.batch, phase.row_tokens
    if batch.warms_up and batch.ramp == "steps":
        while steps < batch.warmup_steps(phase.seq_len) and tokens < phase.tokens:
            tokens += batch.sequences_at_step(steps, phase.seq_len, multiple_of) * row
            steps += 1
    elif batch.warms_up:
        while tokens < min(phase.tokens, batch.warmup_tokens):
            tokens += batch.sequences_at(tokens, multiple_of) * row
            steps += 1
    full = batch.sequences_at(phase.tokens, multiple_of) * row
    return steps + max(0, math.ceil((phase.tokens - tokens) / full))


def phase_starts(phases: tuple[Phase, ...]) -> list[int]:
    """Cumulative tokens at which each phase begins."""
    starts, total = [], 0
    for phase in phases:
        starts.append(total)
        total += phase.tokens
    return starts
