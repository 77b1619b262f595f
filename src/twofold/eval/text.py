"""Turning texts into model inputs as the exported tokenizers frame them.

The encoder sees `[CLS] text [SEP]` and pairs `[CLS] a [SEP] b [SEP]`, like ModernBERT's
tokenizer; the decoder BOS only, `[CLS] text` and `[CLS] a [SEP] b` (its BOS is CLS), like the
decoder's exported tokenizer (`twofold.data.tokenizer.member_template`) — so twofold's scores
and those of transformers, Sentence Transformers or lm-eval on an export see the same tokens.
Batches are sorted by length so that little is padded, and results are put back in the
caller's order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from twofold.data.tokenizer import Tokenizer
from twofold.model.heads import pool

Text = str | tuple[str, ...]


def frame(tokenizer: Tokenizer, texts: Sequence[Text], max_length: int, causal: bool = False) -> list[list[int]]:
    """Token ids with the member's special tokens, each sequence cut to at most `max_length` tokens."""
    cls, sep = tokenizer.special.cls, tokenizer.special.sep
    parts = [(text,) if isinstance(text, str) else tuple(text) for text in texts]
    width = max((len(p) for p in parts), default=1)
    columns = [tokenizer.encode_batch([p[i] if i < len(p) else "" for p in parts]) for i in range(width)]
    sequences = []
    for row, text in enumerate(parts):
        separators = len(text) - 1 if causal else len(text)  # the decoder's last part has no [SEP]
        pieces = _fit([columns[i][row] for i in range(len(text))], max_length - 1 - separators)
        ids = [cls]
        for i, piece in enumerate(pieces):
            ids += piece if causal and i == len(pieces) - 1 else piece + [sep]
        sequences.append(ids)
    return sequences


def _fit(pieces: list[list[int]], room: int) -> list[list[int]]:
    """Cut the longest parts first: each keeps min(its length, cap), the largest cap that fits."""
    lengths = sorted(len(p) for p in pieces)
    used = 0
    for i, length in enumerate(lengths):
        left = len(lengths) - i
        if used + length * left > room:
            cap = max(room - used, 0) // left
            return [p[:cap] for p in pieces]
        used += length
    return pieces


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def pad(sequences: Sequence[Sequence[int]], pad_id: int,
        device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids [B, T], attention_mask [B, T]) right-padded, on `device`."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, :len(seq)] = 1
    return ids.to(device), mask.to(device)


def batches_by_length(sequences: Sequence[Sequence[int]], batch_size: int) -> Iterator[list[int]]:
    """Indices of `sequences` in batches of similar length."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


@torch.no_grad()
def embed_texts(model, tokenizer: Tokenizer, texts: Sequence[Text], poolings: Sequence[str],
                max_length: int, batch_size: int, progress=None) -> dict[str, torch.Tensor]:
    """{pooling: [len(texts), H]} from one pass over the texts (no head, not normalised)."""
    sequences = frame(tokenizer, texts, max_length, model.config.causal)
    out = {p: torch.empty(len(texts), model.config.hidden_size) for p in poolings}
    for batch in batches_by_length(sequences, batch_size):
        ids, mask = pad([sequences[i] for i in batch], tokenizer.special.pad, device_of(model))
        hidden = model.encode(ids, mask)[mask.bool()]  # packed [N, H], row-major
        cu_seqlens = torch.nn.functional.pad(mask.sum(1).cumsum(0), (1, 0))
        for p in poolings:
            out[p][batch] = pool(hidden, cu_seqlens, p).float().cpu()
        if progress is not None:
            progress.update(len(batch))
    return out
