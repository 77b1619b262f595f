"""Numerical parity with transformers' ModernBERT encoder and decoder (fp32, <= 1e-5)."""

import pytest
import torch

from twofold.model import TwofoldModel, preset
from twofold.model.heads import SequenceClassifier

from .hf_reference import hf_twin

TOL = 1e-5
# Small windows and both global-layer periods, so sequences are longer than the window.
SHAPES = [dict(local_attention=8, global_attn_every_n_layers=2, num_hidden_layers=4),
          dict(local_attention=16, global_attn_every_n_layers=3, num_hidden_layers=4)]


def make(causal: bool, **shape) -> TwofoldModel:
    return TwofoldModel(preset("tiny", causal=causal, **shape)).eval()


def padded_batch(vocab: int, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(lengths)
    ids = torch.randint(5, vocab, (len(lengths), width))
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    return ids * mask + 2 * (1 - mask), mask  # pad id 2 where masked


def pack(ids: torch.Tensor, mask: torch.Tensor):
    lengths = mask.sum(1)
    cu = torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
    return ids[mask.bool()], cu, int(lengths.max())


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
@pytest.mark.parametrize("shape", SHAPES, ids=["w8-g2", "w16-g3"])
@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_logits_match_transformers_padded_and_packed(causal, shape, impl):
    ours = make(causal, **shape)
    twin = hf_twin(ours, impl)
    ids, mask = padded_batch(ours.config.vocab_size, [45, 7, 30, 1])
    real = mask.bool()
    with torch.no_grad():
        expected = twin(input_ids=ids, attention_mask=mask).logits[real]
        padded = ours(ids, attention_mask=mask).logits[real]
        flat, cu, longest = pack(ids, mask)
        packed = ours(flat, cu_seqlens=cu, max_seqlen=longest).logits
    assert (padded - expected).abs().max() <= TOL
    assert (packed - expected).abs().max() <= TOL


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_training_mode_gradients_match_transformers(causal):
    """Same loss and same gradients as transformers, through sparse prediction."""
    ours = make(causal, **SHAPES[0]).train()
    twin = hf_twin(ours).train()
    ids, mask = padded_batch(ours.config.vocab_size, [40, 23])
    labels = torch.full_like(ids, -100)
    if causal:
        labels[:, :-1] = ids[:, 1:]
        labels[mask == 0] = -100
        labels[0, 39] = labels[1, 22] = -100  # nothing predicted past a sequence's end
        hf_labels = ids.masked_fill(mask == 0, -100)
    else:
        chosen = (torch.rand(ids.shape) < 0.3) & mask.bool()
        labels[chosen] = ids[chosen]
        hf_labels = labels
    loss = ours(ids, attention_mask=mask, labels=labels).loss
    hf_loss = twin(input_ids=ids, attention_mask=mask, labels=hf_labels).loss
    assert torch.allclose(loss, hf_loss, atol=1e-6)
    loss.backward()
    hf_loss.backward()
    ours_grad = ours.model.layers[1].attn.Wqkv.weight.grad
    hf_layer = twin.model.layers[1].attn
    hf_grad = hf_layer.Wqkv.weight.grad if not causal else torch.cat(
        [hf_layer.q_proj.weight.grad, hf_layer.k_proj.weight.grad, hf_layer.v_proj.weight.grad])
    assert (ours_grad - hf_grad).abs().max() <= TOL


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_sparse_prediction_loss_equals_dense(causal):
    model = make(causal)
    ids, mask = padded_batch(model.config.vocab_size, [33, 12, 20])
    labels = torch.where((torch.rand(ids.shape) < 0.3) & mask.bool(), ids, torch.full_like(ids, -100))
    with torch.no_grad():
        out = model(ids, attention_mask=mask, labels=labels)
        dense = model(ids, attention_mask=mask).logits
    reference = torch.nn.functional.cross_entropy(dense.view(-1, dense.shape[-1]), labels.view(-1))
    assert out.logits.shape[0] == int((labels != -100).sum()) == int(out.num_targets)
    assert torch.allclose(out.loss, reference, atol=1e-6)


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_classification_head_matches_transformers(causal, pooling):
    if causal and pooling == "mean":
        pytest.skip("transformers' decoder classifier pools the last token only")
    config = preset("tiny", causal=causal, **SHAPES[0])
    ours = SequenceClassifier(config, num_labels=3, pooling=None if causal else pooling).eval()
    twin = hf_twin(ours)
    ids, mask = padded_batch(config.vocab_size, [30, 9, 17])
    with torch.no_grad():
        expected = twin(input_ids=ids, attention_mask=mask).logits
        got = ours(ids, attention_mask=mask).logits
        flat, cu, longest = pack(ids, mask)
        packed = ours(flat, cu_seqlens=cu, max_seqlen=longest).logits
    assert (got - expected).abs().max() <= TOL
    assert (packed - expected).abs().max() <= TOL


def test_packed_equals_each_sequence_alone():
    """Attention never crosses a sequence boundary: packing changes nothing."""
    for causal in (False, True):
        model = make(causal, **SHAPES[0])
        ids, mask = padded_batch(model.config.vocab_size, [25, 14, 31])
        flat, cu, longest = pack(ids, mask)
        with torch.no_grad():
            packed = model(flat, cu_seqlens=cu, max_seqlen=longest).logits
            alone = torch.cat([model(ids[i, : int(mask[i].sum())]).logits[0] for i in range(3)])
        assert (packed - alone).abs().max() <= TOL
