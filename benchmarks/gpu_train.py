#!/usr/bin/env python
"""GPU training throughput of a real run: ettin-150m shape, bf16 autocast, packed, seq 1024.

Tokens/s and MFU after warm-up, both from the trainer's own metrics (MFU: `twofold.model.flops`,
model FLOPs of real tokens over the card's dense bf16 peak, as `gpu_model_speed.py` counts).

    python benchmarks/gpu_train.py                                     # one GPU, no wrapper
    torchrun --nproc_per_node 1 benchmarks/gpu_train.py --parallel fsdp  # FSDP2 on one GPU
    python benchmarks/gpu_train.py --objective clm --steps 40 --json out.json
    python benchmarks/gpu_train.py --store STORE     # train on this token store (default: stdlib, built here)
    python benchmarks/gpu_train.py --smoke           # tiny shape, a few steps: runs on CPU too
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from twofold.data.sources import SourceSpec
from twofold.data.stdlib import stdlib_documents
from twofold.data.store import prepare_store
from twofold.data.tokenizer import train_tokenizer
from twofold.train import loop, runs
from twofold.train.distributed import join, leave
from twofold.train.recipe import recipe_from_dict

WARMUP = 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64, help="sequences of 1024 tokens per step")
    parser.add_argument("--micro-batch", type=int, default=32)
    parser.add_argument("--objective", choices=["mlm", "clm"], default="mlm")
    parser.add_argument("--parallel", choices=["ddp", "fsdp"], default="ddp")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="default: the trainer's (on where a varlen kernel serves)")
    parser.add_argument("--store", help="token store to train on (default: the whole stdlib corpus, tokenized here)")
    parser.add_argument("--smoke", action="store_true", help="tiny shape, 8 steps: proves the script runs (CPU too)")
    parser.add_argument("--json")
    args = parser.parse_args()
    model_name, seq_len = "ettin-150m", 1024
    if args.smoke:
        model_name, seq_len, args.steps, args.batch, args.micro_batch = "tiny", 64, 8, 4, 2
    elif not torch.cuda.is_available():
        print("gpu_train.py needs a CUDA device (or --smoke)", file=sys.stderr)
        return 2
    world = join()
    tokens = args.steps * args.batch * seq_len
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = args.store
        if store is None:
            texts = (d.text for d in stdlib_documents())
            tokenizer = train_tokenizer(texts, 8192, root / "tokenizer")
            prepare_store([SourceSpec("stdlib")], tokenizer, root / "store", progress=False)
            store = root / "store"
        recipe = recipe_from_dict({
            "name": "gpu-train", "model": model_name, "seed": 21,
            "optimizer": {"name": "stable_adamw", "lr": 8e-4, "weight_decay": 1e-5},
            "dropout": {"attention_output": 0.1},  # as the Ettin recipe trains
            "phase": {"pretrain": {"tokens": tokens, "seq_len": seq_len, "mask_rate": 0.3,
                                   "lr_warmup_tokens": tokens // 10, "batch_sequences": args.batch,
                                   "checkpoint_every_tokens": tokens, "tag": "step"}}})
        options = loop.Options(stores=(str(store),), objective=args.objective,
                               precision="fp32" if args.smoke and not torch.cuda.is_available() else "bf16",
                               micro_batch_sequences=args.micro_batch, parallel=args.parallel,
                               compile=args.compile, log_every_steps=WARMUP, progress=world.main)
        started = time.perf_counter()
        runs.start(root / "run", recipe, options, world)
        wall = time.perf_counter() - started
        lines = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    leave()
    if not world.main:
        return 0
    steps = [line for line in lines if "loss" in line]
    # Records are read in windows (--log-every): time and FLOPs so far, at the window ends.
    ends = [(s["phase_tokens"], s["phase_tokens"] / s["tokens_per_s"], s["mfu"]) for s in steps]
    (t0, e0, m0), (t1, e1, m1) = ends[WARMUP - 1], ends[-1]
    speed = (t1 - t0) / (e1 - e0)
    mfu = None if m1 is None else (m1 * e1 - m0 * e0) / (e1 - e0)
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    memory = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    result = {"device": name, "model": model_name, "objective": args.objective, "parallel": args.parallel,
              "compile": args.compile,
              "batch_sequences": args.batch, "micro_batch": args.micro_batch, "seq_len": seq_len,
              "tokens_per_s": round(speed), "mfu": mfu and round(mfu, 4), "wall_s": round(wall, 1),
              "final_loss": steps[-1]["loss"],
              "max_memory_gib": memory and round(memory, 2),
              "torch": torch.__version__, "command": " ".join(sys.argv)}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
