"""Data: text → tokens on disk → ordered, packed, masked batches. Never imports the model.

    documents  the `Document` and UTF-8 decoding (a leaf)
    tokenizer  load or train a tokenizer; its special ids
    sources    where documents come from (text, JSONL, Parquet, HF datasets, built-in stdlib)
    stdlib     the built-in offline corpus and its held-out functions
    store      `prepare_store` → memory-mapped token arrays + manifest; `TokenStore`
    mixture    group weights or temperature sampling per phase; token-budget plans
    sampling   which tokens make global sequence k (epoch permutations, interleaving)
    order      batch-size schedule and rank slices of each step's global batch
    objectives MLM masking and CLM labels
    batches    the `Batch` the model consumes (packed, cu_seqlens) and its padded view
    loader     `DataSpec` (a phase's batches) and `BatchLoader`: resumable iteration, workers, order log
    orderlog   the batch-order log of a run and exact replay of any logged step
"""

from twofold.data.batches import Batch
from twofold.data.documents import Document
from twofold.data.loader import BatchLoader, DataSpec
from twofold.data.mixture import Mixture, load_mixture, plan
from twofold.data.objectives import IGNORE_INDEX
from twofold.data.order import BatchSchedule
from twofold.data.orderlog import replay_batch
from twofold.data.sources import SourceSpec, parse_source_spec, read_documents
from twofold.data.stdlib import HeldOutFunction, held_out_functions, stdlib_documents
from twofold.data.store import TokenStore, prepare_store

__all__ = [
    "IGNORE_INDEX", "Batch", "BatchLoader", "BatchSchedule", "DataSpec", "Document", "HeldOutFunction", "Mixture",
    "SourceSpec", "TokenStore", "held_out_functions", "load_mixture", "parse_source_spec",
    "plan", "prepare_store", "read_documents", "replay_batch", "stdlib_documents",
]
