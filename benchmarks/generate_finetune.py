#!/usr/bin/env python
"""Does a generative fine-tune improve chrF beyond the seeds' spread, and what does it cost on CPU?

`twofold finetune generate` on the built-in code -> docstring-line set (train: the stdlib's
train modules; test: the held-out modules' functions) for each decoder given, over seeds: chrF
of the model before and after on the same test split, the spread over seeds, and the process
CPU seconds and wall seconds of one fine-tune (scoring before and after included).

    python benchmarks/generate_finetune.py runs/demo/export/decoder [more decoders] \\
        --seeds 0,1,2 --lr 3e-4 --epochs 1 --max-train 1000 --max-test 100
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from twofold.finetune.generate import finetune_generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("decoders", nargs="+", help="HF exports (or runs) of decoders")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--max-train", type=int, default=1000)
    parser.add_argument("--max-test", type=int, default=100)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    for decoder in args.decoders:
        rows = []
        for seed in seeds:
            with tempfile.TemporaryDirectory() as scratch:
                wall, cpu = time.perf_counter(), time.process_time()
                found = finetune_generate(decoder, "stdlib", Path(scratch) / "out", seed=seed,
                                          max_train=args.max_train, max_test=args.max_test, say=lambda *_: None,
                                          learning_rates=(args.lr,), epochs=args.epochs, batch_size=args.batch_size,
                                          max_length=args.max_length, max_new_tokens=args.max_new_tokens)
                rows.append((seed, found["chrf_before"], found["chrf_after"], time.process_time() - cpu,
                             time.perf_counter() - wall))
            print(f"{decoder} seed {seed}: chrF {rows[-1][1]:.2f} -> {rows[-1][2]:.2f}  "
                  f"({rows[-1][3]:.0f} CPU s, {rows[-1][4]:.0f} s wall)", flush=True)
        after = [r[2] for r in rows]
        before = rows[0][1]  # the same model on the same test split: one value for every seed
        gain = min(after) - before
        spread = max(after) - min(after)
        print(f"{decoder}: before {before:.2f}; after {statistics.mean(after):.2f} "
              f"(min {min(after):.2f}, max {max(after):.2f}, spread {spread:.2f}); smallest gain {gain:.2f} "
              f"{'>' if gain > spread else '<='} spread; {statistics.mean(r[3] for r in rows):.0f} CPU s per "
              "fine-tune")


if __name__ == "__main__":
    main()
