#!/usr/bin/env python
"""Which embed fine-tune setting for the demo? Each one scored on the *dev* split (queries from the
train modules), never on the held-out test split the demo reports.

    python benchmarks/demo_embed_dev.py runs/demo/export/encoder --setting 800:1e-3:1 --setting 1600:1e-3:1

A setting is PAIRS:LR:EPOCHS (the demo's other embed values: batch 32, 96 tokens, in-batch
negatives only). Prints, per setting, the fine-tuned dev nDCG@10 of each seed, the zero-shot
one, and the process CPU seconds of one fine-tune (one thread, as a demo job runs).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from twofold.demo.downstream import fine_tune, prepared_seeds, task_data
from twofold.finetune import recipe_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoder", type=Path, help="an HF export, e.g. runs/demo/export/encoder")
    parser.add_argument("--setting", action="append", required=True, help="PAIRS:LR:EPOCHS (repeatable)")
    parser.add_argument("--seeds", default="1,2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    for setting in args.setting:
        pairs, lr, epochs = setting.split(":")
        recipe = recipe_for("embed", learning_rates=(float(lr),), batch_size=32, max_length=96, hard_negatives=0,
                            epochs=float(epochs))
        data = task_data("embed", {"embed": int(pairs)})
        data.test = data.dev  # scored on dev: the held-out test split stays unseen
        with tempfile.TemporaryDirectory() as work:
            prepared = prepared_seeds("embed", data, recipe, seeds, args.encoder, Path(work))
            scores, started = {}, time.process_time()
            for seed in seeds:
                results = fine_tune("embed", args.encoder, "encoder", data, prepared[seed], recipe, seed, Path(work))
                scores[seed] = {r.variant: round(r.metrics["ndcg@10"], 4) for r in results}
        print(f"{setting}: dev ({len(data.dev.queries)} queries) nDCG@10 "
              + ", ".join(f"seed {s} {v['fine-tuned']}" for s, v in scores.items())
              + f"; zero-shot {scores[seeds[0]]['zero-shot']}; "
              f"{(time.process_time() - started) / len(seeds):.0f} CPU s per fine-tune", flush=True)


if __name__ == "__main__":
    main()
