"""Pooling and the sequence-classification head, against references written here: a plain loop
over each sequence's tokens, torch's own losses on the logits, the initializer's published
bounds (ModernBERT: truncated normal, std hidden^-0.5, cut at 2 std)."""

import pytest
import torch
import torch.nn.functional as F

from twofold.model import preset
from twofold.model.heads import SequenceClassifier, pool


def test_each_pooling_matches_a_loop_over_the_sequences():
    lengths = [1, 4, 2, 7]  # a one-token sequence: its mean is the token itself
    hidden = torch.randn(sum(lengths), 6)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    rows = list(hidden.split(lengths))
    expected = {"cls": torch.stack([r[0] for r in rows]), "last": torch.stack([r[-1] for r in rows]),
                "mean": torch.stack([r.sum(0) / len(r) for r in rows])}
    for pooling, want in expected.items():
        torch.testing.assert_close(pool(hidden, cu, pooling), want, rtol=0, atol=1e-6, msg=pooling)


def classifier(num_labels: int, causal: bool = False) -> SequenceClassifier:
    return SequenceClassifier(preset("tiny", causal=causal), num_labels).eval()


@pytest.mark.parametrize("causal", [False, True])
def test_the_new_classifier_follows_modernberts_initializer(causal):
    torch.manual_seed(0)
    model = classifier(64, causal)
    weight, std = model.classifier.weight, model.config.hidden_size ** -0.5
    cut = model.config.initializer_cutoff_factor * std
    assert -cut <= weight.min() < -0.9 * cut and 0.9 * cut < weight.max() <= cut  # both tails, cut at 2 std
    # a normal cut at ±2σ has standard deviation 0.88σ
    assert weight.std().item() == pytest.approx(0.88 * std, rel=0.05)
    if model.classifier.bias is not None:
        assert not model.classifier.bias.any()


def test_classification_loss_is_cross_entropy_and_regression_loss_is_mse():
    ids, mask = torch.randint(5, 500, (3, 9)), torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    model = classifier(4)
    labels = torch.tensor([0, 3, 2])
    out = model(ids, attention_mask=mask, labels=labels)
    assert out.loss.item() == pytest.approx(F.cross_entropy(out.logits, labels).item(), rel=1e-6)
    assert out.hidden_states.shape == (3, 9, model.config.hidden_size)
    assert model(ids, attention_mask=mask).loss is None

    regression = classifier(1)  # one label: a regression head
    targets = torch.tensor([0.5, -1.0, 2.0])
    out = regression(ids, attention_mask=mask, labels=targets)
    assert out.logits.shape == (3, 1)
    assert out.loss.item() == pytest.approx(F.mse_loss(out.logits[:, 0], targets).item(), rel=1e-6)


def test_packed_input_with_and_without_max_seqlen_gives_the_padded_logits():
    model = classifier(3)
    ids, mask = torch.randint(5, 500, (2, 7)), torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    padded = model(ids, attention_mask=mask).logits
    packed_ids = torch.cat([ids[0], ids[1, :4]])
    cu = torch.tensor([0, 7, 11], dtype=torch.int32)
    for max_seqlen in (7, None):
        packed = model(packed_ids, cu_seqlens=cu, max_seqlen=max_seqlen).logits
        torch.testing.assert_close(packed, padded, rtol=0, atol=1e-5)
