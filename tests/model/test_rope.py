"""Rotary embeddings as functions: any shape of positions, the caller's dtype back, and the
property RoPE exists for (a query-key score depends only on the distance between positions)."""

import torch

from twofold.model.rope import apply_rope, inverse_frequencies, rope_cos_sin


def test_positions_of_any_shape_give_cos_and_sin_per_position():
    inv_freq = inverse_frequencies(10_000.0, 8)
    positions = torch.tensor([[0, 1, 2, 3, 4], [7, 0, 1, 9, 2]])
    cos, sin = rope_cos_sin(positions, inv_freq)
    assert cos.shape == sin.shape == (2, 5, 8) and cos.dtype == torch.float32
    for row in range(2):
        row_cos, row_sin = rope_cos_sin(positions[row], inv_freq)
        assert torch.equal(cos[row], row_cos) and torch.equal(sin[row], row_sin)
    angle = 9 * inv_freq[1]  # position 9, second frequency: both halves of the head
    assert torch.allclose(cos[1, 3, [1, 5]], torch.cos(angle).expand(2))


def test_the_rotation_runs_in_fp32_and_returns_the_callers_dtype():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 16, generator=generator) * 30
    cos, sin = rope_cos_sin(torch.arange(6) * 1000, inverse_frequencies(160_000.0, 16))
    rotated = apply_rope(x.bfloat16(), cos, sin)
    assert rotated.dtype == torch.bfloat16
    assert torch.equal(rotated, apply_rope(x.bfloat16().float(), cos, sin).bfloat16())


def test_a_query_key_score_depends_only_on_the_distance_between_positions():
    generator = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 1, 32, generator=generator), torch.randn(1, 1, 32, generator=generator)
    inv_freq = inverse_frequencies(10_000.0, 32)

    def score(m, n):
        cos_m, sin_m = rope_cos_sin(torch.tensor([m]), inv_freq)
        cos_n, sin_n = rope_cos_sin(torch.tensor([n]), inv_freq)
        return float((apply_rope(q, cos_m, sin_m) * apply_rope(k, cos_n, sin_n)).sum())

    assert abs(score(3, 1) - score(12, 10)) < 1e-4 and abs(score(3, 1) - score(1, 3)) > 1e-2
    assert abs(score(5, 5) - float((q * k).sum())) < 1e-4  # no rotation between equal positions
