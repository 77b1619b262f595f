"""Generated text scored as machine translation is: sacrebleu's chrF, chrF++, BLEU and exact match, on a
hand-written set where every metric gives another number (no model: these tests take milliseconds)."""

import pytest

from twofold.errors import TwofoldError
from twofold.finetune.scoring import generation_scores, signatures

HYPOTHESES = ["the cat sat on the mat", "a quick brown fox", "hello world", "Return the number of items."]
REFERENCES = ["the cat sat on a mat", "the quick brown fox jumps", "hello world", "Return the count of items."]


def test_scores_are_sacrebleus_on_a_hand_written_set():
    import sacrebleu

    # surrounding spaces are stripped, on either side of a hypothesis and of a reference
    scores = generation_scores([f" {h}\n" for h in HYPOTHESES], [f"\t{r} " for r in REFERENCES])
    assert scores["chrf"] == sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES]).score
    assert scores["chrf++"] == sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES], word_order=2).score
    assert scores["bleu"] == sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score
    assert scores["exact_match"] == 1 / 4
    assert 0 < scores["bleu"] < scores["chrf"] < scores["chrf++"] < 100  # each metric another number
    assert generation_scores(REFERENCES, REFERENCES) == pytest.approx({"chrf": 100.0, "chrf++": 100.0, "bleu": 100.0,
                                                                       "exact_match": 1.0})


def test_exact_match_is_after_stripping_only_and_a_fraction_of_the_references():
    """Case and inner spacing count (no further normalisation); surrounding whitespace does not."""
    scores = generation_scores(["Hello world", "hello  world", " hello world\n", "bye"],
                               ["hello world", "hello world", "hello world", "bye "])
    assert scores["exact_match"] == 2 / 4
    assert scores["chrf"] < 100  # the near misses are not exact for chrF either


@pytest.mark.parametrize("hypotheses, references", [(["a"], []), ([], []), (["a", "b"], ["a"]), ([], ["a"])])
def test_one_hypothesis_per_reference_or_one_clear_error(hypotheses, references):
    with pytest.raises(TwofoldError, match=rf"^scoring needs one hypothesis per reference \(> 0\), got "
                                           rf"{len(hypotheses)} and {len(references)}$"):
        generation_scores(hypotheses, references)


def test_the_signatures_name_one_reference_and_each_metrics_settings():
    found = signatures()
    assert set(found) == {"chrf", "chrf++", "bleu"}
    assert all(s.startswith("nrefs:1|case:mixed|") for s in found.values())
    assert "|nc:6|nw:0|" in found["chrf"] and "|nc:6|nw:2|" in found["chrf++"]  # chrF++ adds word bigrams
    assert "|tok:13a|smooth:exp|" in found["bleu"]
