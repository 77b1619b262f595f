"""Attention-probability dropout (`attention_dropout`, apart from the output dropout the recipes use):
each kernel drops whole attention weights and rescales the kept ones by 1/(1-p), only among the keys
a query may see, reproducibly per seed; a model with it is transformers' model in eval mode and
random only in training."""

from __future__ import annotations

import itertools

import pytest
import torch

from twofold.model import TwofoldModel, preset
from twofold.model.attention import PackedLayout, packed_attention

from .hf_reference import hf_twin


def packed(lengths: list[int], causal: bool, radius: int) -> PackedLayout:
    cu = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
    return PackedLayout.build(cu, None, sum(lengths), causal, radius)


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
@pytest.mark.parametrize("kernel, local", [("buckets", False), ("padded", False), ("buckets", True), ("band", True)])
def test_each_kernel_drops_whole_weights_and_rescales_the_kept_ones(causal, kernel, local):
    lengths, p = [5, 9, 3, 12], 0.3
    n = sum(lengths)
    q, k = (torch.randn(n, 1, n, dtype=torch.float64) for _ in range(2))
    v = torch.eye(n, dtype=torch.float64).view(n, 1, n)  # value of key j = e_j: output row i = i's weights
    layout = packed(lengths, causal, radius=2)
    weights = packed_attention(q, k, v, layout, local, kernel=kernel)
    torch.manual_seed(0)
    dropped = packed_attention(q, k, v, layout, local, dropout=p, kernel=kernel)
    torch.manual_seed(0)
    assert torch.equal(packed_attention(q, k, v, layout, local, dropout=p, kernel=kernel), dropped)
    assert not torch.equal(packed_attention(q, k, v, layout, local, dropout=p, kernel=kernel), dropped)
    seen = weights != 0
    kept = dropped != 0
    assert not (kept & ~seen).any()  # never a key the query may not see
    assert torch.allclose(dropped[kept], weights[kept] / (1 - p))
    share = 1 - kept.sum().item() / seen.sum().item()
    assert abs(share - p) < 0.15, share  # about p of the weights dropped (~100 weights here)


def test_a_model_with_attention_dropout_is_transformers_in_eval_and_random_only_in_training():
    for causal in (False, True):
        ours = TwofoldModel(preset("tiny", causal=causal, local_attention=8, global_attn_every_n_layers=2,
                                   num_hidden_layers=3, attention_dropout=0.4, attention_output_dropout=0.0)).eval()
        twin = hf_twin(ours)
        assert twin.config.attention_dropout == 0.4
        ids = torch.randint(5, 500, (2, 30))
        with torch.no_grad():
            expected = twin(input_ids=ids).logits
            assert (ours(ids).logits - expected).abs().max() <= 1e-5
            ours.train()
            torch.manual_seed(1)
            first = ours(ids).logits
            torch.manual_seed(1)
            assert torch.equal(ours(ids).logits, first)
            assert (first - expected).abs().max() > 1e-3  # the probabilities were dropped
            off = TwofoldModel(ours.config.replace(attention_dropout=0.0)).train()  # the only dropout that was on
            off.load_state_dict(ours.state_dict())
            assert (off(ids).logits - expected).abs().max() <= 1e-5
