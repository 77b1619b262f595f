"""A budget that means what it says: phases and checkpoint intervals hold whole optimizer steps,
and `--batch-scale` shrinks the batch with the budget."""

import json
import re

import pytest

from twofold.cli import main
from twofold.train.recipe import load_recipe


def test_ettin_at_a_tiny_budget_is_refused_before_anything_is_written(tmp_path, tiny_store, capsys):
    out = tmp_path / "R"
    code = main(["train", "--recipe", "ettin", "--size", "17m", "--budget", "300K", "--store", str(tiny_store),
                 "--out", str(out), "--pair", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    # one document chunk per row, 615 tokens each as Ettin's pretraining rows averaged
    step = "one optimizer step of 2.83M (4608 sequences of ≈615 tokens)"
    assert f"phase pretrain gets 255K tokens, less than {step}" in err
    # decay checkpoints every 1,275 tokens, less than one of its ≈1,322-token rows: no batch fits, a budget does
    assert "no batch fits" in err and "--budget to at least" in err and "--recipe demo" in err
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "nan", "-0.5", "inf", "-inf"])
def test_batch_scale_must_be_a_positive_number(tmp_path, tiny_store, tiny_recipe, capsys, value):
    out = tmp_path / "R"
    code = main(["train", "--recipe", str(tiny_recipe), f"--batch-scale={value}", "--store", str(tiny_store),
                 "--out", str(out), "--pair", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--batch-scale" in err and "positive number" in err
    assert not out.exists()


def test_batch_scale_multiplies_every_batch_and_keeps_warmups_in_tokens(tiny_recipe):
    plain, half = load_recipe(str(tiny_recipe)), load_recipe(str(tiny_recipe), batch_scale=0.5)
    assert half.batch_scale == 0.5
    for a, b in zip(plain.phase.values(), half.phase.values()):
        assert b.batch_sequences == a.batch_sequences // 2
        assert (a.lr_warmup_tokens, a.batch_warmup_tokens, a.tokens) == (b.lr_warmup_tokens, b.batch_warmup_tokens,
                                                                         b.tokens)
    assert (plain.phase["pretrain"].batch_start_sequences, half.phase["pretrain"].batch_start_sequences) == (2, 1)


def test_the_suggested_batch_scale_trains_the_budget_asked_for(tmp_path, tiny_store, tiny_recipe, capsys):
    # At scale 0.25 the tiny recipe's extension checkpoints every 250 tokens with steps of 4 x 128,
    # and its decay gets 250 tokens: less than one step of 512.
    argv = ["train", "--recipe", str(tiny_recipe), "--objective", "mlm", "--scale", "0.25", "--store",
            str(tiny_store), "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "phase pretrain checkpoints every 500 tokens, less than one optimizer step of 512 (8 sequences of 64)" in err
    assert "(and 2 more such)" in err
    assert not (tmp_path / "refused").exists()
    factor = re.search(r"--batch-scale ([0-9.e-]+) or smaller", err).group(1)
    assert factor == "0.48"

    run = tmp_path / "run"
    assert main([*argv, "--batch-scale", factor, "--out", str(run)]) == 0
    recipe = load_recipe(str(tiny_recipe), scale=0.25, batch_scale=float(factor))
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in steps if "loss" in line]
    tags = [p.name.partition("-")[2] for p in (run / "checkpoints").iterdir()]
    for phase in recipe.phases:
        mine = [line for line in steps if line["phase"] == phase.name]
        last = mine[-1]["batch_sequences"] * phase.seq_len
        assert phase.tokens <= mine[-1]["phase_tokens"] < phase.tokens + last  # the budget, not a step past it
        assert max(line["batch_sequences"] for line in mine) == phase.batch_sequences
        assert len(mine) > 1  # and more than one step, so the interval below means something
        saved = [tag for tag in tags if re.fullmatch(rf"{phase.tag}\d+", tag)]
        assert len(saved) <= -(-phase.tokens // phase.checkpoint_every_tokens) < len(mine)
    assert json.loads((run / "run.json").read_text())["recipe"]["batch_scale"] == 0.48


@pytest.mark.parametrize("earlier", [1.0, 0.9, 0.7])
def test_the_suggested_batch_scale_counts_from_the_recipe_s_own_batches(tiny_recipe, earlier):
    from twofold.errors import TwofoldError
    from twofold.train import budget

    with pytest.raises(TwofoldError) as refused:
        budget.check(load_recipe(str(tiny_recipe), scale=0.25, batch_scale=earlier))
    factor = float(re.search(r"--batch-scale ([0-9.e-]+) or smaller", str(refused.value)).group(1))
    budget.check(load_recipe(str(tiny_recipe), scale=0.25, batch_scale=factor))  # given as is, it holds
