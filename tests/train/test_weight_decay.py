"""Decoupled weight decay as Ettin's trainer applies it: each step multiplies the decaying weights
by 1 − wd · lr_t / lr_phase, where lr_phase is the LR the phase starts from — in the decay phase
0.5 × peak (its configs set optimizer.lr to half the peak), so the decay is twice what a
full-peak reference would give."""

import json
import math

import pytest

from twofold.train import loop, runs
from twofold.train.distributed import World
from twofold.train.recipe import load_recipe


def test_each_phase_decays_relative_to_the_lr_it_starts_from(tmp_path, tiny_store, tiny_recipe, decay_applied):
    recipe = load_recipe(str(tiny_recipe))
    opts = loop.Options(stores=(str(tiny_store),), progress=False)
    run = runs.start(tmp_path / "run", recipe, opts, World())
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == len(decay_applied)
    peak, wd = 3e-3, 3e-4  # the tiny recipe's optimizer
    phases = {p.name: p for p in recipe.phases}
    for line, applied in zip(lines, decay_applied):
        phase = phases[line["phase"]]
        total = phase.tokens
        t = min(line["phase_tokens"], total)  # the step that ends a phase may overshoot its budget
        if line["phase"] == "decay":  # by hand: 1 − sqrt from 0.5 × peak to 0.02 × peak
            lr = peak * (0.02 + (0.5 - 0.02) * (1 - math.sqrt(t / total)))
            expected = wd * lr / (0.5 * peak)
        elif line["phase"] == "extension":  # 1 − sqrt from peak to 0.5 × peak
            lr = peak * (0.5 + 0.5 * (1 - math.sqrt(t / total)))
            expected = wd * lr / peak
        else:  # linear warmup over 512 tokens, then the peak
            lr = peak * min(1.0, t / 512)
            expected = wd * lr / peak
        assert line["lr"] == pytest.approx(lr, rel=1e-12)
        assert applied == pytest.approx(expected, rel=1e-9), line
    decay_steps = [a for line, a in zip(lines, decay_applied) if line["phase"] == "decay"]
    assert decay_steps[0] == pytest.approx(wd * (0.02 + 0.48 * (1 - math.sqrt(0.512))) / 0.5, rel=1e-9)
