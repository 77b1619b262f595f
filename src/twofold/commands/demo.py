"""`twofold demo`: train and compare a tiny encoder/decoder pair, offline, in minutes."""

from __future__ import annotations

import argparse

from twofold.commands import token_count


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="train and compare a tiny encoder/decoder pair on built-in text (offline)",
        description=(
            "The Ettin experiment in miniature: train a BPE on the Python standard library, prepare "
            "token stores, train an encoder and a decoder with the three-phase demo recipe on identical "
            "batches and continue the decoder as an encoder (the cross-objective arm), export all three in "
            "the Hugging Face format, evaluate them, fine-tune each for code search and package "
            "classification over 3 seeds beside baselines, and write a report with the finding and plots. "
            "Training, evaluation and fine-tunes run as jobs side by side, one process per core: about "
            "10 minutes on 2 cores. Needs no download and no GPU. A second run reuses the tokenizer and "
            "stores; worker output goes to OUT/jobs.log."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default="runs/demo", help="directory for everything the demo makes")
    parser.add_argument("--budget", type=token_count,
                        help="training tokens per member (default 2.5M), e.g. 300K (faster) or 5M (better trained)")
    parser.add_argument("--fresh", action="store_true", help="rebuild the tokenizer and stores too")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from twofold.demo.run import run_demo

    run_demo(args.out, budget=args.budget, fresh=args.fresh, progress=not args.no_progress)
    return 0
