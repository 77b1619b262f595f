"""mmBERT as its trainer ran, observed in what the optimizer and the loader did (jhu-clsp/mmBERT
configs/mmBERT-small-{ext,decay}.yaml; orionw/bert24 src/sequence_packer.py): mmBERT-small's
mid-training and decay weight decay 4e-5 relative to their LR 4e-4, and a batch-size warmup
that grows the batch by equal steps."""

import json

import pytest

from twofold.train import loop, runs
from twofold.train.distributed import World
from twofold.train.recipe import load_recipe

PHASES = ("pretrain", "extension", "decay")


def small(**shapes):
    """mmBERT-small's recipe with the tiny model, every group of the test store, short phases."""
    overrides = ["model=tiny"]
    for phase in PHASES:
        values = {"mixture.groups": "all", "seq_len": 64, "batch_sequences": 4, "tokens": 512,
                  "checkpoint_every_tokens": "1T"}
        if phase == "pretrain":
            values.update(lr_warmup_tokens=128, batch_start_sequences="null")
        values.update(shapes.get(phase, {}))
        overrides += [f"phase.{phase}.{key}={value}" for key, value in values.items()]
    return load_recipe("mmbert", size="small", overrides=overrides)


def test_small_mid_training_and_decay_apply_4e5_relative_to_their_4e4(tmp_path, tiny_store, decay_applied):
    recipe = small(decay={"tokens": 1024})
    options = loop.Options(stores=(str(tiny_store),), progress=False, first_phase="extension")
    run = runs.start(tmp_path / "run", recipe, options, World())
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["phase"] for line in lines] == ["extension"] * 2 + ["decay"] * 4
    for line, applied in zip(lines, decay_applied):
        assert line["lr"] == pytest.approx(4e-4 if line["phase"] == "extension"
                                           else 4e-4 + (1.6e-5 - 4e-4) * line["phase_tokens"] / 1024, rel=1e-12)
        # upstream: weight_decay 4e-5 with lr 4e-4, decoupled: 4e-5 · lr_t / 4e-4 per step
        assert applied == pytest.approx(4e-5 * line["lr"] / 4e-4, rel=1e-9), line
    assert decay_applied[0] == pytest.approx(4e-5, rel=1e-9)


def test_batch_warmup_grows_the_batch_by_equal_steps(tmp_path, tiny_store):
    # 4 → 16 sequences of 64 over 5K tokens, linear in steps: the ramp lasts
    # ceil(2 · 5000 / ((4 + 16) · 64)) = 8 steps of 4 + 12 · s // 8 sequences, then 16.
    recipe = small(pretrain={"tokens": 7000, "batch_sequences": 16, "batch_start_sequences": 4,
                             "batch_warmup_tokens": 5000, "lr_warmup_tokens": 1000})
    assert recipe.phase["pretrain"].batch_ramp == "steps"
    run = runs.start(tmp_path / "run", recipe, loop.Options(stores=(str(tiny_store),), progress=False), World())
    log = (run / "pretrain" / "data_order" / "rank0.jsonl").read_text().splitlines()
    rows = [len(json.loads(line)["sequences"]) for line in log]
    assert rows == [4, 5, 7, 8, 10, 11, 13, 14, 16, 16, 16]  # 72 rows in the ramp, then 16 a step to 7000 tokens
