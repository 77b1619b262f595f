"""`twofold eval-languages`: held-out MLM accuracy per language of several encoders, side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from twofold.commands import at_least, number_in
from twofold.errors import TwofoldError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval-languages", help="held-out MLM accuracy per language (store group) of encoders, side by side",
        description="Score encoders (Hugging Face directories or runs: their newest checkpoint) on the same "
                    "masked sequences of every group (language) of a held-out token store; print a table and "
                    "write scores.json and a PNG. E.g. mmBERT's decay variants against their TIES merge.")
    parser.add_argument("models", nargs="+", metavar="MODEL", help="Hugging Face model directory or member run")
    parser.add_argument("--store", action="append", required=True, help="held-out token store (repeatable)")
    parser.add_argument("--names", help="labels of the models, comma-separated (default: directory names)")
    parser.add_argument("--out", default="eval-languages", help="folder for scores.json and accuracy.png")
    parser.add_argument("--seq-len", type=at_least(4), default=256, help="tokens per evaluation sequence")
    parser.add_argument("--sequences", type=at_least(1), default=32, help="sequences per language at most")
    parser.add_argument("--rate", type=number_in(0, 1, low_open=True, high_open=True), default=0.15,
                        help="fraction of tokens masked")
    parser.add_argument("--seed", type=at_least(0), default=0)
    parser.set_defaults(func=run_eval_languages)


def run_eval_languages(args: argparse.Namespace) -> int:
    from twofold.data.sampling import Corpus
    from twofold.data.store import TokenStore
    from twofold.eval.tasks.languages import format_table, masked_sets, mlm_accuracy, plot
    from twofold.models import CHECKPOINT, HF, RUN, resolve

    names = args.names.split(",") if args.names else [Path(m).name for m in args.models]
    if len(names) != len(args.models) or len(set(names)) != len(names):
        raise TwofoldError(f"--names: give {len(args.models)} distinct labels, one per model")
    corpus = Corpus([TokenStore(s) for s in args.store])
    sets = masked_sets(args.store, args.seq_len, args.sequences, args.rate, args.seed)
    scores = {}
    for name, path in zip(names, args.models):
        model = resolve(path, accept=(HF, RUN, CHECKPOINT)).load()
        if model.config.causal:
            raise TwofoldError(f"{path}: a decoder; MLM accuracy needs an encoder")
        if model.config.vocab_size < corpus.vocab_size:
            raise TwofoldError(f"{path}: vocab {model.config.vocab_size} is smaller than the store's tokenizer "
                               f"({corpus.vocab_size}); evaluate on a store made with the model's tokenizer")
        scores[name] = mlm_accuracy(model, sets, corpus.special_ids["pad"])
    print(format_table(scores, corpus.group_tokens))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from twofold.files import atomic_write_text

    atomic_write_text(out / "scores.json", json.dumps({"models": dict(zip(names, args.models)), "stores": args.store,
                                                       "seq_len": args.seq_len, "rate": args.rate,
                                                       "seed": args.seed, "scores": scores}, indent=1) + "\n")
    order = sorted(sets, key=lambda g: -corpus.group_tokens[g])
    print(f"wrote {out / 'scores.json'} and {plot(scores, out / 'accuracy.png', order)}")
    return 0
