"""Generated text scored as machine translation is: chrF, chrF++ and BLEU with sacrebleu, and exact match.

sacrebleu (Post 2018, arXiv 1804.08771) is the field's reference implementation; its signature
strings (tokenizer, smoothing, version, …) are recorded beside the scores so that numbers from
elsewhere can be compared only when the signatures agree. chrF is Popović 2015 (character
n-grams, beta 2), chrF++ adds word bigrams (Popović 2017); BLEU is corpus BLEU with sacrebleu's
default 13a tokenizer and exponential smoothing. Scores are on sacrebleu's 0-100 scale; exact
match (after stripping surrounding whitespace) is a fraction.

sacrebleu (the `finetune` extra) is imported where used.
"""

from __future__ import annotations

from collections.abc import Sequence

from twofold.errors import TwofoldError

METRICS = ("chrf", "chrf++", "bleu", "exact_match")


def _scorers() -> dict:
    from sacrebleu.metrics import BLEU, CHRF

    return {"chrf": CHRF(), "chrf++": CHRF(word_order=2), "bleu": BLEU()}


def generation_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus-level chrF, chrF++, BLEU (0-100) and exact match (0-1) of one hypothesis per reference."""
    if len(hypotheses) != len(references) or not references:
        raise TwofoldError(f"scoring needs one hypothesis per reference (> 0), got {len(hypotheses)} and "
                           f"{len(references)}")
    hypotheses = [h.strip() for h in hypotheses]
    references = [r.strip() for r in references]
    scores = {name: float(scorer.corpus_score(hypotheses, [references]).score) for name, scorer in _scorers().items()}
    scores["exact_match"] = sum(h == r for h, r in zip(hypotheses, references)) / len(references)
    return scores


def signatures() -> dict[str, str]:
    """sacrebleu's signature of each metric as `generation_scores` uses it, e.g. chrF's
    'nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0'. A signature names the number of
    references, which sacrebleu learns by scoring: one pair is scored first (always one reference here)."""
    found = {}
    for name, scorer in _scorers().items():
        scorer.corpus_score(["a"], [["a"]])
        found[name] = str(scorer.get_signature())
    return found
