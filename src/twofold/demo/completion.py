"""Multiple-choice code completion: a generative task both members can be scored on.

Each item is a held-out function cut after one of its lines: the context is the code before
the cut (at most `max_length` tokens of it, kept from the end), the choices are the line that
really follows and three lines of other held-out functions (distinct, of at least 10
characters). A member picks the choice it finds most likely, as lm-eval's multiple-choice
tasks score (`acc_norm`: log-likelihood per character of the choice):

- decoder: log p(choice | context), the sum over the choice's tokens;
- encoder: its pseudo-log-likelihood (Salazar et al. 2020, arXiv 1910.14659): each token of the
  choice masked alone, with the context to its left and the rest of the choice around it.

Both see the same tokens: `[CLS] context choice` (the decoder's BOS is [CLS]); the encoder's
window ends in `[SEP]`. Chance is 1/4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from twofold.eval import stdlib
from twofold.eval.progress import progress
from twofold.eval.settings import Settings
from twofold.eval.tasks.lm import _target_nll
from twofold.eval.tasks.subject import Subject
from twofold.model import IGNORE_INDEX
from twofold.results import Result

CHOICES = 4
MIN_LINE = 10  # characters of a choice (stripped): long enough to carry information


@dataclass(frozen=True)
class Item:
    context: str
    choices: tuple[str, ...]
    answer: int


def completion_items(count: int, seed: int) -> list[Item]:
    """`count` seeded items from the held-out functions (fewer if there are not enough)."""
    rng = np.random.default_rng(seed)
    functions = stdlib.functions()
    lines = [[line for line in f.code.splitlines()] for f in functions]
    pool = sorted({line for ls in lines for line in ls[1:] if len(line.strip()) >= MIN_LINE})
    items = []
    for index in rng.permutation(len(functions)):
        cuts = [i for i, line in enumerate(lines[index]) if i >= 1 and len(line.strip()) >= MIN_LINE]
        if not cuts:
            continue
        cut = cuts[int(rng.integers(len(cuts)))]
        answer_line = lines[index][cut]
        distractors: list[str] = []
        while len(distractors) < CHOICES - 1:
            line = pool[int(rng.integers(len(pool)))]
            if line != answer_line and line not in distractors and line not in lines[index]:
                distractors.append(line)
        answer = int(rng.integers(CHOICES))
        choices = distractors[:answer] + [answer_line] + distractors[answer:]
        items.append(Item("\n".join(lines[index][:cut]) + "\n", tuple(choices), answer))
        if len(items) == count:
            break
    return items


@torch.no_grad()
def choice_logprobs(subject: Subject, item: Item, max_length: int) -> list[float]:
    """Each choice's log-likelihood (decoder) or pseudo-log-likelihood (encoder) after the context."""
    tokenizer = subject.tokenizer
    special = tokenizer.special
    context, *choices = tokenizer.encode_batch([item.context, *item.choices])
    scores = []
    for choice in choices:
        choice = choice[:max_length // 2]
        left = [special.cls, *context[-(max_length - len(choice) - 2):]]
        if subject.causal:
            ids = left + choice
            labels = [IGNORE_INDEX] * (len(left) - 1) + choice + [IGNORE_INDEX]
            rows, targets = [ids], [labels]
        else:
            ids = left + choice + [special.sep]
            start = len(left)
            rows = [ids[:start + i] + [special.mask] + ids[start + i + 1:] for i in range(len(choice))]
            targets = [[IGNORE_INDEX] * (start + i) + [t] + [IGNORE_INDEX] * (len(ids) - start - i - 1)
                       for i, t in enumerate(choice)]
        losses, _, _ = _target_nll(subject.model, rows, targets, special.pad)
        scores.append(-float(losses.double().sum()))
    return scores


def code_completion(subject: Subject, settings: Settings, count: int = 200) -> list[Result]:
    items = completion_items(count, settings.seed)
    right = []
    with progress(subject.name, "code completion", len(items), "item") as bar:
        for item in items:
            scores = choice_logprobs(subject, item, settings.length)
            normalised = [s / max(len(c), 1) for s, c in zip(scores, item.choices)]
            right.append(int(np.argmax(normalised)) == item.answer)
            bar.update(1)
    accuracy = sum(right) / len(right)
    return [subject.result("code-completion", {"accuracy": accuracy}, settings.seed, len(items),
                           scorer="log-likelihood" if subject.causal else "pseudo-log-likelihood",
                           chance=1 / CHOICES, stderr=float(np.sqrt(accuracy * (1 - accuracy) / len(items))))]
