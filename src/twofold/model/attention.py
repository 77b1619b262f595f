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
  - `flash`: flash-attn's varlen kernel, used automatically on CUDA when installed.
  - `sdpa`: re-pads q/k/v to [sequences, heads, longest, head_dim] for PyTorch's
    `scaled_dot_product_attention` with the mask above. Only attention is padded; every
    projection and MLP runs on real tokens only. Chosen for CPU by measurement (see
    docs/benchmarks.md): a single block-diagonal mask over the whole concatenation costs
    O(total²) and a Python loop over sequences is slower at batch 64 of short sequences.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from twofold.errors import TwofoldError

_HAS_FLASH = importlib.util.find_spec("flash_attn") is not None


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

    def _padding(self) -> tuple[torch.Tensor | None, torch.Tensor, int]:
        """(flat index of each token in a [S * L] grid or None if already rectangular, valid [S, L], L)."""
        if "padding" not in self._cache:
            cu = self.cu_seqlens.to(torch.int64)
            lengths = cu.diff()
            width = int(lengths.max()) if lengths.numel() else 0
            steps = torch.arange(width, device=cu.device)
            valid = steps[None, :] < lengths[:, None]
            rectangular = bool((lengths == width).all())
            index = None if rectangular else valid.flatten().nonzero().squeeze(1)
            self._cache["padding"] = (index, valid, width)
        return self._cache["padding"]

    def sdpa_mask(self, local: bool) -> torch.Tensor | None:
        """Boolean mask [S, 1, L, L] for the padded kernel (None: use is_causal / no mask)."""
        key = ("mask", local)
        if key not in self._cache:
            index, valid, width = self._padding()
            radius = self.radius if local and self._window_binds(width) else None
            if radius is None and (self.causal or index is None):
                mask = None  # plain causal (right padding never leaks) or full attention
            else:
                steps = torch.arange(width, device=valid.device)
                ok = allowed(steps[:, None], steps[None, :], self.causal, radius)[None]
                ok = ok & valid[:, None, :]
                # Padding queries attend everywhere: their rows are discarded, and a fully
                # masked row would put NaN into the gradients of real keys.
                mask = (ok | ~valid[:, :, None]).unsqueeze(1)
            self._cache[key] = mask
        return self._cache[key]

    def _window_binds(self, width: int) -> bool:
        # A window wider than every sequence changes nothing; skip the mask then.
        return width - 1 > (self.radius - 1 if self.causal else self.radius)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """[N, H, D] packed -> [S, H, L, D] padded with zeros."""
        index, _, width = self._padding()
        if index is None:
            return x.view(self.num_sequences, width, *x.shape[1:]).transpose(1, 2)
        grid = x.new_zeros(self.num_sequences * width, *x.shape[1:])
        grid = grid.index_copy(0, index, x)
        return grid.view(self.num_sequences, width, *x.shape[1:]).transpose(1, 2)

    def attend(self, q, k, v, layer_idx: int, local: bool, dropout: float) -> torch.Tensor:
        return packed_attention(q, k, v, self, local, dropout)

    def unpad(self, y: torch.Tensor) -> torch.Tensor:
        """[S, H, L, D] -> [N, H * D]."""
        index, _, width = self._padding()
        flat = y.transpose(1, 2).reshape(self.num_sequences * width, -1)
        return flat if index is None else flat.index_select(0, index)


def packed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: PackedLayout,
                     local: bool, dropout: float = 0.0) -> torch.Tensor:
    """Attention over packed q/k/v [N, heads, head_dim] -> [N, heads * head_dim]."""
    scale = q.shape[-1] ** -0.5
    if _HAS_FLASH and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        return _flash_varlen(q, k, v, layout, local, dropout, scale)
    mask = layout.sdpa_mask(local)
    out = F.scaled_dot_product_attention(
        layout.pad(q), layout.pad(k), layout.pad(v), attn_mask=mask, dropout_p=dropout,
        is_causal=layout.causal and mask is None, scale=scale,
    )
    return layout.unpad(out)


def _flash_varlen(q, k, v, layout: PackedLayout, local: bool, dropout: float, scale: float):
    from flash_attn import flash_attn_varlen_func

    if not local:
        window = (-1, -1)
    elif layout.causal:
        window = (layout.radius - 1, 0)  # q - radius < k <= q
    else:
        window = (layout.radius, layout.radius)  # |q - k| <= radius
    out = flash_attn_varlen_func(
        q, k, v, layout.cu_seqlens, layout.cu_seqlens, layout.max_seqlen, layout.max_seqlen,
        dropout_p=dropout, softmax_scale=scale, causal=layout.causal, window_size=window,
    )
    return out.reshape(out.shape[0], -1)
