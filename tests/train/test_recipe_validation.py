"""Every rule of a recipe's values at its edge: the first impossible value is one line naming the
key, the value and the rule; the last possible one loads. An off-by-one in a rule (> for >=), a
rule that names another key, or a rule dropped fails here."""

from __future__ import annotations

import pytest

from twofold.errors import TwofoldError
from twofold.train.recipe import batch_scaled, human_tokens, load_recipe, scaled

P = "phase.extension"  # the demo's second phase: tokens 60K, lr_decay one_minus_sqrt, start ratio 1.0

# (overrides that break one rule, the key named, the value shown, the rule; overrides at the edge that load)
RULES = [
    (["optimizer.name=sgd"], "optimizer.name", "sgd", "must be one of stable_adamw, adamw", ["optimizer.name=adamw"]),
    (["optimizer.lr=0"], "optimizer.lr", 0.0, "must be positive", ["optimizer.lr=1e-12"]),
    (["optimizer.betas=[1, 0.5]"], "optimizer.betas[0]", 1.0, "must be in [0, 1)", ["optimizer.betas=[0, 0.5]"]),
    (["optimizer.betas=[0.9, -0.1]"], "optimizer.betas[1]", -0.1, "must be in [0, 1)", ["optimizer.betas=[0.9, 0.99]"]),
    (["optimizer.eps=0"], "optimizer.eps", 0.0, "must be positive", ["optimizer.eps=1e-30"]),
    (["optimizer.weight_decay=-1e-9"], "optimizer.weight_decay", -1e-9, "must be >= 0", ["optimizer.weight_decay=0"]),
    (["optimizer.grad_clip=0"], "optimizer.grad_clip", 0.0, "must be positive or null", ["optimizer.grad_clip=0.1"]),
    (["seed=-1"], "seed", -1, "must be >= 0", ["seed=0"]),
    (["dropout.attention=1"], "dropout.attention", 1.0, "must be in [0, 1)", ["dropout.attention=0.99"]),
    (["dropout.embedding=-0.01"], "dropout.embedding", -0.01, "must be in [0, 1)", ["dropout.embedding=0"]),
    ([f"{P}.tokens=0"], f"{P}.tokens", 0, "must be a positive token count", [f"{P}.tokens=1", f"{P}.lr_warmup_tokens=0",
                                                                             f"{P}.checkpoint_every_tokens=1"]),
    ([f"{P}.seq_len=3"], f"{P}.seq_len", 3, "must be at least 4", [f"{P}.seq_len=4"]),
    ([f"{P}.mask_rate=1"], f"{P}.mask_rate", 1.0, "must be in [0, 1)", [f"{P}.mask_rate=0"]),
    ([f"{P}.mask_rate=-0.1"], f"{P}.mask_rate", -0.1, "must be in [0, 1)", [f"{P}.mask_rate=0.99"]),
    ([f"{P}.rope_theta_global=0"], f"{P}.rope_theta_global", 0.0, "must be positive", [f"{P}.rope_theta_global=0.5"]),
    ([f"{P}.rope_theta_local=0"], f"{P}.rope_theta_local", 0.0, "must be positive", [f"{P}.rope_theta_local=0.5"]),
    ([f"{P}.seed=-1"], f"{P}.seed", -1, "must be >= 0 or null", [f"{P}.seed=0"]),
    ([f"{P}.lr=0"], f"{P}.lr", 0.0, "must be positive or null", [f"{P}.lr=1e-9"]),
    ([f"{P}.lr_warmup_tokens=60001"], f"{P}.lr_warmup_tokens", 60001, "must be in [0, tokens = 60000]",
     [f"{P}.lr_warmup_tokens=60000"]),
    ([f"{P}.lr_warmup_tokens=-1"], f"{P}.lr_warmup_tokens", -1, "must be in [0, tokens = 60000]",
     [f"{P}.lr_warmup_tokens=0"]),
    ([f"{P}.lr_decay=exp"], f"{P}.lr_decay", "exp", "must be one of none, linear, cosine, one_minus_sqrt",
     [f"{P}.lr_decay=cosine"]),
    ([f"{P}.lr_warmup_tokens=10000", f"{P}.lr_decay_tokens=50001"], f"{P}.lr_decay_tokens", 50001,
     "must be in (0, tokens - lr_warmup_tokens = 50000] or null",
     [f"{P}.lr_warmup_tokens=10000", f"{P}.lr_decay_tokens=50000"]),
    ([f"{P}.lr_decay_tokens=0"], f"{P}.lr_decay_tokens", 0, "must be in (0, tokens - lr_warmup_tokens = 60000] or null",
     [f"{P}.lr_decay_tokens=1"]),
    ([f"{P}.lr_start_ratio=0"], f"{P}.lr_start_ratio", 0.0, "must be in (0, 1] (a fraction of the peak LR)",
     [f"{P}.lr_start_ratio=0.5"]),
    ([f"{P}.lr_start_ratio=1.01"], f"{P}.lr_start_ratio", 1.01, "must be in (0, 1] (a fraction of the peak LR)",
     [f"{P}.lr_start_ratio=1", f"{P}.lr_min_ratio=1"]),
    ([f"{P}.lr_start_ratio=0.6", f"{P}.lr_min_ratio=0.61"], f"{P}.lr_min_ratio", 0.61,
     "must be in [0, lr_start_ratio = 0.6] (the LR decays to it)",
     [f"{P}.lr_start_ratio=0.6", f"{P}.lr_min_ratio=0.6"]),
    ([f"{P}.lr_min_ratio=-0.01"], f"{P}.lr_min_ratio", -0.01,
     "must be in [0, lr_start_ratio = 1] (the LR decays to it)", [f"{P}.lr_min_ratio=0"]),
    # without a decay the end ratio may sit above the start (it is never reached), up to 1
    ([f"{P}.lr_decay=none", f"{P}.lr_start_ratio=0.5", f"{P}.lr_min_ratio=1.01"], f"{P}.lr_min_ratio", 1.01,
     "must be in [0, 1]", [f"{P}.lr_decay=none", f"{P}.lr_start_ratio=0.5", f"{P}.lr_min_ratio=1"]),
    ([f"{P}.lr_decay=none", f"{P}.lr_min_ratio=-0.5"], f"{P}.lr_min_ratio", -0.5, "must be in [0, 1]",
     [f"{P}.lr_decay=none", f"{P}.lr_min_ratio=0"]),
    ([f"{P}.batch_sequences=0"], f"{P}.batch_sequences", 0, "must be at least 1", [f"{P}.batch_sequences=1"]),
    ([f"{P}.batch_start_sequences=3"], f"{P}.batch_start_sequences", 3, "must be in [1, batch_sequences = 2] or null",
     [f"{P}.batch_start_sequences=2"]),
    ([f"{P}.batch_start_sequences=0"], f"{P}.batch_start_sequences", 0, "must be in [1, batch_sequences = 2] or null",
     [f"{P}.batch_start_sequences=1"]),
    ([f"{P}.batch_warmup_tokens=-1"], f"{P}.batch_warmup_tokens", -1, "must be >= 0", [f"{P}.batch_warmup_tokens=0"]),
    ([f"{P}.batch_ramp=linear"], f"{P}.batch_ramp", "linear", "must be one of tokens, steps",
     [f"{P}.batch_ramp=steps"]),
    ([f"{P}.layout=rows"], f"{P}.layout", "rows", "must be one of packed, documents", [f"{P}.layout=documents"]),
    ([f"{P}.min_row_tokens=0"], f"{P}.min_row_tokens", 0, "must be at least 1", [f"{P}.min_row_tokens=1"]),
    ([f"{P}.mean_row_tokens=0"], f"{P}.mean_row_tokens", 0.0, "must be positive or null", [f"{P}.mean_row_tokens=1"]),
    ([f"{P}.layout=documents", f"{P}.batch_start_sequences=1", f"{P}.batch_warmup_tokens=100"], f"{P}.batch_ramp",
     "tokens", "must be steps when the layout is documents and the batch warms up",
     [f"{P}.layout=documents", f"{P}.batch_start_sequences=1", f"{P}.batch_warmup_tokens=100",
      f"{P}.batch_ramp=steps"]),
    ([f"{P}.weight_decay=-0.5"], f"{P}.weight_decay", -0.5, "must be >= 0 or null", [f"{P}.weight_decay=0"]),
    ([f"{P}.checkpoint_every_tokens=0"], f"{P}.checkpoint_every_tokens", 0, "must be a positive token count",
     [f"{P}.checkpoint_every_tokens=1"]),
    ([f"{P}.tag=ext1"], f"{P}.tag", "ext1", "must be letters, '_' or '-' (the checkpoint number follows it)",
     [f"{P}.tag=e_x-t"]),
    ([f"{P}.tag=_ext"], f"{P}.tag", "_ext", "must be letters, '_' or '-' (the checkpoint number follows it)",
     [f"{P}.tag=Ext"]),
    ([f"{P}.tag=step"], f"{P}.tag", "step", "is used by another phase; tags must differ", [f"{P}.tag=steps"]),
]


def message(key, value, rule, label="demo"):
    return f"recipe {label}: {key} = {value!r} {rule}; fix the recipe or use --set {key}=…"


@pytest.mark.parametrize("bad, key, value, rule, edge", RULES, ids=[" ".join(case[0]) for case in RULES])
def test_each_rule_refuses_the_first_impossible_value_and_keeps_the_last_possible_one(bad, key, value, rule, edge):
    with pytest.raises(TwofoldError) as raised:
        load_recipe("demo", overrides=bad)
    assert str(raised.value) == message(key, value, rule)
    load_recipe("demo", overrides=edge)


def test_a_recipe_without_a_phase_besides_cross_is_refused():
    with pytest.raises(TwofoldError) as raised:
        load_recipe("demo", overrides=["phase={cross: {tokens: 1K, seq_len: 64, batch_sequences: 2, "
                                       "checkpoint_every_tokens: 1K, tag: cross}}"])
    assert str(raised.value) == message("phase", ["cross"], "must hold at least one phase besides cross")


def test_scaling_keeps_every_phase_at_least_a_token_and_a_checkpoint_interval_and_names_the_scale():
    recipe = load_recipe("demo", overrides=["phase.cross.lr_decay_tokens=null"])
    tiny = scaled(recipe, 1e-9)  # 200K tokens x 1e-9 rounds to 0: kept at 1
    assert {p.tokens for p in tiny.phase.values()} == {1}
    assert {p.checkpoint_every_tokens for p in tiny.phase.values()} == {1}
    assert tiny.phase["pretrain"].lr_warmup_tokens == 0  # parts of a phase round down
    assert scaled(recipe, 1e-5).phase["pretrain"].tokens == 2  # 200K x 1e-5: rounded, not floored to 1
    for factor in (0, -1.0, float("nan"), float("inf"), "2"):
        with pytest.raises(TwofoldError, match=r"^--scale .* must be a positive number \(e\.g\. 1e-6\)$"):
            scaled(recipe, factor)
    with pytest.raises(TwofoldError) as raised:  # a part of a phase scaled to nothing: the scale is named
        scaled(load_recipe("demo"), 1e-5)
    rule = "must be in (0, tokens - lr_warmup_tokens = 1] or null"
    assert str(raised.value) == message("phase.cross.lr_decay_tokens", 0, rule, "demo at --scale 1e-05")


def test_batch_scaling_floors_every_batch_to_at_least_one_sequence():
    recipe = load_recipe("demo", overrides=[f"{P}.batch_sequences=7", f"{P}.batch_start_sequences=3",
                                            f"{P}.batch_warmup_tokens=1K"])
    half = load_recipe("demo", overrides=[f"{P}.batch_sequences=7", f"{P}.batch_start_sequences=3",
                                          f"{P}.batch_warmup_tokens=1K"], batch_scale=0.5)
    assert [(p.batch_sequences, p.batch_start_sequences) for p in half.phase.values()] == [
        (4, None), (3, 1), (1, None), (1, None)]  # 8, (7, 3), 2, 2 halved, rounded down, at least 1
    assert half.batch_scale == 0.5 and half.phase[P.split(".")[1]].batch_warmup_tokens == 1000  # tokens stay
    assert load_recipe("demo", batch_scale=0.3).phase["pretrain"].batch_sequences == 2  # 2.4: rounded down
    assert load_recipe("demo", batch_scale=0.375).phase["pretrain"].batch_sequences == 3  # exactly 3, kept
    for factor in (0, -0.5, float("inf"), float("nan"), "1"):
        with pytest.raises(TwofoldError, match=r"^--batch-scale .* must be a positive number \(e\.g\. 0\.01\)$"):
            batch_scaled(recipe, factor)


@pytest.mark.parametrize("count, text", [
    (1.7e12, "1.7T"), (1e12, "1T"), (999e9, "999B"), (1e9, "1B"), (8.5e9, "8.5B"), (1e6, "1M"), (2.5e6, "2.5M"),
    (1000, "1K"), (125_000, "125K"), (999, "999"), (0, "0"), (-2e6, "-2M")])
def test_token_counts_are_written_the_way_recipes_write_them(count, text):
    assert human_tokens(count) == text


def test_each_phase_from_the_first_run_finds_its_languages_and_cross_only_when_asked():
    recipe = load_recipe("demo", overrides=["phase.extension.mixture.groups=[en, fr]",
                                            "phase.cross.mixture.groups=[en, de]"])
    stores = {"en": 10, "de": 5}
    refused = "recipe demo: phase.{}.mixture: group(s) {} named in the phase are provided by no store (stores have: {})"
    with pytest.raises(TwofoldError) as raised:
        recipe.check_groups(stores)
    assert str(raised.value) == refused.format("extension", "fr", "de, en") + "; fix the names or add a source"
    recipe.check_groups(stores, first=2)  # a run resumed at the decay phase: the extension is behind it
    recipe.check_groups(stores, cross=True)  # a cross run reads only the cross phase
    with pytest.raises(TwofoldError, match=r"^recipe demo: phase\.cross\.mixture: group\(s\) de "):
        recipe.check_groups({"en": 10, "fr": 1}, cross=True)


def test_the_dropout_settings_reach_the_model_config_fields_of_the_same_name():
    dropout = load_recipe("demo", overrides=["dropout.attention=0.1", "dropout.attention_output=0.2",
                                             "dropout.embedding=0.3", "dropout.mlp=0.4"]).dropout
    assert dropout.model_fields() == {"attention_dropout": 0.1, "attention_output_dropout": 0.2,
                                      "embedding_dropout": 0.3, "mlp_dropout": 0.4}
    assert dropout.active and not load_recipe("demo").dropout.active
