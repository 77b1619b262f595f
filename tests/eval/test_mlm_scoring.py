"""Masked-LM scoring (`twofold.eval.mlm_scoring`) on a tiny random encoder, fast, without lm-eval:
the pseudo-log-likelihood of each request against each continuation token masked alone and scored
on its own (twofold's model, transformers' ModernBERT export, and a transformers masked LM of
another family), is_greedy on continuations where some tokens are the model's argmax and others
not, the cuts to a length, and greedy fill-in. lm-eval's use of the scorer: tests/eval/test_suites.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import twofold
from twofold.errors import TwofoldError
from twofold.eval import mlm_scoring
from twofold.eval.mlm_scoring import count_scored_tokens, fill_greedy, pseudo_loglikelihood, split_request, vocabulary

REQUESTS = [("import", " os\nimport sys"), ("def read(path):\n", "    return open(path).read()"),
            ("x = ", "json.loads(text)"), ("", "import os"), ("x", " = 1")]


@pytest.fixture(scope="module")
def encoder(tokenizer):
    from tests.eval.conftest import tiny_model

    torch.manual_seed(7)
    return tiny_model(tokenizer, causal=False).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, encoder, tokenizer):
    """The encoder as transformers loads its export: ModernBertForMaskedLM and its tokenizer."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    path = tmp_path_factory.mktemp("export") / "encoder"
    twofold.save(encoder, path, tokenizer=Path(tokenizer.source).parent)
    return AutoModelForMaskedLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def bert(tokenizer):
    """A transformers masked LM with neither sparse prediction nor twofold's config: dense logits."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(3)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.special.pad)
    return BertForMaskedLM(config).eval()


def naive(model, tokenizer, context: str, continuation: str) -> tuple[float, list[bool]]:
    """The PLL by its definition: each continuation token masked alone in its own forward pass."""
    return naive_ids(model, vocabulary(tokenizer), *split_request(vocabulary(tokenizer), context, continuation))


def naive_ids(model, vocab, before: list[int], scored: list[int]) -> tuple[float, list[bool]]:
    ids = [vocab.cls, *before, *scored, vocab.sep]
    total, greedy = 0.0, []
    for offset, token in enumerate(scored):
        position = 1 + len(before) + offset
        masked = list(ids)
        masked[position] = vocab.mask
        with torch.no_grad():
            logits = model(torch.tensor([masked])).logits[0, position]
        total += float(logits.log_softmax(-1)[token])
        greedy.append(int(logits.argmax()) == token)
    return total, greedy


def argmax_at(model, vocab, before: list[int], scored: list[int], offset: int) -> int:
    ids = [vocab.cls, *before, *scored, vocab.sep]
    ids[1 + len(before) + offset] = vocab.mask
    with torch.no_grad():
        return int(model(torch.tensor([ids])).logits[0, 1 + len(before) + offset].argmax())


# ----------------------------------------------------------------------------- the tokenizer's side

def test_vocabulary_reads_twofold_and_transformers_tokenizers_alike(tokenizer, exported):
    ours, theirs = vocabulary(tokenizer), vocabulary(exported[1])
    s = tokenizer.special
    assert (ours.cls, ours.sep, ours.mask, ours.pad) == (theirs.cls, theirs.sep, theirs.mask, theirs.pad) == \
        (s.cls, s.sep, s.mask, s.pad)
    assert len({s.cls, s.sep, s.mask, s.pad}) == 4
    texts = ["import os", "def f(x): return x"]
    assert theirs.encode(texts) == ours.encode(texts) == tokenizer.encode_batch(texts)  # no [CLS]/[SEP] added
    assert theirs.decode(ours.encode(texts)[1]) == ours.decode(ours.encode(texts)[1]) == texts[1]


def test_a_transformers_tokenizer_without_cls_sep_pad_falls_back_to_bos_eos_and_without_mask_is_one_line(
        tokenizer):
    from transformers import PreTrainedTokenizerFast

    source = tokenizer.source
    names = {i: tokenizer.backend.id_to_token(i) for i in (0, 1, 2, 3)}
    bos_eos = PreTrainedTokenizerFast(tokenizer_file=source, bos_token=names[0], eos_token=names[1],
                                      mask_token=names[3])
    vocab = vocabulary(bos_eos)
    assert (vocab.cls, vocab.sep, vocab.mask, vocab.pad) == (0, 1, 3, 1)  # pad: the [SEP] id
    with_pad = PreTrainedTokenizerFast(tokenizer_file=source, cls_token=names[0], sep_token=names[1],
                                       pad_token=names[2], mask_token=names[3], bos_token=names[3], eos_token=names[2])
    assert (vocabulary(with_pad).cls, vocabulary(with_pad).sep, vocabulary(with_pad).pad) == (0, 1, 2)
    with pytest.raises(TwofoldError, match=r"^the tokenizer has no mask token; masked-LM scoring needs"):
        vocabulary(PreTrainedTokenizerFast(tokenizer_file=source, bos_token=names[0], eos_token=names[1]))
    with pytest.raises(TwofoldError, match="the tokenizer has no cls token"):
        vocabulary(PreTrainedTokenizerFast(tokenizer_file=source))
    with pytest.raises(TwofoldError, match="the tokenizer has no cls token"):  # a bare `tokenizers` one: no ids named
        vocabulary(tokenizer.backend)


def test_a_request_is_split_as_lm_eval_splits_it(tokenizer):
    vocab = vocabulary(tokenizer)
    encode = lambda text: vocab.encode([text])[0]  # noqa: E731
    # trailing spaces of the context move to the continuation
    assert split_request(vocab, "import  ", "os") == split_request(vocab, "import", "  os") == \
        (encode("import"), encode("import  os")[len(encode("import")):])
    assert split_request(vocab, "import", " os") == (encode("import"), encode("import os")[len(encode("import")):])
    assert split_request(vocab, "", "import os") == ([], encode("import os"))
    # the continuation merged into the context's last token: that token is the continuation, the
    # context the tokens before it (whether the whole has as many tokens as the context, or fewer)
    merged = {}
    for word in ("default", "json", "decoder", "string", "indent", "separators", "paragraph", "return", "width"):
        for start in ("import ", "x = ", ""):
            for cut in range(len(start) + 1, len(start + word)):
                text = start + word
                whole, prefix = encode(text), encode(text[:cut])
                if len(prefix) >= len(whole) >= 2:
                    merged.setdefault(len(whole) == len(prefix), (text[:cut], text[cut:]))
    assert set(merged) == {True, False}
    for context, continuation in merged.values():
        whole = encode(context + continuation)
        assert split_request(vocab, context, continuation) == (whole[:-1], whole[-1:])
    assert count_scored_tokens(tokenizer, [("import", " os"), ("", "import os"), merged[True]]) == \
        len(encode("import os")) - len(encode("import")) + len(encode("import os")) + 1


def test_a_request_too_long_loses_context_from_the_left_then_continuation():
    assert mlm_scoring._fit([1, 2, 3], [4, 5], None) == ([1, 2, 3], [4, 5])
    assert mlm_scoring._fit([1, 2, 3, 4], [5, 6], 6) == ([3, 4], [5, 6])  # room 4: two context tokens kept
    assert mlm_scoring._fit([1, 2, 3, 4], [5, 6], 5) == ([4], [5, 6])
    assert mlm_scoring._fit([1, 2, 3, 4], [5, 6], 4) == ([], [5, 6])
    assert mlm_scoring._fit([1, 2, 3], [5, 6, 7, 8, 9], 5) == ([], [7, 8, 9])
    assert mlm_scoring._fit([1, 2], [5], 10) == ([1, 2], [5])
    assert mlm_scoring._fit([1, 2, 3], [4], 7) == ([1, 2, 3], [4])  # room for 4 context tokens: all 3 kept


# ----------------------------------------------------------------------------- the pseudo-log-likelihood

@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_the_pll_of_each_request_is_each_token_masked_alone_whatever_the_batching(encoder, tokenizer, batch_size):
    got = pseudo_loglikelihood(encoder, tokenizer, REQUESTS, batch_size=batch_size)
    for (context, continuation), (value, greedy) in zip(REQUESTS, got):
        want, tops = naive(encoder, tokenizer, context, continuation)
        assert value == pytest.approx(want, abs=1e-4) and greedy == all(tops)
    assert len({round(v, 3) for v, _ in got}) == len(REQUESTS)


def test_transformers_masked_lms_score_as_twofolds_model_does(encoder, tokenizer, exported, bert):
    """ModernBERT's export (sparse prediction switched on for the call, then back), one whose sparse
    prediction ignores another label id, and a BERT (dense logits, no sparse prediction)."""
    model, hf_tokenizer = exported
    ours = pseudo_loglikelihood(encoder, tokenizer, REQUESTS, batch_size=3)
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(module.sparse_prediction))
    try:
        theirs = pseudo_loglikelihood(model, hf_tokenizer, REQUESTS, batch_size=3)
    finally:
        hook.remove()
    assert [v for v, _ in theirs] == pytest.approx([v for v, _ in ours], abs=1e-4)
    assert [g for _, g in theirs] == [g for _, g in ours]
    assert seen and all(seen) and model.sparse_prediction is False
    model.sparse_pred_ignore_index = -1  # its sparse prediction would keep every position: not used
    try:
        other = pseudo_loglikelihood(model, hf_tokenizer, REQUESTS, batch_size=3)
    finally:
        model.sparse_pred_ignore_index = -100
    assert [v for v, _ in other] == pytest.approx([v for v, _ in ours], abs=1e-4)
    dense = pseudo_loglikelihood(bert, tokenizer, REQUESTS, batch_size=3)
    for (context, continuation), (value, greedy) in zip(REQUESTS, dense):
        want, tops = naive(bert, tokenizer, context, continuation)
        assert value == pytest.approx(want, abs=1e-4) and greedy == all(tops)


def test_is_greedy_holds_only_when_every_continuation_token_is_the_argmax(encoder, tokenizer):
    """The output bias of one token raised until it is the argmax everywhere: a continuation of it
    twice is greedy; with another token first, or second, it is not."""
    vocab = vocabulary(tokenizer)
    words = [w for w in (" return", " x", " self", " None", " line", " os") if len(vocab.encode([w])[0]) == 1]
    pairs = {a + b: vocab.encode([a + b])[0] for a in words[:2] for b in words[:2]}
    assert all(len(ids) == 2 for ids in pairs.values())
    top, other = words[:2]
    requests = [("import", top), ("import", top + top), ("import", other + top), ("import", top + other)]
    with torch.no_grad():
        bias = encoder.decoder.bias.clone()
        encoder.decoder.bias[vocab.encode([top])[0][0]] += 1e3
    try:
        got = pseudo_loglikelihood(encoder, tokenizer, requests, batch_size=3)
    finally:
        with torch.no_grad():
            encoder.decoder.bias.copy_(bias)
    assert [greedy for _, greedy in got] == [True, True, False, False]


def test_the_context_is_cut_to_the_models_length_unless_told_another(tokenizer, bert):
    """BERT's 64 positions: a request longer than that is cut from the left to fit, as `max_length` 64 cuts it;
    one that fits is scored whole."""
    vocab = vocabulary(tokenizer)
    line = "def read(path):\n    return open(path).read()\n"
    for context, scored_whole in ((line * 4, False), (line * 2, True)):
        request = [(context, "import os")]
        before, scored = mlm_scoring._fit(*split_request(vocab, context, "import os"), 64)
        assert (before == split_request(vocab, context, "import os")[0]) == scored_whole
        assert len(before) + len(scored) == 62 or scored_whole and len(before) > 62 // 2
        cut = pseudo_loglikelihood(bert, tokenizer, request)
        assert cut == pseudo_loglikelihood(bert, tokenizer, request, max_length=64)
        assert cut[0][0] == pytest.approx(naive_ids(bert, vocab, before, scored)[0], abs=1e-4)


def test_the_vocabulary_projection_runs_at_the_masked_positions_only(encoder, tokenizer, exported):
    """twofold's model through its labels, ModernBERT through its sparse prediction: the output layer
    sees one row per masked copy, not every position of the batch."""
    rows = count_scored_tokens(tokenizer, REQUESTS[:2])
    for model, tok in ((encoder, tokenizer), exported):
        seen = []
        hook = model.decoder.register_forward_hook(lambda module, args, out, seen=seen: seen.append(args[0].shape[:-1]))
        try:
            pseudo_loglikelihood(model, tok, REQUESTS[:2], batch_size=64)
        finally:
            hook.remove()
        assert [tuple(shape) for shape in seen] == [(rows,)]


def test_any_model_called_with_ids_and_a_mask_is_scored_without_a_config(encoder, tokenizer):
    """The documented interface, `model(input_ids, attention_mask).logits`, is all the scorer needs:
    no config (hence no length to cut to), no sparse prediction."""

    class Bare(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = encoder

        def forward(self, ids, attention):
            return self.inner(ids, attention)

    bare = Bare()
    assert not hasattr(bare, "config")
    got = pseudo_loglikelihood(bare, tokenizer, REQUESTS, batch_size=4)
    assert [v for v, _ in got] == pytest.approx([v for v, _ in pseudo_loglikelihood(encoder, tokenizer, REQUESTS)],
                                                abs=1e-4)
    bare.config = object()  # a config without max_position_embeddings
    assert pseudo_loglikelihood(bare, tokenizer, REQUESTS[:1]) == got[:1]


def test_scoring_advances_the_progress_bar_per_token_and_leaves_the_models_mode(encoder, tokenizer):
    class Bar:
        steps: list[int] = []

        def update(self, n):
            self.steps.append(n)

    bar = Bar()
    encoder.train()
    try:
        pseudo_loglikelihood(encoder, tokenizer, REQUESTS, batch_size=4, progress=bar)
        assert encoder.training
    finally:
        encoder.eval()
    total = count_scored_tokens(tokenizer, REQUESTS)
    assert sum(bar.steps) == total and bar.steps == [4] * (total // 4) + ([total % 4] if total % 4 else [])
    pseudo_loglikelihood(encoder, tokenizer, REQUESTS[:1])
    assert not encoder.training


# ----------------------------------------------------------------------------- greedy fill-in

def _naive_fill(model, vocab, context_ids: list[int], steps: int) -> list[int]:
    new = []
    for _ in range(steps):
        ids = torch.tensor([[vocab.cls, *context_ids, *new, vocab.mask, vocab.sep]])
        with torch.no_grad():
            new.append(int(model(ids).logits[0, len(context_ids) + len(new) + 1].argmax()))
    return new


def test_fill_greedy_appends_the_argmax_at_a_mask_before_sep_one_token_at_a_time(encoder, tokenizer):
    vocab = vocabulary(tokenizer)
    context = "def read(path):\n"
    tokens = _naive_fill(encoder, vocab, vocab.encode([context])[0], 6)
    assert vocab.sep not in tokens and vocab.pad not in tokens
    assert fill_greedy(encoder, tokenizer, context, 6) == vocab.decode(tokens)
    assert fill_greedy(encoder, tokenizer, context, 3) == vocab.decode(tokens[:3])
    assert fill_greedy(encoder, tokenizer, "", 2) == vocab.decode(_naive_fill(encoder, vocab, [], 2))
    # a window of max_length: [CLS], the last max_length - 3 tokens, [MASK], [SEP]
    ids = vocab.encode([context])[0]
    assert len(ids) > 4
    assert fill_greedy(encoder, tokenizer, context, 2, max_length=7) == vocab.decode(
        _naive_fill_window(encoder, vocab, ids, 2, 4))


def _naive_fill_window(model, vocab, context_ids, steps, keep):
    new = []
    for _ in range(steps):
        body = (context_ids + new)[-keep:]
        with torch.no_grad():
            logits = model(torch.tensor([[vocab.cls, *body, vocab.mask, vocab.sep]])).logits[0, len(body) + 1]
        new.append(int(logits.argmax()))
    return new


def test_fill_greedy_stops_at_the_first_stop_string_and_cuts_there(encoder, tokenizer):
    vocab = vocabulary(tokenizer)
    context = "def read(path):\n"
    whole = fill_greedy(encoder, tokenizer, context, 8)
    assert len(whole) >= 6
    early, late = whole[1:3], whole[4:6]
    cut = whole[:min(whole.index(early), whole.index(late))]
    assert fill_greedy(encoder, tokenizer, context, 8, until=[late, early]) == cut
    assert fill_greedy(encoder, tokenizer, context, 8, until=["", late]) == whole[:whole.index(late)]
    assert fill_greedy(encoder, tokenizer, context, 8, until=["never written"]) == whole
    calls = []
    hook = encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        fill_greedy(encoder, tokenizer, context, 8, until=[whole[0]])
    finally:
        hook.remove()
    first = vocab.decode(_naive_fill(encoder, vocab, vocab.encode([context])[0], 1))
    assert whole[0] in first and len(calls) == 1  # stops as soon as the stop string is written


@pytest.mark.parametrize("stop", ["sep", "pad"])
def test_fill_greedy_stops_when_the_model_writes_sep_or_pad(encoder, tokenizer, stop):
    special = getattr(tokenizer.special, stop)
    calls = []
    hook = encoder.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        bias = encoder.decoder.bias.clone()
        encoder.decoder.bias[special] = 1e4
    try:
        assert fill_greedy(encoder, tokenizer, "import", 5) == ""
    finally:
        hook.remove()
        with torch.no_grad():
            encoder.decoder.bias.copy_(bias)
    assert len(calls) == 1
