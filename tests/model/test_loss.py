"""The chunked linear cross-entropy equals the dense one: loss and gradients, with ignored rows
and several chunks, in fp32 (to rounding) and under bf16 autocast (to bf16's precision)."""

import pytest
import torch
import torch.nn.functional as F

from twofold.model import loss as chunked
from twofold.model.loss import IGNORE_INDEX, chunk_rows, linear_cross_entropy


def dense(hidden, weight, bias, labels):
    """What the model computed before: logits in the autocast dtype, then fp32 cross-entropy."""
    return F.cross_entropy(F.linear(hidden, weight, bias).float(), labels, reduction="sum")


def inputs(rows=700, width=32, vocab=3000, seed=0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, width, generator=generator, requires_grad=True)
    weight = (torch.randn(vocab, width, generator=generator) * 0.2).requires_grad_()
    bias = torch.randn(vocab, generator=generator).requires_grad_()
    labels = torch.randint(0, vocab, (rows,), generator=generator)
    labels[::7] = IGNORE_INDEX  # padding rows and unlabelled ones
    return hidden, weight, bias, labels


@pytest.mark.parametrize("autocast, tolerance", [(False, 1e-5), (True, 2e-2)], ids=["fp32", "bf16"])
def test_equals_the_dense_cross_entropy(monkeypatch, autocast, tolerance):
    monkeypatch.setattr(chunked, "LOGIT_ELEMENTS_PER_CHUNK", 256 * 3000)  # 3 chunks of 256 rows
    assert chunk_rows(3000) == 256
    hidden, weight, bias, labels = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        got = linear_cross_entropy(hidden, weight, bias, labels)
        got_grads = torch.autograd.grad(got * 0.5, (hidden, weight, bias))
        want = dense(hidden, weight, bias, labels)
        want_grads = torch.autograd.grad(want * 0.5, (hidden, weight, bias))
    assert got.dtype == torch.float32 and got.item() == pytest.approx(want.item(), rel=tolerance / 10)
    for g, w in zip(got_grads, want_grads):
        assert g.dtype == w.dtype == torch.float32
        assert float((g - w).abs().max()) <= tolerance * float(w.abs().max())


def test_rows_without_a_label_contribute_nothing():
    hidden, weight, bias, labels = inputs(rows=40)
    labels[:] = IGNORE_INDEX
    loss = linear_cross_entropy(hidden, weight, bias, labels)
    grads = torch.autograd.grad(loss, (hidden, weight, bias))
    assert loss.item() == 0 and all(float(g.abs().max()) == 0 for g in grads)


def test_without_a_bias():
    hidden, weight, _, labels = inputs(rows=50)
    got = linear_cross_entropy(hidden, weight, None, labels)
    want = dense(hidden, weight, None, labels)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    for g, w in zip(torch.autograd.grad(got, (hidden, weight)), torch.autograd.grad(want, (hidden, weight))):
        assert torch.allclose(g, w, atol=1e-5)


def test_under_autocast_the_logits_are_computed_in_its_dtype():
    """As `nn.Linear` under autocast: the bf16 product, not a more precise fp32 one."""
    hidden, weight, bias, labels = inputs(rows=300)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = linear_cross_entropy(hidden, weight, bias, labels).item()
        in_bf16 = dense(hidden, weight, bias, labels).item()
    in_fp32 = dense(hidden, weight, bias, labels).item()
    assert abs(got - in_bf16) < abs(got - in_fp32) / 10


def test_the_logits_exist_one_chunk_of_rows_at_a_time(monkeypatch):
    monkeypatch.setattr(chunked, "LOGIT_ELEMENTS_PER_CHUNK", 256 * 3000)
    shapes = []
    linear = F.linear

    def recorded(*args):
        logits = linear(*args)
        shapes.append(tuple(logits.shape))
        return logits

    monkeypatch.setattr(chunked.F, "linear", recorded)
    hidden, weight, bias, labels = inputs(rows=700, width=32, vocab=3000)
    linear_cross_entropy(hidden, weight, bias, labels)
    assert shapes == [(256, 3000), (256, 3000), (188, 3000)]
    assert chunk_rows(10**9) == 256  # never fewer rows than 256, whatever the vocabulary
