"""`mixture.weights_from: FILE.csv:COLUMN`: published per-language token counts (mmBERT's
statistics/language_counts.csv has a column per phase) as sampling weights; the sampler then
deals the groups in those proportions."""

from collections import Counter

import pytest

from twofold.data.loader import BatchLoader
from twofold.errors import TwofoldError
from twofold.train.recipe import load_recipe

COUNTS = "language,pretrain,ext\nbig,1000,600\nmid,\"3,000\",300\nsmall,0,100\nunseen,50,0\n"
RECIPE = """\
model: tiny
optimizer: {{lr: 1.0e-3}}
phase:
  pretrain: {{tokens: 1M, seq_len: 64, batch_sequences: 8, checkpoint_every_tokens: 1M, tag: step,
             mixture: {{groups: {groups}, weights_from: {source}}}}}
"""


def recipe(tmp_path, source, groups="[big, mid, small]"):
    (tmp_path / "counts.csv").write_text(COUNTS)
    (tmp_path / "r.yaml").write_text(RECIPE.format(groups=groups, source=source))
    return load_recipe(str(tmp_path / "r.yaml"))


def test_the_sampler_deals_groups_in_the_published_proportions(tmp_path, group_store):
    phase = recipe(tmp_path, "counts.csv:ext").phase["pretrain"]  # relative to the recipe file
    assert phase.mixture.weights == {"big": 600, "mid": 300, "small": 100}
    loader = BatchLoader.from_spec([group_store], phase.data(seed=21))
    block = loader.sampler.interleave.block  # every block deals the groups their exact quotas
    dealt = Counter(loader.sampler.sequence(k)[0] for k in range(block))
    for group, share in (("big", 0.6), ("mid", 0.3), ("small", 0.1)):
        assert abs(dealt[group] - share * block) <= 1


def test_zero_counts_drop_a_group_and_a_missing_column_is_one_line(tmp_path):
    phase = recipe(tmp_path, "counts.csv:pretrain", groups="[big, mid]").phase["pretrain"]
    assert phase.mixture.weights == {"big": 1000, "mid": 3000}
    with pytest.raises(TwofoldError, match=r"phase.pretrain.mixture.weights_from = .* names no column .*"
                                           r"\(columns: pretrain, ext\)"):
        recipe(tmp_path, "counts.csv:decay-eng")


def test_without_groups_every_counted_row_is_a_group_and_a_fraction_counts(tmp_path):
    (tmp_path / "fractions.csv").write_text("language,share\nbig,0.5\nnone,0\nsmall,0.25\nunit,1\n")
    (tmp_path / "r.yaml").write_text(RECIPE.replace("groups: {groups}, ", "").format(source="fractions.csv:share"))
    assert load_recipe(str(tmp_path / "r.yaml")).phase["pretrain"].mixture.weights == {
        "big": 0.5, "small": 0.25, "unit": 1.0}  # the row at 0 is left out, the rows below 1 are not


@pytest.mark.parametrize("table, source, problem", [
    (COUNTS, "counts.csv", "must be FILE.csv:COLUMN, e.g. language_counts.csv:decay-eng"),
    (COUNTS, "counts.tsv:ext", "must be FILE.csv:COLUMN, e.g. language_counts.csv:decay-eng"),
    (COUNTS, "gone.csv:ext", "names {dir}/gone.csv, which is not a file"),
    ("language,ext\nbig,12\nmid,-3\n", "counts.csv:ext", "has '-3' at {dir}/counts.csv:3, not a count"),
    ("language,ext\nbig,lots\n", "counts.csv:ext", "has 'lots' at {dir}/counts.csv:2, not a count"),
    ("language,pretrain,ext\nbig,1,2\nmid,3\n", "counts.csv:ext", "has 'nothing' at {dir}/counts.csv:3, not a count"),
    ("", "counts.csv:ext", "names no column of {dir}/counts.csv (columns: )"),
])
def test_a_bad_counts_file_is_one_line_naming_the_key_the_value_and_the_row(tmp_path, table, source, problem):
    (tmp_path / "counts.csv").write_text(table)
    (tmp_path / "r.yaml").write_text(RECIPE.format(groups="[big, mid]", source=source))
    value = str(tmp_path / source)
    expected = (f"recipe {tmp_path / 'r.yaml'}: phase.pretrain.mixture.weights_from = {value!r} "
                f"{problem.format(dir=tmp_path)}; fix the recipe or use --set phase.pretrain.mixture.weights_from=…")
    with pytest.raises(TwofoldError) as raised:
        load_recipe(str(tmp_path / "r.yaml"))
    assert str(raised.value) == expected
