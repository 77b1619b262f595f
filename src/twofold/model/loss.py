"""Cross-entropy of the vocabulary projection without materialising the logits.

`hidden [T, H] @ weight.T [H, V] + bias` over a 50k–256k vocabulary is the largest tensor of a
small model's step: kept whole in bf16 and again in fp32 (with an fp32 gradient) it costs
several GB of memory traffic per micro-batch. Here the target rows go through in chunks; each
chunk's logits live only while its loss and its gradients (softmax − one-hot) are computed,
in the forward pass, as in the fused linear cross-entropy of Liger-Kernel
(github.com/linkedin/Liger-Kernel, `ops/fused_linear_cross_entropy.py`). The backward pass only
scales the stored gradients. Matmuls run in the autocast dtype when autocast is on (as
`nn.Linear` would), log-sum-exp and the gradient of the logits in fp32 (as `.float()` then
`F.cross_entropy` would), so the loss and the gradients equal the dense computation's to the
precision of that dtype. Every shape is fixed by T, so a compiled graph unrolls the chunks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
LOGIT_ELEMENTS_PER_CHUNK = 1 << 25  # 128 MiB of fp32 logits


def chunk_rows(vocab_size: int) -> int:
    return max(256, LOGIT_ELEMENTS_PER_CHUNK // vocab_size)


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         labels: torch.Tensor) -> torch.Tensor:
    """Sum over rows with a label (not -100) of cross-entropy(hidden @ weight.T + bias, label), fp32."""
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    return _LinearCrossEntropy.apply(hidden, weight, bias, labels, dtype)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, dtype):
        with torch.autocast(hidden.device.type, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            b = bias.to(dtype) if bias is not None else None
            loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_hidden = torch.empty_like(h)
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            grad_bias = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device)
            rows = chunk_rows(weight.shape[0])
            for start in range(0, h.shape[0], rows):
                h_chunk, label = h[start:start + rows], labels[start:start + rows]
                logits = F.linear(h_chunk, w, b).float()
                lse = logits.logsumexp(-1)
                keep = label != IGNORE_INDEX
                target = torch.where(keep, label, 0).unsqueeze(1)
                loss = loss + ((lse - logits.gather(1, target).squeeze(1)) * keep).sum()
                grad = (logits - lse.unsqueeze(1)).exp_()  # softmax, then minus the one-hot
                grad.scatter_add_(1, target, torch.full_like(target, -1, dtype=grad.dtype))
                grad.mul_(keep.unsqueeze(1))
                grad_bias += grad.sum(0)
                grad = grad.to(dtype)
                grad_hidden[start:start + rows] = grad @ w
                grad_weight += (grad.t() @ h_chunk).float()
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = hidden.dtype, weight.dtype, None if bias is None else bias.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        hidden_dtype, weight_dtype, bias_dtype = ctx.dtypes
        return ((grad_hidden * grad_loss).to(hidden_dtype), (grad_weight * grad_loss).to(weight_dtype),
                None if bias_dtype is None else (grad_bias * grad_loss).to(bias_dtype), None, None)
