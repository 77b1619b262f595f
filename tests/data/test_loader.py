import itertools

import numpy as np
import pytest
import torch

from twofold.data.loader import BatchLoader
from twofold.data.mixture import Mixture
from twofold.data.order import BatchSchedule
from twofold.data.sampling import Corpus
from twofold.data.sources import SourceSpec
from twofold.data.store import TokenStore, prepare_store
from twofold.errors import TwofoldError


def make(store, **overrides) -> BatchLoader:
    settings = dict(mixture=Mixture(temperature=0.5), seq_len=64, batch_size=8, objective="mlm", seed=3)
    settings.update(overrides)
    return BatchLoader([store], settings.pop("mixture"), **settings)


def same(a, b) -> bool:
    return (torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
            and torch.equal(a.cu_seqlens, b.cu_seqlens) and torch.equal(a.position_ids, b.position_ids)
            and a.segments == b.segments and a.step == b.step and a.token_hash == b.token_hash)


def take(loader, n):
    return list(itertools.islice(iter(loader), n))


def test_two_loaders_with_the_same_inputs_yield_identical_batches(group_store):
    first, second = take(make(group_store), 6), take(make(group_store), 6)
    assert all(same(a, b) for a, b in zip(first, second))
    other_seed = take(make(group_store, seed=4), 1)[0]
    assert not torch.equal(other_seed.input_ids, first[0].input_ids)


@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes")
def test_one_and_four_dataloader_workers_yield_identical_batches(group_store):
    plain = take(make(group_store, num_workers=1), 6)
    workers = take(make(group_store, num_workers=4), 6)
    assert [b.step for b in workers] == list(range(6))
    assert all(same(a, b) for a, b in zip(plain, workers))


def test_batch_at_a_step_is_a_pure_function_of_the_step(group_store):
    loader = make(group_store)
    iterated = take(loader, 4)
    fresh = make(group_store)
    assert same(fresh.batch(3), iterated[3])
    assert same(fresh.batch(500), make(group_store).batch(500))  # jumping far needs no replay


def test_two_ranks_get_disjoint_slices_whose_union_is_the_single_rank_batch(group_store):
    for step in range(4):
        whole = make(group_store, batch_size=7).batch(step)
        parts = [make(group_store, batch_size=7, rank=r, world_size=2).batch(step) for r in range(2)]
        assert [p.num_sequences for p in parts] == [4, 3]
        assert parts[1].first_sequence == parts[0].first_sequence + 4
        assert parts[0].segments + parts[1].segments == whole.segments
        assert not {tuple(s) for s in parts[0].segments} & {tuple(s) for s in parts[1].segments}
        assert torch.equal(torch.cat([p.input_ids for p in parts]), whole.input_ids)
        assert torch.equal(torch.cat([p.labels for p in parts]), whole.labels)  # masks too


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.2])
def test_group_frequencies_follow_the_temperature(group_store, tau):
    loader = make(group_store, mixture=Mixture(temperature=tau), batch_size=16, seq_len=32)
    store = TokenStore(group_store)
    lengths = store.document_lengths()
    n = {g: int(lengths[store.documents_of(g)].sum()) for g in store.groups}
    expected = {g: n[g] ** tau / sum(v ** tau for v in n.values()) for g in n}
    groups = [g for step in range(300) for g in loader.batch(step).groups]
    total = len(groups)
    for group, p in expected.items():
        frequency = groups.count(group) / total
        assert abs(frequency - p) < 4 * np.sqrt(p * (1 - p) / total), (group, frequency, p)
    if tau == 0.2:
        assert groups.count("small") / total > n["small"] / sum(n.values()) * 2


def test_packed_sequences_cover_an_epoch_of_each_document_exactly_once(group_store):
    store = TokenStore(group_store)
    small = store.documents_of("small")
    epoch_tokens = int((store.document_lengths()[small] + 2).sum())
    seq_len = 50
    loader = make(group_store, mixture=Mixture(groups=("small",)), seq_len=seq_len, batch_size=1, objective="clm")
    seen: dict[int, list] = {}
    steps = epoch_tokens // seq_len
    for step in range(steps):
        batch = loader.batch(step)
        assert batch.num_tokens == seq_len
        assert batch.groups == ["small"]
        for _, doc, begin, end in batch.segments[0]:
            seen.setdefault(doc, []).append((begin, end))
    assert set(seen) <= set(small.tolist())
    for spans in seen.values():
        spans.sort()
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, no overlap
        assert spans[0][0] == 0
    complete = [doc for doc, spans in seen.items() if spans[-1][1] == len(store.document(doc)) + 2]
    assert len(complete) >= len(small) - 1  # all but the one cut by the last window


def test_batch_format_cls_sep_per_document_and_positions_restart(group_store, tokenizer):
    batch = make(group_store, objective="clm", seq_len=128, batch_size=4).batch(2)
    special = tokenizer.special
    assert batch.input_ids.dtype == torch.int64 and batch.labels.dtype == torch.int64
    assert batch.position_ids.dtype == torch.int64 and batch.cu_seqlens.dtype == torch.int32
    assert batch.sequence_offsets.tolist() == [0, 128, 256, 384, 512]
    bounds = batch.cu_seqlens.tolist()
    assert bounds[0] == 0 and bounds[-1] == batch.num_tokens
    assert set(batch.sequence_offsets.tolist()) <= set(bounds)  # rows split at segment bounds
    assert batch.max_seqlen == max(b - a for a, b in zip(bounds, bounds[1:]))
    segments = [s for sequence in batch.segments for s in sequence]
    store = TokenStore(group_store)
    for (a, b), (_, doc, begin, end) in zip(zip(bounds, bounds[1:]), segments):
        assert batch.position_ids[a:b].tolist() == list(range(b - a))
        virtual = [special.cls, *store.document(doc).tolist(), special.sep]
        assert batch.input_ids[a:b].tolist() == virtual[begin:end]


def test_one_document_per_sequence_layout_chunks_long_documents(group_store, tokenizer):
    seq_len = 40
    loader = make(group_store, layout="document", seq_len=seq_len, batch_size=6, objective="clm")
    store = TokenStore(group_store)
    chunks: dict[int, list] = {}
    for step in range(40):
        batch = loader.batch(step)
        assert len(batch.cu_seqlens) == batch.num_sequences + 1  # one segment per sequence
        for (_, doc, begin, end), in batch.segments:
            assert end - begin <= seq_len
            chunks.setdefault(doc, []).append((begin, end))
    long_docs = [d for d in chunks if len(store.document(d)) + 2 > seq_len and len(chunks[d]) > 1]
    assert long_docs
    for doc in long_docs:
        spans = sorted(chunks[doc])
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_batch_size_warmup_ramps_by_tokens_seen(group_store):
    # 2 -> 6 sequences over the first 512 tokens, each step taking the size due before it:
    # tokens before steps 0..4 are 0, 128, 320, 576, 960 -> 2, 3, 4 (4.5), 6, 6 sequences.
    warmup = BatchSchedule(6, start_sequences=2, warmup_tokens=512)
    loader = make(group_store, batch_size=warmup)
    batches = take(loader, 5)
    assert [b.num_sequences for b in batches] == [2, 3, 4, 6, 6]
    assert [b.first_sequence for b in batches] == [0, 2, 5, 9, 15]
    assert same(make(group_store, batch_size=warmup).batch(4), batches[4])


def test_padded_view_has_one_row_per_document_segment(group_store, tokenizer):
    batch = make(group_store, seq_len=256, batch_size=3).batch(1)
    input_ids, attention_mask, labels = batch.to_padded()
    lengths = (batch.cu_seqlens[1:] - batch.cu_seqlens[:-1]).tolist()
    assert len(set(lengths)) > 2  # rows of several lengths: padding happens
    assert input_ids.shape == (len(lengths), batch.max_seqlen)
    assert attention_mask.sum(1).tolist() == lengths
    assert torch.equal(input_ids[attention_mask.bool()], batch.input_ids)
    assert torch.equal(labels[attention_mask.bool()], batch.labels)
    assert (labels[~attention_mask.bool()] == -100).all()
    assert (input_ids[~attention_mask.bool()] == tokenizer.special.pad).all()  # the store's [PAD]


def test_split_into_micro_batches_keeps_rows_whole(group_store):
    batch = make(group_store, seq_len=64, batch_size=7).batch(2)
    parts = batch.split(3)
    assert [p.num_sequences for p in parts] == [3, 3, 1]
    assert [p.first_sequence for p in parts] == [batch.first_sequence + i for i in (0, 3, 6)]
    assert torch.equal(torch.cat([p.input_ids for p in parts]), batch.input_ids)
    assert torch.equal(torch.cat([p.labels for p in parts]), batch.labels)
    assert sum(len(p.cu_seqlens) - 1 for p in parts) == len(batch.cu_seqlens) - 1
    for part in parts:
        assert part.cu_seqlens[0] == 0 and part.cu_seqlens[-1] == part.num_tokens
        assert part.sequence_offsets[-1] == part.num_tokens
    assert sum((p.segments for p in parts), []) == batch.segments
    assert sum((p.groups for p in parts), []) == batch.groups
    assert torch.equal(torch.cat([p.position_ids for p in parts]), batch.position_ids)
    assert [p.max_seqlen for p in parts] == [int(p.cu_seqlens.diff().max()) for p in parts]


def test_to_moves_every_tensor_and_keeps_the_rest(group_store):
    batch = make(group_store, seq_len=64, batch_size=3).batch(1)
    moved = batch.to("meta")
    for name in ("input_ids", "labels", "position_ids", "cu_seqlens", "sequence_offsets"):
        tensor, original = getattr(moved, name), getattr(batch, name)
        assert tensor.device.type == "meta" and original.device.type == "cpu"
        assert tensor.shape == original.shape and tensor.dtype == original.dtype
    assert (moved.segments, moved.groups, moved.step, moved.max_seqlen) == (
        batch.segments, batch.groups, batch.step, batch.max_seqlen)


def test_an_empty_batch_is_well_formed(group_store):
    from twofold.data.batches import build_batch

    empty = build_batch(make(group_store).corpus, [], step=0, rank=0, first_sequence=0, seed=1, masker=None)
    assert (empty.num_tokens, empty.num_sequences, empty.max_seqlen) == (0, 0, 0)
    assert empty.input_ids.dtype == torch.int64 and empty.cu_seqlens.tolist() == [0]
    assert [t.shape for t in empty.to_padded()] == [(0, 0)] * 3


def test_resume_from_state_continues_exactly(group_store):
    loader = make(group_store, batch_size=BatchSchedule(4, 2, 256))
    take(loader, 5)
    state = loader.state_dict()
    assert state["step"] == 5 and state["fingerprint"] == TokenStore(group_store).fingerprint
    continued = take(loader, 2)
    resumed = make(group_store, batch_size=BatchSchedule(4, 2, 256))
    resumed.load_state_dict(state)
    assert all(same(a, b) for a, b in zip(continued, take(resumed, 2)))


def test_resume_with_another_store_is_refused(tmp_path, tokenizer, group_store, group_corpus):
    other = tmp_path / "other"
    prepare_store([SourceSpec(str(group_corpus), id_field="id", group="big")], tokenizer, other, progress=False)
    state = make(group_store, mixture=Mixture(groups=("big",))).state_dict()
    with pytest.raises(TwofoldError, match="token store differs from the checkpoint"):
        make(other, mixture=Mixture(groups=("big",))).load_state_dict(state)


def test_resume_with_other_settings_or_schedule_is_refused(group_store):
    loader = make(group_store)
    take(loader, 3)
    state = loader.state_dict()
    with pytest.raises(TwofoldError, match="seed differs"):
        make(group_store, seed=99).load_state_dict(state)
    with pytest.raises(TwofoldError, match="same batch-size schedule"):
        make(group_store, batch_size=9).load_state_dict(state)
    with pytest.raises(TwofoldError, match="format"):
        make(group_store).load_state_dict({"step": 3})


def test_bad_loader_settings_are_clear_errors(group_store):
    with pytest.raises(TwofoldError, match="seq_len 2 is too small"):
        make(group_store, seq_len=2)
    with pytest.raises(TwofoldError, match="vocab_size 100 is smaller than the stores' tokenizer"):
        make(group_store, model_vocab_size=100)
    with pytest.raises(TwofoldError, match="rank 2 is outside world size 2"):
        make(group_store, rank=2, world_size=2)
    with pytest.raises(TwofoldError, match="cannot feed 4 ranks"):
        make(group_store, batch_size=3, world_size=4).batch(0)
    with pytest.raises(TwofoldError, match="objective 'mtp' is unknown"):
        make(group_store, objective="mtp")
    with pytest.raises(TwofoldError, match="layout 'rows' is unknown"):
        make(group_store, layout="rows")
    with pytest.raises(TwofoldError, match="provided by no store"):
        make(group_store, mixture=Mixture(groups=("big", "klingon")))


def test_stores_made_with_different_tokenizers_do_not_mix(tmp_path, group_store, group_corpus):
    from twofold.data.tokenizer import train_tokenizer

    other_tokenizer = train_tokenizer(["some other text"] * 20, 300, tmp_path / "tok")
    prepare_store([SourceSpec(str(group_corpus))], other_tokenizer, tmp_path / "s", progress=False)
    with pytest.raises(TwofoldError, match="different tokenizers"):
        Corpus([TokenStore(group_store), TokenStore(tmp_path / "s")])


def test_interleave_deals_each_group_its_quota_with_instances_counted_from_zero():
    from twofold.data.sampling import Interleave

    deal = Interleave([0.7, 0.3], seed=1)
    assert deal.block == 4096 and deal.quotas.tolist() == [2867, 1229]
    seen = {0: [], 1: []}
    for k in range(2 * deal.block):
        group, instance = deal.locate(k)
        seen[group].append(instance)
    for group, quota in enumerate(deal.quotas.tolist()):
        assert sorted(seen[group]) == list(range(2 * quota))  # every instance once, block after block
    first = [deal.locate(k)[0] for k in range(64)]
    assert first != [Interleave([0.7, 0.3], seed=2).locate(k)[0] for k in range(64)]  # keyed by the seed
    assert first != [deal.locate(deal.block + k)[0] for k in range(64)]  # and by the block
    rare = Interleave([1e-4, 1 - 1e-4], seed=1)  # the block grows until the rare group gets a slot
    assert rare.block == 16384 and rare.quotas.tolist() == [2, 16382]


def test_each_epoch_of_a_group_has_its_own_document_order(group_store):
    from twofold.data.sampling import GroupStream, SequenceSampler

    corpus = Corpus([TokenStore(group_store)])
    stream = GroupStream(corpus, "mid", seed=4, seq_len=100_000, layout="document")
    n = len(stream.docs)
    epochs = [[stream.sequence(e * n + i)[0][1] for i in range(n)] for e in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) and epochs[0] != epochs[1]
    other_seed = GroupStream(corpus, "mid", seed=5, seq_len=100_000, layout="document")
    assert [other_seed.sequence(i)[0][1] for i in range(n)] != epochs[0]
    packed = SequenceSampler(corpus, {"big": 0.5, "mid": 0.5}, seed=4, seq_len=64)  # packed by default
    assert all(sum(end - begin for _, _, begin, end in packed.sequence(k)[1]) == 64 for k in range(8))


def test_apportion_rounds_to_the_total_and_keeps_every_group():
    from twofold.data.sampling import _apportion

    assert _apportion(np.array([0.26, 0.74]), 10).tolist() == [3, 7]  # the largest remainder gets the slot
    assert _apportion(np.array([0.5, 0.3, 0.2]), 10).tolist() == [5, 3, 2]
    assert _apportion(np.array([1e-4, 1e-4, 0.9998]), 4).tolist() == [1, 1, 2]  # the big group gives way


def test_a_corpus_of_two_stores_adds_their_groups_and_fingerprints(group_store):
    import hashlib

    one, two = Corpus([TokenStore(group_store)]), Corpus([TokenStore(group_store), TokenStore(group_store)])
    assert two.group_tokens == {g: 2 * n for g, n in one.group_tokens.items()}
    assert one.fingerprint == TokenStore(group_store).fingerprint
    assert two.fingerprint == hashlib.sha256(f"{one.fingerprint}+{one.fingerprint}".encode()).hexdigest()


def test_the_shortest_sequence_is_three_tokens(group_store):
    from twofold.data.sampling import SequenceSampler

    corpus = Corpus([TokenStore(group_store)])
    assert len(SequenceSampler(corpus, {"big": 1.0}, seed=1, seq_len=3).sequence(0)[1][0]) == 4
    with pytest.raises(TwofoldError, match="seq_len 2 is too small"):
        SequenceSampler(corpus, {"big": 1.0}, seed=1, seq_len=2)
