"""Every built-in task on a tiny random pair: well-formed, finite results in range, as JSON."""

import json
import math
from collections import Counter

import pytest
from tests.eval.conftest import TINY

from twofold.errors import TwofoldError
from twofold.eval.tasks import BUILTIN_TASKS, TASKS, evaluate, evaluate_pair
from twofold.eval.tasks.classification import package_set
from twofold.results import LOWER_IS_BETTER, METRIC_RANGES, load_results, save_results


@pytest.fixture(scope="module")
def pair_results(encoder, decoder, tokenizer):
    return evaluate_pair(encoder, decoder, tokenizer, settings=TINY)


def test_every_builtin_task_gives_finite_scores_in_range(pair_results):
    assert {(r.model, r.task) for r in pair_results} == {(m, t) for m in ("encoder", "decoder") for t in BUILTIN_TASKS}
    for result in pair_results:
        assert result.seed == TINY.seed and result.n > 0 and result.parameters > 0
        for metric, value in result.metrics.items():
            low, high = METRIC_RANGES[metric]
            assert math.isfinite(value) and low <= value <= high, (result.row, metric, value)
    assert set(METRIC_RANGES) >= set(LOWER_IS_BETTER)


def test_each_member_gets_its_own_metrics_and_poolings(pair_results):
    by = {(r.model, r.row): r for r in pair_results}
    assert set(by["encoder", "lm[masked]"].metrics) == {"mlm_accuracy"}
    assert set(by["encoder", "lm[pseudo]"].metrics) == {"pseudo_perplexity"}
    assert set(by["decoder", "lm"].metrics) == {"perplexity"}
    assert {r.variant for r in pair_results if r.task == "code-search" and r.model == "encoder"} == {"mean"}
    assert {r.variant for r in pair_results if r.task == "code-search" and r.model == "decoder"} == {"last", "mean"}
    assert by["decoder", "package-classification"].details["pooling"] == "last"
    # The majority baseline: the dev share of the train set's most frequent package, counted here.
    data = package_set(TINY.min_per_class, TINY.max_per_class, TINY.dev_fraction, TINY.seed)
    majority = Counter(label for _, label in data.train).most_common(1)[0][0]
    share = sum(label == majority for _, label in data.dev) / len(data.dev)
    for member in ("encoder", "decoder"):
        result = by[member, "package-classification"]
        assert result.details["majority_accuracy"] == pytest.approx(share) and result.n == len(data.dev)
    decoder_samples = by["decoder", "samples"].details["samples"]
    encoder_samples = by["encoder", "samples"].details["samples"]
    assert all(isinstance(s["output"], str) for s in decoder_samples)
    assert all(len(s["output"]) == 5 for s in encoder_samples)  # top-5 guesses per mask


def test_results_round_trip_through_json(pair_results, tmp_path):
    paths = save_results(pair_results, tmp_path)
    assert len(set(paths)) == len(pair_results)
    record = json.loads(paths[0].read_text())
    assert {"task", "model", "metrics", "seed", "n"} <= set(record)
    loaded = load_results(tmp_path)
    key = lambda r: (r.model, r.row)
    assert sorted(loaded, key=key) == sorted(pair_results, key=key)


def test_same_seed_same_scores(encoder, tokenizer):
    first = evaluate(encoder, tokenizer, ["code-search"], settings=TINY)
    again = evaluate(encoder, tokenizer, ["code-search"], settings=TINY)
    assert [r.metrics for r in first] == [r.metrics for r in again]


def test_unknown_task_lists_the_valid_ones(encoder, tokenizer):
    with pytest.raises(TwofoldError, match="unknown task 'glue'") as error:
        evaluate(encoder, tokenizer, ["glue"], settings=TINY)
    assert all(name in str(error.value) for name in TASKS)
