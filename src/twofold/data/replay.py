"""Replay a published batch order: each optimizer step trains on exactly the rows it lists.

jhu-clsp/ettin-data-order publishes the batches of every step of every phase as Parquet files
with columns `input_ids` (one row: the token ids of one sequence, framed as the model saw it)
and `step`. `PublishedOrder(folder)` indexes such files (sorted by path, rows in file order,
each step's rows together, steps consecutive) reading only the `step` column, and `check`
reads every row once to refuse, before a run writes anything, ids outside the vocabulary and
rows longer than the phase's sequences. `twofold.data.loader.OrderLoader` is the loader of a
phase that replays it: step s of the phase is the order's s-th step, each row one sequence, and ranks
split a step's rows as the loader splits a batch (`rank_slice`). A row is logged as the
segment `(file, row, 0, length)`, so `show-batch` rebuilds it from the order.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from twofold.data.batches import Batch, build_batch
from twofold.data.order import rank_slice
from twofold.data.sampling import Corpus
from twofold.errors import TwofoldError

IDS, STEP = "input_ids", "step"
ORDER_GROUP = "order"  # the group every replayed row is logged under


class PublishedOrder:
    def __init__(self, folder: str | Path):
        import pyarrow.parquet as pq

        self.folder = Path(folder)
        self.files = sorted(self.folder.rglob("*.parquet")) if self.folder.is_dir() else []
        if not self.files:
            raise TwofoldError(f"--order {self.folder}: no .parquet files there; give the folder of a published "
                               f"batch order (columns {IDS}, {STEP})")
        self._parquet = [_open(file) for file in self.files]
        runs: list[tuple[int, int, int, int]] = []  # (step, file, first row, rows), in order
        for index, (file, parquet) in enumerate(zip(self.files, self._parquet)):
            missing = {IDS, STEP} - set(parquet.schema_arrow.names)
            if missing:
                raise TwofoldError(f"--order {file}: no column {sorted(missing)[0]!r} (columns: "
                                   f"{', '.join(parquet.schema_arrow.names)}); a batch order has {IDS} and {STEP}")
            steps = pq.read_table(file, columns=[STEP]).column(STEP).to_numpy()
            starts = np.flatnonzero(np.diff(steps, prepend=np.nan))
            ends = np.append(starts[1:], len(steps))
            runs += [(int(steps[a]), index, int(a), int(b - a)) for a, b in zip(starts, ends)]
        self.parts: list[list[tuple[int, int, int]]] = []  # per step: (file, first row, rows)
        steps: list[int] = []
        for step, index, first, count in runs:
            if steps and step == steps[-1]:  # a step continued in the next file
                self.parts[-1].append((index, first, count))
                continue
            if steps and step != steps[-1] + 1:
                problem = (f"step {steps[-1] + 1} is missing" if step > steps[-1] + 1 else
                           f"the rows of step {step} are not together (or the steps are out of order)")
                raise TwofoldError(f"--order {self.files[index]}: {problem}; a batch order lists every step once, "
                                   "in order: give the complete order of the phase")
            steps.append(step)
            self.parts.append([(index, first, count)])
        self.first_step = steps[0]
        self.sizes = np.array([sum(count for _, _, count in part) for part in self.parts], np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])
        self._groups: OrderedDict[tuple[int, int], list] = OrderedDict()  # the last row groups read
        identity = "|".join(f"{f.relative_to(self.folder)}:{f.stat().st_size}" for f in self.files)
        self.fingerprint = hashlib.sha256(identity.encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.parts)

    def __getstate__(self) -> dict:  # DataLoader workers reopen the files
        return {**self.__dict__, "_parquet": None, "_groups": OrderedDict()}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._parquet = [_open(file) for file in self.files]

    def check(self, vocab_size: int, seq_len: int) -> None:
        """Every id inside the vocabulary and every row at most `seq_len` long (one pass)."""
        import pyarrow.compute as pc

        for file, parquet in zip(self.files, self._parquet):
            for batch in parquet.iter_batches(columns=[IDS, STEP]):
                ids, steps = batch.column(IDS), batch.column(STEP)
                flat = pc.list_flatten(ids)
                if len(flat):
                    low, high = pc.min_max(flat).values()
                    if low.as_py() < 0 or high.as_py() >= vocab_size:
                        bad = high.as_py() if high.as_py() >= vocab_size else low.as_py()
                        row = next(i for i, row in enumerate(ids.to_pylist()) if bad in row)
                        raise TwofoldError(
                            f"--order {file}: a row of step {steps[row].as_py()} holds token id {bad}, outside the "
                            f"vocabulary of {vocab_size}; train with stores prepared with the tokenizer the order "
                            "was made with")
                lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False)
                if len(lengths) and lengths.max() > seq_len:
                    row = int(lengths.argmax())
                    raise TwofoldError(
                        f"--order {file}: a row of step {steps[row].as_py()} has {int(lengths[row])} tokens, more "
                        f"than the phase's seq_len {seq_len}; replay it in a phase of that length (--set "
                        "phase.NAME.seq_len=…)")

    def rows(self, step: int) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
        """The rows of the order's `step`-th step (0-based): (segment, token ids) each."""
        rows = []
        for index, first, count in self.parts[step]:
            for row in range(first, first + count):
                ids = self._row(index, row)
                rows.append(((index, row, 0, len(ids)), ids))
        return rows

    def _row(self, index: int, row: int) -> np.ndarray:
        parquet = self._parquet[index]
        group, offset = 0, row
        while offset >= parquet.metadata.row_group(group).num_rows:
            offset -= parquet.metadata.row_group(group).num_rows
            group += 1
        key = (index, group)
        if key not in self._groups:
            column = parquet.read_row_group(group, columns=[IDS]).column(IDS)
            self._groups[key] = [np.asarray(ids, np.int64) for ids in column.to_pylist()]
            if len(self._groups) > 2:
                self._groups.popitem(last=False)
        return self._groups[key][offset]

    def describe(self) -> dict:
        return {"path": str(self.folder.resolve()), "fingerprint": self.fingerprint, "steps": len(self),
                "first_step": self.first_step, "files": [str(f.relative_to(self.folder)) for f in self.files]}

    def batch(self, corpus: Corpus, step: int, rank: int, world_size: int, **build) -> Batch:
        """Rank's part of step `step`'s rows as a `Batch` (each row one sequence)."""
        rows = self.rows(step)
        start, stop = rank_slice(len(rows), rank, world_size)
        mine = rows[start:stop]
        batch = build_batch(corpus, [[segment] for segment, _ in mine], step=step, rank=rank,
                            first_sequence=int(self.starts[step]) + start, groups=[ORDER_GROUP] * len(mine),
                            pieces=[[ids] for _, ids in mine], **build)
        batch.step_tokens = sum(len(ids) for _, ids in rows)
        return batch


def _open(file: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(file)
    except Exception as error:  # pyarrow raises ArrowInvalid and friends
        raise TwofoldError(f"--order {file}: not a readable Parquet file ({error})") from None
