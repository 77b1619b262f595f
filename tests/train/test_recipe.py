"""Recipes: presets carry the published figures, overrides and scale work, bad input is one line."""

import math

import pytest

from twofold.errors import TwofoldError
from twofold.train.recipe import CROSS, load_recipe, preset_names
from twofold.train.schedule import lr_at


def run_lr(recipe, tokens: float) -> float:
    """The LR of a run from scratch through the recipe's phases after `tokens` in total
    (a boundary belongs to the earlier phase; past the end, the end)."""
    start = 0
    for index, phase in enumerate(recipe.phases):
        if tokens <= start + phase.tokens or index == len(recipe.phases) - 1:
            return lr_at(phase.lr_schedule(recipe.optimizer.lr), min(tokens - start, phase.tokens))
        start += phase.tokens

B = 10**9

# Ettin (arXiv 2507.11412) and its configs: peak LR / weight decay / warmup / batch-size warmup, cross LR.
ETTIN_SIZES = {
    "17m": (3e-3, 3e-4, 4 * B, 125 * B, 1.5e-3),
    "32m": (3e-3, 3e-4, 4 * B, 100 * B, 1.5e-3),
    "68m": (3e-3, 3e-4, 3 * B, 75 * B, 1.5e-3),
    "150m": (8e-4, 1e-5, 3 * B, 50 * B, 4e-4),
    "400m": (5e-4, 1e-5, 2 * B, 10 * B, 2.5e-4),
    "1b": (5e-4, 5e-5, 2 * B, 3 * B, 2.5e-4),
}


def test_presets_are_listed():
    assert {"ettin", "mmbert", "demo"} <= set(preset_names())


@pytest.mark.parametrize("size", ETTIN_SIZES)
def test_ettin_sizes_carry_the_published_hyperparameters(size):
    lr, wd, warmup, batch_warmup, cross_lr = ETTIN_SIZES[size]
    recipe = load_recipe("ettin", size=size)
    assert recipe.model == f"ettin-{size}" and recipe.size == size
    assert (recipe.optimizer.lr, recipe.optimizer.weight_decay) == (lr, wd)
    assert recipe.optimizer.betas == (0.9, 0.98) and recipe.optimizer.eps == 1e-6
    pretrain = recipe.phase["pretrain"]
    assert (pretrain.lr_warmup_tokens, pretrain.batch_warmup_tokens) == (warmup, batch_warmup)
    assert recipe.cross.lr == cross_lr


def test_ettin_phases():
    recipe = load_recipe("ettin", size="17m")
    assert [p.name for p in recipe.phases] == ["pretrain", "extension", "decay"]
    assert [p.tag for p in recipe.phase.values()] == ["step", "ext", "decay", "cross"]
    pretrain, extension, decay = recipe.phases
    assert (pretrain.tokens, extension.tokens, decay.tokens) == (1700 * B, 250 * B, 50 * B)  # the configs' 50B
    assert [p.mask_rate for p in recipe.phases] == [0.30, 0.30, 0.15]
    assert (extension.lr_decay, extension.lr_start_ratio, extension.lr_min_ratio) == ("one_minus_sqrt", 1.0, 0.5)
    assert (decay.lr_decay, decay.lr_start_ratio, decay.lr_min_ratio) == ("one_minus_sqrt", 0.5, 0.02)
    assert all(p.checkpoint_every_tokens == 8.5 * B for p in recipe.phases)
    assert recipe.cross.checkpoint_every_tokens == 10 * B
    assert recipe.seed == 21 and pretrain.batch_sequences == 4608
    cross = recipe.cross
    assert (cross.tokens, cross.lr_warmup_tokens, cross.lr_decay, cross.lr_decay_tokens, cross.lr_min_ratio) == (
        50 * B, 3 * B, "linear", 10 * B, 0.02)


@pytest.mark.parametrize("name,size", [("ettin", s) for s in ETTIN_SIZES] + [("mmbert", "base"), ("demo", None)])
def test_phase_schedules_chain_continuously(name, size):
    recipe = load_recipe(name, size=size)
    boundary = 0
    for phase, following in zip(recipe.phases, recipe.phases[1:]):
        boundary += phase.tokens
        before, after = run_lr(recipe, boundary), run_lr(recipe, boundary + following.tokens * 1e-9)
        assert after == pytest.approx(before, rel=1e-3), f"LR jumps after {phase.name}"
    assert run_lr(recipe, boundary + recipe.phases[-1].tokens) == pytest.approx(
        recipe.optimizer.lr * recipe.phases[-1].lr_min_ratio)


def test_ettin_lr_ends_of_extension_and_decay():
    recipe = load_recipe("ettin", size="150m")
    peak, pretrain, extension, decay = 8e-4, *(p.tokens for p in recipe.phases)
    assert run_lr(recipe, pretrain + extension) == pytest.approx(0.5 * peak)
    assert run_lr(recipe, pretrain + extension + decay) == pytest.approx(0.02 * peak)


def test_demo_is_laptop_sized():
    recipe = load_recipe("demo")
    assert recipe.model == "demo" and len(recipe.phases) == 3
    assert sum(p.tokens for p in recipe.phases) <= 500_000


def test_scale_keeps_every_proportion():
    full = load_recipe("ettin", size="17m")
    small = load_recipe("ettin", size="17m", scale=1e-4)
    assert small.scale == 1e-4
    for name, big in full.phase.items():
        tiny = small.phase[name]
        assert tiny.tokens == round(big.tokens * 1e-4)
        for key in ("lr_warmup_tokens", "batch_warmup_tokens", "checkpoint_every_tokens", "lr_decay_tokens"):
            if getattr(big, key):
                assert getattr(tiny, key) / tiny.tokens == pytest.approx(getattr(big, key) / big.tokens, rel=1e-4)
        # what is not a token count is untouched
        assert (tiny.seq_len, tiny.batch_sequences, tiny.mask_rate, tiny.lr_min_ratio) == (
            big.seq_len, big.batch_sequences, big.mask_rate, big.lr_min_ratio)


def test_budget_sets_the_scale():
    recipe = load_recipe("ettin", size="17m", budget=2_000_000)  # 1.7T + 250B + 50B
    assert sum(p.tokens for p in recipe.phases) == 2_000_000
    assert math.isclose(recipe.scale, 1e-6)


def test_overrides_use_dotted_paths_and_yaml_values():
    recipe = load_recipe("ettin", size="150m", overrides=[
        "phase.decay.lr_min_ratio=0.01", "optimizer.betas=[0.9, 0.95]", "phase.pretrain.tokens=2T",
        "phase.extension.mixture.groups=[web, code]", "seed=7", "optimizer.grad_clip=1"])
    assert recipe.phase["decay"].lr_min_ratio == 0.01
    assert recipe.optimizer.betas == (0.9, 0.95)
    assert recipe.phase["pretrain"].tokens == 2000 * B
    assert recipe.phase["extension"].mixture.groups == ("web", "code")
    assert recipe.seed == 7 and recipe.optimizer.grad_clip == 1.0


def test_overrides_apply_before_scale():
    recipe = load_recipe("demo", overrides=["phase.pretrain.tokens=2M"], scale=0.5)
    assert recipe.phase["pretrain"].tokens == 1_000_000 and recipe.phase["decay"].tokens == 20_000


def test_recipe_from_a_yaml_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model: tiny\noptimizer: {lr: 1.0e-3}\nphase:\n  only:\n"
                    "    tokens: 10K\n    seq_len: 64\n    batch_sequences: 4\n"
                    "    checkpoint_every_tokens: 5K\n    tag: step\n")
    recipe = load_recipe(str(path))
    assert recipe.name == str(path) and recipe.phase["only"].tokens == 10_000


@pytest.mark.parametrize("overrides,size,expected", [
    (["phase.decay.lr_min_rato=0.02"], "17m", "unknown key phase.decay.lr_min_rato"),
    (["phase.pretrain.seq_len=long"], "17m", "phase.pretrain.seq_len = 'long' must be a whole number"),
    (["phase.pretrain.seq_len=3"], "17m", "phase.pretrain.seq_len = 3 must be at least 4"),
    (["phase.pretrain.tokens=-5"], "17m", "phase.pretrain.tokens = -5 must be a positive token count"),
    (["phase.decay.mask_rate=1.0"], "17m", "phase.decay.mask_rate = 1.0 must be in [0, 1)"),
    (["phase.decay.mask_rate=-0.1"], "17m", "phase.decay.mask_rate = -0.1 must be in [0, 1)"),
    (["phase.decay.mixture.temperature=0"], "17m", "phase.decay.mixture: temperature must be > 0, got 0.0"),
    (["phase.decay.lr_decay=exp"], "17m", "phase.decay.lr_decay = 'exp' must be one of"),
    (["phase.cross.lr_decay_tokens=49B"], "17m", "phase.cross.lr_decay_tokens = 49000000000 must be in (0, tokens"),
    (["phase.pretrain.batch_start_sequences=5000"], "17m", "phase.pretrain.batch_start_sequences = 5000"),
    (["optimizer.betas=[0.9]"], "17m", "optimizer.betas = [0.9] must be a list of 2 values"),
    (["optimizer.betas=[0.9, 1.0]"], "17m", "optimizer.betas[1] = 1.0 must be in [0, 1)"),
    (["optimizer.name=sgd"], "17m", "optimizer.name = 'sgd' must be one of stable_adamw, adamw"),
    (["phase.extension.tag=step"], "17m", "phase.extension.tag = 'step' is used by another phase"),
    (["phase.warmup.tokens=1"], "17m", "no phase 'warmup'"),
    (["phase.decay.mask_rate"], "17m", "expected KEY.PATH=VALUE"),
    (["phase.decay.mask_rate=[oops"], "17m", "is not a YAML value"),
    ([], None, "needs --size, one of 17m"),
    ([], "2b", "has no size '2b'"),
])
def test_bad_input_is_one_line_naming_the_key(overrides, size, expected):
    with pytest.raises(TwofoldError) as error:
        load_recipe("ettin", size=size, overrides=overrides)
    message = str(error.value)
    assert expected in message and "\n" not in message


def test_unknown_recipe_and_bad_yaml(tmp_path):
    with pytest.raises(TwofoldError, match="unknown recipe 'etin'; choose one of"):
        load_recipe("etin")
    broken = tmp_path / "broken.yaml"
    broken.write_text("phase: [unclosed\n")
    with pytest.raises(TwofoldError, match="not valid YAML"):
        load_recipe(str(broken))


def test_cross_is_not_a_run_phase():
    recipe = load_recipe("demo")
    assert CROSS in recipe.phase and all(p.name != CROSS for p in recipe.phases)


def test_bad_scale():
    with pytest.raises(TwofoldError, match="--scale"):
        load_recipe("demo", scale=-1)


def test_to_dict_round_trips_through_json():
    import json

    from twofold.train.recipe import recipe_from_dict

    recipe = load_recipe("mmbert", size="small", scale=1e-5, overrides=["phase.decay.mixture.weights={a: 1}",
                                                                       "phase.decay.mixture.temperature=null"])
    raw = json.loads(json.dumps(recipe.to_dict()))
    assert recipe_from_dict(raw, recipe.name) == recipe


def test_an_override_value_may_hold_an_equals_sign_and_an_empty_value_is_null():
    recipe = load_recipe("demo", overrides=["name=mine=v2", "phase.extension.lr="])
    assert recipe.name == "mine=v2" and recipe.phase["extension"].lr is None


def test_a_phase_without_decay_holds_its_start_ratio_and_a_decay_spans_what_the_warmup_leaves():
    recipe = load_recipe("demo", overrides=["phase.pretrain.lr_min_ratio=0.1", "phase.pretrain.lr_start_ratio=0.8",
                                            "phase.extension.lr_warmup_tokens=6K"])
    held = recipe.phase["pretrain"].lr_schedule(1.0)  # warmup-stable: what `recipe show` prints and the run uses
    assert (held.decay_tokens, held.start_ratio, held.min_ratio) == (0, 0.8, 0.8)
    decaying = recipe.phase["extension"].lr_schedule(1.0)
    assert (decaying.warmup_tokens, decaying.decay_tokens, decaying.min_ratio) == (6000, 54_000, 0.5)
    assert lr_at(decaying, 60_000) == 0.5 and lr_at(decaying, 6000) == 1.0  # the decay starts when warmup ends


def test_a_phase_hands_the_loader_its_layout_and_a_row_threshold_no_longer_than_its_sequences():
    recipe = load_recipe("demo", overrides=["phase.extension.layout=documents", "phase.extension.min_row_tokens=600",
                                            "phase.decay.min_row_tokens=100"])
    long_rows, short_rows = recipe.phase["extension"].data(seed=5), recipe.phase["decay"].data(seed=6)
    assert (long_rows.layout, long_rows.min_row_tokens, long_rows.seed) == ("documents", 512, 5)  # seq_len 512
    assert (short_rows.layout, short_rows.min_row_tokens, short_rows.seed) == ("packed", 100, 6)


def test_language_sets_expand_in_groups_and_boosts_and_weights_read_only_the_listed_groups(tmp_path):
    (tmp_path / "counts.csv").write_text("language,n\nen,100\nfr,50\nde,25\nsw,5\n")
    (tmp_path / "r.yaml").write_text(
        "model: tiny\noptimizer: {lr: 1.0e-3}\nlanguage_sets: {euro: [fr, de], every: all}\n"
        "phase:\n"
        "  a: {tokens: 1K, seq_len: 64, batch_sequences: 2, checkpoint_every_tokens: 1K, tag: a,\n"
        "      mixture: {groups: [en, euro], weights_from: counts.csv:n}}\n"
        "  b: {tokens: 1K, seq_len: 64, batch_sequences: 2, checkpoint_every_tokens: 1K, tag: b,\n"
        "      mixture: {groups: every, weights_from: counts.csv:n}}\n"
        "  c: {tokens: 1K, seq_len: 64, batch_sequences: 2, checkpoint_every_tokens: 1K, tag: c,\n"
        "      mixture: {groups: [en, euro], temperature: 0.5, boost: {euro: 2.0, sw: 3.0}}}\n")
    a, b, c = (load_recipe(str(tmp_path / "r.yaml")).phase[name].mixture for name in "abc")
    assert a.groups == c.groups == ("en", "fr", "de") and c.boost == {"fr": 2.0, "de": 2.0, "sw": 3.0}
    assert a.weights == {"en": 100, "fr": 50, "de": 25}  # sw is not one of the phase's groups
    assert b.groups is None and b.weights == {"en": 100, "fr": 50, "de": 25, "sw": 5}  # `all`: every row
