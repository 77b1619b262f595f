import hashlib
import itertools
import json

import numpy as np
import pytest
import torch

from twofold.cli import main
from twofold.data.loader import BatchLoader
from twofold.data.mixture import Mixture
from twofold.data.orderlog import LOG_DIR, read_step, replay_batch
from twofold.data.store import TokenStore
from twofold.errors import TwofoldError


def run(run_dir, store, steps, objective="mlm", rank=0, world_size=1, start_state=None):
    loader = BatchLoader([store], Mixture(temperature=0.7), seq_len=48, batch_size=6, seed=11,
                         objective=objective, rank=rank, world_size=world_size, run_dir=run_dir)
    if start_state:
        loader.load_state_dict(start_state)
    batches = list(itertools.islice(iter(loader), steps))
    return loader, batches


def test_replayed_batch_equals_what_the_loader_yielded(tmp_path, group_store):
    _, yielded = run(tmp_path / "run", group_store, 5)
    for batch in yielded:
        replayed, = replay_batch(tmp_path / "run", batch.step)
        assert torch.equal(replayed.input_ids, batch.input_ids)
        assert torch.equal(replayed.labels, batch.labels)
        assert torch.equal(replayed.cu_seqlens, batch.cu_seqlens)
        assert torch.equal(replayed.position_ids, batch.position_ids)
        assert replayed.segments == batch.segments and replayed.groups == batch.groups
        assert replayed.token_hash == batch.token_hash


def test_log_has_one_line_per_step_per_rank_and_encoder_decoder_hashes_match(tmp_path, group_store):
    for rank in range(2):
        run(tmp_path / "enc", group_store, 4, rank=rank, world_size=2)
        run(tmp_path / "dec", group_store, 4, objective="clm", rank=rank, world_size=2)
    for step in range(4):
        encoder, decoder = read_step(tmp_path / "enc", step), read_step(tmp_path / "dec", step)
        assert [r["rank"] for r in encoder] == [0, 1]
        assert [r["hash"] for r in encoder] == [r["hash"] for r in decoder]
        assert [r["sequences"] for r in encoder] == [r["sequences"] for r in decoder]
    lines = (tmp_path / "enc" / LOG_DIR / "rank1.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 1, 2, 3]


def test_resumed_run_logs_on_and_survives_a_torn_line(tmp_path, group_store):
    loader, first = run(tmp_path / "run", group_store, 3)
    state = loader.state_dict()
    with open(tmp_path / "run" / LOG_DIR / "rank0.jsonl", "a") as handle:
        handle.write('{"step":3,"rank":0,"first_seq')  # a crash mid-write
    _, resumed = run(tmp_path / "run", group_store, 2, start_state=state)
    assert [b.step for b in resumed] == [3, 4]
    replayed, = replay_batch(tmp_path / "run", 3)
    assert torch.equal(replayed.input_ids, resumed[0].input_ids)


def test_show_batch_prints_the_exact_token_ids(tmp_path, group_store, capsys):
    _, yielded = run(tmp_path / "run", group_store, 3)
    assert main(["data", "show-batch", str(tmp_path / "run"), "--step", "2"]) == 0
    out = capsys.readouterr().out
    batch = yielded[2]
    offsets = batch.sequence_offsets.tolist()
    for j in range(batch.num_sequences):
        ids = batch.input_ids[offsets[j]:offsets[j + 1]].tolist()
        assert f"input_ids {ids}" in out
    assert batch.token_hash in out


def test_show_batch_decodes_text(tmp_path, group_store, capsys):
    run(tmp_path / "run", group_store, 1, objective="clm")
    assert main(["data", "show-batch", str(tmp_path / "run"), "--step", "0", "--decode"]) == 0
    out = capsys.readouterr().out
    assert "[CLS]" in out and "input_ids" not in out


def test_show_batch_of_an_unlogged_step_or_a_non_run_is_an_error(tmp_path, group_store):
    run(tmp_path / "run", group_store, 2)
    with pytest.raises(TwofoldError, match="step 9 was not logged; the run consumed steps 0..1"):
        replay_batch(tmp_path / "run", 9)
    with pytest.raises(TwofoldError, match="loader.json: not found"):
        replay_batch(tmp_path, 0)


def test_logged_hash_is_the_hash_of_the_logged_tokens(tmp_path, group_store, tokenizer):
    """Recomputed here from the store's arrays: sha256(token ids as int64 ‖ segment offsets as
    int32), first 16 hex digits, over `[CLS] document [SEP]` pieces named by the log."""
    run(tmp_path / "run", group_store, 4, objective="clm")
    store = TokenStore(group_store)
    cls, sep = tokenizer.special.cls, tokenizer.special.sep
    hashes = set()
    for step in range(4):
        (record,) = read_step(tmp_path / "run", step)
        pieces = []
        for sequence in record["sequences"]:
            for _, doc, begin, end in sequence:
                body = store.tokens[int(store.offsets[doc]):int(store.offsets[doc + 1])].tolist()
                pieces.append(([cls] + body + [sep])[begin:end])
        ids = np.array([t for piece in pieces for t in piece], np.int64)
        offsets = np.cumsum([0] + [len(piece) for piece in pieces]).astype(np.int32)
        digest = hashlib.sha256(ids.tobytes() + offsets.tobytes()).hexdigest()[:16]
        assert record["hash"] == digest
        (replayed,) = replay_batch(tmp_path / "run", step)
        assert replayed.input_ids.tolist() == ids.tolist()  # CLM inputs are the tokens themselves
        hashes.add(digest)
    assert len(hashes) == 4


def test_each_rank_is_replayed_as_its_own_batch(tmp_path, group_store):
    yielded = {rank: run(tmp_path / "run", group_store, 2, rank=rank, world_size=2)[1] for rank in range(2)}
    for step in range(2):
        replayed = replay_batch(tmp_path / "run", step)
        assert [b.rank for b in replayed] == [0, 1] and [b.first_sequence for b in replayed] == [6 * step, 6 * step + 3]
        assert [b.token_hash for b in replayed] == [yielded[r][step].token_hash for r in range(2)]
        (one,) = replay_batch(tmp_path / "run", step, rank=1)
        assert one.rank == 1 and one.token_hash == yielded[1][step].token_hash
    with pytest.raises(TwofoldError, match="rank 2 did not log step 0"):
        replay_batch(tmp_path / "run", 0, rank=2)


def test_a_logged_segment_the_stores_do_not_hold_is_refused_at_its_edges(tmp_path, group_store):
    from twofold.data.orderlog import _check_segments
    from twofold.data.sampling import Corpus

    store = TokenStore(group_store)
    corpus = Corpus([store])
    last = store.num_documents - 1
    length = lambda doc: int(store.offsets[doc + 1] - store.offsets[doc]) + 2  # noqa: E731  [CLS] body [SEP]
    _check_segments(corpus, [[(0, 0, 0, length(0)), (0, last, 3, 3)], [(0, 1, 0, length(1))]], "run", 4)
    for segment, where in [((1, 0, 0, 1), "store 1"), ((-1, 0, 0, 1), "store -1"), ((0, -1, 0, 1), store.path),
                           ((0, last + 1, 0, 1), store.path), ((0, 1, 0, length(1) + 1), store.path),
                           ((0, 1, 3, 2), store.path), ((0, 1, -1, 2), store.path)]:
        _, doc, begin, end = segment
        with pytest.raises(TwofoldError, match=f"^run: step 4 used document {doc} \\[{begin}:{end}\\] of {where}, "
                                               "which the store does not hold"):
            _check_segments(corpus, [[(0, 0, 0, 1), segment]], "run", 4)


def test_a_log_that_names_segments_the_store_lacks_is_one_line_naming_the_run_and_step(tmp_path, group_store):
    run(tmp_path / "run", group_store, 2)
    log = tmp_path / "run" / LOG_DIR / "rank0.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    records[1]["sequences"][0][0][1] = 10**6  # a document the store does not have
    log.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    with pytest.raises(TwofoldError, match=f"^{tmp_path / 'run'}: step 1 used document 1000000 "):
        replay_batch(tmp_path / "run", 1)


def test_a_log_reopened_after_a_whole_last_line_is_left_as_it_was(tmp_path, group_store):
    loader, _ = run(tmp_path / "run", group_store, 2)
    log = tmp_path / "run" / LOG_DIR / "rank0.jsonl"
    before = log.read_bytes()
    run(tmp_path / "run", group_store, 1, start_state=loader.state_dict())  # a resume opens the log again
    after = log.read_bytes()
    assert after.startswith(before) and after[len(before):].count(b"\n") == 1  # one whole line more, no blank one


def test_an_empty_log_or_an_edited_description_is_one_line(tmp_path, group_store):
    run(tmp_path / "run", group_store, 1)
    (tmp_path / "run" / LOG_DIR / "rank0.jsonl").write_text("")  # e.g. a crash before the first line
    with pytest.raises(TwofoldError, match="step 0 was not logged; the run consumed steps none$"):
        replay_batch(tmp_path / "run", 0)
    (tmp_path / "run" / LOG_DIR / "loader.json").write_text("{torn")
    with pytest.raises(TwofoldError, match="loader.json: not valid JSON .*; the batch order of this phase cannot "
                                           "be read back$"):
        replay_batch(tmp_path / "run", 0)
