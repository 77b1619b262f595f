"""Languages as the unit of sampling: a recipe's phases, each with its language set and τ,
draw languages with p_i = n_i^τ / Σ n_j^τ over the languages of the phase only."""

import numpy as np
import pytest

from twofold.data.loader import BatchLoader
from twofold.data.store import TokenStore
from twofold.errors import TwofoldError
from twofold.train.recipe import load_recipe

LANGS = """\
language_sets:
  first: [big, mid]
  second: [first, small]      # a set may name another set
phase:
  pretrain: {tokens: 40K, seq_len: 32, batch_sequences: 16, checkpoint_every_tokens: 40K, tag: step,
             mixture: {groups: first, temperature: 0.7}}
  extension: {tokens: 40K, seq_len: 32, batch_sequences: 16, checkpoint_every_tokens: 40K, tag: ext,
              mixture: {groups: second, temperature: 0.5}}
  decay: {tokens: 40K, seq_len: 32, batch_sequences: 16, checkpoint_every_tokens: 40K, tag: decay,
          mixture: {groups: all, temperature: 0.3}}
"""


def test_measured_language_shares_follow_n_to_the_tau_per_phase(tmp_path, group_store):
    """Each phase draws languages with p_i = n_i^τ / Σ_{j in the phase} n_j^τ, and never one outside it."""
    path = tmp_path / "langs.yaml"
    path.write_text("model: tiny\noptimizer: {lr: 1.0e-3}\n" + LANGS)
    recipe = load_recipe(str(path))
    store = TokenStore(group_store)
    n = store.group_tokens()
    expected_sets = [{"big", "mid"}, {"big", "mid", "small"}, set(n)]
    for index, (phase, included) in enumerate(zip(recipe.phases, expected_sets)):
        loader = BatchLoader.from_spec([store], phase.data(seed=21 + index))
        groups = [g for step in range(250) for g in loader.batch(step).groups]
        assert set(groups) == included, phase.name
        tau = phase.mixture.temperature
        total = sum(n[g] ** tau for g in included)
        for group in included:
            p = n[group] ** tau / total
            measured = groups.count(group) / len(groups)
            assert abs(measured - p) < 4 * np.sqrt(p * (1 - p) / len(groups)), (phase.name, group, measured, p)


def test_a_language_no_store_has_is_one_line_before_training(tmp_path, group_store):
    path = tmp_path / "langs.yaml"
    path.write_text("model: tiny\noptimizer: {lr: 1.0e-3}\n" + LANGS.replace("[first, small]", "[first, klingon]"))
    recipe = load_recipe(str(path))
    with pytest.raises(TwofoldError, match=r"phase.extension.mixture: group\(s\) klingon named in the phase are "
                                           r"provided by no store"):
        recipe.check_groups(TokenStore(group_store).group_tokens())


@pytest.mark.parametrize("edit, message", [
    (("temperature: 0.5", "temperature: 0"), "temperature must be > 0"),
    (("temperature: 0.5", "temperature: -1"), "temperature must be > 0"),
    (("groups: second", "groups: third"), r"names no language set \(sets: first, second\)"),
    (("[first, small]", "nowhere.txt"), "is not a file; give a list of names or a file"),
    (("temperature: 0.5}", "temperature: 0.5, boost: {small: 0}}"), "boost factors must be > 0"),
])
def test_bad_language_settings_are_one_line(tmp_path, edit, message):
    path = tmp_path / "langs.yaml"
    path.write_text("model: tiny\noptimizer: {lr: 1.0e-3}\n" + LANGS.replace(*edit))
    with pytest.raises(TwofoldError, match=message):
        load_recipe(str(path))


def test_language_set_files_are_read_beside_the_recipe(tmp_path):
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "first.txt").write_text("# high-resource\nbig\n\nmid  # comment\n")
    path = tmp_path / "langs.yaml"
    path.write_text("model: tiny\noptimizer: {lr: 1.0e-3}\n" + LANGS.replace("[big, mid]", "sets/first.txt"))
    recipe = load_recipe(str(path))
    assert recipe.phase["pretrain"].mixture.groups == ("big", "mid")
    assert recipe.phase["extension"].mixture.groups == ("big", "mid", "small")


def test_plan_shows_each_language_share_per_phase(tmp_path, group_store, capsys):
    from twofold.cli import main

    path = tmp_path / "langs.yaml"
    path.write_text("model: tiny\noptimizer: {lr: 1.0e-3}\n" + LANGS)
    assert main(["data", "plan", "--store", str(group_store), "--recipe", str(path),
                 "--png", str(tmp_path / "plan.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["group", "tokens", "pretrain", "extension", "decay"]
    rows = {line.split()[0]: line.split()[2:] for line in lines[1:4]}
    n = TokenStore(group_store).group_tokens()
    assert rows["small"][0] == "-"  # not in pretraining
    share = n["small"] ** 0.5 / sum(v ** 0.5 for v in n.values())
    assert rows["small"][1] == f"{share:.2%}"
    assert (tmp_path / "plan.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["data", "plan", "--store", str(group_store), "--recipe", str(path), "--tokens", "1M"]) == 2
