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
            params = [param for param in group["params"] if param.grad is not None]
            for step, same in _by_step(params, self.state).items():
                self._update(same, group, step)
        return loss

    def _update(self, params: list[torch.Tensor], group: dict, step: int) -> None:
        """One step of the tensors of a group that have taken `step` steps, with foreach
        operations on the device: the update clipping's RMS stays a device tensor, so the step
        never waits for the host (the step count lives on the host, as in torch's Adam)."""
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        c1, c2 = 1 - beta1**step, 1 - beta2**step  # bias corrections: m̂ = m / c1, v̂ = v / c2
        # Under FSDP2 every tensor is a shard: elementwise work on the local parts, and the RMS
        # summed over the shards (one all-reduce for the whole group).
        data = [_local(param) for param in params]
        work = [x if x.dtype not in LOW_PRECISION else x.float() for x in data]  # fp32 arithmetic
        grads = [_local(param.grad).to(x.dtype) for param, x in zip(params, work)]
        exp_avg = [_local(self.state[param]["exp_avg"]) for param in params]
        exp_avg_sq = [_local(self.state[param]["exp_avg_sq"]) for param in params]
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
        # Update clipping: per tensor, RMS(g² / max(v̂, eps²)) = ‖g / sqrt(c2·max(v̂, eps²))‖ · sqrt(c2 / numel).
        # One scratch list serves every temporary (fresh memory per operation costs more than the
        # arithmetic on a CPU).
        scratch = torch._foreach_clamp_min(exp_avg_sq, eps * eps * c2)
        torch._foreach_sqrt_(scratch)
        torch._foreach_div_(scratch, grads)  # sqrt(c2·max(v̂, eps²)) / g, then its reciprocal
        torch._foreach_reciprocal_(scratch)  # g / sqrt(…), in place (g = 0 gives 0)
        squares = _sum_over_shards(torch.stack(torch._foreach_norm(scratch)).square(), params)
        numel = torch.tensor([param.numel() for param in params], dtype=squares.dtype, device=squares.device)
        lr = group["lr"] / (squares * c2 / numel).sqrt().clamp(min=1.0)  # [tensors], on the device
        if group["weight_decay"]:
            torch._foreach_mul_(work, list((1 - group["weight_decay"] / group["max_lr"] * lr).unbind()))
        torch._foreach_copy_(scratch, exp_avg_sq)  # the step: m̂ / (sqrt(v̂) + eps) · lr
        torch._foreach_sqrt_(scratch)
        torch._foreach_div_(scratch, math.sqrt(c2))
        torch._foreach_add_(scratch, eps)
        torch._foreach_reciprocal_(scratch)
        torch._foreach_mul_(scratch, exp_avg)
        torch._foreach_mul_(scratch, list((-lr / c1).unbind()))
        torch._foreach_add_(work, scratch)
        for x, y in zip(data, work):
            if x is not y:
                x.copy_(y)


LOW_PRECISION = (torch.float16, torch.bfloat16)


def _by_step(params: list[torch.Tensor], state: dict) -> dict[int, list[torch.Tensor]]:
    """Tensors grouped by their step count after this step (one group unless some tensor
    skipped a step without a gradient); new tensors get their moments first."""
    groups: dict[int, list[torch.Tensor]] = {}
    for param in params:
        found = state[param]
        if not found:
            dtype = torch.float32 if param.dtype in LOW_PRECISION else param.dtype  # fp32 moments
            found["step"] = torch.zeros((), dtype=torch.float32)
            found["exp_avg"] = torch.zeros_like(param, dtype=dtype)
            found["exp_avg_sq"] = torch.zeros_like(param, dtype=dtype)
        found["step"] = found["step"] + 1  # a host tensor; not in place: loaded states may share one
        groups.setdefault(int(found["step"]), []).append(param)
    return groups


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The part of a tensor this rank holds: a DTensor's shard (FSDP2), else the tensor."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def _sum_over_shards(values: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """Per-tensor sums of squares over every rank's shard, for tensors sharded by FSDP2."""
    sharded = [hasattr(p, "placements") and any(place.is_shard() for place in p.placements) for p in params]
    if not any(sharded):
        return values
    mask = torch.tensor(sharded, device=values.device)
    total = torch.where(mask, values, 0.0)
    torch.distributed.all_reduce(total, group=params[sharded.index(True)].device_mesh.get_group())
    return torch.where(mask, total, values)


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
    return [{"params": decay, "weight_decay": weight_decay, "decays": True},
            {"params": keep, "weight_decay": 0.0, "decays": False}]


def build_optimizer(model: nn.Module, config: OptimizerConfig,
                    peak_lr: float | None = None) -> torch.optim.Optimizer:
    """The recipe's optimizer over `param_groups`; `peak_lr` overrides the config's peak.

    `adamw` is torch's, whose weight decay is coupled to the LR (θ ← θ − lr·wd·θ); fused into
    one kernel per step on a GPU (the same update as its loop, without host reads).
    """
    peak = config.lr if peak_lr is None else peak_lr
    groups = param_groups(model, config.weight_decay)
    if config.name == "adamw":
        fused = all(param.is_cuda for group in groups for param in group["params"])
        return torch.optim.AdamW(groups, lr=peak, betas=config.betas, eps=config.eps, fused=fused or None)
    return StableAdamW(groups, lr=peak, betas=config.betas, eps=config.eps, max_lr=peak)


def set_lr(optimizer: torch.optim.Optimizer, lr: float, peak: float | None = None) -> None:
    """Set this step's LR (and, for StableAdamW, the peak its weight decay is relative to)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        if peak is not None and "max_lr" in group:
            group["max_lr"] = peak


def set_weight_decay(optimizer: torch.optim.Optimizer, weight_decay: float) -> None:
    """A phase's weight decay for the weights that decay (norms and biases never do)."""
    for group in optimizer.param_groups:
        if group.get("decays"):
            group["weight_decay"] = weight_decay


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
