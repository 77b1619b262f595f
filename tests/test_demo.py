"""The whole demo pipeline at its smallest: tokenizer, stores, a trained pair, exports, evaluation, report."""

import json
import math

import pytest
import torch
import transformers

import twofold
from twofold.data.stdlib import held_out_functions
from twofold.data.store import TokenStore
from twofold.data.tokenizer import load_tokenizer
from twofold.demo import DemoLayout, prepare_corpus, run_demo
from twofold.eval import METRIC_RANGES, QUICK, load_results

PACKAGES = ("json", "email", "collections", "argparse.py", "textwrap")
# The smallest evaluation that still runs every task.
TINY_EVAL = QUICK.replace(lm_tokens=1_000, pseudo_perplexity_tokens=32, max_queries=32, max_examples=64,
                          max_length=64, max_new_tokens=8)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines = []
    report = run_demo(out, budget=16_000, settings=TINY_EVAL, packages=PACKAGES, progress=False, say=lines.append)
    return DemoLayout(out), report, lines


def test_exports_load_in_transformers_with_the_same_logits(demo):
    layout, _, _ = demo
    ids = torch.randint(5, 500, (2, 40))
    for member, auto in (("encoder", transformers.AutoModelForMaskedLM),
                         ("decoder", transformers.AutoModelForCausalLM)):
        ours = twofold.load(layout.export(member)).eval()
        theirs, info = auto.from_pretrained(layout.export(member), output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"]
        with torch.no_grad():
            assert (ours(ids).logits - theirs(input_ids=ids).logits).abs().max() <= 1e-4
        assert transformers.AutoTokenizer.from_pretrained(layout.export(member)).mask_token == "[MASK]"


def test_report_and_plots_exist(demo):
    layout, report, lines = demo
    text = report.read_text()
    for png in ("loss.png", "schedule.png", "scores.png"):
        path = layout.root / png
        assert path.stat().st_size > 5_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({png})" in text
    assert "encoder" in text and "decoder" in text
    assert any("report:" in line for line in lines)


def test_every_score_is_in_range_in_the_report_and_the_members_learnt(demo):
    layout, report, _ = demo
    results = load_results(layout.eval)
    scored = [r for r in results if r.metrics]
    assert {r.kind for r in scored} == {"encoder", "decoder"}
    table = report.read_text()
    for result in scored:
        for metric, value in result.metrics.items():
            low, high = METRIC_RANGES[metric]
            assert math.isfinite(value) and low <= value <= high, (result.task, metric, value)
            assert f"| {value:.4g} |" in table  # the report shows what was measured
    # Trained on 16K tokens, both members predict held-out text clearly better than a uniform
    # guess over the vocabulary, which an untrained model scores (about 2.2K and 2.5K of 4096 here).
    vocab = load_tokenizer(layout.tokenizer).vocab_size
    perplexities = {(r.kind, m): v for r in scored for m, v in r.metrics.items() if m.endswith("perplexity")}
    assert set(perplexities) == {("encoder", "pseudo_perplexity"), ("decoder", "perplexity")}
    assert all(v < 0.8 * vocab for v in perplexities.values()), (perplexities, vocab)


def test_both_members_trained_on_identical_batches(demo):
    layout, _, _ = demo
    for phase in ("pretrain", "extension", "decay"):
        hashes = [[json.loads(line)["hash"] for line in
                   (layout.pair / member / phase / "data_order" / "rank0.jsonl").read_text().splitlines()]
                  for member in ("encoder", "decoder")]
        assert hashes[0] and hashes[0] == hashes[1]


def test_held_out_functions_are_absent_from_the_training_store(demo):
    layout, _, _ = demo
    store = TokenStore(layout.store)
    tokenizer = load_tokenizer(layout.tokenizer)
    training_text = "\n".join(tokenizer.decode(store.document(i)) for i in range(len(store.doc_ids)))
    functions = held_out_functions()
    assert functions
    assert not [f.name for f in functions if f.code.strip() in training_text]


def test_second_run_reuses_tokenizer_and_stores(demo):
    layout, _, _ = demo
    before = {p: p.stat().st_mtime_ns for p in (layout.tokenizer / "tokenizer.json", layout.store / "manifest.json")}
    lines = []
    prepare_corpus(layout, PACKAGES, progress=False, say=lines.append)
    assert sum("reusing" in line for line in lines) == 3  # tokenizer, train store, held-out store
    assert before == {p: p.stat().st_mtime_ns for p in before}
