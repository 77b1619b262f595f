"""A CPU stand-in for PyTorch's FlashAttention-2 varlen kernel (`torch.nn.attention.varlen`).

The real kernel runs on CUDA only (on the CPU it raises), so the tests register this one as the
CPU implementation of the same custom ops (`torch_attn::_varlen_attn` and its backward). It
implements the kernel's documented semantics in plain tensor code: int32 `cu_seq` offsets, every
sequence at most `max_q` long, key j visible to query i of the same sequence when
i - left <= j <= i + right (-1: unbounded), `is_causal` meaning window (-1, 0); it returns the
log-sum-exp as [heads, tokens] in fp32 as the kernel does. `varlen_attn` itself, its autograd
and its fake (meta) implementation are PyTorch's own, so compiled graphs see the real op.
"""

from __future__ import annotations

import torch
from torch.nn.attention import varlen  # noqa: F401  (defines the custom ops)

calls = {"forward": 0, "backward": 0}


def visible(cu_seq: torch.Tensor, max_len: int, is_causal: bool, window: list[int] | None) -> torch.Tensor:
    assert cu_seq.dtype == torch.int32, "varlen_attn takes int32 offsets"
    lengths = cu_seq.diff().long()
    assert not lengths.numel() or int(lengths.max()) <= max_len, "a sequence is longer than max_seqlen"
    n = int(cu_seq[-1])
    sequence = torch.repeat_interleave(torch.arange(lengths.numel()), lengths)
    position = torch.arange(n)
    left, right = window if window is not None else (-1, -1)
    if is_causal:
        right = 0
    i, j = position[:, None], position[None, :]
    ok = sequence[:, None] == sequence[None, :]
    if left >= 0:
        ok &= j >= i - left
    if right >= 0:
        ok &= j <= i + right
    return ok


def _weights(q, k, mask, scale):
    """Attention weights [heads, q, k] and log-sum-exp [heads, q], in fp32 (fp64 stays fp64)."""
    dtype = torch.promote_types(q.dtype, torch.float32)
    scores = torch.einsum("qhd,khd->hqk", q.to(dtype), k.to(dtype)) * scale
    scores = scores.masked_fill(~mask, float("-inf"))
    lse = scores.logsumexp(-1)
    return (scores - lse[..., None]).exp().nan_to_num(), lse


@torch.library.register_kernel("torch_attn::_varlen_attn", "cpu")
def _forward(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, scale=None, window_size=None,
             enable_gqa=False, seqused_k=None, block_table=None, num_splits=None):
    calls["forward"] += 1
    assert torch.equal(cu_seq_q, cu_seq_k) and max_q == max_k
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    weights, lse = _weights(query, key, visible(cu_seq_q, max_q, is_causal, window_size), scale)
    out = torch.einsum("hqk,khd->qhd", weights, value.to(weights.dtype))
    # Contiguous, as the kernel's outputs are (compiled graphs view them so).
    return out.to(query.dtype).contiguous(), lse.float().contiguous(), torch.zeros(2, dtype=torch.uint64)


@torch.library.register_kernel("torch_attn::_varlen_attn_backward", "cpu")
def _backward(grad_out, query, key, value, out, lse, cu_seq_q, cu_seq_k, max_q, max_k, is_causal, rng_state,
              scale=None, window_size=None):
    calls["backward"] += 1
    # Autograd is off inside a kernel: the attention backward written out (as FlashAttention does).
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    weights, _ = _weights(query, key, visible(cu_seq_q, max_q, is_causal, window_size), scale)
    q, k, v, d_out = (x.to(weights.dtype) for x in (query, key, value, grad_out))
    d_v = torch.einsum("hqk,qhd->khd", weights, d_out)
    d_weights = torch.einsum("qhd,khd->hqk", d_out, v)
    d_scores = weights * (d_weights - (weights * d_weights).sum(-1, keepdim=True)) * scale
    d_q = torch.einsum("hqk,khd->qhd", d_scores, k)
    d_k = torch.einsum("hqk,qhd->khd", d_scores, q)
    return tuple(d.to(x.dtype).contiguous() for d, x in ((d_q, query), (d_k, key), (d_v, value)))
