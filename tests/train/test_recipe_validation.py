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
    recipe = load_recipe("demo", overrides=["phase.pretrain.mixture.groups=[en, sw]",
                                            "phase.extension.mixture.groups=[en, fr]",
                                            "phase.cross.mixture.groups=[en, de]"])
    stores = {"en": 10, "de": 5}
    refused = "recipe demo: phase.{}.mixture: group(s) {} named in the phase are provided by no store (stores have: {})"
    for first, phase, group in ((0, "pretrain", "sw"), (1, "extension", "fr")):
        with pytest.raises(TwofoldError) as raised:
            recipe.check_groups(stores, **({"first": first} if first else {}))
        assert str(raised.value) == refused.format(phase, group, "de, en") + "; fix the names or add a source"
    recipe.check_groups(stores, first=2)  # a run resumed at the decay phase: the others are behind it
    recipe.check_groups(stores, cross=True)  # a cross run reads only the cross phase
    with pytest.raises(TwofoldError, match=r"^recipe demo: phase\.cross\.mixture: group\(s\) de "):
        recipe.check_groups({"en": 10, "fr": 1}, cross=True)


def test_the_dropout_settings_reach_the_model_config_fields_of_the_same_name():
    dropout = load_recipe("demo", overrides=["dropout.attention=0.1", "dropout.attention_output=0.2",
                                             "dropout.embedding=0.3", "dropout.mlp=0.4"]).dropout
    assert dropout.model_fields() == {"attention_dropout": 0.1, "attention_output_dropout": 0.2,
                                      "embedding_dropout": 0.3, "mlp_dropout": 0.4}
    assert dropout.active and not load_recipe("demo").dropout.active


FIX = "; fix the recipe or use --set {}=…"
# (overrides, the whole line): a wrong type anywhere is named by its full key, inside lists, maps and mixtures
TYPES = [
    (["phase.extension.lr=fast"], "recipe demo: phase.extension.lr = 'fast' must be a number" + FIX),
    (["optimizer.betas=[0.9, fast]"], "recipe demo: optimizer.betas[1] = 'fast' must be a number" + FIX),
    (["optimizer.betas=[0.9]"], "recipe demo: optimizer.betas = [0.9] must be a list of 2 values" + FIX),
    (["phase.extension.mixture.temperature=hot"],
     "recipe demo: phase.extension.mixture.temperature = 'hot' must be a number" + FIX),
    (["phase.extension.mixture.boost={en: lots}"],
     "recipe demo: phase.extension.mixture.boost.en = 'lots' must be a number" + FIX),
    (["phase.extension.mixture.groups=[en, [fr]]"],
     "recipe demo: phase.extension.mixture.groups[1] = ['fr'] must be text" + FIX),
    (["phase.extension.mixture=5"], "recipe demo: phase.extension.mixture = 5 must be a mapping of groups / top / "
     "temperature / boost / weights / sources" + FIX),
    (["phase.extension.mixture.colour=red"], "recipe demo: unknown key phase.extension.mixture.colour; known keys "
     "here: groups, top, temperature, boost, weights, sources"),
    (["phase.extension.colour=red"], "recipe demo: unknown key phase.extension.colour; known keys here: "
     "batch_ramp, batch_sequences, batch_start_sequences, batch_warmup_tokens, checkpoint_every_tokens, layout, "
     "lr, lr_decay, lr_decay_tokens, lr_min_ratio, lr_start_ratio, lr_warmup_tokens, mask_rate, mean_row_tokens, "
     "min_row_tokens, mixture, name, rope_theta_global, rope_theta_local, seed, seq_len, tag, tokens, weight_decay"),
    (["colour=red"], "recipe demo: unknown key colour; known keys here: batch_scale, dropout, model, name, "
     "optimizer, phase, scale, seed, size, variant"),
    (["seed=many"], "recipe demo: seed = 'many' must be a whole number (token counts may use K/M/B/T, e.g. 8.5B)"
     + FIX),
    (["phase.extension={}"], "recipe demo: missing key phase.extension.tokens; add it to the recipe or --set it"),
    (["phase.extension=5"], "recipe demo: phase.extension = 5 must be a mapping of Phase keys" + FIX),
    (["phase.extension.name=ext"], "demo: phase.extension.name: a phase is named by its key; remove `name`"),
    (["phase=[pretrain]"], "demo: `phase` must map phase names to their settings, got ['pretrain']"),
    (["phase={}"], "demo: `phase` must map phase names to their settings, got {}"),
    (["phase.extension.tokens=.inf"], "recipe demo: phase.extension.tokens = inf must be a whole number (token "
     "counts may use K/M/B/T, e.g. 8.5B)" + FIX),
    (["phase.extension.mixture.groups=euro"], "recipe demo: phase.extension.mixture.groups = 'euro' names no "
     "language set (sets: none (add a language_sets table)); for single groups write a list" + FIX),
    (["language_sets={big: {top: many}}"], "recipe demo: language_sets.big.top = 'many' must be a whole number "
     "(token counts may use K/M/B/T, e.g. 8.5B)" + FIX),
]


@pytest.mark.parametrize("overrides, line", TYPES, ids=[case[0][0] for case in TYPES])
def test_a_value_of_the_wrong_kind_is_one_line_naming_its_full_key(overrides, line):
    with pytest.raises(TwofoldError) as raised:
        load_recipe("demo", overrides=overrides)
    key = line.split(": ", 1)[1].split(" = ")[0]
    assert str(raised.value) == (line.replace("{}", key) if line.endswith("=…") else line)


SETS_RULE = "must be {top: N} or {top: N, with: [names]} when it is a mapping"
LIST_RULE = "must be a non-empty list of names (or a file of names, all, {top: N})"


@pytest.mark.parametrize("sets, value, rule", [
    ("{big: {top: 3, more: 1}}", {"top": 3, "more": 1}, SETS_RULE),
    ("{big: {with: [en]}}", {"with": ["en"]}, SETS_RULE),
    ("{big: {top: 3, with: en}}", {"top": 3, "with": "en"}, SETS_RULE),
    ("{big: []}", [], LIST_RULE),
    ("{big: [en, [fr]]}", ["en", ["fr"]], LIST_RULE),
    ("{big: 5}", 5, LIST_RULE),
])
def test_a_language_set_of_the_wrong_shape_is_one_line(sets, value, rule):
    with pytest.raises(TwofoldError) as raised:
        load_recipe("demo", overrides=[f"language_sets={sets}"])
    assert str(raised.value) == f"recipe demo: language_sets.big = {value!r} {rule}" + FIX.format("language_sets.big")


def test_language_sets_build_on_earlier_sets_read_files_and_take_the_top_of_the_stores(tmp_path):
    (tmp_path / "langs.yml").write_text("model: demo\noptimizer: {lr: 1.0e-3}\nlanguage_sets:\n"
                                        "  euro: [fr, de]\n  west: [en, euro, fr]\n  listed: names.txt\n"
                                        "  high: {top: 4, with: [west, sw]}\n  few: {top: 2}\n  every: all\n"
                                        "phase:\n  a: {tokens: 1K, seq_len: 64, batch_sequences: 2, "
                                        "checkpoint_every_tokens: 1K, tag: a, mixture: {groups: high}}\n"
                                        "  b: {tokens: 1K, seq_len: 64, batch_sequences: 2, "
                                        "checkpoint_every_tokens: 1K, tag: b, mixture: {groups: [listed, sw]}}\n"
                                        "  c: {tokens: 1K, seq_len: 64, batch_sequences: 2, "
                                        "checkpoint_every_tokens: 1K, tag: c, mixture: {groups: few}}\n")
    (tmp_path / "names.txt").write_text("# one name a line\nja  # Japanese # the first\n\nko\n")
    recipe = load_recipe(str(tmp_path / "langs.yml"))  # a .yml file, its list file beside it
    mixtures = {name: (phase.mixture.groups, phase.mixture.top) for name, phase in recipe.phase.items()}
    assert mixtures == {"a": (("en", "fr", "de", "sw"), 4), "b": (("ja", "ko", "sw"), None), "c": (None, 2)}
    with pytest.raises(TwofoldError, match=r"phase\.b\.mixture\.groups = .*lists set 'few', which is not a list"):
        load_recipe(str(tmp_path / "langs.yml"), overrides=["phase.b.mixture.groups=[listed, few]"])
    assert load_recipe(str(tmp_path / "langs.yml"), overrides=["phase.c.mixture.groups=every"]).phase[
        "c"].mixture.groups is None  # `all` by a set's name: every group


def test_a_phase_written_as_a_value_in_a_recipe_file_is_one_line(tmp_path):
    (tmp_path / "r.yaml").write_text("model: demo\noptimizer: {lr: 1.0e-3}\nphase: {a: 5}\n")
    with pytest.raises(TwofoldError) as raised:
        load_recipe(str(tmp_path / "r.yaml"))
    assert str(raised.value) == f"recipe {tmp_path / 'r.yaml'}: phase.a = 5 must be a mapping of Phase keys" + \
        FIX.format("phase.a")


def test_a_budget_sets_the_scale_and_scales_of_two_are_applied():
    recipe = load_recipe("demo", overrides=["phase.cross.lr_decay_tokens=null"])
    assert [p.tokens for p in load_recipe("demo", overrides=["phase.cross.lr_decay_tokens=null"],
                                          budget=1).phases] == [1, 1, 1]  # the smallest budget: a token a phase
    for budget in (0, -5):
        with pytest.raises(TwofoldError) as raised:
            load_recipe("demo", budget=budget)
        assert str(raised.value) == f"--budget {budget} must be a positive token count"
    doubled = load_recipe("demo", scale=2.0, batch_scale=2.0)
    assert [(p.tokens, p.batch_sequences) for p in doubled.phase.values()] == \
        [(2 * p.tokens, 2 * p.batch_sequences) for p in recipe.phase.values()]
    assert (doubled.scale, doubled.batch_scale) == (2.0, 2.0)


def test_numbers_are_read_as_recipes_write_them():
    from twofold.train.recipe import parse_number

    assert parse_number("8.5B") == 8_500_000_000 and type(parse_number("8.5B")) is int
    assert parse_number("1_500K") == 1_500_000 and parse_number("2_000") == 2000
    assert parse_number("1.0000001K") == 1000  # within a millionth of a whole number: that number
    assert parse_number("1.0000015") == 1.0000015  # a millionth and a half off 1: kept as written
    assert type(parse_number("3e-3")) is float and parse_number("3e-3") == 0.003
    assert parse_number(float("inf")) is None and parse_number("inf") is None and parse_number(True) is None
    assert parse_number("5K", suffixes=False) is None and parse_number(" 7 ") == 7


def test_a_recipe_built_from_a_mapping_is_named_recipe_unless_told():
    from twofold.train.recipe import recipe_from_dict

    raw = load_recipe("demo").to_dict()
    raw.pop("name")
    assert recipe_from_dict(raw).name == "recipe" and recipe_from_dict(raw, "mine").name == "mine"


def test_a_counts_file_in_a_folder_whose_name_holds_a_colon(tmp_path):
    folder = tmp_path / "runs:2026"
    folder.mkdir()
    (folder / "counts.csv").write_text("language,n\nen,3\nfr,1\n")
    (folder / "r.yaml").write_text("model: demo\noptimizer: {lr: 1.0e-3}\nphase:\n  a: {tokens: 1K, seq_len: 64, "
                                   "batch_sequences: 2, checkpoint_every_tokens: 1K, tag: a, "
                                   "mixture: {weights_from: counts.csv:n}}\n")
    assert load_recipe(str(folder / "r.yaml")).phase["a"].mixture.weights == {"en": 3, "fr": 1}


@pytest.mark.parametrize("recipe, flags, line", [
    ("demo", {"size": "17m"}, "recipe demo has no size '17m'; sizes: none (omit --size)"),
    ("ettin", {"size": "2m"}, "recipe ettin has no size '2m'; sizes: 17m, 32m, 68m, 150m, 400m, 1b"),
    ("ettin", {}, "recipe ettin needs --size, one of 17m, 32m, 68m, 150m, 400m, 1b"),
    ("demo", {"variant": "eng"}, "recipe demo has no variant 'eng'; variants: none (omit --variant)"),
    ("mmbert", {"size": "base", "variant": "x"}, "recipe mmbert has no variant 'x'; variants: eng, cont, all"),
    ("demo", {"overrides": ["language_sets={euro: [fr], west: [en]}", "phase.decay.mixture.groups=east"]},
     "recipe demo: phase.decay.mixture.groups = 'east' names no language set (sets: euro, west); for single groups "
     "write a list; fix the recipe or use --set phase.decay.mixture.groups=…"),
])
def test_a_size_variant_or_set_that_does_not_exist_is_one_line_listing_those_that_do(recipe, flags, line):
    with pytest.raises(TwofoldError) as raised:
        load_recipe(recipe, **flags)
    assert str(raised.value) == line
