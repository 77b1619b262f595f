import numpy as np
import pytest
import torch

from twofold.data.batches import build_batch
from twofold.data.loader import BatchLoader
from twofold.data.mixture import Mixture
from twofold.data.objectives import IGNORE_INDEX, Masker, causal_labels
from twofold.errors import TwofoldError


def loader(store, objective, **overrides):
    settings = dict(seq_len=256, batch_size=16, seed=5, mask_rate=0.3)
    settings.update(overrides)
    return BatchLoader([store], Mixture(temperature=0.5), objective=objective, **settings)


def test_mlm_rate_specials_and_80_10_10(group_store, tokenizer):
    special = tokenizer.special
    specials = torch.tensor(special.all())
    inputs, labels, originals = [], [], []
    mlm, clm = loader(group_store, "mlm"), loader(group_store, "clm")
    for step in range(12):
        masked, plain = mlm.batch(step), clm.batch(step)
        inputs.append(masked.input_ids)
        labels.append(masked.labels)
        originals.append(plain.input_ids)
    inputs, labels, originals = torch.cat(inputs), torch.cat(labels), torch.cat(originals)
    is_special = torch.isin(originals, specials)
    chosen = labels != IGNORE_INDEX
    assert is_special.any()
    assert not (chosen & is_special).any()  # specials are never masked
    assert torch.equal(inputs[is_special], originals[is_special])
    assert torch.equal(labels[chosen], originals[chosen])  # labels are the original tokens
    regular = int((~is_special).sum())
    assert abs(int(chosen.sum()) / regular - 0.3) < 4 * np.sqrt(0.3 * 0.7 / regular)
    n = int(chosen.sum())
    masked_share = float((inputs[chosen] == special.mask).float().mean())
    kept_share = float((inputs[chosen] == originals[chosen]).float().mean())
    random_share = 1 - masked_share - kept_share
    tolerance = 4 * np.sqrt(0.09 / n) + 0.01  # + random draws that hit the original token
    assert abs(masked_share - 0.8) < 4 * np.sqrt(0.16 / n)
    assert abs(kept_share - 0.1) < tolerance and abs(random_share - 0.1) < tolerance
    replaced = chosen & (inputs != special.mask) & (inputs != originals)
    assert not torch.isin(inputs[replaced], specials).any()  # random tokens are regular ones
    assert (inputs[~chosen] == originals[~chosen]).all()


def test_mlm_masks_are_keyed_by_seed_step_and_sequence(group_store):
    a, b = loader(group_store, "mlm").batch(3), loader(group_store, "mlm").batch(3)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
    other = loader(group_store, "mlm", seed=6).batch(3)
    assert not torch.equal(other.labels, a.labels)


def test_clm_labels_never_cross_a_document_boundary_in_packed_sequences(group_store):
    batch = loader(group_store, "clm").batch(0)
    ids, labels = batch.input_ids.tolist(), batch.labels.tolist()
    bounds = batch.cu_seqlens.tolist()
    assert len(bounds) - 1 > batch.num_sequences  # several documents per packed sequence
    for start, stop in zip(bounds, bounds[1:]):
        assert labels[start:stop - 1] == ids[start + 1:stop]  # next token, same document
        assert labels[stop - 1] == IGNORE_INDEX
    assert batch.num_targets == batch.num_tokens - (len(bounds) - 1)


def test_encoder_and_decoder_see_the_same_tokens(group_store):
    encoder, decoder = loader(group_store, "mlm").batch(7), loader(group_store, "clm").batch(7)
    assert encoder.token_hash == decoder.token_hash and encoder.segments == decoder.segments
    chosen = encoder.labels != IGNORE_INDEX
    restored = torch.where(chosen, encoder.labels, encoder.input_ids)
    assert torch.equal(restored, decoder.input_ids)


def test_causal_labels_on_a_hand_made_example():
    ids = np.array([0, 10, 11, 1, 0, 20, 1])
    labels = causal_labels(ids, np.array([0, 4, 7]))
    assert labels.tolist() == [10, 11, 1, -100, 20, 1, -100]


@pytest.mark.parametrize("rate", [0.0, 1.0, 1.5, -0.1])
def test_mask_rate_outside_zero_one_is_refused(rate):
    with pytest.raises(TwofoldError, match="mask rate must be in"):
        Masker(rate, 100, 3, [0, 1, 2, 3, 4])


def test_random_replacements_draw_from_every_regular_token():
    masker = Masker(0.9, 8, 3, [0, 1, 2, 3, 4])  # regular tokens: 5, 6, 7
    inputs, labels = masker(np.full(4000, 6), np.random.default_rng(0))
    chosen = labels != IGNORE_INDEX
    assert set(inputs[chosen & (inputs != 3)].tolist()) == {5, 6, 7}
    assert set(inputs[~chosen].tolist()) == {6}


def test_the_mask_of_a_sequence_is_keyed_by_seed_step_and_global_index(group_store):
    mlm = loader(group_store, "mlm")
    sequences = [mlm.sampler.sequence(k)[1] for k in range(4)]  # the same tokens every time
    labels = lambda **key: build_batch(mlm.corpus, sequences, rank=0, masker=mlm.masker, **key).labels
    base = labels(step=0, first_sequence=0, seed=5)
    assert torch.equal(base, labels(step=0, first_sequence=0, seed=5))
    for other in (dict(step=1, first_sequence=0, seed=5), dict(step=0, first_sequence=4, seed=5),
                  dict(step=0, first_sequence=0, seed=6)):
        assert not torch.equal(base, labels(**other)), other
