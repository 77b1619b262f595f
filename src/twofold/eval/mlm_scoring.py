"""Scoring text with a masked LM: the pseudo-log-likelihood of a continuation, and greedy fill-in.

A masked LM has no left-to-right likelihood. Its pseudo-log-likelihood (PLL, Salazar et al.
2020, arXiv 1910.14659) of a continuation given a context is the sum, over the continuation's
tokens, of log p(token | every other token) with that token alone replaced by [MASK]:

    [CLS] context continuation [SEP], token i of the continuation masked -> log p(token i)

The text is split into context and continuation tokens as lm-eval splits it for a decoder
(trailing spaces of the context move to the continuation; the context is the tokens of
`context`, the continuation those of `context + continuation` past them), so the same requests
score both members.
`is_greedy` is True when every masked position's argmax is the token. Cost: one forward pass of
the whole sequence per continuation token (a decoder needs one per request), batched over
tokens and requests and sorted by length; the vocabulary projection runs at the masked
position only (for twofold's models and transformers' ModernBERT).

Generation (`fill_greedy`) appends one [MASK] before [SEP], takes its argmax and repeats: a
left-to-right use of a bidirectional model (Wang & Cho 2019, arXiv 1902.04094), one forward
pass per new token. It lets generative tasks run on an encoder; expect little from it.

Works with twofold's `TwofoldModel` and tokenizer, and with any transformers masked LM and its
tokenizer (`AutoModelForMaskedLM`, `AutoTokenizer`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from twofold.errors import TwofoldError


@dataclass(frozen=True)
class Vocabulary:
    """What scoring needs of a tokenizer: plain encoding and the four special ids."""

    encode: Callable[[list[str]], list[list[int]]]  # texts -> ids, no special tokens
    decode: Callable[[list[int]], str]
    cls: int
    sep: int
    mask: int
    pad: int


def vocabulary(tokenizer) -> Vocabulary:
    """A `Vocabulary` of a twofold `Tokenizer` or a transformers tokenizer."""
    if hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "special"):  # twofold
        s = tokenizer.special
        return Vocabulary(tokenizer.encode_batch, tokenizer.decode, s.cls, s.sep, s.mask, s.pad)
    ids = {name: getattr(tokenizer, f"{name}_token_id", None) for name in ("cls", "sep", "mask", "pad")}
    ids["cls"] = ids["cls"] if ids["cls"] is not None else getattr(tokenizer, "bos_token_id", None)
    ids["sep"] = ids["sep"] if ids["sep"] is not None else getattr(tokenizer, "eos_token_id", None)
    ids["pad"] = ids["pad"] if ids["pad"] is not None else ids["sep"]
    missing = [name for name, value in ids.items() if value is None]
    if missing:
        raise TwofoldError(f"the tokenizer has no {missing[0]} token; masked-LM scoring needs [CLS], [SEP] and [MASK]")
    return Vocabulary(lambda texts: tokenizer(list(texts), add_special_tokens=False)["input_ids"],
                      lambda ids_: tokenizer.decode(ids_), **ids)


def split_request(vocab: Vocabulary, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-eval's `_encode_pair` splits them."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole, prefix = vocab.encode([context + continuation, context])
    if not context:
        return [], whole
    if len(whole) <= len(prefix):  # the continuation merged into the context's last token
        return whole[:-1], whole[-1:]
    return prefix, whole[len(prefix):]


def _fit(context: list[int], continuation: list[int], max_length: int | None) -> tuple[list[int], list[int]]:
    """Drop context tokens from the left (then continuation ones) until [CLS] … [SEP] fits."""
    if max_length is None:
        return context, continuation
    room = max_length - 2
    continuation = continuation[-room:]
    keep = room - len(continuation)
    return (context[-keep:] if keep > 0 else []), continuation  # a context shorter than keep: all of it


@torch.no_grad()
def _masked_logprobs(model, rows: list[tuple[list[int], int]], vocab: Vocabulary, device) -> list[tuple[float, bool]]:
    """(log p, argmax == token) of the masked position of each (ids, position) row, one forward pass."""
    width = max(len(ids) for ids, _ in rows)
    batch = torch.full((len(rows), width), vocab.pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    targets, positions = [], []
    for i, (ids, position) in enumerate(rows):
        batch[i, :len(ids)] = torch.tensor(ids)
        attention[i, :len(ids)] = 1
        targets.append(ids[position])
        positions.append(position)
        batch[i, position] = vocab.mask
    picked = _logits_at(model, batch.to(device), attention.to(device), positions).float()
    logprobs = picked.log_softmax(-1)
    target = torch.tensor(targets, device=device)
    values = logprobs.gather(1, target[:, None])[:, 0]
    greedy = picked.argmax(-1) == target
    return list(zip(values.tolist(), greedy.tolist()))


def _logits_at(model, ids: torch.Tensor, attention: torch.Tensor, positions: list[int]) -> torch.Tensor:
    """[rows, V] logits of one position per row. The vocabulary projection runs at those positions
    only where the model allows it (twofold's labels, transformers ModernBERT's sparse prediction):
    for small models it costs more than the body at every position."""
    rows = torch.arange(len(positions), device=ids.device)
    at = torch.tensor(positions, device=ids.device)
    labels = torch.full_like(ids, -100)
    labels[rows, at] = 1  # any id: only where the labels are set matters
    if hasattr(model, "sparse_prediction") and getattr(model, "sparse_pred_ignore_index", -100) == -100:
        was = model.sparse_prediction
        model.sparse_prediction = True
        try:
            return model(input_ids=ids, attention_mask=attention, labels=labels).logits
        finally:
            model.sparse_prediction = was
    if hasattr(model, "config") and hasattr(model.config, "causal"):  # TwofoldModel: sparse prediction built in
        return model(ids, attention, labels=labels).logits
    return model(ids, attention).logits[rows, at]


def _device(model) -> torch.device:
    return next(model.parameters()).device


def pseudo_loglikelihood(model, tokenizer, requests: Sequence[tuple[str, str]], batch_size: int = 64,
                         max_length: int | None = None, progress=None) -> list[tuple[float, bool]]:
    """(PLL of the continuation given the context, is_greedy) for each (context, continuation).

    `model`: an encoder (twofold `TwofoldModel` or a transformers masked LM), called as
    `model(input_ids, attention_mask).logits`; `tokenizer`: its tokenizer. `batch_size` counts
    masked copies per forward pass; `max_length` (default: the model's) cuts contexts from the left.
    `progress`: a tqdm-like bar, advanced by one per scored token.
    """
    vocab = vocabulary(tokenizer)
    if max_length is None:
        config = getattr(model, "config", None)
        max_length = getattr(config, "max_position_embeddings", None)
    rows, owner = [], []
    for index, (context, continuation) in enumerate(requests):
        before, scored = _fit(*split_request(vocab, context, continuation), max_length)
        ids = [vocab.cls, *before, *scored, vocab.sep]
        for offset in range(len(scored)):
            rows.append((ids, 1 + len(before) + offset))
            owner.append(index)
    order = sorted(range(len(rows)), key=lambda r: -len(rows[r][0]))  # similar lengths together: little padding
    totals = [0.0] * len(requests)
    greedy = [True] * len(requests)
    model_was_training = getattr(model, "training", False)
    model.eval()
    device = _device(model)
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for r, (value, top) in zip(chunk, _masked_logprobs(model, [rows[r] for r in chunk], vocab, device)):
                totals[owner[r]] += value
                greedy[owner[r]] &= top
            if progress is not None:
                progress.update(len(chunk))
    finally:
        model.train(model_was_training)
    return list(zip(totals, greedy))


def count_scored_tokens(tokenizer, requests: Sequence[tuple[str, str]]) -> int:
    """How many masked forward rows `pseudo_loglikelihood` will run for `requests` (for progress bars)."""
    vocab = vocabulary(tokenizer)
    return sum(len(split_request(vocab, c, x)[1]) for c, x in requests)


@torch.no_grad()
def fill_greedy(model, tokenizer, context: str, max_new_tokens: int, until: Sequence[str] = (),
                max_length: int | None = None) -> str:
    """Text an encoder writes after `context`: append [MASK] before [SEP], take the argmax, repeat.

    Stops after `max_new_tokens`, at [SEP], or when the text holds one of `until` (cut there).
    """
    vocab = vocabulary(tokenizer)
    context_ids = vocab.encode([context])[0] if context else []
    max_length = max_length or getattr(getattr(model, "config", None), "max_position_embeddings", None) or 512
    new: list[int] = []
    device = _device(model)
    model.eval()
    text = ""
    for _ in range(max_new_tokens):
        body = (context_ids + new)[-(max_length - 3):]
        ids = torch.tensor([[vocab.cls, *body, vocab.mask, vocab.sep]], device=device)
        token = int(model(ids, torch.ones_like(ids)).logits[0, len(body) + 1].argmax())
        if token in (vocab.sep, vocab.pad):
            break
        new.append(token)
        text = vocab.decode(new)
        cut = [text.index(stop) for stop in until if stop and stop in text]
        if cut:
            return text[:min(cut)]
    return text
