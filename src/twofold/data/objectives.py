"""Objectives: the labels of a sequence (and, for MLM, its corrupted input).

Labels are aligned with the input: the model computes cross-entropy at position i against
`labels[i]` without shifting, for both objectives; -100 means "nothing to predict here".
- MLM: each regular token is chosen with probability `rate`; of the chosen, 80% become
  [MASK], 10% a random regular token, 10% stay; labels hold the original token at chosen
  positions. Special tokens are never chosen. The random stream is keyed by the caller
  (the loader uses (seed, step, global sequence index)), so masks do not depend on workers
  or ranks.
- CLM: `labels[i]` is the next token of the same document segment, -100 at the last token
  of each segment, so nothing is predicted across a document boundary.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from twofold.errors import TwofoldError

IGNORE_INDEX = -100
OBJECTIVES = ("mlm", "clm")


class Masker:
    """MLM corruption with 80/10/10 replacement."""

    def __init__(self, rate: float, vocab_size: int, mask_id: int, special_ids: Sequence[int]):
        if not 0 < rate < 1:
            raise TwofoldError(f"mask rate must be in (0, 1), got {rate}; Ettin uses 0.30 then 0.15")
        self.rate = rate
        self.mask_id = mask_id
        self.special_ids = np.asarray(sorted(set(special_ids)), np.int64)
        self.regular_ids = np.setdiff1d(np.arange(vocab_size, dtype=np.int64), self.special_ids)
        self.is_special = np.zeros(vocab_size, bool)
        self.is_special[self.special_ids] = True

    def __call__(self, ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        draws = rng.random(len(ids))
        action = rng.random(len(ids))
        random_tokens = self.regular_ids[rng.integers(0, len(self.regular_ids), len(ids))]
        chosen = (draws < self.rate) & ~self.is_special[ids]
        labels = np.where(chosen, ids, IGNORE_INDEX)
        inputs = ids.copy()
        inputs[chosen & (action < 0.8)] = self.mask_id
        randomize = chosen & (action >= 0.8) & (action < 0.9)
        inputs[randomize] = random_tokens[randomize]
        return inputs, labels


def masker_for(objective: str, rate: float, vocab_size: int,
               special_ids: dict[str, int]) -> Masker | None:
    """The MLM masker for a store's special ids (cls, sep, pad, mask, unk); None for CLM."""
    if objective not in OBJECTIVES:
        raise TwofoldError(f"objective {objective!r} is unknown; use one of {', '.join(OBJECTIVES)}")
    if objective == "clm":
        return None
    names = ("cls", "sep", "pad", "mask", "unk")
    return Masker(rate, vocab_size, special_ids["mask"], [special_ids[k] for k in names])


def causal_labels(ids: np.ndarray, cu_seqlens: np.ndarray) -> np.ndarray:
    """Next-token labels that stop at every segment end (cu_seqlens: segment offsets)."""
    labels = np.empty_like(ids)
    labels[:-1] = ids[1:]
    labels[-1:] = IGNORE_INDEX
    labels[np.asarray(cu_seqlens[1:], np.int64) - 1] = IGNORE_INDEX
    return labels
