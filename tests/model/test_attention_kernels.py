"""Every packed-attention kernel equals per-sequence attention with the mask predicate,
forward and backward, on awkward layouts (empty and 1-token sequences, windows that do and
do not bind, equal lengths, many buckets)."""

import itertools
import sys

import pytest
import torch
import torch.nn.functional as F

from twofold.errors import TwofoldError
from twofold.model import attention
from twofold.model.attention import PackedLayout, allowed, group_lengths, packed_attention

LAYOUTS = [
    [45, 7, 30, 1],
    [150, 2, 0, 40, 33, 34, 1, 100],
    [16] * 5,
    [1],
    list(range(1, 60, 3)),  # many lengths: several buckets
]


def packed(lengths: list[int], causal: bool, radius: int) -> PackedLayout:
    cu = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
    return PackedLayout.build(cu, None, sum(lengths), causal, radius)


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
    n = sum(lengths)
    for local in (False, True):
        for kernel in [None, "buckets", "padded"] + (["band"] if local else []):
            layout = packed(lengths, causal, radius)
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
        n = sum(lengths)
        for local in (False, True):
            mask = may_attend(lengths, causal, radius if local else None)
            for kernel in [None, "buckets", "padded"] + (["band"] if local else []):
                layout = packed(lengths, causal, radius)
                q, k, v = (torch.randn(n, 2, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
                out = packed_attention(q, k, v, layout, local, kernel=kernel)
                expected = dense_attention(q, k, v, mask)
                assert (out - expected).abs().max() < 1e-10, (lengths, local, kernel)
                grad = torch.randn_like(out)
                got = torch.autograd.grad(out, (q, k, v), grad)
                want = torch.autograd.grad(expected, (q, k, v), grad)
                for a, b in zip(got, want):
                    assert (a - b).abs().max() < 1e-10, (lengths, local, kernel)


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_dropout_zeroes_attention_weights_and_rescales_the_rest(causal):
    """With v = identity, each output row is that query's attention weights: under dropout p every
    weight must be either dropped (0) or kept and divided by 1 - p, and both must happen."""
    lengths, radius, p = [9, 3, 12, 1, 7], 2, 0.5
    n = sum(lengths)
    v = torch.eye(n, dtype=torch.float64)[:, None, :]  # one head, head_dim n: key k -> unit vector k
    for local in (False, True):
        mask = may_attend(lengths, causal, radius if local else None)
        for kernel in [None, "buckets", "padded"] + (["band"] if local else []):
            layout = packed(lengths, causal, radius)
            torch.manual_seed(0)
            q, k = (torch.randn(n, 1, n, dtype=torch.float64) for _ in range(2))
            weights = dense_attention(q, k, v, mask)  # [n queries, n keys]
            if kernel is None:  # the model's entry point, which must pass the dropout on
                out = layout.attend(q, k, v, 0, local, p)
            else:
                out = packed_attention(q, k, v, layout, local, dropout=p, kernel=kernel)
            dropped = out.abs() < 1e-12
            kept = (out - weights / (1 - p)).abs() < 1e-10
            assert bool((dropped | kept).all()), (local, kernel)
            assert bool(dropped[mask].any()) and bool(kept[mask].any()), (local, kernel)
            assert bool(dropped[~mask].all()), (local, kernel)  # hidden keys stay hidden
            without = packed_attention(q, k, v, layout, local, dropout=0.0, kernel=kernel)
            assert (without - weights).abs().max() < 1e-10, (local, kernel)


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_half_precision_on_the_cpu_picks_a_cpu_kernel(causal):
    """bfloat16 on the CPU is not flash-attn's business: the default kernel computes it here."""
    lengths, radius = [20, 5, 33], 4
    n = sum(lengths)
    for local in (False, True):
        mask = may_attend(lengths, causal, radius if local else None)
        q, k, v = (torch.randn(n, 2, 8, dtype=torch.float64) for _ in range(3))
        out = packed_attention(*(x.bfloat16() for x in (q, k, v)), packed(lengths, causal, radius), local)
        assert out.dtype == torch.bfloat16
        assert (out.double() - dense_attention(q, k, v, mask)).abs().max() < 0.05, local


@pytest.mark.skipif(attention._HAS_FLASH, reason="flash-attn is installed")
def test_forcing_flash_without_flash_attn_fails_on_the_import():
    q, k, v = (torch.randn(5, 2, 8) for _ in range(3))
    with pytest.raises(ImportError, match="flash_attn"):
        packed_attention(q, k, v, packed([5], False, 4), False, kernel="flash")


def grouping_cost(lengths, groups, call_cost):
    return sum(len(g) * max(lengths[i] for i in g) ** 2 + call_cost for g in groups)


def best_grouping_cost(lengths, call_cost, max_groups):
    """Cheapest split of the length-sorted non-empty sequences into at most max_groups contiguous
    groups, by trying every split."""
    ordered = sorted((n for n in lengths if n > 0), reverse=True)
    best = float("inf")
    for cuts in range(min(max_groups, len(ordered))):
        for inner in itertools.combinations(range(1, len(ordered)), cuts):
            bounds = [0, *inner, len(ordered)]
            cost = sum((b - a) * ordered[a] ** 2 + call_cost for a, b in zip(bounds[:-1], bounds[1:]))
            best = min(best, cost)
    return best


def test_group_lengths_finds_the_cheapest_contiguous_grouping():
    generator = torch.Generator().manual_seed(3)
    cases = [([300, 1, 1, 1, 1, 1], 1000, 8), ([100, 90, 10, 9, 8], 0, 2), ([7, 5, 1], 0, 3)]
    for _ in range(60):
        count = int(torch.randint(1, 11, (), generator=generator))
        lengths = torch.randint(0, 300, (count,), generator=generator).tolist()
        call_cost = [0, 500, 5000, 16 * 1024][int(torch.randint(0, 4, (), generator=generator))]
        cases.append((lengths, call_cost, int(torch.randint(1, 9, (), generator=generator))))
    split = 0
    for lengths, call_cost, max_groups in cases:
        groups = group_lengths(lengths, call_cost=call_cost, max_groups=max_groups)
        flat = [i for g in groups for i in g]
        assert sorted(flat) == [i for i, n in enumerate(lengths) if n > 0], lengths
        assert all(g for g in groups) and len(groups) <= max_groups
        # contiguous in length order, longest group first
        assert [lengths[i] for i in flat] == sorted((n for n in lengths if n > 0), reverse=True)
        want = best_grouping_cost(lengths, call_cost, max_groups)
        assert grouping_cost(lengths, groups, call_cost) == want, (lengths, call_cost, max_groups, groups)
        split += len(groups) > 1
    assert split >= 20  # the cases do exercise splitting


def may_attend_long(lengths: list[int], causal: bool, radius: int | None) -> torch.Tensor:
    """`may_attend` for long layouts: the same definition, one whole (query, key) grid at a time."""
    owner = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    position = torch.cat([torch.arange(n) for n in lengths])
    distance = position[:, None] - position[None, :]
    ok = owner[:, None] == owner[None, :]
    if causal:
        ok &= distance >= 0
        if radius is not None:
            ok &= distance < radius
    elif radius is not None:
        ok &= distance.abs() <= radius
    return ok


def test_the_long_layout_mask_is_the_loop_over_pairs():
    for lengths, causal, radius in itertools.product([[5, 0, 9, 1], [12, 3]], [False, True], [None, 1, 3]):
        assert torch.equal(may_attend_long(lengths, causal, radius), may_attend(lengths, causal, radius))


@pytest.mark.parametrize("lengths", [[100, 300, 300], [256, 160, 96, 48, 16, 4, 160]],
                         ids=["reordered-equal-lengths", "three-buckets"])
@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_buckets_out_of_packed_order_match_a_loop_over_pairs(lengths, causal):
    """Long sequences whose buckets come out of packed order (a later sequence first), or three and
    more buckets one after another in the grid."""
    n, radius = sum(lengths), 8
    q, k, v = (torch.randn(n, 1, 4, dtype=torch.float64) for _ in range(3))
    for local in (False, True):
        expected = dense_attention(q, k, v, may_attend_long(lengths, causal, radius if local else None))
        for kernel in (None, "buckets"):
            layout = packed(lengths, causal, radius)
            assert len(layout.buckets().buckets) >= 2
            out = packed_attention(q, k, v, layout, local, kernel=kernel)
            assert (out - expected).abs().max() < 1e-10, (local, kernel)


def test_position_ids_restart_in_every_sequence():
    lengths = [3, 0, 5, 1, 4]
    layout = packed(lengths, False, 4)
    assert layout.position_ids.tolist() == [i for n in lengths for i in range(n)]
    assert layout.lengths() == lengths


@pytest.mark.parametrize("cu_seqlens", [[[0], [5]], [[0, 5]], [0], [1, 5], [0, 4]])
def test_malformed_cu_seqlens_are_refused(cu_seqlens):
    with pytest.raises(TwofoldError):
        PackedLayout.build(torch.tensor(cu_seqlens, dtype=torch.int32), None, 5, False, 4)


def fake_flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                                softmax_scale=None, causal=False, window_size=(-1, -1)):
    """flash-attn's varlen kernel as its documentation describes it, in float64 on the CPU: int32
    offsets, max_seqlen bounding every sequence, key j visible to query i of the same sequence when
    i - left <= j <= i + right (-1: unbounded) and, if causal, j <= i; attention dropout p."""
    assert cu_seqlens_q.dtype == torch.int32 and cu_seqlens_k.dtype == torch.int32
    assert torch.equal(cu_seqlens_q, cu_seqlens_k)
    lengths = cu_seqlens_q.diff().tolist()
    assert isinstance(max_seqlen_q, int) and max_seqlen_q == max_seqlen_k and max_seqlen_q >= max(lengths)
    left, right = window_size
    mask = torch.zeros(q.shape[0], q.shape[0], dtype=torch.bool)
    start = 0
    for n in lengths:
        for i in range(n):
            for j in range(n):
                mask[start + i, start + j] = ((left < 0 or j >= i - left) and (right < 0 or j <= i + right)
                                              and (not causal or j <= i))
        start += n
    scale = q.shape[-1] ** -0.5 if softmax_scale is None else softmax_scale
    scores = torch.einsum("qhd,khd->hqk", q, k) * scale
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    weights = F.dropout(weights, p=dropout_p)
    return torch.einsum("hqk,khd->qhd", weights, v)


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_the_flash_path_asks_flash_attn_for_the_mask_predicate(causal, monkeypatch):
    """The arguments handed to flash-attn (window, causal flag, offsets, scale, dropout) give, under
    flash-attn's documented semantics, the same attention as the loop over pairs."""
    fake = type(sys)("flash_attn")
    fake.flash_attn_varlen_func = fake_flash_attn_varlen_func
    monkeypatch.setitem(sys.modules, "flash_attn", fake)
    radius = 3
    for lengths in ([radius + d for d in range(-2, 3)], [9, 1, 6]):
        n = sum(lengths)
        cu = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int64)  # flash-attn wants int32
        for local in (False, True):
            mask = may_attend(lengths, causal, radius if local else None)
            layout = PackedLayout.build(cu, None, n, causal, radius)
            q, k, v = (torch.randn(n, 2, 4, dtype=torch.float64) for _ in range(3))
            out = packed_attention(q, k, v, layout, local, kernel="flash")
            assert (out - dense_attention(q, k, v, mask)).abs().max() < 1e-10, (lengths, local)
        # dropout reaches the kernel: with v = identity each output row is a row of weights
        v = torch.eye(n, dtype=torch.float64)[:, None, :]
        q, k = (torch.randn(n, 1, n, dtype=torch.float64) for _ in range(2))
        weights = dense_attention(q, k, v, mask)
        out = packed_attention(q, k, v, layout, True, dropout=0.5, kernel="flash")
        dropped, kept = out.abs() < 1e-12, (out - 2 * weights).abs() < 1e-10
        assert bool((dropped | kept).all()) and bool(dropped[mask].any()) and bool(kept[mask].any())


def test_flash_attn_installed_leaves_cpu_tensors_to_the_cpu_kernels(monkeypatch):
    monkeypatch.setattr(attention, "_HAS_FLASH", True)  # flash_attn itself is not importable here
    lengths = [7, 2, 5]
    n = sum(lengths)
    for dtype, tolerance in ((torch.float64, 1e-10), (torch.bfloat16, 0.05)):
        q, k, v = (torch.randn(n, 2, 8, dtype=torch.float64) for _ in range(3))
        out = packed_attention(*(x.to(dtype) for x in (q, k, v)), packed(lengths, True, 4), True)
        expected = dense_attention(q, k, v, may_attend(lengths, True, 4))
        assert (out.double() - expected).abs().max() < tolerance, dtype
