"""Held-out MLM accuracy per language (`twofold eval-languages`): each group's evaluation set, its
masks, the accuracy counted by hand (a model made to predict one token everywhere), and the table
and figure that show it."""

from collections import Counter

import pytest
import torch
from tests.data.conftest import write_jsonl
from tests.eval.conftest import tiny_model

from twofold.data.sources import SourceSpec
from twofold.data.store import TokenStore, prepare_store
from twofold.errors import TwofoldError
from twofold.eval.tasks import languages


@pytest.fixture(scope="module")
def sets(group_store):
    return languages.masked_sets([group_store], seq_len=40, sequences=6, rate=0.3, seed=2)


def test_each_group_gets_its_own_chunks_masked_on_regular_tokens(group_store, sets, tokenizer):
    store = TokenStore(group_store)
    special = set(tokenizer.special.all())
    assert list(sets) == ["big", "mid", "small"]  # sorted, every group with tokens
    bodies = {g: [] for g in sets}
    for doc, group in enumerate(store.doc_groups):
        bodies[store.groups[group]].append([tokenizer.special.cls, *store.document(doc).tolist(),
                                            tokenizer.special.sep])
    for group, (inputs, labels) in sets.items():
        assert len(inputs) == len(labels) == 6
        for x, y in zip(inputs, labels):
            original = [label if label != -100 else token for token, label in zip(x, y)]
            assert len(original) <= 40 and any(  # a chunk of one of this group's framed documents
                any(body[s:s + len(original)] == original for s in range(len(body))) for body in bodies[group])
            chosen = [i for i, label in enumerate(y) if label != -100]
            assert chosen and all(x[i] == tokenizer.special.mask and y[i] not in special for i in chosen)
        assert len({tuple(x) for x in inputs}) == 6  # never the same chunk twice
    assert languages.masked_sets([group_store], seq_len=40, sequences=6, rate=0.3, seed=2) == sets
    assert languages.masked_sets([group_store], seq_len=40, sequences=6, rate=0.3, seed=3) != sets


def test_at_least_one_mask_each_and_never_more_chunks_than_an_epoch(group_store, tokenizer):
    none = languages.masked_sets([group_store], seq_len=40, sequences=3, rate=0.0, seed=0)
    for inputs, labels in none.values():  # rate 0: the first regular token of each chunk alone
        for x, y in zip(inputs, labels):
            chosen = [i for i, label in enumerate(y) if label != -100]
            first = next(i for i, label in enumerate(y) if label != -100 or x[i] not in tokenizer.special.all())
            assert chosen == [first]
    every = languages.masked_sets([group_store], seq_len=4096, sequences=10_000, rate=0.3, seed=0)
    counts = Counter(TokenStore(group_store).groups[g] for g in TokenStore(group_store).doc_groups)
    assert {g: len(inputs) for g, (inputs, _) in every.items()} == dict(counts)  # one chunk per document


def test_accuracy_is_the_share_of_masked_tokens_predicted(sets, tokenizer):
    labels = [label for _, (_, rows) in sets.items() for row in rows for label in row if label != -100]
    guess = Counter(labels).most_common(1)[0][0]
    torch.manual_seed(0)
    model = tiny_model(tokenizer, causal=False)
    with torch.no_grad():  # the same prediction everywhere: accuracy is the share of masked tokens equal to it
        model.decoder.bias.fill_(0.0)
        model.decoder.bias[guess] = 1e4
    scores = languages.mlm_accuracy(model, sets, tokenizer.special.pad, batch_size=4)
    for group, (_, rows) in sets.items():
        masked = [label for row in rows for label in row if label != -100]
        assert scores[group] == {"accuracy": pytest.approx(masked.count(guess) / len(masked)), "masked": len(masked)}
    assert any(0 < s["accuracy"] < 1 for s in scores.values())


def test_groups_without_tokens_are_left_out_and_a_store_of_none_is_refused(tmp_path, tokenizer):
    records = [{"text": "", "lang": "a-void"}, {"text": "def f(x): return x", "lang": "py"}]  # empty first
    prepare_store([SourceSpec(str(write_jsonl(tmp_path / "a.jsonl", records)), group_field="lang")], tokenizer,
                  tmp_path / "some", progress=False)
    assert list(languages.masked_sets([tmp_path / "some"], sequences=2)) == ["py"]
    prepare_store([SourceSpec(str(write_jsonl(tmp_path / "b.jsonl", records[:1])), group_field="lang")], tokenizer,
                  tmp_path / "none", progress=False)
    with pytest.raises(TwofoldError, match="none: no tokens to evaluate"):
        languages.masked_sets([tmp_path / "none"])


SCORES = {"enc-a": {"de": {"accuracy": 0.5, "masked": 10}, "en": {"accuracy": 0.25, "masked": 12}},
          "merged-model": {"de": {"accuracy": 0.75, "masked": 10}, "en": {"accuracy": 0.125, "masked": 12}}}


def test_the_table_puts_the_largest_language_first_and_a_mean_last():
    assert languages.format_table(SCORES, {"en": 100, "de": 10}).splitlines() == [
        "language  masked      enc-a merged-model",
        "en            12      0.250        0.125",
        "de            10      0.500        0.750",
        "mean                  0.375        0.438",
    ]
    assert languages.format_table(SCORES).splitlines()[1].startswith("de ")  # by name without counts
    assert languages.format_table(SCORES, {"en": 5}).splitlines()[2].startswith("de ")  # uncounted: last
    assert languages.format_table(SCORES, {"de": 0}).splitlines()[1].startswith("de ")  # counted as none
    alone = languages.format_table({"enc-a": SCORES["enc-a"]}).splitlines()
    assert alone[1] == "de            10      0.500" and alone[-1] == "mean                  0.375"


def test_the_figure_draws_a_bar_per_model_and_language(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(languages, "save_figure", lambda figure, path, dpi: drawn.append(figure) or path)
    assert languages.plot(SCORES, tmp_path / "l.png", groups_order=["en", "de"]) == tmp_path / "l.png"
    (axes,) = drawn[0].axes
    heights = [round(bar.get_height(), 3) for bar in axes.patches]
    assert heights == [0.25, 0.5, 0.125, 0.75]  # enc-a's bars, then the merge's, in the order given
    assert [bar.get_width() for bar in axes.patches] == pytest.approx([0.4] * 4)
    assert axes.get_xlim() == pytest.approx((-0.6, 1.6)) and axes.get_ylabel() == "MLM accuracy (15% masked)"
    assert [t.get_text() for t in axes.get_xticklabels()] == ["en", "de"]
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["enc-a", "merged-model"]
    assert axes.get_title() == "held-out MLM accuracy per language"
    centres = [bar.get_x() + bar.get_width() / 2 for bar in axes.patches]
    assert centres == pytest.approx([-0.2, 0.8, 0.2, 1.2])  # two bars of 0.4 around each language
    languages.plot(SCORES, tmp_path / "by-name.png")
    assert [t.get_text() for t in drawn[1].axes[0].get_xticklabels()] == ["de", "en"]  # by name when no order


def test_masks_come_from_a_stream_of_their_own_per_seed_group_and_chunk(group_store, sets, tokenizer):
    def pattern(labels):
        return tuple(label != -100 for label in labels)

    same_length = [(g, k) for g, (inputs, _) in sets.items() for k in range(6) if len(inputs[k]) == 40]
    patterns = {pattern(sets[g][1][k]) for g, k in same_length}
    assert len(same_length) > 3 and len(patterns) == len(same_length)  # chunks and groups draw apart
    assert languages.masked_sets([group_store]) == languages.masked_sets([group_store], seed=0)
    other = languages.masked_sets([group_store], seq_len=40, sequences=6, rate=0.3, seed=3)
    assert pattern(other["big"][1][0]) != pattern(sets["big"][1][0])
    firsts = []
    for inputs, labels in sets.values():  # a first regular token is masked by its own draw, not always
        for x, y in zip(inputs, labels):
            original = [label if label != -100 else token for token, label in zip(x, y)]
            first = next(i for i, t in enumerate(original) if t not in tokenizer.special.all())
            firsts.append(y[first] != -100)
    assert not all(firsts)


def test_the_defaults_are_32_chunks_of_at_most_256_tokens_masked_at_15_percent(group_store, tokenizer):
    sets = languages.masked_sets([group_store])
    chunks = [x for inputs, _ in sets.values() for x in inputs]
    assert len(sets["big"][0]) == 32 and max(map(len, chunks)) == 256  # longer documents are cut
    masked = sum(label != -100 for _, labels in sets.values() for y in labels for label in y)
    regular = sum(t not in tokenizer.special.all() for x in chunks for t in x) + masked  # masked ones were regular
    regular -= sum(t == tokenizer.special.mask for x in chunks for t in x)
    assert 0.12 < masked / regular < 0.18
