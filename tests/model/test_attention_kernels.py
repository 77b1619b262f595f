"""Every packed-attention kernel equals per-sequence attention with the mask predicate,
forward and backward, on awkward layouts (empty and 1-token sequences, windows that do and
do not bind, equal lengths, many buckets)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from twofold.model.attention import PackedLayout, allowed, group_lengths, packed_attention

LAYOUTS = [
    [45, 7, 30, 1],
    [150, 2, 0, 40, 33, 34, 1, 100],
    [16] * 5,
    [1],
    list(range(1, 60, 3)),  # many lengths: several buckets
]


def reference(q, k, v, layout: PackedLayout, local: bool) -> torch.Tensor:
    outs = []
    cu = layout.cu_seqlens.tolist()
    for a, b in zip(cu[:-1], cu[1:]):
        if a == b:
            continue
        pos = torch.arange(b - a)
        ok = allowed(pos[:, None], pos[None, :], layout.causal, layout.radius if local else None)
        out = F.scaled_dot_product_attention(*(x[a:b].transpose(0, 1) for x in (q, k, v)), attn_mask=ok)
        outs.append(out.transpose(0, 1).reshape(b - a, -1))
    return torch.cat(outs)


@pytest.mark.parametrize("lengths", LAYOUTS, ids=lambda ls: f"{len(ls)}seq")
@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
@pytest.mark.parametrize("radius", [4, 16])
def test_kernels_match_per_sequence_attention(lengths, causal, radius):
    cu = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
    n = sum(lengths)
    for local in (False, True):
        for kernel in [None, "buckets", "padded"] + (["band"] if local else []):
            layout = PackedLayout.build(cu, None, n, causal, radius)
            q, k, v = (torch.randn(n, 2, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
            out = packed_attention(q, k, v, layout, local, kernel=kernel)
            grad = torch.randn_like(out)
            grads = torch.autograd.grad(out, (q, k, v), grad)
            q2, k2, v2 = (x.detach().requires_grad_() for x in (q, k, v))
            expected = reference(q2, k2, v2, layout, local)
            expected_grads = torch.autograd.grad(expected, (q2, k2, v2), grad)
            assert (out - expected).abs().max() < 1e-10, (kernel, local)
            for got, want in zip(grads, expected_grads):
                assert (got - want).abs().max() < 1e-10, (kernel, local)


def test_buckets_cover_every_nonempty_sequence_once():
    lengths = [5, 0, 300, 17, 17, 256, 1, 90] * 20
    groups = group_lengths(lengths)
    seen = sorted(i for group in groups for i in group)
    assert seen == [i for i, n in enumerate(lengths) if n > 0]
    assert 1 <= len(groups) <= 8
    assert group_lengths([64] * 10) == [list(range(10))]  # equal lengths: one call
