"""`BatchLoader`: the training loop's source of batches, resumable and written down.

`loader.batch(step)` is a pure function of (store fingerprint, mixture, seed, seq_len,
layout, batch schedule, step) for the rank; iterating the loader yields `batch(step)`,
`batch(step + 1)`, … (built in DataLoader worker processes when `num_workers > 0`, which
changes nothing but speed), and appends each yielded batch to the order log of the run.
The encoder and the decoder of a pair use two loaders that differ only in `objective`: their
sequences are the same tokens, which the per-step hashes in their order logs show.

    loader = BatchLoader(["stores/en"], Mixture(temperature=0.7), seq_len=1024,
                         batch_size=BatchSchedule(4608, 768, 50e9), objective="mlm", seed=21,
                         rank=rank, world_size=world, run_dir="runs/enc")
    loader.load_state_dict(checkpoint["data"])  # on resume; refuses another corpus
    for batch in loader:                          # batch.step == loader.step - 1
        ...
        checkpoint["data"] = loader.state_dict()
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from twofold.data.batches import Batch, build_batch
from twofold.data.mixture import Mixture
from twofold.data.objectives import masker_for
from twofold.data.order import BatchSchedule, StepPlan, rank_slice
from twofold.data.orderlog import OrderLog
from twofold.data.sampling import Corpus, SequenceSampler
from twofold.data.store import TokenStore
from twofold.errors import TwofoldError

STATE_FORMAT = "twofold-loader/1"
# State keys that must match on resume (the step and the sequence count are checked apart).
_PINNED = ("fingerprint", "mixture", "seed", "seq_len", "layout", "min_row_tokens", "order")
# Rows of a batch: `packed` windows of seq_len tokens (documents share a row); `documents`:
# one document chunk per row, chunks under `min_row_tokens` dropped, as Ettin's published runs
# (`sequence_packing: false`); `document`: the same keeping every chunk.
LAYOUTS = ("packed", "documents", "document")
MIN_ROW_TOKENS = 128  # Ettin's published chunking drops shorter chunks


@dataclass(frozen=True)
class DataSpec:
    """What the batches of one training phase are made of. A recipe builds one per phase;
    the trainer hands it to the loader (`BatchLoader.from_spec`) and to the held-out set."""

    mixture: Mixture
    seq_len: int
    batch: BatchSchedule
    mask_rate: float  # MLM only
    seed: int
    layout: str = "packed"
    min_row_tokens: int = MIN_ROW_TOKENS  # `documents` layout only


class BatchLoader:
    total_steps: int | None = None  # endless; a replayed order (`twofold.data.replay`) ends

    @classmethod
    def from_spec(cls, stores: Sequence[TokenStore | str | Path], spec: DataSpec, **how) -> BatchLoader:
        """A loader for `spec`; `how` are the other keywords (objective, rank, world_size, …)."""
        return cls(stores, spec.mixture, seq_len=spec.seq_len, batch_size=spec.batch, seed=spec.seed,
                   mask_rate=spec.mask_rate, layout=spec.layout, min_row_tokens=spec.min_row_tokens, **how)

    def __init__(self, stores: Sequence[TokenStore | str | Path], mixture: Mixture, *,
                 seq_len: int, batch_size: int | BatchSchedule, objective: str = "mlm",
                 seed: int = 21, rank: int = 0, world_size: int = 1,
                 layout: str = "packed", mask_rate: float = 0.3,
                 num_workers: int = 0, run_dir: str | Path | None = None,
                 model_vocab_size: int | None = None, min_row_tokens: int = MIN_ROW_TOKENS):
        self.corpus = Corpus([s if isinstance(s, TokenStore) else TokenStore(s) for s in stores])
        if model_vocab_size is not None and self.corpus.vocab_size > model_vocab_size:
            raise TwofoldError(
                f"model config: vocab_size {model_vocab_size} is smaller than the stores' tokenizer "
                f"({self.corpus.vocab_size} tokens); set vocab_size >= {self.corpus.vocab_size}"
            )
        self.mixture = mixture
        self.probabilities = mixture.probabilities(self.corpus.group_tokens)
        if layout not in LAYOUTS:
            raise TwofoldError(f"data: layout {layout!r} is unknown; use one of {', '.join(LAYOUTS)}")
        self.seed, self.seq_len, self.layout = seed, seq_len, layout
        self.min_row_tokens = min_row_tokens if layout == "documents" else None
        self.objective, self.mask_rate = objective, mask_rate
        self.rank, self.world_size = rank, world_size
        rank_slice(world_size, rank, world_size)  # validates rank / world size early
        self.sampler = SequenceSampler(self.corpus, self.probabilities, seed, seq_len,
                                       "packed" if layout == "packed" else "document", self.min_row_tokens or 0)
        self.steps = StepPlan(batch_size, seq_len)
        self.masker = masker_for(objective, mask_rate, self.corpus.vocab_size, self.corpus.special_ids)
        if num_workers < 0:
            raise TwofoldError(f"data: num_workers {num_workers} is negative; use 0 (build batches in the "
                               "training process) or more")
        self.num_workers = num_workers
        self.step = 0
        # The order log is opened by the first iteration, after `load_state_dict` has accepted
        # (or refused) a resumed state: a refused resume writes nothing.
        self.run_dir = run_dir
        self.order_log: OrderLog | None = None

    def batch(self, step: int) -> Batch:
        """This rank's part of the global batch of `step`."""
        first = self.steps.first_sequence(step)
        start, stop = rank_slice(self.steps.size(step), self.rank, self.world_size)
        picked = [self.sampler.sequence(k) for k in range(first + start, first + stop)]
        batch = build_batch(self.corpus, [segments for _, segments in picked], step=step,
                            rank=self.rank, first_sequence=first + start, seed=self.seed,
                            masker=self.masker, groups=[group for group, _ in picked])
        batch.step_tokens = self.step_tokens(step)
        return batch

    def step_tokens(self, step: int) -> int:
        """Real tokens in the global batch of `step` (all ranks): sequences × seq_len when packed;
        with a row per document chunk, the sum of the rows' lengths (so it varies by step)."""
        size = self.steps.size(step)
        if self.layout == "packed":
            return size * self.seq_len
        first = self.steps.first_sequence(step)
        return sum(end - begin for k in range(first, first + size)
                   for _, _, begin, end in self.sampler.sequence(k)[1])

    def __iter__(self) -> Iterator[Batch]:
        if self.run_dir is not None and self.order_log is None:
            self.order_log = OrderLog(self.run_dir, self.rank, self.describe())
        steps = itertools.count(self.step) if self.total_steps is None else range(self.step, self.total_steps)
        if self.num_workers > 0:
            batches = iter(torch.utils.data.DataLoader(
                _Steps(self), batch_size=None, sampler=steps, num_workers=self.num_workers,
                collate_fn=_identity, prefetch_factor=2))
        else:
            batches = map(self.batch, steps)
        for batch in batches:
            if self.order_log is not None:
                self.order_log.write(batch)
            self.step = batch.step + 1
            yield batch

    def state_dict(self) -> dict:
        return {**self.describe(), "format": STATE_FORMAT, "step": self.step,
                "sequences_before_step": self.steps.first_sequence(self.step)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != STATE_FORMAT:
            raise TwofoldError(f"data loader state: format {state.get('format')!r} is not {STATE_FORMAT!r}")
        mine = self.describe()
        for key in _PINNED:
            if state.get(key) != mine.get(key):
                what = "token store" if key == "fingerprint" else key
                raise TwofoldError(
                    f"data loader state: {what} differs from the checkpoint's ({key} "
                    f"{state.get(key)!r} vs {mine.get(key)!r}); resume with the same data settings "
                    "or start a new run"
                )
        step = int(state["step"])
        if self.steps.first_sequence(step) != state["sequences_before_step"]:
            raise TwofoldError(
                f"data loader state: the batch schedule gives {self.steps.first_sequence(step)} "
                f"sequences before step {step}, the checkpoint {state['sequences_before_step']}; "
                "resume with the same batch-size schedule"
            )
        self.step = step

    def __getstate__(self) -> dict:  # DataLoader workers never write the log
        return {**self.__dict__, "order_log": None}

    def describe(self) -> dict:
        """What defines the order (and, for show-batch, how to rebuild any batch)."""
        return {
            "fingerprint": self.corpus.fingerprint,
            "stores": [str(s.path.resolve()) for s in self.corpus.stores],
            "mixture": self.mixture.to_dict(),
            "probabilities": self.probabilities,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "layout": self.layout,
            **({"min_row_tokens": self.min_row_tokens} if self.min_row_tokens is not None else {}),
            "objective": self.objective,
            "mask_rate": self.mask_rate,
            "world_size": self.world_size,
        }


class _OrderSteps:
    """The step plan of a replayed order: its steps' sizes as the order gives them."""

    def __init__(self, order):
        self.order = order

    def size(self, step: int) -> int:
        return int(self.order.sizes[step])

    def first_sequence(self, step: int) -> int:
        return int(self.order.starts[min(step, len(self.order))])


class OrderLoader(BatchLoader):
    """A phase's loader whose step s is step s of a published order (and which ends with it)."""

    def __init__(self, order, stores, spec: DataSpec, **how):
        """`order`: a `twofold.data.replay.PublishedOrder`."""
        BatchLoader.__init__(self, stores, spec.mixture, seq_len=spec.seq_len, batch_size=spec.batch,
                             seed=spec.seed, mask_rate=spec.mask_rate, **how)
        self.order = order
        self.steps = _OrderSteps(order)
        self.total_steps = len(order)

    def batch(self, step: int) -> Batch:
        return self.order.batch(self.corpus, step, self.rank, self.world_size, seed=self.seed, masker=self.masker)

    def step_tokens(self, step: int) -> int:
        return sum(len(ids) for _, ids in self.order.rows(step))

    def describe(self) -> dict:
        return {**super().describe(), "order": self.order.describe()}


class _Steps(torch.utils.data.Dataset):
    """Map-style view for DataLoader workers: item s is the rank's batch of step s."""

    def __init__(self, loader: BatchLoader):
        self.loader = loader

    def __getitem__(self, step: int) -> Batch:
        return self.loader.batch(step)


def _identity(batch: Batch) -> Batch:
    return batch
