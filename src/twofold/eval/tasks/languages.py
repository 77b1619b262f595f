"""Held-out MLM accuracy per language: how well encoders predict masked tokens of each group
(language) of a held-out token store, side by side (e.g. mmBERT's decay variants and their merge).

For each group, its first `sequences` chunks of at most `seq_len` tokens (documents framed
`[CLS] … [SEP]` in the seeded epoch order of the data layer, `layout="document"`) are the
evaluation set — the same for every model. Each regular token is masked with probability
`rate` (every chosen token becomes [MASK]: no 80/10/10, which would score unchanged tokens),
with one seeded draw per sequence, again the same for every model. Accuracy = argmax equals
the original token, over the masked positions of the group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from twofold.data.sampling import Corpus, SequenceSampler, name_key, rng
from twofold.data.store import TokenStore
from twofold.errors import TwofoldError
from twofold.eval.text import device_of, pad
from twofold.files import save_figure
from twofold.model import IGNORE_INDEX

_STREAM = 41  # the masks' random stream, apart from the data layer's


def masked_sets(stores: Sequence[str | Path], seq_len: int = 256, sequences: int = 32, rate: float = 0.15,
                seed: int = 0) -> dict[str, tuple[list[list[int]], list[list[int]]]]:
    """group → (inputs, labels) of its masked evaluation sequences."""
    corpus = Corpus([TokenStore(s) for s in stores])
    special = corpus.special_ids
    specials = np.asarray(sorted({special[k] for k in ("cls", "sep", "pad", "mask", "unk") if k in special}))
    result = {}
    for group in sorted(corpus.group_tokens):
        if corpus.group_tokens[group] == 0:
            continue
        sampler = SequenceSampler(corpus, {group: 1.0}, seed, seq_len, layout="document")
        count = min(sequences, sampler.streams[0].epoch_units)  # never the same chunk twice
        inputs, labels = [], []
        for k in range(count):
            ids = np.concatenate([corpus.virtual_tokens(s) for s in sampler.sequence(k)[1]])
            regular = ~np.isin(ids, specials)
            chosen = regular & (rng(seed, _STREAM, name_key(group), k).random(len(ids)) < rate)
            if not chosen.any() and regular.any():
                chosen[np.flatnonzero(regular)[0]] = True
            inputs.append(np.where(chosen, special["mask"], ids).tolist())
            labels.append(np.where(chosen, ids, IGNORE_INDEX).tolist())
        result[group] = (inputs, labels)
    if not result:
        raise TwofoldError(f"{', '.join(map(str, stores))}: no tokens to evaluate")
    return result


@torch.no_grad()
def mlm_accuracy(model, sets: Mapping[str, tuple[list, list]], pad_id: int, batch_size: int = 16) -> dict[str, dict]:
    """group → {"accuracy", "masked"} of `model` on `masked_sets`."""
    model.eval()
    device = device_of(model)
    scores = {}
    for group, (inputs, labels) in sets.items():
        right = total = 0
        for start in range(0, len(inputs), batch_size):
            ids, mask = pad(inputs[start:start + batch_size], pad_id, device)
            target, _ = pad(labels[start:start + batch_size], IGNORE_INDEX, device)
            target = target.masked_fill(mask == 0, IGNORE_INDEX)
            logits = model(ids, mask, labels=target).logits  # the labelled positions, row-major
            gold = target[target != IGNORE_INDEX]
            right += int((logits.argmax(-1) == gold).sum())
            total += int(gold.numel())
        scores[group] = {"accuracy": right / max(total, 1), "masked": total}
    return scores


def format_table(scores: Mapping[str, Mapping[str, dict]], group_tokens: Mapping[str, int] | None = None) -> str:
    """Languages as rows (largest first when token counts are given), models as columns, a mean row."""
    models = list(scores)
    groups = sorted(next(iter(scores.values())))
    if group_tokens:
        groups.sort(key=lambda g: -group_tokens.get(g, 0))
    width = max(len("language"), *(len(g) for g in groups))
    columns = [max(10, len(m)) for m in models]
    lines = [f"{'language':<{width}} {'masked':>7} " + " ".join(f"{m:>{c}}" for m, c in zip(models, columns))]
    for group in groups:
        cells = " ".join(f"{scores[m][group]['accuracy']:>{c}.3f}" for m, c in zip(models, columns))
        lines.append(f"{group:<{width}} {scores[models[0]][group]['masked']:>7} {cells}")
    means = " ".join(f"{np.mean([scores[m][g]['accuracy'] for g in groups]):>{c}.3f}" for m, c in zip(models, columns))
    lines.append(f"{'mean':<{width}} {'':>7} {means}")
    return "\n".join(lines)


def plot(scores: Mapping[str, Mapping[str, dict]], path: str | Path, groups_order: Sequence[str] | None = None,
         title: str = "held-out MLM accuracy per language") -> Path:
    """Grouped bars: one group of bars per language, one bar per model."""
    from matplotlib.figure import Figure

    models = list(scores)
    groups = list(groups_order) if groups_order else sorted(next(iter(scores.values())))
    figure = Figure(figsize=(min(40.0, max(8.0, 0.35 * len(groups) * max(1, len(models) / 2) + 2)), 5))
    axes = figure.subplots()
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        axes.bar(np.arange(len(groups)) + (i - (len(models) - 1) / 2) * width,
                 [scores[model][g]["accuracy"] for g in groups], width, label=model)
    axes.set_xticks(range(len(groups)), groups, rotation=90, fontsize=7)
    axes.set_ylabel("MLM accuracy (15% masked)")
    axes.set_xlim(-0.6, len(groups) - 0.4)
    axes.legend(fontsize=8)
    axes.set_title(title)
    figure.tight_layout()
    return save_figure(figure, path, dpi=100)
