"""`twofold finetune TASK MODEL --data … --out …`: a downstream fine-tune of one member or a pair."""

from __future__ import annotations

import argparse
from pathlib import Path

from twofold.commands import POSITIVE, at_least, given, number_in, numbers_in

_EPILOG = """tasks and their libraries (defaults: the published Ettin recipes):
  embed     Sentence Transformers: CachedMultipleNegativesRankingLoss, mined hard negatives, lr 8e-5, batch 512
  sparse    SparseEncoder (SPLADE): SpladeLoss(SparseMultipleNegativesRankingLoss), regularizers 5e-5/3e-5,
            lr 2e-5 (encoders: it needs the masked-LM head)
  rerank    CrossEncoder: BinaryCrossEntropy pos_weight 5, 5 mined negatives per query, lr 2e-5, batch 64
  colbert   PyLate ColBERT, cached contrastive loss, lr 8e-5 (in .venv-colbert: `make colbert`)
  classify  transformers Trainer: lr sweep 1e-5,3e-5,8e-5, 3 epochs, warmup 6%; accuracy/F1/MCC or Pearson/Spearman
  generate  decoders: transformers Trainer on prompt -> completion, loss on the completion only, the classify
            sweep; greedy generation scored with sacrebleu chrF (selects), chrF++, BLEU and exact match

data (--data): stdlib (built in, offline), a .jsonl/.tsv/.csv file, a BEIR folder, or hf:NAME[:CONFIG];
  generate: prompt/completion or source/target (--template) rows, or SOURCE_FILE,TARGET_FILE parallel text

examples:
  twofold finetune embed runs/demo/export/encoder --data stdlib --out runs/ft/embed-enc --batch-size 64
  twofold finetune classify --pair runs/demo/pair --data stdlib --out runs/ft/classify
  twofold finetune rerank my-export --data beir/scifact --out runs/ft/rerank --lr 1e-5,2e-5,5e-5
  twofold finetune generate runs/demo/export/decoder --data train.hat,train.eng --dev dev.hat,dev.eng \
      --test test.hat,test.eng --template 'Haitian: {source}\nEnglish:' --out runs/ft/hat-eng
"""


def register(subparsers) -> None:
    from twofold.finetune import TASKS

    parser = subparsers.add_parser(
        "finetune", help="fine-tune a model or both members of a pair downstream (embed, sparse, rerank, colbert, "
                         "classify, generate)",
        description="Fine-tune with the field's own libraries; the output loads unchanged in them and holds "
                    "finetune.json (inputs with checksums, recipe, sweep) and results/ for `twofold compare`.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=TASKS, metavar="TASK", help=f"one of {', '.join(TASKS)}")
    parser.add_argument("model", nargs="?", help="HF export, `twofold train` run (its newest checkpoint), RUN@TAG, "
                                                         "checkpoint directory or hub id")
    parser.add_argument("--pair", metavar="RUN", help="a pair run (or a folder with encoder/ and decoder/ exports): "
                                                       "both members, identical data, batches and recipe "
                                                       "(sparse, generate: the member the task fits)")
    parser.add_argument("--data", required=True, help="stdlib, a .jsonl/.tsv/.csv file, a BEIR folder, hf:NAME, or "
                                                      "(generate) SOURCE_FILE,TARGET_FILE")
    parser.add_argument("--dev", help="dev file (default: a seeded 10%% of --data)")
    parser.add_argument("--test", help="test file (default: another seeded 10%% of --data)")
    parser.add_argument("--out", required=True, help="directory to create (never overwritten)")
    recipe = parser.add_argument_group("recipe (default: the task's published values)")
    recipe.add_argument("--lr", type=numbers_in(0, low_open=True),
                        help="learning rate, or several comma-separated: a sweep selected on dev")
    recipe.add_argument("--epochs", type=POSITIVE)
    recipe.add_argument("--batch-size", type=at_least(1))
    recipe.add_argument("--mini-batch-size", type=at_least(1),
                        help="embed and colbert (their cached losses): sequences per forward pass")
    recipe.add_argument("--warmup", type=number_in(0, 1, high_open=True), dest="warmup_ratio",
                        help="warmup fraction of the steps")
    recipe.add_argument("--max-length", type=at_least(1), help="tokens per document / text")
    recipe.add_argument("--hard-negatives", type=at_least(0), help="negatives mined per query (0: in-batch only)")
    recipe.add_argument("--pooling", choices=["mean", "last", "cls"],
                        help="embed/rerank/classify pooling (default: encoder mean, decoder last token)")
    recipe.add_argument("--seed", type=at_least(0))
    labelled = parser.add_argument_group("classify data")
    labelled.add_argument("--text-fields", help="text column(s), comma-separated (default: sentence)")
    labelled.add_argument("--label-field", help="label column (default: label)")
    labelled.add_argument("--regression", action="store_true", default=None,
                          help="numeric labels (default: inferred)")
    generation = parser.add_argument_group("generate data and decoding")
    generation.add_argument("--template", help="prompt of source/target data, with {source} where the source goes "
                                               "(default: the source and a newline)")
    generation.add_argument("--source-field", help="column of the source (default: prompt, else source); a.b for a "
                                                   "field of a record column, e.g. translation.src_text")
    generation.add_argument("--target-field", help="column of the target (default: completion, else target)")
    generation.add_argument("--max-new-tokens", type=at_least(1), help="tokens generated per scored example "
                                                                       "(greedy; default 64)")
    generation.add_argument("--max-test", type=at_least(1), help="score at most this many dev and test examples")
    parser.add_argument("--max-train", type=at_least(1), help="use at most this many training examples")
    parser.add_argument("--packages", help="stdlib data: only these top-level packages (comma-separated)")
    parser.set_defaults(func=run_finetune)


# Flags that only some tasks read: (flag, attribute, the tasks it changes).
_TASK_FLAGS = (("--text-fields", "text_fields", ("classify",)), ("--label-field", "label_field", ("classify",)),
               ("--regression", "regression", ("classify",)), ("--pooling", "pooling", ("embed", "rerank", "classify")),
               ("--hard-negatives", "hard_negatives", ("embed", "sparse", "rerank", "colbert")),
               ("--mini-batch-size", "mini_batch_size", ("embed", "colbert")),  # the tasks with a cached loss
               *((flag, flag[2:].replace("-", "_"), ("generate",)) for flag in
                 ("--template", "--source-field", "--target-field", "--max-new-tokens", "--max-test")))


def check_flags_apply(args: argparse.Namespace) -> None:
    """A flag that this fine-tune would not read is refused, never silently ignored."""
    from twofold.errors import TwofoldError

    for flag, name, tasks in _TASK_FLAGS:
        if given(args, {name: flag}) and args.task not in tasks:
            raise TwofoldError(f"{flag} applies to finetune {' and '.join(tasks)}, not {args.task}; drop it")
    if args.packages and args.data != "stdlib":
        raise TwofoldError(f"--packages picks packages of --data stdlib, not of {args.data}; drop it")


def run_finetune(args: argparse.Namespace) -> int:
    from twofold.errors import TwofoldError
    from twofold.files import atomic_write_text
    from twofold.finetune import finetune, finetune_pair, load_data, recipe_for
    from twofold.finetune.tasks import check_environment
    from twofold.report import markdown_table, terminal_table

    if bool(args.model) == bool(args.pair):
        raise TwofoldError("give a MODEL or --pair RUN (not both)")
    check_flags_apply(args)
    check_environment(args.task)  # before the data is read
    out = Path(args.out)
    if out.exists():
        raise TwofoldError(f"{out} already exists; fine-tuning never overwrites — pass a new --out")
    recipe = recipe_for(args.task, learning_rates=args.lr,
                        epochs=args.epochs, batch_size=args.batch_size, mini_batch_size=args.mini_batch_size,
                        warmup_ratio=args.warmup_ratio, max_length=args.max_length,
                        hard_negatives=args.hard_negatives, pooling=args.pooling, seed=args.seed,
                        max_new_tokens=args.max_new_tokens)
    options = {"packages": tuple(p.strip() for p in args.packages.split(",")) if args.packages else None,
               "max_train": args.max_train}
    if args.task == "classify":
        fields = args.text_fields or "sentence"
        options |= {"text_fields": tuple(f.strip() for f in fields.split(",") if f.strip()),
                    "label_field": args.label_field or "label", "regression": True if args.regression else None}
    if args.task == "generate":
        options |= {"template": args.template, "source_field": args.source_field, "target_field": args.target_field,
                    "max_test": args.max_test}
    data = load_data(args.task, args.data, args.dev, args.test, recipe.seed, **options)
    if args.pair:
        finetuned = finetune_pair(args.task, args.pair, data, out, recipe)
    else:
        finetuned = [finetune(args.task, args.model, data, out, recipe)]
    results = [result for member in finetuned for result in member.results]
    print(terminal_table(results))
    if args.pair:
        atomic_write_text(out / "comparison.md", f"# {args.task} on {data.name}: encoder vs decoder\n\n"
                                                 f"{markdown_table(results)}\n")
    for r in finetuned:
        print(f"{r.model}: lr {r.learning_rate:g}, test {r.metric} {r.before[r.metric]:.4f} -> {r.test[r.metric]:.4f}"
              f"  ({r.out})")
    return 0
