"""The budget rules on phases made by hand, every figure counted by hand: a phase or checkpoint
interval exactly one step long holds and one token less does not, each batch ramp's first and
largest step, the `--batch-scale` that fits, the least budget when none does, and the whole line."""

import dataclasses

import pytest

from twofold.errors import TwofoldError
from twofold.train import budget
from twofold.train.recipe import OptimizerConfig, Phase, Recipe


def phase(name="p", tokens=5000, checkpoint=10_000, rows=10, seq_len=100, **settings) -> Phase:
    return Phase(name=name, tokens=tokens, seq_len=seq_len, batch_sequences=rows, checkpoint_every_tokens=checkpoint,
                 tag="step", **settings)


def recipe(*phases, **settings) -> Recipe:
    return Recipe(name="r", model="tiny", optimizer=OptimizerConfig(), phase={p.name: p for p in phases}, **settings)


def test_a_phase_of_exactly_one_step_holds_and_one_token_less_does_not():
    assert budget.problems((phase(tokens=1000),)) == []  # 10 rows of 100
    assert budget.problems((phase(tokens=999),)) == [
        "phase p gets 999 tokens, less than one optimizer step of 1K (10 sequences of 100), so it would train 1K"]


def test_a_checkpoint_interval_of_exactly_one_step_holds_and_one_token_less_does_not():
    assert budget.problems((phase(checkpoint=1000),)) == []
    assert budget.problems((phase(checkpoint=999),)) == [
        "phase p checkpoints every 999 tokens, less than one optimizer step of 1K (10 sequences of 100), "
        "so at every step"]
    assert budget.problems((phase(tokens=1000, checkpoint=1000),)) == []  # one checkpoint, at the end
    # a row per document chunk: steps of rows × the expected tokens per row
    documents = phase(tokens=20_000, checkpoint=5999, layout="documents", mean_row_tokens=60.5, rows=100)
    assert budget.problems((documents,)) == [
        "phase p checkpoints every 6K tokens, less than one optimizer step of 6.05K (100 sequences of ≈60.5 tokens), "
        "so at every step"]


@pytest.mark.parametrize("ramp", ["tokens", "steps"])
def test_under_batch_warmup_the_first_step_is_the_ramps_start(ramp):
    warm = dict(batch_start_sequences=2, batch_warmup_tokens=3000, batch_ramp=ramp)
    # 2 rows of 100 first, whichever way the batch grows (by steps: 2, 3, 5, 6, 8, then 10)
    assert budget.first_step_tokens(phase(**warm)) == 200
    assert budget.problems((phase(tokens=200, **warm),)) == []
    assert budget.problems((phase(tokens=199, **warm),))[0].startswith(
        "phase p gets 199 tokens, less than one optimizer step of 200 (2 sequences of 100)")
    # a warmup shorter than one row: the first step (at 0 tokens seen) still starts at 2 rows
    assert budget.first_step_tokens(phase(batch_start_sequences=2, batch_warmup_tokens=5, batch_ramp=ramp)) == 200


def test_the_largest_step_is_the_ramps_batch_when_the_phase_ends():
    by_tokens = dict(batch_start_sequences=2, batch_warmup_tokens=3000)
    # at 2,000 of the 3,000 warmup tokens the batch is 2 + 8 × 2/3 → 7 rows
    assert budget.largest_step_tokens(phase(tokens=2000, **by_tokens)) == 700
    assert budget.problems((phase(tokens=2000, checkpoint=700, **by_tokens),)) == []
    assert budget.largest_step_tokens(phase(tokens=4000, **by_tokens)) == 1000
    # a ramp in steps is counted at its full batch
    assert budget.largest_step_tokens(phase(tokens=2000, batch_ramp="steps", **by_tokens)) == 1000


@pytest.mark.parametrize("tokens, checkpoint, rows, earlier, warm, factor", [
    (500, 10_000, 10, 1.0, {}, 0.5),  # 500 / (10 rows × 100)
    (5000, 300, 10, 1.0, {}, 0.3),  # the interval: 300 / 1000
    (100, 10_000, 10, 1.0, {}, 0.1),  # exactly one row fits
    (5000, 10_000, 10, 1.0, {}, 5.0),  # nothing to shrink
    # an interval as long as the phase binds nothing: only the first step (2 rows) counts
    (500, 500, 10, 1.0, dict(batch_start_sequences=2, batch_warmup_tokens=100), 2.5),
    # after --batch-scale 0.5 a batch of 5 came from at most (5 + 1) / 0.5 = 12 rows: 600 / 1200
    (600, 10_000, 5, 0.5, {}, 0.5),
    (700, 10_000, 3, 1.0, {}, 2.3),  # 700 / 300 = 2.33…: two significant digits, rounded down
])
def test_the_fitting_batch_scale_by_hand(tokens, checkpoint, rows, earlier, warm, factor):
    p = phase(tokens=tokens, checkpoint=checkpoint, rows=rows, **warm)
    assert budget.fitting_batch_scale(recipe(p, batch_scale=earlier), (p,)) == factor


def test_when_one_row_is_too_long_the_least_budget_is_named():
    short_interval = phase("a", tokens=1000, checkpoint=50)  # a row of 100 needs 2 × the budget
    other = phase("b", tokens=3000, checkpoint=10_000)
    r = recipe(short_interval, other)
    assert budget.fitting_batch_scale(r, r.phases) is None
    assert budget.least_budget(r.phases) == 8000  # (1,000 + 3,000) × 100 / 50
    assert budget.least_budget((phase(tokens=400),)) == 100  # a budget of one row, 100 tokens
    assert budget.ways_out(r) == ("no batch fits, as one row is already too long; raise --budget to at least 8K "
                                  "(and scale the batch) or train the demo recipe (--recipe demo), made for small "
                                  "budgets")


def test_the_refusal_is_one_line_naming_the_recipe_the_first_problem_and_the_ways_out():
    first, second = phase("a", tokens=500), phase("b", tokens=5000, checkpoint=300)
    r = recipe(first, second, size="17m", scale=0.25, batch_scale=0.5)
    with pytest.raises(TwofoldError) as refused:
        budget.check(r)
    # batch 10 after --batch-scale 0.5: from at most 22 rows; 500 / 2,200 = 0.227…
    assert str(refused.value) == (
        "recipe r --size 17m at scale 0.25 --batch-scale 0.5: phase a gets 500 tokens, less than one optimizer "
        "step of 1K (10 sequences of 100), so it would train 1K (and 1 more such); scale the batch with the "
        "budget (--batch-scale 0.13 or smaller) or train the demo recipe (--recipe demo), made for small budgets")
    with pytest.raises(TwofoldError) as one:
        budget.check(recipe(first))
    assert str(one.value) == (
        "recipe r: phase a gets 500 tokens, less than one optimizer step of 1K (10 sequences of 100), so it would "
        "train 1K; scale the batch with the budget (--batch-scale 0.5 or smaller) or train the demo recipe "
        "(--recipe demo), made for small budgets")


def test_only_the_phases_the_run_trains_are_checked_and_fitted():
    short, fine = phase("a", tokens=500), phase("b", tokens=5000, checkpoint=1000)
    r = recipe(short, fine)
    budget.check(r, (fine,))  # a continued run that skips phase a
    often = dataclasses.replace(fine, checkpoint_every_tokens=300)
    with pytest.raises(TwofoldError, match="phase b checkpoints every 300"):
        budget.check(r, (often,))
    assert "--batch-scale 0.3 or smaller" in budget.ways_out(r, (often,))  # 300 / 1000, phase a left out
    assert "--batch-scale 0.5 or smaller" in budget.ways_out(r)  # 500 / 1000
