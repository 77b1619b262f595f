"""Recipe variants and branches: `--variant NAME --branch-from TRUNK` trains only the phases that
differ, starting exactly where the trunk ended the shared ones, and is recorded in run.json."""

import json

import pytest
import torch
from safetensors.torch import load_file
from tests.train.conftest import TINY_RECIPE

from twofold.cli import main
from twofold.train.rundir import RunDir

VARIANTS = """
variants:
  all: {phase: {decay: {mixture: {groups: all, temperature: 0.3}}}}
  code: {phase: {decay: {mixture: {groups: [code], temperature: 0.3}}}}
  prose: {phase: {decay: {mixture: {groups: [prose], temperature: 0.3}}}}
"""


@pytest.fixture(scope="module")
def variant_recipe(tmp_path_factory):
    recipe = TINY_RECIPE.split("  cross:")[0] + VARIANTS  # three phases, then the variants
    path = tmp_path_factory.mktemp("recipes") / "variants.yaml"
    path.write_text(recipe)
    return path


def train(recipe, store, out, *extra):
    return main(["train", "--recipe", str(recipe), "--store", str(store), "--out", str(out), "--objective", "mlm",
                 "--no-progress", *extra])


@pytest.fixture(scope="module")
def trunk(tmp_path_factory, tiny_store, variant_recipe):
    out = tmp_path_factory.mktemp("runs") / "all"
    assert train(variant_recipe, tiny_store, out, "--variant", "all") == 0
    return out


def final_weights(run):
    return load_file(str(RunDir(run).checkpoint() / "model.safetensors"))


def test_a_branch_equals_the_variant_trained_from_scratch(tmp_path, tiny_store, variant_recipe, trunk):
    assert train(variant_recipe, tiny_store, tmp_path / "code", "--variant", "code", "--branch-from", str(trunk)) == 0
    assert train(variant_recipe, tiny_store, tmp_path / "scratch", "--variant", "code") == 0
    branch, scratch = final_weights(tmp_path / "code"), final_weights(tmp_path / "scratch")
    assert all(torch.equal(branch[k], scratch[k]) for k in scratch)
    assert not all(torch.equal(branch[k], final_weights(trunk)[k]) for k in branch)
    info = json.loads((tmp_path / "code" / "run.json").read_text())
    assert info["recipe"]["variant"] == "code"
    assert info["branched_from"]["shared_phases"] == ["pretrain", "extension"]
    assert info["branched_from"]["checkpoint"].endswith("-ext4")  # the extension took 4 steps
    # The branch trained only its decay; the shared phases' batch order is there too.
    phases = {json.loads(line)["phase"] for line in (tmp_path / "code" / "metrics.jsonl").read_text().splitlines()}
    assert phases == {"decay"}
    assert (tmp_path / "code" / "pretrain" / "data_order" / "rank0.jsonl").stat().st_size > 0
    decay_log = (tmp_path / "code" / "decay" / "data_order" / "loader.json").read_text()
    assert json.loads(decay_log)["mixture"]["groups"] == ["code"]


def test_bad_branches_are_one_line_and_write_nothing(tmp_path, tiny_store, variant_recipe, trunk, capsys):
    cases = [
        (["--variant", "all"], "shares every phase with the trunk's"),
        (["--variant", "code", "--set", "phase.pretrain.mask_rate=0.2"], "shares no phase with the trunk's"),
        (["--variant", "code", "--set", "optimizer.lr=1e-3"], "its optimizer differ from this run's"),
        (["--variant", "nope"], "has no variant 'nope'; variants: all, code, prose"),
        (["--variant", "code", "--set", "phase.decay.mixture.groups=[code, klingon]"],
         r"phase.decay.mixture: group(s) klingon named in the phase are provided by no store"),
    ]
    for extra, message in cases:
        assert train(variant_recipe, tiny_store, tmp_path / "branch", *extra,
                     "--branch-from", str(trunk)) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (tmp_path / "branch").exists()
    assert train(variant_recipe, tiny_store, tmp_path / "branch", "--variant", "code",
                 "--branch-from", str(tmp_path / "nowhere")) == 2
    assert "not a member run" in capsys.readouterr().err


def test_bad_language_settings_stop_train_before_anything_is_written(tmp_path, tiny_store, variant_recipe, capsys):
    cases = [
        (["--variant", "code", "--set", "phase.decay.mixture.groups=[code, klingon]"],
         "phase.decay.mixture: group(s) klingon named in the phase are provided by no store"),
        (["--variant", "code", "--set", "phase.decay.mixture.temperature=0"], "temperature must be > 0"),
        (["--variant", "nope"], "has no variant 'nope'"),
    ]
    for extra, message in cases:
        assert train(variant_recipe, tiny_store, tmp_path / "run", *extra) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (tmp_path / "run").exists()
