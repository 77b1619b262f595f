"""The downstream recipes: a task's published defaults with the changes asked for, and every bound of a
recipe checked at its edge (the value just inside is taken, the one just outside refused with its flag)."""

import dataclasses
import math

import pytest

from twofold.errors import TwofoldError
from twofold.finetune.recipes import DEFAULTS, TASKS, Recipe, check, parse_learning_rates, recipe_for


def test_a_tasks_recipe_takes_the_changes_given_and_keeps_the_defaults_for_none():
    recipe = recipe_for("rerank", learning_rates=(1e-4, 2e-4), batch_size=None, epochs=2.0, pooling=None)
    assert recipe == dataclasses.replace(DEFAULTS["rerank"], learning_rates=(1e-4, 2e-4), epochs=2.0)
    assert (recipe.batch_size, recipe.hard_negatives, recipe.pos_weight) == (64, 5, 5.0)  # rerank's own
    assert recipe_for("embed") == DEFAULTS["embed"] and recipe_for("embed").hard_negatives == 1
    assert [recipe_for(task).task for task in TASKS] == list(TASKS)
    with pytest.raises(TwofoldError, match=r"^unknown fine-tuning task 'dense'; choose one of embed, sparse, rerank, "
                                           r"colbert, classify, generate$"):
        recipe_for("dense")
    with pytest.raises(TwofoldError, match="--batch-size must be at least 1, got 0"):  # changes are checked
        recipe_for("embed", batch_size=0)


def test_to_dict_lists_the_rates_and_every_field():
    data = recipe_for("classify", seed=3).to_dict()
    assert data["learning_rates"] == [1e-5, 3e-5, 8e-5] and isinstance(data["learning_rates"], list)
    assert data == {**dataclasses.asdict(recipe_for("classify", seed=3)), "learning_rates": [1e-5, 3e-5, 8e-5]}
    assert Recipe(**{**data, "learning_rates": tuple(data["learning_rates"])}) == recipe_for("classify", seed=3)


def test_learning_rates_parse_from_a_comma_list_or_fail_with_one_line():
    assert parse_learning_rates("1e-5,3e-5, 8e-5") == (1e-5, 3e-5, 8e-5)
    assert parse_learning_rates("0.001") == (1e-3,)
    with pytest.raises(TwofoldError, match=r"^--lr '1e-5,fast': 'fast' is not a number; give learning rates like "
                                           r"1e-5,3e-5,8e-5$"):
        parse_learning_rates("1e-5,fast")
    for bad, shown in (("1e-5,0", "0"), ("-1e-5", "-1e-5"), ("inf", "inf"), ("nan", "nan")):
        with pytest.raises(TwofoldError, match=rf"^--lr '{bad}': {shown} is not a positive learning rate$"):
            parse_learning_rates(bad)


def edge(recipe: Recipe, **changes) -> Recipe:
    return check(dataclasses.replace(recipe, **changes))


@pytest.mark.parametrize("name", ["batch_size", "mini_batch_size", "max_length", "query_length", "max_new_tokens"])
def test_every_count_must_be_at_least_one(name):
    assert getattr(edge(DEFAULTS["embed"], **{name: 1}), name) == 1
    with pytest.raises(TwofoldError, match=rf"^--{name.replace('_', '-')} must be at least 1, got 0$"):
        edge(DEFAULTS["embed"], **{name: 0})


def test_each_bound_of_a_recipe_at_its_edge():
    base = DEFAULTS["embed"]
    assert edge(base, learning_rates=(1e-300,)).learning_rates == (1e-300,)
    with pytest.raises(TwofoldError, match=r"^a recipe needs at least one learning rate \(--lr\)$"):
        edge(base, learning_rates=())
    for rates, shown in (((1e-5, 0.0), "0.0"), ((math.inf,), "inf"), ((math.nan,), "nan"), ((-1.0,), "-1.0")):
        with pytest.raises(TwofoldError, match=rf"^--lr {shown}: a learning rate must be a finite number > 0$"):
            edge(base, learning_rates=rates)
    assert edge(base, epochs=0.01).epochs == 0.01
    for epochs in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(TwofoldError, match=r"^--epochs must be positive"):
            edge(base, epochs=epochs)
    assert edge(base, warmup_ratio=0.0).warmup_ratio == 0.0 and edge(base, warmup_ratio=0.99).warmup_ratio == 0.99
    for ratio in (1.0, -0.01):
        with pytest.raises(TwofoldError, match=rf"^--warmup must be in \[0, 1\), got {ratio}$"):
            edge(base, warmup_ratio=ratio)
    assert edge(base, hard_negatives=0).hard_negatives == 0
    with pytest.raises(TwofoldError, match=r"^--hard-negatives must be 0 or more, got -1$"):
        edge(base, hard_negatives=-1)
    assert [edge(base, pooling=p).pooling for p in (None, "mean", "last", "cls")] == [None, "mean", "last", "cls"]
    with pytest.raises(TwofoldError, match=r"^--pooling 'max': choose mean, last or cls$"):
        edge(base, pooling="max")
