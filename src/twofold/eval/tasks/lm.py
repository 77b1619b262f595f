"""Language modelling on held-out stdlib text.

Windows of held-out documents are framed as in training (`[CLS] document [SEP]`, cut into a
window of `max_length` at a seeded offset): for the decoder, predicting the end of a document
is part of the language it learned. Scoring a continuation (`continuation_logprob`) frames
text as the decoder's exported tokenizer and lm-eval do: BOS, then the text, no EOS.
Encoder: MLM accuracy with a fixed 15% mask
(every chosen token becomes [MASK]; no 80/10/10, which would score unchanged tokens) and
pseudo-perplexity (each token masked alone, Salazar et al. 2020) on a smaller sample.
Decoder: perplexity of next-token prediction.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from twofold.data.tokenizer import Tokenizer
from twofold.eval import stdlib
from twofold.eval.metrics import accuracy, perplexity
from twofold.eval.progress import progress
from twofold.eval.settings import Settings
from twofold.eval.tasks.subject import Subject
from twofold.eval.text import device_of, pad
from twofold.model import IGNORE_INDEX


def held_out_windows(tokenizer: Tokenizer, max_length: int, budget: int, seed: int) -> list[list[int]]:
    """Windows of seeded-random held-out documents, one per document, until `budget` tokens."""
    return text_windows([d.text for d in stdlib.documents()], tokenizer, max_length, budget, seed)


def text_windows(texts: list[str], tokenizer: Tokenizer, max_length: int, budget: int,
                 seed: int) -> list[list[int]]:
    """`[CLS] text [SEP]` windows at a seeded offset, one per text in a seeded order, until `budget` tokens."""
    rng = np.random.default_rng(seed)
    windows, total = [], 0
    for index in rng.permutation(len(texts)):
        if total >= budget:
            break
        ids = tokenizer.encode_batch([texts[index]])[0]
        ids = [tokenizer.special.cls, *ids, tokenizer.special.sep]
        start = int(rng.integers(0, len(ids) - max_length + 1)) if len(ids) > max_length else 0
        window = ids[start:start + min(max_length, budget - total)]
        if len(window) >= 2:
            windows.append(window)
            total += len(window)
    return windows


def mask_windows(windows: list[list[int]], tokenizer: Tokenizer, rate: float, seed: int):
    """(inputs, labels) per window: each regular token masked with probability `rate` (at least one)."""
    rng = np.random.default_rng(seed)
    special = np.asarray(tokenizer.special.all())
    inputs, labels = [], []
    for window in windows:
        ids = np.asarray(window)
        regular = ~np.isin(ids, special)
        chosen = regular & (rng.random(len(ids)) < rate)
        if not chosen.any() and regular.any():
            chosen[rng.choice(np.flatnonzero(regular))] = True
        inputs.append(np.where(chosen, tokenizer.special.mask, ids).tolist())
        labels.append(np.where(chosen, ids, IGNORE_INDEX).tolist())
    return inputs, labels


@torch.no_grad()
def _target_nll(model, inputs: list[list[int]], labels: list[list[int]], pad_id: int):
    """(negative log-likelihood, argmax) of every labelled position, in row-major order."""
    device = device_of(model)
    ids, mask = pad(inputs, pad_id, device)
    target, _ = pad(labels, IGNORE_INDEX, device)
    target = target.masked_fill(mask == 0, IGNORE_INDEX)
    logits = model(ids, mask, labels=target).logits.float()  # [targets, V], row-major
    gold = target[target != IGNORE_INDEX]
    return F.cross_entropy(logits, gold, reduction="none").cpu(), logits.argmax(-1).cpu(), gold.cpu()


def masked_lm(subject: Subject, settings: Settings) -> dict[str, float]:
    """MLM accuracy and mean masked-token NLL over the held-out windows."""
    tokenizer = subject.tokenizer
    windows = held_out_windows(tokenizer, settings.length, settings.lm_tokens, settings.seed)
    inputs, labels = mask_windows(windows, tokenizer, settings.mask_rate, settings.seed)
    predictions, golds, nll = [], [], 0.0
    with progress(subject.name, "lm (masked)", sum(map(len, windows)), "tok") as bar:
        for start in range(0, len(windows), settings.batch_size):
            chunk = slice(start, start + settings.batch_size)
            losses, argmax, gold = _target_nll(subject.model, inputs[chunk], labels[chunk], tokenizer.special.pad)
            nll += float(losses.double().sum())
            predictions += argmax.tolist()
            golds += gold.tolist()
            bar.update(sum(map(len, windows[chunk])))
    return {"mlm_accuracy": accuracy(predictions, golds), "mlm_loss": nll / len(golds), "masked": len(golds)}


def pseudo_perplexity(subject: Subject, settings: Settings) -> tuple[float, int]:
    """exp(mean NLL of each regular token when it alone is masked), and the tokens scored."""
    tokenizer = subject.tokenizer
    windows = held_out_windows(tokenizer, settings.length, settings.pseudo_perplexity_tokens,
                               settings.seed + 1)
    special = set(tokenizer.special.all())
    rows = [(w, p) for w in windows for p, token in enumerate(w) if token not in special]
    nll = 0.0
    with progress(subject.name, "lm (pseudo-perplexity)", len(rows), "tok") as bar:
        for start in range(0, len(rows), settings.batch_size):
            chunk = rows[start:start + settings.batch_size]
            inputs = [w[:p] + [tokenizer.special.mask] + w[p + 1:] for w, p in chunk]
            labels = [[IGNORE_INDEX] * p + [w[p]] + [IGNORE_INDEX] * (len(w) - p - 1) for w, p in chunk]
            losses, _, _ = _target_nll(subject.model, inputs, labels, tokenizer.special.pad)
            nll += float(losses.double().sum())
            bar.update(len(chunk))
    return perplexity(nll, len(rows)), len(rows)


def causal_lm(subject: Subject, settings: Settings) -> tuple[float, int]:
    """Decoder perplexity over the held-out windows, and the tokens predicted."""
    tokenizer = subject.tokenizer
    windows = held_out_windows(tokenizer, settings.length, settings.lm_tokens, settings.seed)
    nll, count = 0.0, 0
    with progress(subject.name, "lm (perplexity)", sum(map(len, windows)), "tok") as bar:
        for start in range(0, len(windows), settings.batch_size):
            chunk = windows[start:start + settings.batch_size]
            labels = [w[1:] + [IGNORE_INDEX] for w in chunk]  # target at i = token i + 1
            losses, _, _ = _target_nll(subject.model, chunk, labels, tokenizer.special.pad)
            nll += float(losses.double().sum())
            count += losses.numel()
            bar.update(sum(map(len, chunk)))
    return perplexity(nll, count), count


@torch.no_grad()
def continuation_logprob(model, tokenizer: Tokenizer, context: str, continuation: str) -> tuple[float, bool]:
    """(log p(continuation | context), whether greedy decoding gives it) under a decoder.

    Framed as lm-eval's loglikelihood frames it on the export (its tokenizer adds BOS only):
    `[BOS] context+continuation` tokenized whole, the continuation being the tokens past those
    of `[BOS] context`; trailing spaces of the context move to the continuation.
    """
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole, prefix = tokenizer.encode_batch([context + continuation, context])
    ids = [tokenizer.special.bos, *whole]
    start = 1 + len(prefix)
    logits = model(torch.tensor([ids], device=device_of(model))).logits[0, start - 1:-1].float()
    target = torch.tensor(ids[start:], device=logits.device)
    logprob = logits.log_softmax(-1).gather(1, target[:, None]).sum()
    return float(logprob), bool((logits.argmax(-1) == target).all())


def language_modelling(subject: Subject, settings: Settings) -> list:
    seed = settings.seed
    if subject.causal:
        value, n = causal_lm(subject, settings)
        return [subject.result("lm", {"perplexity": value}, seed, n)]
    masked = masked_lm(subject, settings)
    value, n = pseudo_perplexity(subject, settings)
    return [
        subject.result("lm", {"mlm_accuracy": masked["mlm_accuracy"]}, seed, masked["masked"], variant="masked",
                       mask_rate=settings.mask_rate, mlm_loss=masked["mlm_loss"]),
        subject.result("lm", {"pseudo_perplexity": value}, seed, n, variant="pseudo"),
    ]
