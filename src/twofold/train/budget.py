"""Does a recipe's token budget hold whole optimizer steps?

A phase ends with the step that reaches its budget, so a phase shorter than one step still
trains that whole step: far more than asked when `--budget`/`--scale` shrank the phase's tokens
but not its batch (the Ettin recipe at `--budget 300K` would train 4.7M tokens in its first
step). Likewise a checkpoint interval shorter than a step writes a tagged checkpoint at every
step. `check` refuses both before anything is written, naming the two ways out: scale the
batch too (`--batch-scale`, whose value it computes) or train the demo recipe, which is made
for small budgets. `recipe show` marks the same phases, and those with only a few steps.
"""

from __future__ import annotations

import math

from twofold.errors import TwofoldError
from twofold.train.recipe import Phase, Recipe, human_tokens

FEW_STEPS = 10  # fewer steps than this in a phase: `recipe show` marks it


def _first_rows(phase: Phase) -> int:
    return phase.batch.sequences_at(0)  # a ramp in tokens or in steps starts at start_sequences


def _largest_rows(phase: Phase) -> int:
    batch = phase.batch
    return batch.sequences if batch.ramp == "steps" else batch.sequences_at(phase.tokens)


def first_step_tokens(phase: Phase) -> int:
    """Tokens of the phase's first optimizer step (the smallest, under batch-size warmup); with
    one document chunk per row, as expected at the phase's tokens per row."""
    return math.ceil(_first_rows(phase) * phase.row_tokens)


def largest_step_tokens(phase: Phase) -> int:
    """Tokens of the phase's largest step (its full batch, or where its warmup stops)."""
    return math.ceil(_largest_rows(phase) * phase.row_tokens)


def _step(rows: int, phase: Phase) -> str:
    row = f"{phase.seq_len}" if phase.layout == "packed" else f"≈{phase.row_tokens:g} tokens"
    return f"one optimizer step of {human_tokens(math.ceil(rows * phase.row_tokens))} ({rows} sequences of {row})"


def problems(phases: tuple[Phase, ...]) -> list[str]:
    """What does not hold a whole step, one clause per phase ([] when every phase does)."""
    found = []
    for phase in phases:
        first, largest = first_step_tokens(phase), largest_step_tokens(phase)
        if phase.tokens < first:
            found.append(f"phase {phase.name} gets {human_tokens(phase.tokens)} tokens, less than "
                         f"{_step(_first_rows(phase), phase)}, so it would train {human_tokens(first)}")
        elif phase.checkpoint_every_tokens < min(largest, phase.tokens):
            found.append(f"phase {phase.name} checkpoints every {human_tokens(phase.checkpoint_every_tokens)} "
                         f"tokens, less than {_step(_largest_rows(phase), phase)}, so at every step")
    return found


def fitting_batch_scale(recipe: Recipe, phases: tuple[Phase, ...]) -> float | None:
    """A `--batch-scale` (2 significant digits, rounded down) under which every phase and
    checkpoint interval holds at least one step; None when one row is already too long.

    It scales the recipe's own batches: after an earlier `--batch-scale s` a batch of b rows came
    from at most (b + 1) / s, and the value is computed against that bound.
    """
    if any(p.row_tokens > min(p.tokens, p.checkpoint_every_tokens) for p in phases):
        return None  # at one row a step (what any small enough factor gives) it still fails

    def unscaled(rows: int) -> float:
        return rows if recipe.batch_scale == 1 else (rows + 1) / recipe.batch_scale

    ratios = []
    for phase in phases:
        ratios.append(phase.tokens / (unscaled(_first_rows(phase)) * phase.row_tokens))
        if phase.checkpoint_every_tokens < phase.tokens:
            ratios.append(phase.checkpoint_every_tokens / (unscaled(_largest_rows(phase)) * phase.row_tokens))
    factor = min(ratios)
    unit = 10 ** (math.floor(math.log10(factor)) - 1)
    return float(f"{math.floor(factor / unit) * unit:.2g}")


def least_budget(phases: tuple[Phase, ...]) -> int:
    """The total tokens at which every phase and checkpoint interval holds one row."""
    need = max(p.row_tokens / min(p.checkpoint_every_tokens, p.tokens) for p in phases)
    return math.ceil(sum(p.tokens for p in phases) * need)


def describe(recipe: Recipe) -> str:
    return " ".join(["recipe", recipe.name, *([f"--size {recipe.size}"] if recipe.size else []),
                     *([f"at scale {recipe.scale:.3g}"] if recipe.scale != 1 else []),
                     *([f"--batch-scale {recipe.batch_scale:g}"] if recipe.batch_scale != 1 else [])])


def ways_out(recipe: Recipe, phases: tuple[Phase, ...] | None = None) -> str:
    phases = recipe.phases if phases is None else phases
    factor = fitting_batch_scale(recipe, phases)
    demo = "or train the demo recipe (--recipe demo), made for small budgets"
    if factor is not None:
        return f"scale the batch with the budget (--batch-scale {factor:g} or smaller) {demo}"
    return (f"no batch fits, as one row is already too long; raise --budget to at least "
            f"{human_tokens(least_budget(phases))} (and scale the batch) {demo}")


def check(recipe: Recipe, phases: tuple[Phase, ...] | None = None) -> None:
    """Refuse, in one line, a recipe whose phases (those the run trains; default all but cross)
    or checkpoint intervals are shorter than a step."""
    phases = recipe.phases if phases is None else phases
    found = problems(phases)
    if found:
        more = f" (and {len(found) - 1} more such)" if len(found) > 1 else ""
        raise TwofoldError(f"{describe(recipe)}: {found[0]}{more}; {ways_out(recipe, phases)}")
