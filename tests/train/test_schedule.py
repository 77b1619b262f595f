"""Schedules on hand-computed values."""

import math
import re

import pytest

from twofold.data.order import BatchSchedule, StepPlan
from twofold.errors import TwofoldError
from twofold.train.recipe import Schedule, load_recipe
from twofold.train.schedule import (
    cosine_decay,
    decay_ratio,
    linear_decay,
    lr_at,
    one_minus_sqrt_decay,
    phase_starts,
    phase_steps,
    warmup,
)


def test_warmup_is_linear_and_saturates():
    assert [warmup(t, 100) for t in (0, 25, 100, 150)] == [0.0, 0.25, 1.0, 1.0]
    assert warmup(5, 0) == 1.0


def test_decay_shapes():
    assert linear_decay(0.25) == 0.75
    assert cosine_decay(0.5) == pytest.approx(0.5)
    assert cosine_decay(1.0) == pytest.approx(0.0)
    assert one_minus_sqrt_decay(0.25) == 0.5
    assert one_minus_sqrt_decay(1.0) == 0.0


def test_one_minus_sqrt_matches_the_facts_formula():
    # lr(t) = peak (α_f + (1 − α_f)(1 − sqrt(t/T))): α_f = 0.02, t/T = 0.25 → 0.02 + 0.98 · 0.5
    assert decay_ratio("one_minus_sqrt", 0.25, 1.0, 0.02) == pytest.approx(0.51)
    # Ettin's decay phase: 0.5× → 0.02×; a quarter in: 0.02 + 0.48 · 0.5
    assert decay_ratio("one_minus_sqrt", 0.25, 0.5, 0.02) == pytest.approx(0.26)


def test_warmup_then_constant():
    s = Schedule(peak=1e-3, tokens=1000, warmup_tokens=100)
    assert lr_at(s, 0) == 0.0
    assert lr_at(s, 50) == pytest.approx(5e-4)
    assert lr_at(s, 100) == pytest.approx(1e-3)
    assert lr_at(s, 1000) == pytest.approx(1e-3)


def test_warmup_stable_decay_within_a_phase():
    # warmup 100, stable to 600, linear decay over the last 400 to 0.1×
    s = Schedule(peak=2.0, tokens=1000, warmup_tokens=100, decay="linear", decay_tokens=400, min_ratio=0.1)
    assert lr_at(s, 100) == pytest.approx(2.0)
    assert lr_at(s, 600) == pytest.approx(2.0)
    assert lr_at(s, 800) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))
    assert lr_at(s, 1000) == pytest.approx(0.2)
    assert lr_at(s, 5000) == pytest.approx(0.2)  # past the end: stays at the floor


def test_cosine_decay_over_a_phase():
    s = Schedule(peak=1.0, tokens=100, decay="cosine", decay_tokens=100, min_ratio=0.0)
    assert lr_at(s, 50) == pytest.approx(0.5)
    assert lr_at(s, 25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_phase_schedule_resolves_decay_span_and_peak():
    recipe = load_recipe("ettin", size="17m")
    ext = recipe.phase["extension"].lr_schedule(recipe.optimizer.lr)
    assert (ext.peak, ext.decay_tokens, ext.start_ratio, ext.min_ratio) == (3e-3, ext.tokens, 1.0, 0.5)
    cross = recipe.cross.lr_schedule(recipe.optimizer.lr)
    assert cross.peak == 1.5e-3  # the cross phase has its own peak
    pretrain = recipe.phase["pretrain"].lr_schedule(recipe.optimizer.lr)
    assert pretrain.decay_tokens == 0 and pretrain.min_ratio == 1.0


def test_batch_size_warmup_in_tokens():
    b = BatchSchedule(sequences=32, start_sequences=8, warmup_tokens=200)
    assert b.sequences_at(0) == 8
    assert b.sequences_at(100) == 20
    assert b.sequences_at(100, multiple_of=8) == 16
    assert b.sequences_at(200) == 32
    assert b.sequences_at(10**9) == 32
    assert BatchSchedule(4, 4).sequences_at(0) == 4
    assert BatchSchedule(32, 1, 100).sequences_at(0, multiple_of=4) == 4


def test_phase_starts():
    assert phase_starts(load_recipe("demo").phases) == [0, 200_000, 260_000]


def test_phase_steps_follow_the_batch_warmup():
    import dataclasses

    phase = dataclasses.replace(load_recipe("demo").phase["pretrain"], batch_sequences=32)
    # no warmup: 200K tokens / (32 × 128) per step, the last step partial
    assert phase_steps(dataclasses.replace(phase, batch_start_sequences=None)) == math.ceil(200_000 / 4096)
    # tiny hand case: seq 10, batch 1 → 3 over 30 tokens, budget 100
    tiny = dataclasses.replace(phase, tokens=100, seq_len=10, batch_sequences=3, batch_start_sequences=1,
                               batch_warmup_tokens=30)
    # tokens before each step: 0 (1 seq), 10 (1.67 → 1), 20 (2.33 → 2), 40 (3), 70 (3) → 100
    assert phase_steps(tiny) == 5
    assert phase_steps(dataclasses.replace(tiny, tokens=5)) == 1  # shorter than a batch: one step


def test_step_batches_follow_the_ramp_by_tokens_seen():
    steps = StepPlan(BatchSchedule(sequences=3, start_sequences=1, warmup_tokens=30), seq_len=10)
    assert [steps.size(s) for s in range(5)] == [1, 1, 2, 3, 3]
    assert [steps.tokens_before(s) for s in range(5)] == [0, 10, 20, 40, 70]


def test_step_batches_follow_a_ramp_linear_in_steps():
    """ModernBERT's packer warmup: 4 → 16 sequences of 64 over 5K tokens lasts
    ceil(2 · 5000 / ((4 + 16) · 64)) = 8 steps of 4 + 12 · s // 8 sequences, then 16."""
    schedule = BatchSchedule(sequences=16, start_sequences=4, warmup_tokens=5000, ramp="steps")
    assert schedule.warmup_steps(64) == 8
    steps = StepPlan(schedule, seq_len=64)
    sizes = [steps.size(s) for s in range(11)]
    assert sizes == [4, 5, 7, 8, 10, 11, 13, 14, 16, 16, 16] and {type(n) for n in sizes} == {int}
    assert steps.first_sequence(9) == 88 and steps.tokens_before(9) == 88 * 64
    # rounded down to a multiple (ranks × micro-batch), never below one
    assert [schedule.sequences_at_step(s, 64, multiple_of=3) for s in (0, 1, 2, 8)] == [3, 3, 6, 15]
    assert BatchSchedule(sequences=2, start_sequences=1, warmup_tokens=5000, ramp="steps").sequences_at_step(
        0, 64, multiple_of=4) == 4


def test_without_warmup_every_step_is_the_full_batch():
    assert BatchSchedule(sequences=8, warmup_tokens=100).sequences_at(0) == 8  # no start: no ramp
    assert BatchSchedule(sequences=8, start_sequences=2).sequences_at(0) == 8  # no warmup tokens: no ramp
    assert BatchSchedule(sequences=8, start_sequences=2, warmup_tokens=100).sequences_at(100) == 8


@pytest.mark.parametrize("settings, problem", [
    (dict(sequences=0), "0 sequences starting at None is impossible"),
    (dict(sequences=8, start_sequences=9), "8 sequences starting at 9 is impossible"),
    (dict(sequences=8, start_sequences=0), "8 sequences starting at 0 is impossible"),
    (dict(sequences=8, warmup_tokens=-1), "warmup_tokens must be >= 0, got -1"),
    (dict(sequences=8, ramp="STEPS"), "ramp 'STEPS' is unknown; use tokens or steps"),
])
def test_an_impossible_batch_schedule_is_refused(settings, problem):
    with pytest.raises(TwofoldError, match=re.escape(problem)):
        BatchSchedule(**settings)
    BatchSchedule(sequences=8, start_sequences=8, ramp="steps")  # the edges pass


def test_start_ratio_scales_the_warmup_and_the_hold():
    s = Schedule(peak=2.0, tokens=1000, warmup_tokens=100, start_ratio=0.5)
    assert lr_at(s, 50) == pytest.approx(0.5)  # half of the warmup to 0.5 × peak
    assert lr_at(s, 500) == pytest.approx(1.0)


def test_one_token_warmup_and_progress_outside_zero_one():
    assert warmup(0, 1) == 0.0
    assert lr_at(Schedule(peak=1.0, tokens=10, warmup_tokens=1), 0) == 0.0
    assert decay_ratio("linear", 1.5, 1.0, 0.1) == pytest.approx(0.1)  # past the end: the floor
    assert decay_ratio("linear", -0.5, 1.0, 0.1) == pytest.approx(1.0)


def test_phase_steps_edges_and_batches_rounded_to_a_multiple():
    import dataclasses

    tiny = dataclasses.replace(load_recipe("demo").phase["pretrain"], tokens=100, seq_len=10, batch_sequences=3,
                               batch_start_sequences=1, batch_warmup_tokens=30)
    flat = dataclasses.replace(tiny, batch_start_sequences=None)
    assert phase_steps(flat) == 4  # 3 sequences × 10 tokens per step
    assert phase_steps(dataclasses.replace(flat, tokens=91)) == 4
    assert phase_steps(dataclasses.replace(tiny, tokens=20)) == 2  # the budget ends inside the warmup
    # multiple_of 2: the warmup takes 2, 2 sequences (0 → 20 → 40 tokens), then 2 per step to 100
    assert phase_steps(tiny, multiple_of=2) == 5
    assert phase_steps(flat, multiple_of=2) == 5
