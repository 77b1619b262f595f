#!/usr/bin/env python
"""How to spend two CPU cores on the demo's pair: the demo model's training step (4 layers,
hidden 128, vocab 4096; 8 x 128-token batches, StableAdamW) timed

- one member at a time with every core (how `start_pair` trains: encoder, then decoder),
- both members side by side in two processes, each with its share of the cores,
- with bf16 autocast instead of fp32 (is it worth it on a CPU?).

Each layout trains the same steps; the script prints steps/s of the whole pair and the ratio
to the one-at-a-time reference, measured in the same run.

    python benchmarks/demo_speed.py --steps 60
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import time

import torch

from twofold.model import TwofoldModel, preset
from twofold.train.optim import build_optimizer
from twofold.train.recipe import load_recipe

WARMUP = 5


def train_steps(causal: bool, steps: int, threads: int, bf16: bool = False, seed: int = 0) -> float:
    """Seconds per step (median after warm-up) of the demo model's training step."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    recipe = load_recipe("demo")  # its model shape, dropout and optimizer
    model = TwofoldModel(preset(recipe.model, vocab_size=4096, causal=causal, **recipe.dropout.model_fields())).train()
    optimizer = build_optimizer(model, recipe.optimizer)
    ids = torch.randint(5, 4096, (8, 128))
    labels = ids.clone() if causal else torch.where(torch.rand(ids.shape) < 0.3, ids, -100)
    times = []
    for _ in range(steps + WARMUP):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    times = sorted(times[WARMUP:])
    return times[len(times) // 2]


def _member(args) -> float:
    return train_steps(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    share = max(1, cores // 2)

    # reference: encoder then decoder, each with every core -> pair steps/s
    sequential = 1 / (train_steps(False, args.steps, cores) + train_steps(True, args.steps, cores))
    # both members at once, one process each with half the cores
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        per_step = pool.map(_member, [(False, args.steps, share), (True, args.steps, share)])
    side_by_side = 1 / max(per_step)
    bf16 = 1 / (train_steps(False, args.steps, cores, bf16=True) + train_steps(True, args.steps, cores, bf16=True))
    results = {"cores": cores, "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
               "pair_steps_per_s": {"one_member_at_a_time": sequential, "side_by_side": side_by_side,
                                    "bf16_autocast_one_at_a_time": bf16},
               "side_by_side_over_one_at_a_time": side_by_side / sequential,
               "bf16_over_fp32": bf16 / sequential}
    print(f"pair steps/s: one member at a time {sequential:.2f}, side by side {side_by_side:.2f} "
          f"(ratio {side_by_side / sequential:.2f}), bf16 autocast {bf16:.2f} (ratio {bf16 / sequential:.2f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
