"""Optimizers of the recipes: StableAdamW (Ettin, mmBERT) and torch's AdamW.

StableAdamW (Wortsman et al. 2023, "Stable and low-precision training for large-scale
vision-language models") is AdamW with Adafactor's update clipping applied per tensor: when
the gradient is large compared with its running second moment, RMS(g² / v̂) > 1, the step of
that tensor is divided by that RMS. This replaces global gradient clipping.

Weight decay is decoupled from the learning rate as in ModernBERT/Ettin (Composer's and
optimi's `decouple_lr`): every step multiplies weights by `1 − wd · lr_t / max_lr`, so
`weight_decay` is a per-step fraction that follows the schedule's shape but not the LR's size.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from twofold.train.recipe import OptimizerConfig

NORM_TYPES = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)


class StableAdamW(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.98),
                 eps: float = 1e-6, weight_decay: float = 0.0, max_lr: float | None = None):
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid StableAdamW settings lr={lr} betas={betas} eps={eps} wd={weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        max_lr=lr if max_lr is None else max_lr)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                self._update(param, group, beta1, beta2)
        return loss

    def _update(self, param: torch.Tensor, group: dict, beta1: float, beta2: float) -> None:
        # Low-precision weights get fp32 moments and arithmetic.
        dtype = torch.float32 if param.dtype in (torch.float16, torch.bfloat16) else param.dtype
        grad = param.grad.to(dtype)
        state = self.state[param]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(param, dtype=dtype)
            state["exp_avg_sq"] = torch.zeros_like(param, dtype=dtype)
        state["step"] = state["step"] + 1  # not in place: loaded states may share one step tensor
        step = state["step"].item()
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        # The bias corrections (m̂ = m / c1, v̂ = v / c2) are folded into scalars, and one scratch
        # tensor serves both uses of v: a large temporary per operation costs more than the
        # arithmetic on a CPU (each is fresh memory from the OS).
        c1, c2 = 1 - beta1**step, 1 - beta2**step
        eps = group["eps"]
        scratch = exp_avg_sq.clamp(min=eps * eps * c2)  # c2 · max(v̂, eps²)
        # Update clipping: the tensor's RMS of g² / max(v̂, eps²).
        rms = math.sqrt(_whole(grad.square().div_(scratch).mean()).item() * c2)
        lr = group["lr"] / max(rms, 1.0)

        data = param if param.dtype == dtype else param.to(dtype)
        if group["weight_decay"]:
            data.mul_(1 - group["weight_decay"] * lr / group["max_lr"])
        denominator = torch.sqrt(exp_avg_sq, out=scratch).div_(math.sqrt(c2)).add_(eps)  # sqrt(v̂) + eps
        data.addcdiv_(exp_avg, denominator, value=-lr / c1)
        if data is not param:
            param.copy_(data)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights that decay, and norms and biases that never do (as Ettin)."""
    no_decay: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, NORM_TYPES) or name == "bias":
                no_decay.add(id(param))
    decay, keep = [], []
    for param in model.parameters():  # deduplicated: a tied weight appears once
        if param.requires_grad:
            (keep if id(param) in no_decay else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, config: OptimizerConfig,
                    peak_lr: float | None = None) -> torch.optim.Optimizer:
    """The recipe's optimizer over `param_groups`; `peak_lr` overrides the config's peak.

    `adamw` is torch's, whose weight decay is coupled to the LR (θ ← θ − lr·wd·θ).
    """
    peak = config.lr if peak_lr is None else peak_lr
    groups = param_groups(model, config.weight_decay)
    if config.name == "adamw":
        return torch.optim.AdamW(groups, lr=peak, betas=config.betas, eps=config.eps)
    return StableAdamW(groups, lr=peak, betas=config.betas, eps=config.eps, max_lr=peak)


def set_lr(optimizer: torch.optim.Optimizer, lr: float, peak: float | None = None) -> None:
    """Set this step's LR (and, for StableAdamW, the peak its weight decay is relative to)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        if peak is not None and "max_lr" in group:
            group["max_lr"] = peak


def clip_grad_norm(model: nn.Module, max_norm: float | None) -> torch.Tensor:
    """Global gradient norm (returned for logging), clipped to `max_norm` when given.

    Non-finite norms are returned untouched so the trainer can stop naming the step.
    """
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm is None:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    else:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return _whole(norm)


def _whole(tensor: torch.Tensor) -> torch.Tensor:
    """The full value of a reduction: under FSDP2 it is a DTensor whose local part is one shard's."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
