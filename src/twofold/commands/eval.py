"""`twofold eval PATH`: evaluate a model, a training run (or every tagged checkpoint of it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from twofold.commands import at_least

# Settings that the command line can change: (flag, type, help).
_KNOBS = (
    ("seed", int, "seed of every random choice (default 0)"),
    ("max-length", int, "tokens per sequence, special tokens included (default 256)"),
    ("batch-size", int, "sequences per forward pass / fine-tuning step (default 32)"),
    ("lm-tokens", int, "held-out tokens for MLM accuracy and perplexity (default 20000)"),
    ("pseudo-perplexity-tokens", int, "tokens each masked alone for pseudo-perplexity (default 1000)"),
    ("max-queries", int, "retrieval queries at most (default 500)"),
    ("max-examples", int, "classification training examples at most (default 2000)"),
    ("min-per-class", int, "package-classification: smallest package kept (default 20)"),
    ("max-per-class", int, "package-classification: functions kept of a bigger package (default 50)"),
    ("epochs", int, "classification fine-tuning epochs (default 3)"),
    ("learning-rate", float, "classification fine-tuning peak LR (default 1e-4)"),
    ("pooling", str, "classification pooling: cls, mean or last (default: encoder mean, decoder last)"),
    ("max-new-tokens", int, "tokens each decoder sample continues (default 32)"),
)


def register(subparsers) -> None:
    from twofold.eval import TASKS

    tasks = "\n".join(f"  {name:<24}{task.help}" for name, task in TASKS.items())
    parser = subparsers.add_parser(
        "eval", help="evaluate models, runs or checkpoints; write JSON results, a table and plots",
        description="Evaluate a Hugging Face model directory, a training run, or a folder of them.",
        epilog=f"tasks (default: every built-in one, i.e. all but classification and beir):\n{tasks}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="model directory, `twofold train` run, or a folder holding them")
    parser.add_argument("--task", action="append", default=[], metavar="NAME",
                        help="task to run (repeatable or comma-separated)")
    parser.add_argument("--all-checkpoints", action="store_true",
                        help="evaluate every tagged checkpoint of the run(s) and plot score against training tokens")
    parser.add_argument("--tokenizer", help="tokenizer.json or its folder (default: the model's or the run's)")
    parser.add_argument("--name", help="label of the model in results (default: its directory name)")
    parser.add_argument("--out", help="folder for results, report.md and plots (default: PATH/eval)")
    parser.add_argument("--quick", action="store_true",
                        help="small samples everywhere: seconds per task, rough numbers")
    sizes = parser.add_argument_group("sample sizes and fine-tuning")
    for flag, kind, text in _KNOBS:
        if kind is int:  # counts and sizes; the seed may be 0
            kind = at_least(0 if flag == "seed" else 1)
        sizes.add_argument(f"--{flag}", type=kind, help=text)
    user = parser.add_argument_group("user data")
    user.add_argument("--train", help="classification: training file (.tsv/.csv with a header line, or .jsonl)")
    user.add_argument("--dev", help="classification: dev file, scored")
    user.add_argument("--text-fields", help="classification: text column(s), comma-separated (default: sentence)")
    user.add_argument("--label-field", help="classification: label column (default: label)")
    user.add_argument("--beir", help="retrieval: a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    parser.set_defaults(func=run_eval)


def settings_from(args: argparse.Namespace):
    from twofold.eval import QUICK, Settings

    changes = {flag.replace("-", "_"): getattr(args, flag.replace("-", "_")) for flag, _, _ in _KNOBS}
    changes |= {"train": args.train, "dev": args.dev, "label_field": args.label_field, "beir": args.beir}
    if args.text_fields:
        changes["text_fields"] = tuple(f.strip() for f in args.text_fields.split(",") if f.strip())
    base = QUICK if args.quick else Settings()
    return base.replace(**{k: v for k, v in changes.items() if v is not None})


def run_eval(args: argparse.Namespace) -> int:
    from twofold.errors import TwofoldError
    from twofold.eval import check_tasks, evaluate, save_results
    from twofold.eval.models import find_models, tokenizer_for
    from twofold.files import check_out
    from twofold.report import terminal_table, write_report

    settings = settings_from(args)
    tasks = check_tasks([t.strip() for spec in args.task for t in spec.split(",") if t.strip()], settings)
    found = find_models(args.path, args.all_checkpoints)
    if args.name and len({f.name for f in found}) > 1:
        raise TwofoldError(f"--name labels one model, but {args.path} holds {len(found)}; leave --name out")
    tokenizers = [tokenizer_for(f, args.tokenizer) for f in found]  # all found before any work
    out = check_out(Path(args.out) if args.out else Path(args.path) / "eval", "folder of results", update=True)
    results = []
    for f, tokenizer in zip(found, tokenizers):
        label = f"{f.name}@{f.checkpoint}" if f.checkpoint else f.name
        print(f"evaluating {label}: {', '.join(tasks)}", flush=True)
        found_results = evaluate(f.load(), tokenizer, tasks, args.name or f.name, settings,
                                 checkpoint=f.checkpoint, tokens=f.tokens)
        save_results(found_results, out)
        results += found_results
    print(terminal_table(results))
    report = write_report(results, out, title=f"Evaluation of {args.path}")
    print(f"results and report: {report}")
    return 0
