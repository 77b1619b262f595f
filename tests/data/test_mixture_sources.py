"""Sources inside a language: groups named LANGUAGE/SOURCE, τ across the languages (over their
summed tokens) and fixed weights among each language's sources; the sampler deals the groups
in those shares."""

from collections import Counter

import pytest
from tests.data.conftest import paragraphs, write_jsonl

from twofold.data.loader import BatchLoader
from twofold.data.mixture import Mixture
from twofold.data.sources import SourceSpec
from twofold.data.store import TokenStore, prepare_store
from twofold.errors import TwofoldError


@pytest.fixture(scope="module")
def store(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("sources")
    blocks = paragraphs()
    sizes = {"en/web": 120, "en/code": 40, "fr/web": 30, "fr/books": 10}
    records, index = [], 0
    for group, count in sizes.items():
        for _ in range(count):
            records.append({"lang": group, "text": blocks[index % len(blocks)]})
            index += 1
    write_jsonl(folder / "docs.jsonl", records)
    prepare_store([SourceSpec(str(folder / "docs.jsonl"), group_field="lang")], tokenizer, folder / "store",
                  progress=False)
    return folder / "store"


def test_languages_by_temperature_and_sources_by_fixed_weights(store):
    tokens = TokenStore(store).group_tokens()
    mixture = Mixture(temperature=0.5, sources={"web": 3, "code": 1, "books": 1})
    n_en, n_fr = tokens["en/web"] + tokens["en/code"], tokens["fr/web"] + tokens["fr/books"]
    p_en = n_en ** 0.5 / (n_en ** 0.5 + n_fr ** 0.5)  # by hand
    expected = {"en/web": p_en * 3 / 4, "en/code": p_en / 4, "fr/web": (1 - p_en) * 3 / 4, "fr/books": (1 - p_en) / 4}
    loader = BatchLoader([store], mixture, seq_len=64, batch_size=8)
    block = loader.sampler.interleave.block  # a block deals every group its exact quota
    dealt = Counter(loader.sampler.sequence(k)[0] for k in range(block))
    for group, share in expected.items():
        assert abs(dealt[group] - share * block) <= 1, (group, dealt[group], share * block)


def test_a_language_subset_and_a_source_left_out(store):
    tokens = TokenStore(store).group_tokens()
    shares = Mixture(groups=("fr",), sources={"web": 1, "code": 1, "books": 0}).probabilities(tokens)
    assert shares == {"fr/web": 1.0}


@pytest.mark.parametrize("sources, says", [({"web": 1, "books": 1}, r"source\(s\) code of language en have no weight"),
                                           ({"web": 0, "code": 0, "books": 1}, "every source of language en")])
def test_unweighted_sources_are_one_line(store, sources, says):
    with pytest.raises(TwofoldError, match=says):
        Mixture(sources=sources).probabilities(TokenStore(store).group_tokens())
