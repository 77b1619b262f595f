"""Sampling: which tokens make global sequence k — a pure function, computed in O(log n).

Every group (e.g. a language) is an endless *stream*: epoch after epoch of its documents in
an order permuted by `rng(seed, group, epoch)`, each document written as `[CLS] tokens [SEP]`
(the decoder's BOS/EOS are the same ids). A sequence is a piece of one group's stream:
- `packed`: the i-th window of `seq_len` tokens of the stream; several documents share a
  window and a document may continue in the next one (its boundaries are kept as segments);
- `document`: the i-th chunk of at most `seq_len` tokens, one document per sequence (a long
  document gives several consecutive chunks). With `min_chunk`, chunks shorter than that
  (a short document, the tail of a long one) are left out of the stream: the rows Ettin's
  published runs trained on (no sequence packing; arXiv 2507.11412).

Global sequences are dealt to groups by `Interleave`: blocks of B sequences in which group g
gets a fixed quota q_g ≈ p_g·B, at positions shuffled by `rng(seed, block)`. So the
instance index of sequence k inside its group is known without replaying the past, and a
loader can jump to any step. A sequence is returned as segments `(store, doc, begin, end)`,
positions in the document *with* its specials: 0 is [CLS], len+1 is [SEP].
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np

from twofold.data.store import TokenStore
from twofold.errors import TwofoldError

LAYOUTS = ("packed", "document")
Segment = tuple[int, int, int, int]  # (store, doc, begin, end)
_MIN_BLOCK, _MAX_BLOCK = 4096, 1 << 22


# First key of every random stream, so that streams of different purposes never coincide.
STREAM_EPOCH, STREAM_INTERLEAVE, STREAM_MASK = 1, 2, 3


def rng(seed: int, *key: int) -> np.random.Generator:
    """An independent random stream for (seed, *key); keys are non-negative integers."""
    return np.random.default_rng([seed, *key])


def name_key(name: str) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


class Corpus:
    """One or more token stores seen as one set of documents grouped by label."""

    def __init__(self, stores: Sequence[TokenStore]):
        if not stores:
            raise TwofoldError("data: no token store given; prepare one with `twofold data prepare`")
        tokenizers = {s.manifest["tokenizer"]["hash"] for s in stores}
        if len(tokenizers) > 1:
            raise TwofoldError(
                f"data: stores {', '.join(str(s.path) for s in stores)} were made with different "
                "tokenizers; prepare them all with the same one"
            )
        self.stores = list(stores)
        self.special_ids = dict(stores[0].special_ids)
        self.vocab_size = max(s.vocab_size for s in stores)
        self.fingerprint = stores[0].fingerprint if len(stores) == 1 else hashlib.sha256(
            "+".join(s.fingerprint for s in stores).encode()).hexdigest()
        self.group_tokens: dict[str, int] = {}
        for store in stores:
            for group, tokens in store.group_tokens().items():
                self.group_tokens[group] = self.group_tokens.get(group, 0) + tokens

    def group_documents(self, group: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(store index, document index, length) of every document of `group`."""
        stores, docs, lengths = [], [], []
        for index, store in enumerate(self.stores):
            if group in store.groups:
                found = store.documents_of(group)
                stores.append(np.full(len(found), index, np.int64))
                docs.append(found.astype(np.int64))
                lengths.append(store.document_lengths()[found])
        return np.concatenate(stores), np.concatenate(docs), np.concatenate(lengths)

    def virtual_tokens(self, segment: Segment) -> np.ndarray:
        """The tokens of a segment of `[CLS] document [SEP]`."""
        store_index, doc, begin, end = segment
        store = self.stores[store_index]
        start, stop = int(store.offsets[doc]), int(store.offsets[doc + 1])
        length = stop - start
        body = store.tokens[start + max(begin - 1, 0):start + min(end - 1, length)]
        head = [self.special_ids["cls"]] if begin == 0 else []
        tail = [self.special_ids["sep"]] if end == length + 2 else []
        return np.concatenate([np.asarray(head, np.int64), body.astype(np.int64),
                               np.asarray(tail, np.int64)])


class GroupStream:
    """The endless, epoch-permuted stream of one group's documents."""

    def __init__(self, corpus: Corpus, group: str, seed: int, seq_len: int, layout: str, min_chunk: int = 0):
        self.stores, self.docs, lengths = corpus.group_documents(group)
        self.sizes = lengths + 2  # with [CLS] and [SEP]
        self.seq_len = seq_len
        self.layout = layout
        # Units per document: tokens when packing, chunks of seq_len otherwise (the last, shorter
        # chunk only if it has `min_chunk` tokens; it is the only chunk that can be short).
        if layout == "packed":
            self.units = self.sizes
        else:
            self.units = self.sizes // seq_len + (self.sizes % seq_len >= max(min_chunk, 1))
        self.epoch_units = int(self.units.sum())
        if self.epoch_units == 0:
            raise TwofoldError(f"data: group {group!r} has no document of at least {min_chunk} tokens "
                               f"(with [CLS] and [SEP]) to make a row of; lower the recipe's min_row_tokens "
                               "or add longer documents")
        self.key = (seed, STREAM_EPOCH, name_key(group))
        self._epochs: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def sequence(self, index: int) -> list[Segment]:
        if self.layout == "packed":
            return self._window(index * self.seq_len, (index + 1) * self.seq_len)
        epoch, unit = divmod(index, self.epoch_units)
        order, prefix = self._epoch(epoch)
        position = int(np.searchsorted(prefix, unit, side="right")) - 1
        chunk = unit - int(prefix[position])
        doc = order[position]
        begin = chunk * self.seq_len
        return [(int(self.stores[doc]), int(self.docs[doc]), begin,
                 min(begin + self.seq_len, int(self.sizes[doc])))]

    def _window(self, start: int, stop: int) -> list[Segment]:
        segments = []
        while start < stop:
            epoch, offset = divmod(start, self.epoch_units)
            order, prefix = self._epoch(epoch)
            position = int(np.searchsorted(prefix, offset, side="right")) - 1
            doc = order[position]
            begin = offset - int(prefix[position])
            end = min(int(self.sizes[doc]), begin + stop - start)
            segments.append((int(self.stores[doc]), int(self.docs[doc]), begin, end))
            start += end - begin
        return segments

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Document order of an epoch and the cumulative units before each document."""
        if epoch not in self._epochs:
            order = rng(*self.key, epoch).permutation(len(self.units))
            prefix = np.concatenate([[0], np.cumsum(self.units[order])])
            self._epochs[epoch] = (order, prefix)
            if len(self._epochs) > 2:
                self._epochs.popitem(last=False)
        return self._epochs[epoch]


class Interleave:
    """Deals global sequence indices to groups in proportion to their probabilities."""

    def __init__(self, probabilities: Sequence[float], seed: int):
        p = np.asarray(probabilities, dtype=np.float64)
        block = _MIN_BLOCK
        while p.min() * block < 1 and block < _MAX_BLOCK:
            block *= 2
        self.block = block
        self.quotas = _apportion(p, block)
        self.seed = seed
        self._base = np.repeat(np.arange(len(p)), self.quotas)
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def locate(self, k: int) -> tuple[int, int]:
        """(group index, instance index within the group) of global sequence k."""
        block, position = divmod(k, self.block)
        layout, rank = self._layout(block)
        group = int(layout[position])
        return group, block * int(self.quotas[group]) + int(rank[position])

    def _layout(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        if block not in self._cache:
            layout = self._base[rng(self.seed, STREAM_INTERLEAVE, block).permutation(self.block)]
            order = np.argsort(layout, kind="stable")
            starts = np.concatenate([[0], np.cumsum(self.quotas)[:-1]])
            rank = np.empty(self.block, np.int64)
            rank[order] = np.arange(self.block) - starts[layout[order]]
            self._cache[block] = (layout, rank)
            if len(self._cache) > 2:
                self._cache.popitem(last=False)
        return self._cache[block]


class SequenceSampler:
    """Global sequence k → its segments, for a corpus, mixture probabilities and seed."""

    def __init__(self, corpus: Corpus, probabilities: Mapping[str, float], seed: int,
                 seq_len: int, layout: str = "packed", min_chunk: int = 0):
        if layout not in LAYOUTS:
            raise TwofoldError(f"data: layout {layout!r} is unknown; use one of {', '.join(LAYOUTS)}")
        if seq_len < 3:
            raise TwofoldError(f"data: seq_len {seq_len} is too small: [CLS]/BOS and [SEP]/EOS "
                               "need 2 positions and one token is needed; use seq_len >= 3")
        self.groups = sorted(probabilities)
        self.corpus = corpus
        self.streams = [GroupStream(corpus, g, seed, seq_len, layout, min_chunk) for g in self.groups]
        self.interleave = Interleave([probabilities[g] for g in self.groups], seed)

    def sequence(self, k: int) -> tuple[str, list[Segment]]:
        group, instance = self.interleave.locate(k)
        return self.groups[group], self.streams[group].sequence(instance)


def _apportion(p: np.ndarray, total: int) -> np.ndarray:
    """Integer quotas summing to `total`, closest to p·total, at least 1 for every group."""
    exact = p * total
    quotas = np.maximum(np.floor(exact).astype(np.int64), 1)
    while quotas.sum() < total:
        quotas[int(np.argmax(exact - quotas))] += 1
    while quotas.sum() > total:
        candidates = np.where(quotas > 1, quotas - exact, -np.inf)
        quotas[int(np.argmax(candidates))] -= 1
    return quotas
