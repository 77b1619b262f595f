"""A published batch order's Parquet file, as jhu-clsp/ettin-data-order writes them (written with pyarrow)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_order_file(path: Path, rows: list[tuple[int, list[int]]], row_group_size: int = 2) -> Path:
    """`rows`: (step, token ids) in file order; columns `input_ids` (int32 lists) and `step` (int64)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"input_ids": pa.array([ids for _, ids in rows], type=pa.list_(pa.int32())),
                      "step": pa.array([step for step, _ in rows], type=pa.int64())})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path
