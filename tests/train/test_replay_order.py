"""`twofold train --order DIR`: a phase trains on exactly the rows of a published batch order
(Parquet files with `input_ids` and `step` columns, as jhu-clsp/ettin-data-order), written here
with pyarrow; the rows the model received are compared with the file's, row by row."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tests.published_order import write_order_file

from twofold.cli import main
from twofold.data.orderlog import replay_batch
from twofold.model import TwofoldModel
from twofold.train import checkpoint

ROWS_PER_STEP = {1: 3, 2: 5, 3: 4}  # published step numbers restart at 1 in each phase


def order_rows(seed=0, vocab=512):
    rng = np.random.default_rng(seed)
    return [(step, rng.integers(5, vocab, rng.integers(20, 90)).tolist())
            for step, rows in ROWS_PER_STEP.items() for _ in range(rows)]


def write_order(folder, rows, split_at=5):
    """Two files; step 2 starts in the first and ends in the second."""
    folder.mkdir()
    write_order_file(folder / "part-0.parquet", rows[:split_at])
    write_order_file(folder / "part-1.parquet", rows[split_at:])
    return folder


@pytest.fixture
def received(monkeypatch):
    """The rows (one per attention sequence) of every training forward pass."""
    rows = []
    real = TwofoldModel.forward

    def forward(self, input_ids, *args, cu_seqlens=None, **kwargs):
        if self.training:
            bounds = cu_seqlens.tolist()
            rows.append([input_ids[a:b].tolist() for a, b in zip(bounds, bounds[1:])])
        return real(self, input_ids, *args, cu_seqlens=cu_seqlens, **kwargs)

    monkeypatch.setattr(TwofoldModel, "forward", forward)
    return rows


def train(tiny_recipe, tiny_store, out, order, *extra) -> int:
    return main(["train", "--recipe", str(tiny_recipe), "--store", str(tiny_store), "--out", str(out),
                 "--objective", "clm", "--phase", "decay", "--order", str(order), "--no-progress", *extra])


def test_each_step_trains_on_exactly_the_rows_of_the_order(tmp_path, tiny_store, tiny_recipe, received):
    rows = order_rows()
    order = write_order(tmp_path / "order", rows)
    run = tmp_path / "run"
    assert train(tiny_recipe, tiny_store, run, order, "--save-every-steps", "1", "--workers", "1") == 0
    by_step = [[ids for step, ids in rows if step == s] for s in ROWS_PER_STEP]
    assert received == by_step  # row by row, in order, nothing else
    log = [json.loads(line) for line in (run / "decay" / "data_order" / "rank0.jsonl").read_text().splitlines()]
    for record, step_rows in zip(log, by_step):
        ids = np.concatenate([np.asarray(r, np.int64) for r in step_rows])
        bounds = np.concatenate([[0], np.cumsum([len(r) for r in step_rows])]).astype(np.int32)
        assert record["hash"] == hashlib.sha256(ids.tobytes() + bounds.tobytes()).hexdigest()[:16]
        assert replay_batch(run / "decay", record["step"])[0].token_hash == record["hash"]  # show-batch
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["batch_sequences"] for m in metrics] == [3, 5, 4]  # the order's 3 steps end the phase
    assert [m["batch_tokens"] for m in metrics] == [sum(map(len, r)) for r in by_step]
    assert checkpoint.tag_of(checkpoint.list_checkpoints(run / "checkpoints")[-1]) == "decay3"
    assert main(["data", "show-batch", str(run / "decay"), "--step", "1"]) == 0

    # Resume from step 2's checkpoint: step 3 is trained again on the same rows, to the same weights.
    final = checkpoint.list_checkpoints(run / "checkpoints")[-1]
    weights = load_file(str(final / "model.safetensors"))
    shutil.rmtree(final)
    received.clear()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert received == by_step[2:]
    again = load_file(str(checkpoint.list_checkpoints(run / "checkpoints")[-1] / "model.safetensors"))
    assert all(torch.equal(weights[name], again[name]) for name in weights)


@pytest.mark.parametrize("problem", ["vocabulary", "missing step"])
def test_a_bad_order_is_one_line_and_nothing_written(tmp_path, tiny_store, tiny_recipe, capsys, problem):
    rows = order_rows()
    if problem == "vocabulary":
        rows[4] = (rows[4][0], rows[4][1][:-1] + [512])  # one past the 512-token vocabulary
        says = "a row of step 2 holds token id 512, outside the vocabulary of 512"
    else:
        rows = [(step, ids) for step, ids in rows if step != 2]
        says = "step 2 is missing"
    order = write_order(tmp_path / "order", rows, split_at=2)
    assert train(tiny_recipe, tiny_store, tmp_path / "run", order) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_show_batch_of_a_masked_lm_phase_on_an_order_masks_as_the_run_did(tmp_path, tiny_store, tiny_recipe, received):
    order = write_order(tmp_path / "order", order_rows())
    run = tmp_path / "run"
    assert main(["train", "--recipe", str(tiny_recipe), "--store", str(tiny_store), "--out", str(run),
                 "--objective", "mlm", "--phase", "decay", "--order", str(order), "--no-progress"]) == 0
    log = [json.loads(line) for line in (run / "decay" / "data_order" / "rank0.jsonl").read_text().splitlines()]
    assert len(log) == len(received) == 3
    for record, trained in zip(log, received):
        (replayed,) = replay_batch(run / "decay", record["step"])
        bounds = replayed.cu_seqlens.tolist()
        assert [replayed.input_ids[a:b].tolist() for a, b in zip(bounds, bounds[1:])] == trained  # the same masks
