"""Who attends to whom, and the kernels that compute it.

All mask semantics live here, in one predicate (`allowed`):
  - attention never crosses a sequence (document) boundary;
  - the decoder is causal (key <= query);
  - sliding-window ("local") layers see a window around the query, with the semantics of
    transformers: encoder |q - k| <= radius; decoder q - radius < k <= q, where
    radius = local_attention // 2 (so the decoder sees half the encoder's keys, as
    ModernBertDecoder does: "128 => 64").

The model always runs on *packed* tokens (all real tokens concatenated, `cu_seqlens`
marking sequence starts). Kernels:
  - `varlen`: PyTorch's own FlashAttention-2 varlen kernel (`torch.nn.attention.varlen.varlen_attn`,
    with sliding windows), the default on CUDA in bf16/fp16: one call per layer, and no host
    read of the layout, so a training step never waits for the host.
  - `flash`: flash-attn's varlen kernel, preferred on CUDA when that package is installed.
  Neither has attention-probability dropout in this form (`varlen_attn` has none at all), so a
  model with `attention_dropout > 0` in training uses flash-attn if installed, else the CPU
  kernels below (the recipes use attention-*output* dropout, which is not affected).
  - `buckets` (global layers, and local layers whose window hardly binds): sequences are
    sorted by length and grouped into a few buckets; each bucket is re-padded to its own
    longest sequence for PyTorch's `scaled_dot_product_attention`. The grouping minimises
    padded attention area plus a per-call cost, so a batch of similar lengths is one call and
    a batch of very different lengths wastes little on padding. Only attention is padded;
    every projection and MLP runs on real tokens only.
  - `band` (sliding-window layers when the window is much shorter than the sequences): the
    packed stream is cut into blocks of `B >= radius` tokens; each query block attends to
    its neighbouring key blocks (3 for the encoder, 2 for the causal decoder) under the mask
    predicate, so cost grows with tokens x window, not with the square of the sequence
    length, and there is no padding at all.
Chosen for CPU by measurement (benchmarks/attention_kernels.py, docs/benchmarks.md): one
block-diagonal mask over the whole concatenation costs O(total^2); a Python loop over
sequences pays a call per sequence (slow at batch 64 of short sequences); a single re-padded
grid pays for padding and for the full square in windowed layers; FlexAttention on CPU needs
torch.compile (seconds per new shape) and was not faster here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from twofold.errors import TwofoldError

_HAS_FLASH = importlib.util.find_spec("flash_attn") is not None
_HAS_VARLEN = importlib.util.find_spec("torch.nn.attention.varlen") is not None
FAST_KERNELS = ("varlen", "flash")

# Cost model, in (query, key) pairs: a bare SDPA forward + backward call costs about as much as
# ~4k pairs of attention on 2 CPU cores (benchmarks/attention_kernels.py prints the calibration);
# a bucket also pays its mask, split and concatenation, so we charge 16k.
CALL_COST_PAIRS = 16 * 1024
MAX_BUCKETS = 8
MIN_BAND_BLOCK = 32
MAX_DP_UNITS = 64


def allowed(q_pos: torch.Tensor, k_pos: torch.Tensor, causal: bool, radius: int | None) -> torch.Tensor:
    """May a query at position q_pos see a key at k_pos (same sequence)? Broadcasts.

    radius None means a global layer.
    """
    if causal:
        ok = k_pos <= q_pos
        if radius is not None:
            ok = ok & (k_pos > q_pos - radius)
        return ok
    if radius is None:
        return torch.ones_like(q_pos - k_pos, dtype=torch.bool)
    return (q_pos - k_pos).abs() <= radius


@dataclass
class Bucket:
    """Sequences re-padded together into a [count, width] grid."""

    rows: torch.Tensor | None  # int64: rows of the [count * width] grid that are real (None: all)
    valid: torch.Tensor  # bool [count, width]
    count: int
    width: int


@dataclass
class Buckets:
    """All buckets, laid out one after another in one flat grid of rows.

    `gather` picks each grid row from the packed tokens (padding rows repeat token 0: their
    queries are discarded and their keys are masked, or unreachable under causal masking
    with right padding); `scatter` picks each packed token's row back out of the grid.
    """

    buckets: list[Bucket]
    gather: torch.Tensor | None  # int64 [rows]; None: the grid is the packed order itself
    scatter: torch.Tensor | None  # int64 [N]


def group_lengths(lengths: list[int], call_cost: float = CALL_COST_PAIRS, max_groups: int = MAX_BUCKETS,
                  ) -> list[list[int]]:
    """Indices of sequences grouped into buckets: sorted by length, contiguous groups chosen
    (dynamic programming) to minimise sum(count * longest^2) + call_cost per group."""
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: -lengths[i])
    if not order:
        return []
    # Units of consecutive sorted sequences keep the search small for very large batches.
    per_unit = -(-len(order) // MAX_DP_UNITS)
    units = [order[i:i + per_unit] for i in range(0, len(order), per_unit)]
    sizes = [lengths[u[0]] for u in units]  # descending: a group's first unit holds its longest
    counts = [0]
    for u in units:
        counts.append(counts[-1] + len(u))
    s = len(units)
    inf = float("inf")
    # best[g][i]: cost of the first i sequences in g groups; choice[g][i]: where the last group starts
    best = [[inf] * (s + 1) for _ in range(max_groups + 1)]
    choice = [[0] * (s + 1) for _ in range(max_groups + 1)]
    best[0][0] = 0.0
    for g in range(1, max_groups + 1):
        for i in range(1, s + 1):
            row, prev = best[g], best[g - 1]
            for j in range(i):
                if prev[j] == inf:
                    continue
                cost = prev[j] + (counts[i] - counts[j]) * sizes[j] * sizes[j] + call_cost
                if cost < row[i]:
                    row[i], choice[g][i] = cost, j
    groups_used = min(range(1, max_groups + 1), key=lambda g: best[g][s])
    groups, i = [], s
    for g in range(groups_used, 0, -1):
        j = choice[g][i]
        groups.append([seq for unit in units[j:i] for seq in unit])
        i = j
    return groups[::-1]


@dataclass
class PackedLayout:
    """Sequence structure of a packed batch, and the derived tensors each kernel needs."""

    cu_seqlens: torch.Tensor  # int32 [S + 1]
    max_seqlen: int
    position_ids: torch.Tensor  # int64 [N], restarting at 0 in each sequence
    causal: bool
    radius: int
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, cu_seqlens: torch.Tensor, max_seqlen: int | None, num_tokens: int,
              causal: bool, radius: int, position_ids: torch.Tensor | None = None) -> PackedLayout:
        cu = cu_seqlens.to(torch.int64)
        if cu.dim() != 1 or cu.numel() < 2 or int(cu[0]) != 0 or int(cu[-1]) != num_tokens:
            raise TwofoldError(
                f"cu_seqlens must be 1-D, start at 0 and end at the number of tokens ({num_tokens}); "
                f"got {cu_seqlens.tolist()[:8]}{'...' if cu.numel() > 8 else ''}"
            )
        lengths = cu.diff()
        if bool((lengths < 0).any()):
            raise TwofoldError("cu_seqlens must be non-decreasing (sequence lengths cannot be negative)")
        longest = int(lengths.max())
        if max_seqlen is None:
            max_seqlen = longest
        elif max_seqlen < longest:
            raise TwofoldError(f"max_seqlen {max_seqlen} is smaller than the longest sequence ({longest})")
        if position_ids is None:
            seq_ids = torch.repeat_interleave(torch.arange(lengths.numel(), device=cu.device), lengths)
            position_ids = torch.arange(num_tokens, device=cu.device) - cu[:-1][seq_ids]
        return cls(cu_seqlens.to(torch.int32), int(max_seqlen), position_ids.to(torch.int64), causal, radius)

    @property
    def num_sequences(self) -> int:
        return self.cu_seqlens.numel() - 1

    @property
    def num_tokens(self) -> int:
        return int(self.position_ids.numel())

    def lengths(self) -> list[int]:
        if "lengths" not in self._cache:
            self._cache["lengths"] = self.cu_seqlens.to(torch.int64).diff().tolist()
        return self._cache["lengths"]

    def window_binds(self, width: int) -> bool:
        """Does the sliding window hide any key from a query in a sequence of `width` tokens?"""
        return width - 1 > (self.radius - 1 if self.causal else self.radius)

    def attend(self, q, k, v, layer_idx: int, local: bool, dropout: float) -> torch.Tensor:
        return packed_attention(q, k, v, self, local, dropout)

    # -------------------------------------------------------------- bucketed re-padding

    def buckets(self, max_buckets: int = MAX_BUCKETS) -> Buckets:
        """Sequences grouped by length into buckets (see `group_lengths`), as one flat grid."""
        key = ("buckets", max_buckets)
        if key not in self._cache:
            lengths = self.lengths()
            cu = self.cu_seqlens.to(torch.int64)
            device = cu.device
            buckets, gathers, scatters, offset = [], [], [], 0
            for group in group_lengths(lengths, max_groups=max_buckets):
                seqs = torch.tensor(group, device=device)
                lens = cu[1:][seqs] - cu[:-1][seqs]
                width = lengths[group[0]]
                steps = torch.arange(width, device=device)
                valid = steps[None, :] < lens[:, None]
                tokens = cu[:-1][seqs][:, None] + steps[None, :]
                rectangular = all(lengths[i] == width for i in group)
                rows = None if rectangular else valid.flatten().nonzero().squeeze(1)
                buckets.append(Bucket(rows, valid, len(group), width))
                gathers.append(torch.where(valid, tokens, 0).flatten())
                scatters.append((tokens[valid], offset + valid.flatten().nonzero().squeeze(1)))
                offset += len(group) * width
            n = self.num_tokens
            gather = torch.cat(gathers) if gathers else torch.zeros(0, dtype=torch.int64, device=device)
            scatter = torch.zeros(n, dtype=torch.int64, device=device)
            for tokens, grid_rows in scatters:
                scatter[tokens] = grid_rows
            if gather.numel() == n and bool((gather == torch.arange(n, device=device)).all()):
                gather = scatter = None  # rectangular and in order: views only
            self._cache[key] = Buckets(buckets, gather, scatter)
        return self._cache[key]

    def bucket_masks(self, local: bool, max_buckets: int = MAX_BUCKETS) -> list[torch.Tensor | None]:
        """SDPA mask per bucket (None: no mask, or `is_causal` for the decoder)."""
        key = ("bucket-masks", local, max_buckets)
        if key not in self._cache:
            masks = []
            for b in self.buckets(max_buckets).buckets:
                radius = self.radius if local and self.window_binds(b.width) else None
                if radius is None and (self.causal or b.rows is None):
                    masks.append(None)  # plain causal (right padding never leaks) or full attention
                    continue
                if radius is None:  # encoder, global: hide padding keys only
                    masks.append(b.valid[:, None, None, :])
                    continue
                steps = torch.arange(b.width, device=b.valid.device)
                ok = allowed(steps[:, None], steps[None, :], self.causal, radius)[None] & b.valid[:, None, :]
                # Padding queries attend everywhere: their rows are discarded, and a fully
                # masked row would put NaN into the gradients of real keys.
                masks.append((ok | ~b.valid[:, :, None]).unsqueeze(1))
            self._cache[key] = masks
        return self._cache[key]

    # -------------------------------------------------------------- sliding-window band

    def band_block(self) -> int:
        return max(self.radius, MIN_BAND_BLOCK)

    def band_mask(self) -> torch.Tensor:
        """Boolean mask [blocks, 1, B, keys] of the band kernel (keys = 3B encoder, 2B decoder)."""
        if "band" not in self._cache:
            block = self.band_block()
            n = self.num_tokens
            device = self.position_ids.device
            blocks = -(-n // block)
            span = (2 if self.causal else 3) * block
            seq = torch.repeat_interleave(torch.arange(self.num_sequences, device=device),
                                          self.cu_seqlens.to(torch.int64).diff())
            q_idx = torch.arange(blocks * block, device=device).view(blocks, block, 1)
            k_idx = (torch.arange(blocks, device=device)[:, None] * block - block
                     + torch.arange(span, device=device)[None, :]).view(blocks, 1, span)
            q_seq = torch.where(q_idx < n, seq[q_idx.clamp(max=n - 1)], -1)
            k_seq = torch.where((k_idx >= 0) & (k_idx < n), seq[k_idx.clamp(0, n - 1)], -2)
            ok = (q_seq == k_seq) & allowed(q_idx, k_idx, self.causal, self.radius)
            self._cache["band"] = (ok | (q_seq < 0)).unsqueeze(1)  # padding queries: any row
        return self._cache["band"]

    def band_pays(self, max_buckets: int = MAX_BUCKETS) -> bool:
        """Is the band kernel cheaper than the buckets for a sliding-window layer? (pair counts)"""
        if "band-pays" not in self._cache:
            block = self.band_block()
            n = self.num_tokens
            band = -(-n // block) * block * (2 if self.causal else 3) * block
            buckets = sum(b.count * b.width * b.width for b in self.buckets(max_buckets).buckets)
            self._cache["band-pays"] = band < buckets and self.window_binds(max(self.lengths(), default=0))
        return self._cache["band-pays"]


def packed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: PackedLayout,
                     local: bool, dropout: float = 0.0, kernel: str | None = None) -> torch.Tensor:
    """Attention over packed q/k/v [N, heads, head_dim] -> [N, heads * head_dim].

    `kernel` forces one ("varlen", "flash", "buckets", "padded" = one bucket, "band" for local
    layers); by default a fast kernel on CUDA (`fast_kernel`), else band or buckets by the cost model.
    """
    scale = q.shape[-1] ** -0.5
    kernel = kernel or fast_kernel(q, dropout)
    if kernel is None:
        kernel = "band" if local and layout.band_pays() else "buckets"
    if kernel in FAST_KERNELS:
        return varlen_attention(q, k, v, layout.cu_seqlens, layout.max_seqlen, layout.causal, layout.radius,
                                local, dropout, kernel)
    if kernel == "band":
        if not local:
            raise ValueError("the band kernel serves sliding-window layers only")
        return _band(q, k, v, layout, dropout, scale)
    if kernel in ("buckets", "padded"):
        return _buckets(q, k, v, layout, local, dropout, scale, 1 if kernel == "padded" else MAX_BUCKETS)
    raise ValueError(f"unknown attention kernel {kernel!r}")


def _buckets(q, k, v, layout: PackedLayout, local: bool, dropout: float, scale: float, max_buckets: int):
    grid = layout.buckets(max_buckets)
    masks = layout.bucket_masks(local, max_buckets)
    n, heads, dim = q.shape
    if grid.gather is not None:  # one gather per tensor for all buckets
        q, k, v = (x.index_select(0, grid.gather) for x in (q, k, v))
    sizes = [b.count * b.width for b in grid.buckets]
    outs = []
    for b, mask, qb, kb, vb in zip(grid.buckets, masks, q.split(sizes), k.split(sizes), v.split(sizes)):
        qb, kb, vb = (x.view(b.count, b.width, heads, dim).transpose(1, 2) for x in (qb, kb, vb))
        out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, dropout_p=dropout,
                                             is_causal=layout.causal and mask is None, scale=scale)
        outs.append(out.transpose(1, 2).reshape(b.count * b.width, heads * dim))
    out = torch.cat(outs) if len(outs) > 1 else outs[0]
    return out if grid.scatter is None else out.index_select(0, grid.scatter)


def _band(q, k, v, layout: PackedLayout, dropout: float, scale: float):
    n, heads, dim = q.shape
    block = layout.band_block()
    blocks = -(-n // block)
    tail = blocks * block - n
    span = (2 if layout.causal else 3) * block
    if tail:
        q = F.pad(q, (0, 0, 0, 0, 0, tail))
    q = q.view(blocks, block, heads, dim).transpose(1, 2)

    def neighbours(x):  # [blocks, heads, span, dim] view: key blocks j-1, j (, j+1) of query block j
        x = F.pad(x, (0, 0, 0, 0, block, tail + (0 if layout.causal else block)))
        return x.unfold(0, span, block).permute(0, 1, 3, 2)

    out = F.scaled_dot_product_attention(q, neighbours(k), neighbours(v), attn_mask=layout.band_mask(),
                                         dropout_p=dropout, scale=scale)
    out = out.transpose(1, 2).reshape(blocks * block, heads * dim)
    return out[:n] if tail else out


def fast_kernel(q: torch.Tensor, dropout: float) -> str | None:
    """The varlen kernel for these queries, or None where only the CPU kernels serve: flash-attn
    when installed, else PyTorch's `varlen_attn` (which has no attention-probability dropout)."""
    if not (q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)):
        return None
    if _HAS_FLASH:
        return "flash"
    return "varlen" if _HAS_VARLEN and dropout == 0 else None


def window(local: bool, causal: bool, radius: int) -> tuple[int, int]:
    """FlashAttention's (left, right) window for `allowed`: a query at i sees keys in
    [i - left, i + right], -1 meaning unbounded."""
    if not local:
        return (-1, 0) if causal else (-1, -1)
    return (radius - 1, 0) if causal else (radius, radius)  # q - radius < k <= q; |q - k| <= radius


def varlen_attention(q, k, v, cu_seqlens: torch.Tensor, max_seqlen: int, causal: bool, radius: int,
                     local: bool, dropout: float = 0.0, kernel: str = "varlen") -> torch.Tensor:
    """One varlen call over packed q/k/v [N, heads, head_dim] -> [N, heads * head_dim]; reads
    nothing back to the host (`cu_seqlens` int32 on q's device, `max_seqlen` a plain int)."""
    scale = q.shape[-1] ** -0.5
    left_right = window(local, causal, radius)
    if kernel == "flash":
        from flash_attn import flash_attn_varlen_func

        out = flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, dropout_p=dropout,
                                     softmax_scale=scale, causal=causal, window_size=left_right)
    elif kernel == "varlen":
        if dropout:
            raise ValueError("varlen_attn has no attention-probability dropout; use the CPU kernels or flash-attn")
        from torch.nn.attention.varlen import varlen_attn

        out = varlen_attn(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, scale=scale,
                          window_size=left_right)
    else:
        raise ValueError(f"unknown varlen kernel {kernel!r}")
    return out.reshape(out.shape[0], -1)


@dataclass
class VarlenLayout:
    """A packed batch's layout as tensors the host built (the trainer's path): nothing is read
    back from the device, and every shape is fixed by the caller (padding tokens form their own
    sequences), so a compiled step sees the same shapes batch after batch.

    Attention is one varlen call per layer where a fast kernel serves (`kernel`, or chosen per
    call by `fast_kernel`); elsewhere (CPU, fp32, attention dropout) the layout falls back to a
    `PackedLayout` and its kernels, which read the lengths on the host.
    """

    cu_seqlens: torch.Tensor  # int32 [S + 1], on the model's device
    max_seqlen: int  # an upper bound: the phase's sequence length
    position_ids: torch.Tensor  # int64 [N]
    causal: bool
    radius: int
    kernel: str | None = None  # "varlen" / "flash" forces it; None: fast_kernel() per call
    _packed: PackedLayout | None = field(default=None, repr=False)

    def attend(self, q, k, v, layer_idx: int, local: bool, dropout: float) -> torch.Tensor:
        kernel = self.kernel or fast_kernel(q, dropout)
        if kernel is not None:
            return varlen_attention(q, k, v, self.cu_seqlens, self.max_seqlen, self.causal, self.radius, local,
                                    dropout, kernel)
        if self._packed is None:
            self._packed = PackedLayout.build(self.cu_seqlens, None, q.shape[0], self.causal, self.radius,
                                              self.position_ids)
        return packed_attention(q, k, v, self._packed, local, dropout)
