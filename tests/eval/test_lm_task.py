"""The language-modelling task counted by hand on a model whose outputs depend on its input (weights
drawn at scale 0.3: a freshly initialised tiny model predicts nearly the same distribution whatever
it reads, which hides an input built wrong): windows cut to the budget, masks, MLM accuracy and
loss, pseudo-perplexity, the task's records and its progress bars."""

import math

import pytest
import torch
import torch.nn.functional as F
from tests.eval.conftest import Bars, tiny_model

from twofold.eval.settings import Settings
from twofold.eval.tasks import lm
from twofold.eval.tasks.subject import Subject

SETTINGS = Settings(max_length=24, batch_size=3, lm_tokens=150, pseudo_perplexity_tokens=20, mask_rate=0.4, seed=3)


def sharp(tokenizer, causal: bool):
    torch.manual_seed(0)
    model = tiny_model(tokenizer, causal)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    return model


@pytest.fixture
def bars(monkeypatch) -> Bars:
    """The task's progress bars, recorded."""
    recorder = Bars()
    monkeypatch.setattr(lm, "progress", recorder)
    return recorder


def test_windows_fill_the_budget_exactly_with_slices_of_each_framed_text(tokenizer):
    texts = [f"def function_{i}(value):\n    return value * {i} + len(str(value))" for i in range(60)]
    framed = [[tokenizer.special.cls, *ids, tokenizer.special.sep] for ids in tokenizer.encode_batch(texts)]
    max_length = min(map(len, framed)) - 1  # every text is cut, at an offset from 0 to its last
    windows = lm.text_windows(texts, tokenizer, max_length, budget=10 * max_length + 2, seed=0)
    assert [len(w) for w in windows] == [max_length] * 10 + [2]  # the last cut to the budget; 2 tokens are kept
    offsets = [next((s, len(f) - max_length) for f in framed for s in range(len(f) - max_length + 1)
                    if f[s:s + max_length] == window) for window in windows[:-1]]
    assert any(s == 0 for s, _ in offsets) and any(s == last > 0 for s, last in offsets)
    # one token left is no window: the budget is not met rather than a window of one
    assert sum(map(len, lm.text_windows(texts, tokenizer, max_length, 3 * max_length + 1, seed=0))) == 3 * max_length
    whole = lm.text_windows(texts[:5], tokenizer, 100, budget=10_000, seed=0)  # shorter than the length: whole
    assert sorted(whole) == sorted(framed[:5])


def test_masks_fall_on_regular_tokens_and_every_window_gets_one(tokenizer):
    s = tokenizer.special
    regular = tokenizer.encode_batch(["import os"])[0]
    windows = [[s.cls, *regular, s.sep], [s.cls, s.mask, s.pad, s.unk, s.sep], [s.cls, *regular, s.sep, s.pad]]
    for rate in (0.0, 1.0):
        inputs, labels = lm.mask_windows(windows, tokenizer, rate, seed=1)
        for window, x, y in zip(windows, inputs, labels):
            chosen = [i for i, label in enumerate(y) if label != -100]
            assert all(window[i] not in s.all() and x[i] == s.mask and y[i] == window[i] for i in chosen)
            assert all(x[i] == window[i] for i in range(len(window)) if i not in chosen)
        assert [sum(label != -100 for label in y) for y in labels] == (
            [1, 0, 1] if rate == 0 else [len(regular), 0, len(regular)])  # at least one, where there is one
    long = [s.cls, *tokenizer.encode_batch(["def read(path):\n    return open(path).read() + 'x' * 40"])[0], s.sep]
    _, labels = lm.mask_windows([long] * 20, tokenizer, 0.5, seed=2)
    counts = [sum(label != -100 for label in y) for y in labels]
    assert len(long) > 20 and all(0 < c < len(long) - 2 for c in counts)  # a draw per token, not per window
    assert len(set(map(tuple, labels))) == 20


def test_masked_lm_counts_accuracy_and_loss_over_every_masked_token(tokenizer, bars):
    model = sharp(tokenizer, causal=False)
    scores = lm.masked_lm(Subject(model, tokenizer, "enc"), SETTINGS)
    windows = lm.held_out_windows(tokenizer, 24, 150, seed=3)
    inputs, labels = lm.mask_windows(windows, tokenizer, 0.4, seed=3)
    correct, nll, count = 0, 0.0, 0
    with torch.no_grad():
        for x, y in zip(inputs, labels):  # one window at a time, no padding
            logits = model(torch.tensor([x])).logits[0]
            for i, label in enumerate(y):
                if label != -100:
                    correct += int(logits[i].argmax()) == label
                    nll -= float(F.log_softmax(logits[i].double(), -1)[label])
                    count += 1
    assert len(windows) > SETTINGS.batch_size  # several batches
    assert scores == {"mlm_accuracy": pytest.approx(correct / count), "mlm_loss": pytest.approx(nll / count, rel=1e-5),
                      "masked": count}
    tokens = sum(map(len, windows))
    assert bars.opened == [("enc", "lm (masked)", tokens, "tok")] and bars.counted == [tokens]


def test_pseudo_perplexity_masks_one_token_at_a_time(tokenizer, bars):
    model = sharp(tokenizer, causal=False)
    value, n = lm.pseudo_perplexity(Subject(model, tokenizer, "enc"), SETTINGS)
    nll, count = 0.0, 0
    with torch.no_grad():
        for window in lm.held_out_windows(tokenizer, 24, 20, seed=4):
            for i, token in enumerate(window):
                if token not in tokenizer.special.all():
                    ids = torch.tensor(window)
                    ids[i] = tokenizer.special.mask
                    nll -= float(F.log_softmax(model(ids[None]).logits[0, i].double(), -1)[token])
                    count += 1
    assert n == count > SETTINGS.batch_size and value == pytest.approx(math.exp(nll / count), rel=1e-5)
    assert bars.opened == [("enc", "lm (pseudo-perplexity)", count, "tok")] and bars.counted == [count]


def test_decoder_perplexity_over_several_batches(tokenizer, bars):
    model = sharp(tokenizer, causal=True)
    value, n = lm.causal_lm(Subject(model, tokenizer, "dec"), SETTINGS)
    windows = lm.held_out_windows(tokenizer, 24, 150, seed=3)
    nll = 0.0
    with torch.no_grad():
        for window in windows:
            logits = model(torch.tensor([window])).logits[0, :-1].double()
            nll += float(F.cross_entropy(logits, torch.tensor(window[1:]), reduction="sum"))
    predicted = sum(len(w) - 1 for w in windows)
    assert len(windows) > SETTINGS.batch_size and n == predicted
    assert value == pytest.approx(math.exp(nll / predicted), rel=1e-5)
    assert bars.opened == [("dec", "lm (perplexity)", sum(map(len, windows)), "tok")]
    assert bars.counted == [sum(map(len, windows))]


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_the_task_records_each_members_scores(tokenizer, causal):
    model = sharp(tokenizer, causal)
    subject = Subject(model, tokenizer, "m")
    records = lm.language_modelling(subject, SETTINGS)
    if causal:
        value, n = lm.causal_lm(subject, SETTINGS)
        assert [(r.task, r.variant, r.metrics, r.n, r.seed) for r in records] == [
            ("lm", "", {"perplexity": value}, n, 3)]
        return
    masked, (value, n) = lm.masked_lm(subject, SETTINGS), lm.pseudo_perplexity(subject, SETTINGS)
    assert [(r.task, r.variant, r.metrics, r.n, r.seed) for r in records] == [
        ("lm", "masked", {"mlm_accuracy": masked["mlm_accuracy"]}, masked["masked"], 3),
        ("lm", "pseudo", {"pseudo_perplexity": value}, n, 3)]
    assert records[0].details == {"mask_rate": 0.4, "mlm_loss": masked["mlm_loss"]}
