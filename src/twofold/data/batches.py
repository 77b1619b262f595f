"""`Batch`: one rank's micro-batch in the packed layout the model consumes.

All real tokens of the rank's sequences are concatenated into 1-D `input_ids`. Each document
segment is its own attention sequence in `cu_seqlens` (attention never crosses documents),
with `position_ids` restarting at 0. `sequence_offsets` marks the rows of `seq_len` tokens
that the segments were packed into. `to_padded()` gives the padded layout: one row per
document segment, so padded attention sees exactly what packed attention sees.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from twofold.data.objectives import IGNORE_INDEX, Masker, causal_labels
from twofold.data.sampling import STREAM_MASK, Corpus, Segment, rng
from twofold.data.store import TOKENS
from twofold.errors import TwofoldError


@dataclass
class Batch:
    input_ids: torch.Tensor  # int64 [num_tokens]
    labels: torch.Tensor  # int64 [num_tokens], IGNORE_INDEX where nothing is predicted
    position_ids: torch.Tensor  # int64 [num_tokens], 0 at the start of every segment
    cu_seqlens: torch.Tensor  # int32 [num_segments + 1]
    max_seqlen: int
    sequence_offsets: torch.Tensor  # int32 [num_sequences + 1], token offsets of the rows
    step: int
    rank: int
    first_sequence: int  # global index of this rank's first sequence
    segments: list[list[Segment]] = field(default_factory=list)  # per sequence: (store, doc, begin, end)
    groups: list[str] = field(default_factory=list)  # per sequence
    pad_id: int = 0
    token_hash: str = ""  # of the rank's tokens before masking: equal for encoder and decoder
    target_index: torch.Tensor | None = None  # int64 [T]: tokens with a label (padded: 0)
    target_labels: torch.Tensor | None = None  # int64 [T]: their labels (padded: IGNORE_INDEX)
    step_tokens: int = 0  # real tokens of the step's global batch (every rank's part), set by the loader

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.numel())

    @property
    def num_sequences(self) -> int:
        return len(self.sequence_offsets) - 1

    @property
    def num_targets(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """On `device`; with `non_blocking` the host tensors are pinned first, so the copies
        overlap with the device's work instead of waiting for it."""
        def move(t):
            if t is None:
                return None
            if non_blocking and t.device.type == "cpu" and torch.device(device).type == "cuda":
                t = t.pin_memory()
            return t.to(device, non_blocking=non_blocking)
        return replace(self, input_ids=move(self.input_ids), labels=move(self.labels),
                       position_ids=move(self.position_ids), cu_seqlens=move(self.cu_seqlens),
                       sequence_offsets=move(self.sequence_offsets), target_index=move(self.target_index),
                       target_labels=move(self.target_labels))

    def with_targets(self, tokens: int | None = None, targets: int | None = None,
                     max_seqlen: int | None = None) -> Batch:
        """The labelled rows as `target_index`/`target_labels`; with `tokens`/`targets`, padded to
        exactly that many tokens (extra sequences of at most `max_seqlen` pad tokens, no label) and
        target rows, and `max_seqlen` set to the bound. Host tensors only."""
        labels = self.labels.numpy()
        index = np.flatnonzero(labels != IGNORE_INDEX)
        n, pad_tokens = self.num_tokens, (tokens or self.num_tokens) - self.num_tokens
        pad_targets = (targets or len(index)) - len(index)
        if pad_tokens < 0 or pad_targets < 0:
            raise ValueError(f"a micro-batch of {n} tokens and {len(index)} targets does not fit "
                             f"{tokens} tokens and {targets} targets")
        bound = max_seqlen or self.max_seqlen
        if bound < self.max_seqlen:
            raise ValueError(f"max_seqlen {bound} is below the batch's longest sequence ({self.max_seqlen})")
        batch = replace(self, target_index=torch.from_numpy(np.concatenate([index, np.zeros(pad_targets, np.int64)])),
                        target_labels=torch.from_numpy(np.concatenate(
                            [labels[index], np.full(pad_targets, IGNORE_INDEX, np.int64)])),
                        max_seqlen=bound)
        if not pad_tokens:
            return batch
        pieces = [bound] * (pad_tokens // bound) + ([pad_tokens % bound] if pad_tokens % bound else [])
        ends = n + np.cumsum(pieces)
        positions = np.concatenate([np.arange(size, dtype=np.int64) for size in pieces])
        return replace(
            batch, input_ids=torch.cat([self.input_ids, torch.full((pad_tokens,), self.pad_id, dtype=torch.int64)]),
            labels=torch.cat([self.labels, torch.full((pad_tokens,), IGNORE_INDEX, dtype=torch.int64)]),
            position_ids=torch.cat([self.position_ids, torch.from_numpy(positions)]),
            cu_seqlens=torch.cat([self.cu_seqlens, torch.from_numpy(ends.astype(np.int32))]))

    def split(self, max_sequences: int) -> list[Batch]:
        """Micro-batches of at most `max_sequences` rows (for gradient accumulation)."""
        offsets = self.sequence_offsets.tolist()
        bounds = self.cu_seqlens.tolist()
        parts = []
        for first in range(0, self.num_sequences, max_sequences):
            last = min(first + max_sequences, self.num_sequences)
            start, stop = offsets[first], offsets[last]
            s0, s1 = bounds.index(start), bounds.index(stop)
            cu_seqlens = self.cu_seqlens[s0:s1 + 1] - start
            parts.append(replace(
                self, input_ids=self.input_ids[start:stop], labels=self.labels[start:stop],
                position_ids=self.position_ids[start:stop], cu_seqlens=cu_seqlens,
                max_seqlen=int((cu_seqlens[1:] - cu_seqlens[:-1]).max()),
                sequence_offsets=self.sequence_offsets[first:last + 1] - start,
                first_sequence=self.first_sequence + first, segments=self.segments[first:last],
                groups=self.groups[first:last]))
        return parts

    def to_padded(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids [S, T], attention_mask [S, T], labels [S, T]) with one row per segment."""
        lengths = (self.cu_seqlens[1:] - self.cu_seqlens[:-1]).long().cpu()
        rows, width = len(lengths), int(lengths.max()) if len(lengths) else 0
        mask = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
        input_ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        labels = torch.full((rows, width), IGNORE_INDEX, dtype=torch.long)
        input_ids[mask] = self.input_ids.cpu()
        labels[mask] = self.labels.cpu()
        device = self.input_ids.device
        return input_ids.to(device), mask.long().to(device), labels.to(device)


def target_capacity(tokens: int, objective: str, mask_rate: float) -> int:
    """Target rows a compiled step reserves for `tokens` tokens: every token for CLM; for MLM
    (each token chosen with probability `mask_rate`) the mean plus six standard deviations,
    rounded up to 64 — a micro-batch exceeds it about once in 10^9."""
    if objective == "clm":
        return tokens
    spread = 6 * math.sqrt(tokens * mask_rate * (1 - mask_rate))
    return min(tokens, -(-math.ceil(tokens * mask_rate + spread) // 64) * 64)


def pack(pieces: list[list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Token arrays per segment per sequence → (ids, cu_seqlens, position_ids, sequence_offsets)."""
    flat = [piece for sequence in pieces for piece in sequence]
    lengths = np.fromiter((len(p) for p in flat), np.int64, len(flat))
    cu_seqlens = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    ids = np.concatenate(flat) if flat else np.zeros(0, np.int64)
    positions = np.arange(len(ids), dtype=np.int64) - np.repeat(cu_seqlens[:-1].astype(np.int64), lengths)
    per_sequence = np.fromiter((sum(len(p) for p in s) for s in pieces), np.int64, len(pieces))
    sequence_offsets = np.concatenate([[0], np.cumsum(per_sequence)]).astype(np.int32)
    return ids, cu_seqlens, positions, sequence_offsets


def build_batch(corpus: Corpus, sequences: list[list[Segment]], *, step: int, rank: int,
                first_sequence: int, seed: int, masker: Masker | None,
                groups: list[str] | None = None, pieces: list[list[np.ndarray]] | None = None) -> Batch:
    """Assemble the tokens of `sequences` and apply the objective (MLM if `masker`, else CLM).
    `pieces`: the segments' tokens when they come from elsewhere than the corpus (a replayed order).

    The MLM random stream of sequence j is keyed by (seed, step, global index), so the same
    sequence is masked the same way whichever rank or worker builds it.
    """
    if pieces is None:
        pieces = [[corpus.virtual_tokens(segment) for segment in sequence] for sequence in sequences]
    ids, cu_seqlens, positions, sequence_offsets = pack(pieces)
    if len(ids) and int(ids.max()) >= corpus.vocab_size:  # before any model sees it
        _refuse_out_of_vocabulary(corpus, sequences, pieces)
    token_hash = hashlib.sha256(ids.tobytes() + cu_seqlens.tobytes()).hexdigest()[:16]
    if masker is None:
        inputs, labels = ids, causal_labels(ids, cu_seqlens)
    else:
        inputs, labels = ids.copy(), np.empty_like(ids)
        for j in range(len(sequences)):
            start, stop = sequence_offsets[j], sequence_offsets[j + 1]
            stream = rng(seed, STREAM_MASK, step, first_sequence + j)
            inputs[start:stop], labels[start:stop] = masker(ids[start:stop], stream)
    lengths = np.diff(cu_seqlens)
    return Batch(
        input_ids=torch.from_numpy(inputs), labels=torch.from_numpy(labels),
        position_ids=torch.from_numpy(positions), cu_seqlens=torch.from_numpy(cu_seqlens),
        max_seqlen=int(lengths.max()) if len(lengths) else 0,
        sequence_offsets=torch.from_numpy(sequence_offsets),
        step=step, rank=rank, first_sequence=first_sequence, segments=sequences,
        groups=list(groups or []), pad_id=corpus.special_ids["pad"], token_hash=token_hash,
    )


def _refuse_out_of_vocabulary(corpus: Corpus, sequences: list[list[Segment]], pieces: list[list[np.ndarray]]):
    for sequence, arrays in zip(sequences, pieces):
        for (store_index, doc, _, _), array in zip(sequence, arrays):
            if len(array) and int(array.max()) >= corpus.vocab_size:
                store = corpus.stores[store_index]
                raise TwofoldError(
                    f"{store.path / TOKENS}: document {doc} holds token id {int(array.max())}, outside the "
                    f"vocabulary of {corpus.vocab_size}; the store is damaged: check it with "
                    f"`twofold data info --verify {store.path}` and prepare it again")
