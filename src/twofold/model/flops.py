"""Model FLOPs of a training step, and model FLOPs utilisation (MFU).

One formula for the trainer's metrics and every benchmark. It counts the work the objective
needs on real tokens (padding is waste, not work): 3 × the forward matmul FLOPs (forward, and
twice that for the backward) of the projections and the MLP, the attention scores and weighted
values over the keys each query may see (sliding windows and causality included), and the
head and vocabulary projection on the target rows only (sparse prediction). MFU divides the
achieved model FLOP/s by the card's dense bf16 peak (PaLM, arXiv 2204.02311, appendix B).
"""

from __future__ import annotations

import numpy as np
import torch

from twofold.model.config import LOCAL, ModelConfig

# Dense bf16 tensor-core peak (no sparsity), TFLOP/s, by a substring of the CUDA device name
# (first match wins: "H100 NVL" and "H100 PCIe" before the SXM "H100").
PEAK_BF16_TFLOPS = (
    ("H200", 989.0),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
)


def peak_flops(device: torch.device | str) -> float | None:
    """The device's dense bf16 peak in FLOP/s; None for a CPU or an unknown card."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS if key in name), None)


def keys_seen(lengths: np.ndarray, causal: bool, radius: int | None) -> int:
    """Sum over every query of the keys it attends to, for sequences of these lengths
    (radius None: a global layer), in closed form."""
    n = np.asarray(lengths, dtype=np.int64)
    if radius is None:
        return int((n * (n + 1) // 2).sum() if causal else (n * n).sum())
    if causal:  # query q sees min(q + 1, radius) keys
        a = np.minimum(n, radius)
        return int((a * (a + 1) // 2 + (n - a) * radius).sum())
    m = np.minimum(radius, n - 1).clip(min=0)  # |q - k| <= radius: n on the diagonal, 2(n - d) at distance d
    return int((n + 2 * (m * n - m * (m + 1) // 2)).sum())


def training_flops(config: ModelConfig, lengths, targets: int) -> float:
    """Model FLOPs of one forward + backward over sequences of `lengths` real tokens with
    `targets` labelled tokens."""
    d, inner, vocab = config.hidden_size, config.intermediate_size, config.vocab_size
    lengths = np.asarray(lengths, dtype=np.int64)
    tokens = int(lengths.sum())
    forward = 2 * tokens * config.num_hidden_layers * (4 * d * d + 3 * d * inner)  # Wqkv, Wo, Wi (2I), mlp.Wo
    for kind in set(config.layer_types):
        layers = sum(t == kind for t in config.layer_types)
        keys = keys_seen(lengths, config.causal, config.window_radius if kind == LOCAL else None)
        forward += layers * 2 * 2 * keys * d  # scores and weighted values
    forward += 2 * targets * (d * d + d * vocab)  # head dense + vocabulary projection
    return 3.0 * forward
