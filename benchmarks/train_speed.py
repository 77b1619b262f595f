#!/usr/bin/env python
"""Overhead of the training loop: tokens/s of a real `twofold` training run against the bare
model training step on the same shape, batches and optimizer, measured in one process.

The run is `twofold.train.runs.start` (what `twofold train` calls): data loader with its
order log, LR and batch schedules, metrics JSONL, progress bar, checkpoints. The bare step
is forward + backward + StableAdamW on the very batches the run consumed, pre-built in
memory (no data, logging or checkpoint cost). Bare steps are timed before and after the run
(so load from other processes hits both alike); warm-up steps are excluded from both.

    python benchmarks/train_speed.py                        # ettin-17m shape, packed, seq_len 512
    python benchmarks/train_speed.py --steps 20 --batch 4 --json out.json

Both train with the recipes' attention-output dropout (`--dropout`, default 0.1 as Ettin).
Dropout's own cost: two bare loops, with and without it, stepped in turn. The target: a
ratio run / bare >= 0.9 (loop overhead <= 10%).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from twofold.data.loader import BatchLoader
from twofold.data.sources import SourceSpec
from twofold.data.stdlib import stdlib_documents
from twofold.data.store import prepare_store
from twofold.data.tokenizer import train_tokenizer
from twofold.train import loop, rng, runs
from twofold.train.distributed import World
from twofold.train.optim import build_optimizer
from twofold.train.recipe import recipe_from_dict

WARMUP = 3


def recipe(steps: int, batch: int, seq_len: int, checkpoints: int, dropout: float):
    tokens = steps * batch * seq_len
    return recipe_from_dict({
        "name": "train-speed", "model": "ettin-17m", "seed": 21,
        "optimizer": {"name": "stable_adamw", "lr": 3e-3, "weight_decay": 3e-4},
        "dropout": {"attention_output": dropout},
        "phase": {"pretrain": {
            "tokens": tokens, "seq_len": seq_len, "mask_rate": 0.3, "lr_warmup_tokens": tokens // 10,
            "batch_sequences": batch, "checkpoint_every_tokens": tokens // checkpoints, "tag": "step"}},
    })


def build_store(root: Path) -> Path:
    texts = (d.text for d in stdlib_documents(packages=["json", "email", "asyncio"]))
    tokenizer = train_tokenizer(texts, 4096, root / "tokenizer")
    prepare_store([SourceSpec("stdlib", packages="json+email+asyncio")], tokenizer, root / "store", progress=False)
    return root / "store"


def run_speed(run_dir: Path) -> tuple[float, list[float]]:
    """Tokens/s of the run after warm-up, from its metrics (wall time between step ends)."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "loss" in line]
    # tokens_per_s is cumulative since the phase began: recover per-step wall-clock ends.
    ends = [line["phase_tokens"] / line["tokens_per_s"] for line in steps]
    timed = steps[WARMUP:]
    seconds = ends[-1] - ends[WARMUP - 1]
    return sum(s["batch_sequences"] * s["seq_len"] for s in timed) / seconds, [s["loss"] for s in steps]


class BareLoop:
    """The run's model, optimizer, LR and batches, with nothing around the training step."""

    def __init__(self, r, store: Path, steps: int):
        from twofold.model import TwofoldModel

        self.phase = r.phases[0]
        config, _ = runs.initial_model(r, loop.Options(stores=(str(store),), objective="mlm"), None)
        torch.manual_seed(r.seed)  # as the run does: the same initial weights
        self.model = TwofoldModel(config)
        rng.seed_streams(r.seed, 0, 0)  # and the same dropout draws as rank 0 of the run's first phase
        self.optimizer = build_optimizer(self.model, r.optimizer)
        loader = BatchLoader.from_spec([str(store)], self.phase.data(seed=r.seed), objective="mlm",
                                       model_vocab_size=config.vocab_size)
        self.batches = [loader.batch(s).with_targets() for s in range(steps)]  # as the trainer hands them
        self.schedule = self.phase.lr_schedule(r.optimizer.lr)
        self.tokens = self.phase.batch_sequences * self.phase.seq_len

    def step(self, index: int) -> tuple[float, float]:
        """Seconds and loss of training step `index`."""
        from twofold.train.schedule import lr_at

        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.schedule, (index + 1) * self.tokens)
        start = time.perf_counter()
        out = loop.forward(self.model, self.batches[index])
        out.loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss = out.loss.item()
        return time.perf_counter() - start, loss


def bare_speed(r, store: Path, steps: int) -> tuple[float, list[float]]:
    bare = BareLoop(r, store, steps)
    times, losses = zip(*(bare.step(i) for i in range(steps)))
    return bare.tokens / statistics.median(times[WARMUP:]), list(losses)


def dropout_cost(with_dropout, without, store: Path, steps: int) -> float:
    """Median step time with dropout / without − 1, the two stepped in turn so that load from
    other processes hits both alike."""
    loops = BareLoop(with_dropout, store, steps), BareLoop(without, store, steps)
    times: tuple[list, list] = ([], [])
    for index in range(steps):
        for bare, spent in zip(loops, times):
            spent.append(bare.step(index)[0])
    return statistics.median(times[0][WARMUP:]) / statistics.median(times[1][WARMUP:]) - 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8, help="sequences per step")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--checkpoints", type=int, default=3, help="checkpoints written during the run")
    parser.add_argument("--dropout", type=float, default=0.1, help="attention-output dropout of the run")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = build_store(root)
        r = recipe(args.steps, args.batch, args.seq_len, args.checkpoints, args.dropout)
        bare_before, bare_losses = bare_speed(r, store, args.steps)
        options = loop.Options(stores=(str(store),), objective="mlm", progress=True)
        runs.start(root / "run", r, options, World())
        run, run_losses = run_speed(root / "run")
        bare_after, _ = bare_speed(r, store, args.steps)
        without = recipe(args.steps, args.batch, args.seq_len, args.checkpoints, 0.0)
        cost = dropout_cost(r, without, store, args.steps) if args.dropout else 0.0
    bare = (bare_before + bare_after) / 2
    same = all(abs(a - b) <= 1e-4 * abs(b) for a, b in zip(run_losses, bare_losses))
    result = {
        "shape": "ettin-17m", "seq_len": args.seq_len, "batch_sequences": args.batch, "steps": args.steps,
        "checkpoints": args.checkpoints, "dropout": args.dropout, "bare_tokens_per_s": round(bare, 1),
        "bare_before_after": [round(bare_before, 1), round(bare_after, 1)],
        "dropout_step_cost": round(cost, 3),
        "run_tokens_per_s": round(run, 1), "ratio": round(run / bare, 3), "same_losses": same,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
        "command": " ".join(sys.argv),
    }
    print(json.dumps(result, indent=1))
    print(f"run / bare step: {run / bare:.3f}x (target >= 0.9); losses {'match' if same else 'DIFFER'}")
    print(f"dropout {args.dropout:g}: a bare step takes {cost:+.1%} longer than without (stepped in turn)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
