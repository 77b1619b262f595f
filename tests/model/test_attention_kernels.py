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


def may_attend(lengths: list[int], causal: bool, radius: int | None) -> torch.Tensor:
    """[N, N] mask from the definition, one (query, key) pair at a time, independent of `allowed`:
    same sequence; the decoder sees no later key; a sliding window shows the encoder keys at
    distance <= radius and the decoder the `radius` newest keys (itself included)."""
    owner = [s for s, n in enumerate(lengths) for _ in range(n)]
    position = [i for n in lengths for i in range(n)]
    n = len(owner)
    mask = torch.zeros(n, n, dtype=torch.bool)
    for q in range(n):
        for k in range(n):
            if owner[q] != owner[k]:
                continue
            distance = position[q] - position[k]
            if causal:
                ok = 0 <= distance and (radius is None or distance < radius)
            else:
                ok = radius is None or abs(distance) <= radius
            mask[q, k] = ok
    return mask


def dense_attention(q, k, v, mask):
    """softmax(q·kᵀ/√d, masked)·v over all N tokens at once, per head, in float64."""
    scores = torch.einsum("qhd,khd->hqk", q, k) * q.shape[-1] ** -0.5
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    return torch.einsum("hqk,khd->qhd", weights, v).reshape(q.shape[0], -1)


RADII = [3, 33]  # the band kernel's block is 32: wider than the window, then equal to it


def window_edge_layouts(radius: int) -> list[list[int]]:
    """Sequences whose lengths sit at the window's edge, radius - 2 … radius + 3, alone and mixed."""
    edge = [radius + d for d in range(-2, 4)]
    return [[n] for n in edge] + [[n, 3] for n in edge] + [edge, [17], [5, 3]]


@pytest.mark.parametrize("radius", RADII)
@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_kernels_at_the_window_edge_match_a_loop_over_pairs(radius, causal):
    for lengths in window_edge_layouts(radius):
        cu = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
        n = sum(lengths)
        for local in (False, True):
            mask = may_attend(lengths, causal, radius if local else None)
            for kernel in [None, "buckets", "padded"] + (["band"] if local else []):
                layout = PackedLayout.build(cu, None, n, causal, radius)
                q, k, v = (torch.randn(n, 2, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
                out = packed_attention(q, k, v, layout, local, kernel=kernel)
                expected = dense_attention(q, k, v, mask)
                assert (out - expected).abs().max() < 1e-10, (lengths, local, kernel)
                grad = torch.randn_like(out)
                got = torch.autograd.grad(out, (q, k, v), grad)
                want = torch.autograd.grad(expected, (q, k, v), grad)
                for a, b in zip(got, want):
                    assert (a - b).abs().max() < 1e-10, (lengths, local, kernel)
