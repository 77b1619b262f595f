"""Rotary position embeddings, NeoX style (`rotate_half`, `cat(freqs, freqs)`), in fp32.

Positions come per token, so packed sequences simply pass positions that restart at 0.
"""

from __future__ import annotations

import torch


def inverse_frequencies(theta: float, head_dim: int) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


def rope_cos_sin(position_ids: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of shape position_ids.shape + (head_dim,), fp32."""
    freqs = position_ids[..., None].float() * inv_freq.to(position_ids.device)
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., tokens, heads, head_dim) by cos/sin (..., tokens, head_dim) in fp32."""
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
    xf = x.float()
    return (xf * cos + rotate_half(xf) * sin).to(x.dtype)
