"""The demo's baselines, its multiple-choice code completion and its mean ± spread table, each
checked against an independent computation."""

import math

import numpy as np
import pytest
import torch

from twofold.demo.completion import CHOICES, choice_logprobs, completion_items
from twofold.eval.metrics import bm25, retrieval_scores
from twofold.eval.tasks import QUICK
from twofold.eval.tasks.baselines import language_model_baselines, majority, random_ranking
from twofold.eval.tasks.lm import held_out_windows, mask_windows
from twofold.eval.tasks.subject import Subject
from twofold.report import Spread, spread_markdown, spread_rows
from twofold.results import Result

SETTINGS = QUICK.replace(lm_tokens=600, max_length=64)


def test_random_ranking_is_the_average_over_every_rank_of_the_relevant_document():
    # every placement of the one relevant document among 13 candidates, scored by ranx
    candidates = 13
    runs = [{"q": {f"d{i}": float(candidates - i) for i in range(candidates)}}] * candidates
    scores = [retrieval_scores({"q": {f"d{place}": 1}}, run) for place, run in enumerate(runs)]
    expected = {m: sum(s[m] for s in scores) / candidates for m in ("ndcg@10", "mrr@10")}
    assert random_ranking(candidates) == pytest.approx(expected)


def test_bm25_finds_the_document_that_shares_the_query_words():
    documents = {"a": "def parse_json(text): return decoder.decode(text)",
                 "b": "def wrap_lines(paragraph, width): return textwrap.fill(paragraph, width)",
                 "c": "class Stack: def push(self, item): self.items.append(item)"}
    queries = {"q1": "wrap the lines of a paragraph", "q2": "push an item on the stack", "q3": "parse json text"}
    qrels = {"q1": {"b": 1}, "q2": {"c": 1}, "q3": {"a": 1}}
    assert bm25(queries, documents, qrels)["ndcg@10"] == pytest.approx(1.0)
    wrong = {"q1": {"a": 1}, "q2": {"a": 1}, "q3": {"b": 1}}
    assert bm25(queries, documents, wrong)["ndcg@10"] < 0.7


def test_majority_is_the_share_of_the_test_sets_most_common_label():
    assert majority([1, 1, 0, 2, 2, 2, 1, 1]) == {"accuracy": 0.5}


def test_language_model_baselines_score_the_same_tokens_as_the_members(tokenizer):
    counts = np.zeros(tokenizer.vocab_size)
    rng = np.random.default_rng(0)
    counts[rng.integers(5, tokenizer.vocab_size, 2_000)] += 1
    counts[77] += 500  # the most frequent token by far
    frequent, unigram = language_model_baselines(tokenizer, counts, SETTINGS)
    # independently: the members' windows and masked positions (twofold.eval.tasks.lm)
    windows = held_out_windows(tokenizer, SETTINGS.length, SETTINGS.lm_tokens, SETTINGS.seed)
    _, labels = mask_windows(windows, tokenizer, SETTINGS.mask_rate, SETTINGS.seed)
    golds = [t for row in labels for t in row if t >= 0]
    assert frequent.metrics["mlm_accuracy"] == pytest.approx(golds.count(77) / len(golds))
    assert frequent.n == len(golds)
    nll = [-math.log((counts[t] + 1) / (counts.sum() + len(counts))) for w in windows for t in w[1:]]
    assert unigram.metrics["perplexity"] == pytest.approx(math.exp(sum(nll) / len(nll)))
    assert unigram.kind == frequent.kind == "baseline"


def test_completion_items_offer_the_true_next_line_among_lines_of_other_functions():
    from twofold.eval import stdlib

    items = completion_items(30, seed=0)
    assert len(items) == 30 and {len(i.choices) for i in items} == {CHOICES}
    assert len({i.answer for i in items}) > 1  # the answer's place varies
    codes = {f.code for f in stdlib.functions()}
    for item in items:
        answer = item.choices[item.answer]
        source = next(code for code in codes if code.startswith(item.context) and
                      code[len(item.context):].split("\n")[0] == answer)
        assert len(set(item.choices)) == CHOICES
        assert not any(choice in source.splitlines() for i, choice in enumerate(item.choices) if i != item.answer)
    assert completion_items(30, seed=0) == items and completion_items(30, seed=1) != items


@torch.no_grad()
def test_choice_scores_are_the_decoder_log_likelihood_and_the_encoder_pseudo_log_likelihood(
        tokenizer, encoder, decoder):
    item = completion_items(1, seed=3)[0]
    context, *choices = tokenizer.encode_batch([item.context, *item.choices])
    special = tokenizer.special
    for model in (decoder, encoder):
        scores = choice_logprobs(Subject(model, tokenizer, "m"), item, max_length=10_000)
        for score, choice in zip(scores, choices):
            ids = [special.cls, *context, *choice]
            start = len(context) + 1
            if model.config.causal:  # one pass: log p of each choice token after everything before it
                logits = model(torch.tensor([ids])).logits[0].log_softmax(-1)
                expected = sum(float(logits[start + i - 1, t]) for i, t in enumerate(choice))
            else:  # one pass per choice token, that token masked alone, [SEP] at the end
                expected = 0.0
                for i, token in enumerate(choice):
                    masked = [*ids, special.sep]
                    masked[start + i] = special.mask
                    logits = model(torch.tensor([masked])).logits[0].log_softmax(-1)
                    expected += float(logits[start + i, token])
            assert score == pytest.approx(expected, abs=1e-3)
    # a window of 40 tokens keeps the context's end only: other scores
    short = choice_logprobs(Subject(decoder, tokenizer, "m"), item, max_length=40)
    assert short != choice_logprobs(Subject(decoder, tokenizer, "m"), item, max_length=10_000)


def result(model, value, seed, kind="encoder"):
    return Result("code-search", model, {"ndcg@10": value}, seed, 10, variant="fine-tuned", kind=kind)


def test_a_win_is_claimed_only_beyond_the_spread_of_the_seeds():
    apart = [result("encoder", v, s) for s, v in enumerate((0.30, 0.32, 0.31))] + \
            [result("decoder", v, s, "decoder") for s, v in enumerate((0.20, 0.29, 0.25))]
    overlapping = apart[:3] + [result("decoder", v, s, "decoder") for s, v in enumerate((0.20, 0.305, 0.25))]
    assert spread_rows(apart)[0].winner(["encoder", "decoder"]) == "encoder"
    assert spread_rows(overlapping)[0].winner(["encoder", "decoder"]) == "within spread"
    spread = Spread([0.30, 0.32, 0.31])
    assert spread.mean == pytest.approx(0.31) and spread.std == pytest.approx(0.01)
    table = spread_markdown(apart + [Result("code-search", "BM25", {"ndcg@10": 0.4}, 0, 10, variant="fine-tuned",
                                            kind="baseline")], ["encoder", "decoder"])
    assert "| 0.31 ± 0.01 |" in table and "| 0.4 |" in table and table.rstrip().endswith("| encoder |")
    # baselines never win the `best` column, even when they score higher
    assert "BM25 |" not in table.splitlines()[-1].rsplit("|", 2)[-2]


def completion(model, accuracy, kind="encoder", n=200):
    stderr = math.sqrt(accuracy * (1 - accuracy) / n)
    return Result("code-completion", model, {"accuracy": accuracy}, 0, n, kind=kind, details={"stderr": stderr})


def test_a_single_score_with_a_standard_error_wins_only_beyond_two_of_them():
    # 0.330 vs 0.265 on 200 items: two standard errors of the difference are 0.091
    close = [completion("encoder", 0.265), completion("decoder", 0.330, "decoder")]
    far = [completion("encoder", 0.265), completion("decoder", 0.400, "decoder")]
    assert spread_rows(close)[0].winner(["encoder", "decoder"]) == "within 2 s.e."
    assert spread_rows(far)[0].winner(["encoder", "decoder"]) == "decoder"
    # without standard errors a single value still wins by being larger
    bare = [Result("lm", m, {"mlm_accuracy": v}, 0, 10, variant="masked") for m, v in (("a", 0.26), ("b", 0.18))]
    assert spread_rows(bare)[0].winner(["a", "b"]) == "a"


@pytest.mark.parametrize("values,stds", [((0.5,), 0.0), ((1.0, 3.0), math.sqrt(2))])
def test_spread_of_one_or_more_seeds(values, stds):
    assert Spread(list(values)).std == pytest.approx(stds)
    assert ("±" in str(Spread(list(values)))) == (len(values) > 1)


def generation(model, chrf, seed, variant="fine-tuned", kind="decoder"):
    return Result("docstring-generation", model, {"chrf": chrf}, seed, 200, variant=variant, kind=kind)


def test_the_findings_say_which_targets_are_missed_and_which_baseline_beats_every_model():
    """Near a target the sentence says met or missed by the test's own rule (4.97x random is not
    5x, though it rounds to it); a baseline above every model is said; the encoder continued as
    a decoder is compared with the decoder on the generative fine-tune."""
    from twofold.demo.report import findings

    search = [result("encoder", v, s) for s, v in enumerate((0.0626, 0.0628, 0.0630), 1)] + \
             [result("decoder", v, s, "decoder") for s, v in enumerate((0.020, 0.021, 0.022), 1)] + \
             [Result("code-search", "random", {"ndcg@10": 0.01266}, 0, 359, variant="fine-tuned", kind="baseline"),
              Result("code-search", "BM25", {"ndcg@10": 0.39}, 0, 359, variant="fine-tuned", kind="baseline")]
    generate = [generation("decoder", v, s) for s, v in enumerate((15.6, 16.2, 15.9), 1)] + \
               [generation("decoder-from-encoder", v, s) for s, v in enumerate((11.0, 12.0, 11.5), 1)] + \
               [generation(m, v, s, "zero-shot") for m, v in (("decoder", 11.4), ("decoder-from-encoder", 11.2))
                for s in (1, 2, 3)] + \
               [Result("docstring-generation", "function name", {"chrf": 12.9}, 0, 200, variant="fine-tuned",
                       kind="baseline")]
    text = findings(search + generate)
    assert "nDCG@10 0.0628 = 4.96× random (target ≥ 5×): **missed**" in text
    # decoder: worst seed 15.6 - 11.4 = 4.2 > spread 0.6; decoder-from-encoder: 11.0 - 11.2 < 0 (spread 1.0)
    assert "decoder chrF 11.4 before the generative fine-tune, 15.9 after" in text
    assert "seeds' spread, 0.60): met" in text and "seeds' spread, 1.00): **missed**" in text
    assert "The BM25 baseline (0.39) beats every model" in text
    assert "The function name baseline" not in text  # 12.9 is below the decoder's 15.9
    assert "the encoder continued as a decoder (11.5 ± 0.5) does not close the gap: the decoder stays ahead" in text
