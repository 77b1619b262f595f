"""A published batch order read directly (`twofold.data.replay.PublishedOrder`), fast: its steps
across files and row groups, the rows of each step and their segments, a rank's part of a step,
what identifies it, and every malformed order refused in one line. Parquet files are written with
pyarrow, in jhu-clsp/ettin-data-order's columns. Training on an order end to end:
tests/train/test_replay_order.py."""

from __future__ import annotations

import pickle
import shutil
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.published_order import write_order_file

from twofold.data.replay import ORDER_GROUP, PublishedOrder
from twofold.errors import TwofoldError

CORPUS = SimpleNamespace(vocab_size=512, special_ids={"pad": 0})  # all a replayed batch reads of the corpus


def rows_of(steps: dict[int, int], seed: int = 0) -> list[tuple[int, list[int]]]:
    """(step, token ids) rows: `steps[s]` rows for step s, each of a different length."""
    rng = np.random.default_rng(seed)
    return [(step, rng.integers(5, 512, int(rng.integers(3, 40))).tolist()) for step, n in steps.items()
            for _ in range(n)]


@pytest.fixture
def published(tmp_path):
    """Steps 4..7 of a phase (4, 1, 6, 3 rows) in three files, found in path order (a subfolder
    included); step 6 starts in one file and ends in the next; row groups of 2 rows."""
    rows = rows_of({4: 4, 5: 1, 6: 6, 7: 3})
    folder = tmp_path / "order"
    write_order_file(folder / "a.parquet", rows[:7])  # steps 4, 5 and two rows of 6
    write_order_file(folder / "b" / "part.parquet", rows[7:11])  # the rest of 6
    write_order_file(folder / "c.parquet", rows[11:], row_group_size=3)
    (folder / "notes.txt").write_text("not part of the order")
    return folder, rows


def test_each_step_holds_its_rows_in_file_order_whatever_order_they_are_read_in(published):
    folder, rows = published
    order = PublishedOrder(folder)
    assert len(order) == 4 and order.first_step == 4
    assert order.sizes.tolist() == [4, 1, 6, 3] and order.starts.tolist() == [0, 4, 5, 11, 14]
    by_step = [[ids for step, ids in rows if step == s] for s in (4, 5, 6, 7)]
    for step in (2, 0, 3, 1, 2, 0):  # jumps back and forth over files and row groups
        assert [r.tolist() for _, r in order.rows(step)] == by_step[step]
    files = [(0, r) for r in range(7)] + [(1, r) for r in range(4)] + [(2, r) for r in range(3)]
    segments = [segment for step in range(4) for segment, _ in order.rows(step)]
    assert segments == [(f, r, 0, len(ids)) for (f, r), (_, ids) in zip(files, rows)]
    assert len(order._groups) == 2  # only the last two row groups stay in memory


def test_a_ranks_part_of_a_step_is_its_slice_of_the_rows_and_the_step_counts_them_all(published):
    folder, rows = published
    order = PublishedOrder(folder)
    six = [ids for step, ids in rows if step == 6]
    parts = [order.batch(CORPUS, 2, rank, 4, seed=0, masker=None) for rank in range(4)]
    assert [p.first_sequence for p in parts] == [5, 7, 9, 10]  # the order's sequence 5 opens step 6
    for part, (start, stop) in zip(parts, [(0, 2), (2, 4), (4, 5), (5, 6)]):
        bounds = part.cu_seqlens.tolist()
        assert [part.input_ids[a:b].tolist() for a, b in zip(bounds, bounds[1:])] == six[start:stop]
        assert part.groups == [ORDER_GROUP] * (stop - start) and part.step == 2
        assert part.step_tokens == sum(map(len, six))
        assert part.segments == [[segment] for segment, _ in order.rows(2)[start:stop]]
    with pytest.raises(TwofoldError, match="global batch of 1 sequences cannot feed 2 ranks"):
        order.batch(CORPUS, 1, 0, 2, seed=0, masker=None)


def test_an_order_sent_to_a_loader_worker_reopens_its_files(published):
    folder, _ = published
    order = PublishedOrder(folder)
    order.rows(3)
    copy = pickle.loads(pickle.dumps(order))
    assert not copy._groups and [r.tolist() for _, r in copy.rows(2)] == [r.tolist() for _, r in order.rows(2)]


def test_an_order_is_identified_by_its_files_names_and_sizes_wherever_it_lies(published, tmp_path):
    folder, rows = published
    order = PublishedOrder(folder)
    assert order.describe() == {"path": str(folder.resolve()), "fingerprint": order.fingerprint, "steps": 4,
                                "first_step": 4, "files": ["a.parquet", "b/part.parquet", "c.parquet"]}
    assert len(order.fingerprint) == 16
    moved = shutil.copytree(folder, tmp_path / "elsewhere")
    assert PublishedOrder(moved).fingerprint == order.fingerprint
    (moved / "c.parquet").rename(moved / "d.parquet")
    renamed = PublishedOrder(moved).fingerprint
    write_order_file(moved / "d.parquet", rows[11:] + rows[11:12], row_group_size=3)  # same name, one more row
    assert len({order.fingerprint, renamed, PublishedOrder(moved).fingerprint}) == 3


def test_check_refuses_ids_outside_the_vocabulary_and_rows_longer_than_the_phase(tmp_path):
    rows = [(1, [5, 6, 7]), (1, [8] * 10), (2, [9, 511]), (2, [0])]
    write_order_file(tmp_path / "good" / "o.parquet", rows)
    PublishedOrder(tmp_path / "good").check(vocab_size=512, seq_len=10)  # the edges pass
    for name, change, says in [
        ("high", (2, [9, 512]), "a row of step 2 holds token id 512, outside the vocabulary of 512"),
        ("negative", (2, [9, -1]), "a row of step 2 holds token id -1, outside the vocabulary of 512"),
    ]:
        write_order_file(tmp_path / name / "o.parquet", rows[:2] + [change] + rows[3:])
        with pytest.raises(TwofoldError, match=f"^--order {tmp_path / name / 'o.parquet'}: {says}; train with stores "
                                               "prepared with the tokenizer the order was made with$"):
            PublishedOrder(tmp_path / name).check(vocab_size=512, seq_len=10)
    with pytest.raises(TwofoldError, match=r"^--order .*o.parquet: a row of step 1 has 10 tokens, more than the "
                                           r"phase's seq_len 9; replay it in a phase of that length \(--set "):
        PublishedOrder(tmp_path / "good").check(vocab_size=512, seq_len=9)


@pytest.mark.parametrize("steps, says", [
    ([1, 2, 4], "step 3 is missing"),
    ([1, 2, 1], "the rows of step 1 are not together (or the steps are out of order)"),
    ([3, 2], "the rows of step 2 are not together (or the steps are out of order)"),
])
def test_an_order_whose_steps_are_not_each_once_in_order_is_refused(tmp_path, steps, says):
    write_order_file(tmp_path / "o" / "o.parquet", [(s, [5, 6]) for s in steps])
    with pytest.raises(TwofoldError) as refused:
        PublishedOrder(tmp_path / "o")
    assert str(refused.value) == (f"--order {tmp_path / 'o' / 'o.parquet'}: {says}; a batch order lists every step "
                                  "once, in order: give the complete order of the phase")


def test_a_folder_that_is_no_order_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "absent"):
        with pytest.raises(TwofoldError, match=f"^--order {folder}: no .parquet files there; give the folder of a "
                                               "published batch order \\(columns input_ids, step\\)$"):
            PublishedOrder(folder)
    (tmp_path / "cols").mkdir()
    pq.write_table(pa.table({"input_ids": pa.array([[5]]), "tokens": pa.array([1])}), tmp_path / "cols" / "o.parquet")
    with pytest.raises(TwofoldError, match=r"^--order .*o.parquet: no column 'step' \(columns: input_ids, tokens\); "
                                           "a batch order has input_ids and step$"):
        PublishedOrder(tmp_path / "cols")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "o.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(TwofoldError, match=r"^--order .*broken/o.parquet: not a readable Parquet file \("):
        PublishedOrder(tmp_path / "broken")
