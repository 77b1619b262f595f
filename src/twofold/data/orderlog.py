"""The batch-order log of a run: which documents made each sequence of each step.

`RUN_DIR/data_order/loader.json` holds what defines the order (stores, fingerprint, mixture,
seed, seq_len, objective, …); `RUN_DIR/data_order/rank{R}.jsonl` gets one line per step the
rank consumed:

    {"step": 7, "rank": 0, "first_sequence": 56, "hash": "…",
     "sequences": [[[store, doc, begin, end], …], …]}

Segments are positions in `[CLS] document [SEP]` of document `doc` of store `store` (see
`sampling`), so the log is small (no token ids) yet names every token. `hash` covers the
tokens before masking: an encoder and a decoder that saw the same data have the same hashes.
After a resume a step may be logged twice; the last line wins (both are equal anyway).
`replay_batch` rebuilds a logged batch exactly from the log and the stores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from twofold.data.batches import Batch, build_batch
from twofold.data.objectives import masker_for
from twofold.data.sampling import Corpus
from twofold.data.store import TokenStore
from twofold.errors import TwofoldError
from twofold.files import atomic_write_text, read_json

LOG_DIR = "data_order"
LOADER_FILE = "loader.json"


class OrderLog:
    def __init__(self, run_dir: str | Path, rank: int, description: dict):
        self.directory = Path(run_dir) / LOG_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        # every rank writes the same content, each through its own temporary file
        atomic_write_text(self.directory / LOADER_FILE, json.dumps(description, indent=2) + "\n")
        self.file = self.directory / f"rank{rank}.jsonl"
        if self.file.exists() and self.file.stat().st_size:
            with open(self.file, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                torn = handle.read(1) != b"\n"  # a crash mid-line
            if torn:
                with open(self.file, "a") as handle:
                    handle.write("\n")

    def write(self, batch: Batch) -> None:
        record = {"step": batch.step, "rank": batch.rank, "first_sequence": batch.first_sequence,
                  "hash": batch.token_hash, "sequences": [[list(s) for s in seq] for seq in batch.segments]}
        with open(self.file, "a") as handle:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")


def read_description(run_dir: str | Path) -> dict:
    file = Path(run_dir) / LOG_DIR / LOADER_FILE
    if not file.is_file():
        raise TwofoldError(f"{file}: not found; RUN_DIR must be a training run that logged its batch order")
    return read_json(file, "the batch order of this phase cannot be read back")


def read_step(run_dir: str | Path, step: int) -> list[dict]:
    """The logged records of `step`, one per rank, in rank order."""
    directory = Path(run_dir) / LOG_DIR
    records: dict[int, dict] = {}
    for file in sorted(directory.glob("rank*.jsonl")):
        with open(file) as handle:
            for line in handle:
                if f'"step":{step},' not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:  # a torn last line after a crash
                    continue
                if record["step"] == step:
                    records[record["rank"]] = record
    if not records:
        raise TwofoldError(f"{directory}: step {step} was not logged; the run consumed steps "
                           f"{_logged_range(directory)}")
    return [records[rank] for rank in sorted(records)]


def replay_batch(run_dir: str | Path, step: int, rank: int | None = None) -> list[Batch]:
    """Rebuild the batches of `step` (every logged rank, or one) exactly as the loader yielded them."""
    description = read_description(run_dir)
    corpus = Corpus([TokenStore(path) for path in description["stores"]])
    if corpus.fingerprint != description["fingerprint"]:
        raise TwofoldError(
            f"{run_dir}: the stores' fingerprint {corpus.fingerprint[:12]} differs from the run's "
            f"{description['fingerprint'][:12]}; the stores were rebuilt or replaced"
        )
    masker = masker_for(description["objective"], description["mask_rate"], corpus.vocab_size,
                        corpus.special_ids)
    order = None
    if "order" in description:  # a replayed published order: its rows come from its files
        from twofold.data.replay import PublishedOrder

        order = PublishedOrder(description["order"]["path"])
        if order.fingerprint != description["order"]["fingerprint"]:
            raise TwofoldError(f"{run_dir}: the order files in {order.folder} changed since the run; put them back")
    batches = []
    for record in read_step(run_dir, step):
        if rank is not None and record["rank"] != rank:
            continue
        if order is not None:
            batches.append(order.batch(corpus, step, record["rank"], description["world_size"],
                                       seed=description["seed"], masker=masker))
            continue
        sequences = [[tuple(segment) for segment in sequence] for sequence in record["sequences"]]
        _check_segments(corpus, sequences, run_dir, step)
        groups = [corpus.stores[seq[0][0]].groups[int(corpus.stores[seq[0][0]].doc_groups[seq[0][1]])]
                  for seq in sequences]
        batches.append(build_batch(corpus, sequences, step=step, rank=record["rank"],
                                   first_sequence=record["first_sequence"], seed=description["seed"],
                                   masker=masker, groups=groups))
    if not batches:
        raise TwofoldError(f"{run_dir}: rank {rank} did not log step {step}")
    return batches


def _check_segments(corpus: Corpus, sequences: list, run_dir, step: int) -> None:
    """Every logged segment lies inside the stores (a store replaced by a smaller one would not)."""
    for sequence in sequences:
        for store_index, doc, begin, end in sequence:
            store = corpus.stores[store_index] if 0 <= store_index < len(corpus.stores) else None
            fits = store is not None and 0 <= doc < store.num_documents and 0 <= begin <= end and \
                end <= int(store.offsets[doc + 1] - store.offsets[doc]) + 2
            if not fits:
                where = f"store {store_index}" if store is None else str(store.path)
                raise TwofoldError(f"{run_dir}: step {step} used document {doc} [{begin}:{end}] of {where}, which "
                                   "the store does not hold; the store changed since the run (rebuilt or "
                                   "replaced): put the run's store back")


def _logged_range(directory: Path) -> str:
    steps = []
    for file in directory.glob("rank*.jsonl"):
        for line in open(file):
            if line.startswith('{"step":'):
                steps.append(int(line[8:line.index(",")]))
    return f"{min(steps)}..{max(steps)}" if steps else "none"
