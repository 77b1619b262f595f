"""The loader's contract beyond the order itself: a spec reaches it whole, each layout keeps or drops
the minimum row, real tokens per step counted by hand, iteration from the step it was left at, and
the order log opened once, naming what defines the order."""

import itertools
import json
import pickle

import pytest
from tests.published_order import write_order_file

from twofold.data.loader import BatchLoader, DataSpec, OrderLoader
from twofold.data.mixture import Mixture
from twofold.data.order import BatchSchedule
from twofold.data.orderlog import read_description, read_step
from twofold.data.replay import PublishedOrder
from twofold.data.store import TokenStore
from twofold.errors import TwofoldError


def spec(**changes) -> DataSpec:
    fields = dict(mixture=Mixture(temperature=0.5), seq_len=48, batch=BatchSchedule(5), mask_rate=0.25, seed=7,
                  layout="documents", min_row_tokens=20)
    return DataSpec(**(fields | changes))


def test_a_spec_reaches_the_loader_whole(group_store):
    loader = BatchLoader.from_spec([group_store], spec(), objective="mlm", rank=1, world_size=2)
    described = loader.describe()
    assert {k: described[k] for k in ("seed", "seq_len", "layout", "min_row_tokens", "mask_rate", "objective",
                                      "world_size")} == dict(seed=7, seq_len=48, layout="documents",
                                                             min_row_tokens=20, mask_rate=0.25, objective="mlm",
                                                             world_size=2)
    assert described["stores"] == [str(group_store.resolve())] and described["mixture"]["temperature"] == 0.5
    batch = loader.batch(3)
    assert batch.rank == 1 and batch.step == 3 and batch.num_sequences == 2  # rows 3 and 4 of 5
    assert batch.step_tokens == loader.step_tokens(3)
    real = sum(end - begin for row in batch.segments for _, _, begin, end in row)
    assert min(end - begin for row in batch.segments for _, _, begin, end in row) >= 20  # no short chunk
    labelled = int((batch.labels != -100).sum())
    assert 0 < labelled < real  # masked at the spec's rate


def test_the_minimum_row_belongs_to_the_documents_layout_only(group_store):
    def shortest(layout, minimum):
        loader = BatchLoader.from_spec([group_store], spec(layout=layout, min_row_tokens=minimum), objective="clm")
        rows = [end - begin for step in range(30) for row in loader.batch(step).segments for _, _, begin, end in row]
        return loader.describe().get("min_row_tokens"), min(rows)

    assert shortest("documents", 30)[0] == 30 and shortest("documents", 30)[1] >= 30
    assert shortest("documents", 1)[1] < 30  # the short chunks come back without the minimum
    described, rows = shortest("document", 30)
    assert described is None and rows < 30  # `document` keeps every chunk, whatever the minimum
    assert shortest("packed", 30)[0] is None


def test_real_tokens_of_a_step_are_its_rows_for_all_ranks(group_store):
    documents = BatchLoader.from_spec([group_store], spec(), objective="clm", world_size=2)
    ranks = [BatchLoader.from_spec([group_store], spec(), objective="clm", rank=r, world_size=2) for r in (0, 1)]
    for step in (0, 4):
        rows = [end - begin for r in ranks for row in r.batch(step).segments for _, _, begin, end in row]
        assert documents.step_tokens(step) == sum(rows) and len(rows) == 5
    packed = BatchLoader.from_spec([group_store], spec(layout="packed"), objective="clm")
    assert packed.step_tokens(2) == 5 * 48


def test_a_model_must_hold_every_id_of_the_stores_tokenizer(group_store):
    vocab = TokenStore(group_store).manifest["tokenizer"]["vocab_size"]
    BatchLoader.from_spec([group_store], spec(), objective="clm", model_vocab_size=vocab)
    with pytest.raises(TwofoldError, match=f"vocab_size {vocab - 1} is smaller than the stores' tokenizer"):
        BatchLoader.from_spec([group_store], spec(), objective="clm", model_vocab_size=vocab - 1)


def test_iteration_starts_where_it_was_left_logs_once_and_a_replay_ends(group_store, tmp_path):
    loader = BatchLoader.from_spec([group_store], spec(), objective="clm", rank=0, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written before the first batch is asked for
    first = [b.step for b in itertools.islice(iter(loader), 3)]
    again = [b.step for b in itertools.islice(iter(loader), 2)]
    assert first == [0, 1, 2] and again == [3, 4] and loader.step == 5
    assert read_description(tmp_path / "run") == json.loads(json.dumps(loader.describe()))
    logged = [json.loads(line)["step"] for line in (tmp_path / "run" / "data_order" / "rank0.jsonl").open()]
    assert logged == [0, 1, 2, 3, 4] and read_step(tmp_path / "run", 4)[0]["rank"] == 0
    ending = BatchLoader.from_spec([group_store], spec(), objective="clm")
    ending.total_steps, ending.step = 6, 4
    assert [b.step for b in ending] == [4, 5]


def test_batches_are_built_here_by_default_and_in_workers_when_asked(group_store, monkeypatch):
    built = []
    real = BatchLoader.batch
    monkeypatch.setattr(BatchLoader, "batch", lambda self, step: built.append(step) or real(self, step))
    default = BatchLoader([group_store], Mixture(), seq_len=32, batch_size=2)
    assert default.describe()["seed"] == 21  # the recipes' seed
    assert [b.step for b in itertools.islice(iter(default), 2)] == built == [0, 1]
    built.clear()
    one_worker = BatchLoader([group_store], Mixture(), seq_len=32, batch_size=2, num_workers=1)
    assert [b.step for b in itertools.islice(iter(one_worker), 2)] == [0, 1] and built == []  # in its process


def test_a_copy_for_a_worker_never_writes_the_log(group_store, tmp_path):
    loader = BatchLoader([group_store], Mixture(), seq_len=32, batch_size=2, run_dir=tmp_path / "run")
    next(iter(loader))
    copy = pickle.loads(pickle.dumps(loader))
    assert loader.order_log is not None and copy.order_log is None and copy.step == loader.step


def test_the_description_records_the_mixtures_probabilities_and_only_a_documents_minimum(group_store, tmp_path):
    loader = BatchLoader.from_spec([group_store], spec(), objective="clm", run_dir=tmp_path / "run")
    next(iter(loader))
    assert read_description(tmp_path / "run")["probabilities"] == loader.probabilities
    packed = BatchLoader.from_spec([group_store], spec(layout="packed"), objective="clm")
    assert "min_row_tokens" not in packed.describe()


def test_a_replayed_order_keeps_the_specs_seed_and_mask_rate(group_store, tmp_path):
    write_order_file(tmp_path / "order" / "a.parquet", [(0, [5, 6, 7, 8]), (0, [9, 10, 11]), (1, [12, 13, 14])])
    order = PublishedOrder(tmp_path / "order")
    loader = OrderLoader(order, [group_store], spec(seed=5, mask_rate=0.15), objective="mlm")
    assert (loader.describe()["seed"], loader.describe()["mask_rate"], loader.total_steps) == (5, 0.15, 2)
    assert loader.step_tokens(0) == 7 and loader.step_tokens(1) == 3
    assert [b.step for b in loader] == [0, 1]
