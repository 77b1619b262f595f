"""The model-FLOPs formula behind every MFU the trainer and the benchmarks report: attention pairs
against the mask by brute force, the matmuls against PyTorch's own FLOP counter on a real forward
and backward, and each card's peak by its device name."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from twofold.model import TwofoldModel, flops, preset
from twofold.model.attention import allowed
from twofold.model.flops import keys_seen, peak_flops, training_flops


@pytest.mark.parametrize("causal", [False, True])
def test_keys_seen_counts_the_pairs_the_mask_allows(causal):
    rng = np.random.default_rng(0)
    lengths = [0, 1, 2, 7, 8, 9, 33, 100] + rng.integers(1, 300, 20).tolist()  # 0: a fixed shape's empty row
    for radius in (None, 1, 8, 64):
        brute = 0
        for n in lengths:
            q = torch.arange(n)
            brute += int(allowed(q[:, None], q[None, :], causal, radius).sum())
        assert keys_seen(np.array(lengths), causal, radius) == brute, radius


def test_keys_seen_is_exact_for_the_trainers_int32_lengths_past_float_precision():
    n = 2**27 + 1  # n(n + 1) / 2 = 2^53 + 3 * 2^26 + 1: odd and past 2^53, so a float would round it
    lengths = np.array([n], dtype=np.int32)  # as the trainer passes them: cu_seqlens.diff().numpy()
    assert keys_seen(lengths, True, None) == n * (n + 1) // 2
    assert keys_seen(lengths, False, None) == n * n  # past int32 too
    assert keys_seen(lengths, True, n) == n * (n + 1) // 2
    assert keys_seen(lengths, False, n - 2) == n * n - 2  # all but the two pairs at distance n - 1


def counted_matmul_flops(model, lengths, targets):
    """What PyTorch's FLOP counter sees of one forward and backward in the trainer's form, every
    target row labelled. The CPU attention kernels use no counted op, so this is the matmuls of the
    projections, the MLP, the head and the vocabulary projection (the loss computes the vocabulary
    projection's gradients in its forward)."""
    generator = torch.Generator().manual_seed(0)
    flat = torch.randint(5, model.config.vocab_size, (sum(lengths),), generator=generator)
    cu = F.pad(torch.tensor(lengths).cumsum(0), (1, 0)).to(torch.int32)
    positions = torch.cat([torch.arange(n) for n in lengths])
    rows = torch.randperm(sum(lengths), generator=generator)[:targets]
    labels = torch.randint(5, model.config.vocab_size, (targets,), generator=generator)
    with FlopCounterMode(display=False) as counter:
        out = model(flat, labels=labels, cu_seqlens=cu, max_seqlen=max(lengths), position_ids=positions,
                    target_index=rows)
        out.loss.backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_training_flops_are_the_matmuls_the_model_runs_plus_its_attention(causal):
    # 3 layers, the first global, the others in a window of radius 2; an untied decoder with a bias
    config = preset("tiny", num_hidden_layers=3, global_attn_every_n_layers=3, local_attention=4,
                    intermediate_size=80, vocab_size=300, causal=causal, tie_word_embeddings=False,
                    decoder_bias=True)
    lengths, targets = [5, 3, 9], 6
    model = TwofoldModel(config)
    d = config.hidden_size
    # attention by hand: QKᵀ and the weighted values, 2 FLOPs per multiply-add each, over the pairs
    # each layer's mask allows; forward and backward 3 times the forward
    pairs = {None: 0, 2: 0}
    for n in lengths:
        q = torch.arange(n)
        for radius in pairs:
            pairs[radius] += int(allowed(q[:, None], q[None, :], causal, radius).sum())
    attention = 3 * 2 * 2 * d * (pairs[None] + 2 * pairs[2])
    assert training_flops(config, lengths, targets) == counted_matmul_flops(model, lengths, targets) + attention


def test_training_flops_count_only_the_labelled_rows_of_the_vocabulary_projection():
    config = preset("tiny")
    d, vocab = config.hidden_size, config.vocab_size
    one_more = training_flops(config, [10, 6], 5) - training_flops(config, [10, 6], 4)
    assert one_more == 3 * 2 * (d * d + d * vocab)  # head dense and vocabulary projection of one row


@pytest.mark.parametrize("name, tflops", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 NVL", 835.0), ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA H200", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L40S", 362.0), ("NVIDIA A10G", 70.0),
    ("NVIDIA GeForce RTX 4090", None),
])
def test_each_card_s_dense_bf16_peak_comes_from_its_device_name(monkeypatch, name, tflops):
    asked = []
    monkeypatch.setattr(flops.torch.cuda, "get_device_name", lambda device: asked.append(device) or name)
    assert peak_flops("cuda:1") == (None if tflops is None else tflops * 1e12)
    assert asked == [torch.device("cuda:1")]
    assert peak_flops("cpu") is None and peak_flops(torch.device("cpu")) is None and len(asked) == 1
