#!/usr/bin/env python
"""StableAdamW's step on the demo model against torch's AdamW (the reference), in one process.

StableAdamW is AdamW plus a per-tensor update clipping (an RMS over the tensor), so torch's
single-tensor AdamW (`foreach=False`, the same loop over tensors) bounds what it can cost;
the fused AdamW shows what a single kernel would give. Prints milliseconds per step (median
of `--repeats` timings of `--steps` steps) and StableAdamW's ratio to each.

    python benchmarks/optimizer_speed.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from twofold.model import TwofoldModel, preset
from twofold.train.optim import StableAdamW, param_groups


def ms_per_step(make, model, steps: int, repeats: int) -> float:
    optimizer = make(param_groups(model, 0.0))
    for group in optimizer.param_groups:
        for param in group["params"]:
            param.grad = torch.randn_like(param)
    for _ in range(5):
        optimizer.step()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            optimizer.step()
        timings.append((time.perf_counter() - started) / steps * 1000)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = TwofoldModel(preset("demo"))
    print(f"demo model: {sum(p.numel() for p in model.parameters()):,} parameters in "
          f"{sum(1 for _ in model.parameters())} tensors; {args.threads} thread(s)")
    ours = ms_per_step(lambda groups: StableAdamW(groups, lr=1e-3), model, args.steps, args.repeats)
    print(f"StableAdamW (twofold)        {ours:6.2f} ms/step")
    for name, options in (("AdamW, for-loop", {"foreach": False}), ("AdamW, fused", {"fused": True})):
        theirs = ms_per_step(lambda groups, options=options: torch.optim.AdamW(groups, lr=1e-3, **options), model,
                             args.steps, args.repeats)
        print(f"torch {name:22s} {theirs:6.2f} ms/step   StableAdamW / this = {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
