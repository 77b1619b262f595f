"""`twofold eval PATH`: evaluate a model, a training run (or every tagged checkpoint of it), with
the built-in tasks (`--task`) or the published suites (`--suite`, run by the field's libraries)."""

from __future__ import annotations

import argparse
from pathlib import Path

from twofold.commands import POSITIVE, at_least, given, numbers_in

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
    ("learning-rate", POSITIVE, "classification fine-tuning peak LR (default 1e-4)"),
    ("pooling", str, "classification pooling: cls, mean or last (default: encoder mean, decoder last)"),
    ("max-new-tokens", int, "tokens each decoder sample continues (default 32)"),
)


def register(subparsers) -> None:
    from twofold.eval.suites import SUITES
    from twofold.eval.tasks import TASKS

    tasks = "\n".join(f"  {name:<24}{task.help}" for name, task in TASKS.items())
    suites = "\n".join(f"  {name:<24}{suite.help}" for name, suite in SUITES.items())
    suites += ("\n  ettin                   the Ettin paper's protocol for a pair (or a folder of pairs): glue, "
               "mteb-retrieval,\n                          csn, mldr (after the embed fine-tune), lm-eval; "
               "table and figure (ettin.png)")
    parser = subparsers.add_parser(
        "eval", help="evaluate models, runs or checkpoints; write JSON results, a table and plots",
        description="Evaluate a Hugging Face model directory, a training run, or a folder of them, with the "
                    "built-in tasks (--task) or the published suites (--suite). Suites read local copies of "
                    "their data with --data-dir (docs/evaluation.md says the layouts).",
        epilog=f"tasks (default: every built-in one, i.e. all but classification and beir):\n{tasks}\n\n"
               f"suites (--suite NAME[,NAME…]; --tasks picks a subset of a suite's tasks):\n{suites}",
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
        accepts = {"choices": ("cls", "mean", "last")} if flag == "pooling" else {"type": kind}
        sizes.add_argument(f"--{flag}", **accepts, help=text)
    user = parser.add_argument_group("user data")
    user.add_argument("--train", help="classification: training file (.tsv/.csv with a header line, or .jsonl)")
    user.add_argument("--dev", help="classification: dev file, scored")
    user.add_argument("--text-fields", help="classification: text column(s), comma-separated (default: sentence)")
    user.add_argument("--label-field", help="classification: label column (default: label)")
    user.add_argument("--beir", help="retrieval: a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    user.add_argument("--generate-data", help="generate: data whose test split is scored, as `twofold finetune "
                                              "generate --data` reads it (default: stdlib)")
    user.add_argument("--generate-test", help="generate: a file (or SOURCE_FILE,TARGET_FILE) scored whole instead")
    user.add_argument("--template", help="generate: prompt of source/target data, with {source}")
    user.add_argument("--source-field", help="generate: column of the source (a.b: a field of a record column)")
    user.add_argument("--target-field", help="generate: column of the target")
    suite = parser.add_argument_group("suites")
    suite.add_argument("--suite", help="suite(s) to run, comma-separated: glue, mteb, mteb-retrieval, csn, mldr, "
                                       "followir, lm-eval, rank1, ettin")
    suite.add_argument("--tasks", help="the suites' tasks to run, comma-separated; SUITE:TASK for one suite of "
                                       "several (default: all of them; for --suite mteb: any MTEB task names)")
    suite.add_argument("--data-dir", help="local copies of the suites' data (GLUE folders, MTEB dataset repositories, "
                                          "BEIR folders for rank1 and mteb's retrieval tasks, lm-eval task YAMLs); "
                                          "default: download")
    suite.add_argument("--limit", type=at_least(1), help="examples (queries, documents) per task at most: a quick "
                                                         "look, not the published protocol (recorded in results)")
    suite.add_argument("--lr", type=numbers_in(0, low_open=True),
                       help="fine-tunes of a suite (glue; mteb with --finetune-data): learning rate(s), "
                                    "comma-separated (default: the recipe's, glue 1e-5,3e-5,8e-5)")
    suite.add_argument("--finetune-batch-size", type=at_least(1), help="fine-tunes of a suite: batch size "
                                                                       "(default: the recipe's)")
    suite.add_argument("--finetune-data", help="mteb suites: fine-tune the embed recipe on this data first (stdlib, a "
                                               "file, a BEIR folder, hf:NAME); ettin default: MS MARCO triplets")
    suite.add_argument("--num-fewshot", type=at_least(0), help="lm-eval: few-shot examples (default: the task's)")
    suite.add_argument("--think-tokens", type=at_least(0),
                       help="rank1: reasoning tokens generated before the true/false verdict (default 0)")
    suite.add_argument("--first-stage",
                       help="rank1: bm25 (default), a TREC run file, or an embedder directory (dense)")
    suite.add_argument("--depth", type=at_least(1), help="rank1: documents reranked per query "
                                                                      "(default 100)")
    parser.set_defaults(func=run_eval)


def settings_from(args: argparse.Namespace):
    """The one `Settings` of this evaluation, for the built-in tasks and the suites alike."""
    from twofold.eval.settings import QUICK, Settings

    changes = {flag.replace("-", "_"): getattr(args, flag.replace("-", "_")) for flag, _, _ in _KNOBS}
    changes |= {"train": args.train, "dev": args.dev, "label_field": args.label_field, "beir": args.beir,
                "tasks": tuple(t.strip() for t in (args.tasks or "").split(",") if t.strip()),
                "data_dir": Path(args.data_dir) if args.data_dir else None, "limit": args.limit,
                "learning_rates": args.lr,
                "finetune_batch_size": args.finetune_batch_size, "finetune_data": args.finetune_data,
                "num_fewshot": args.num_fewshot, "think_tokens": args.think_tokens, "first_stage": args.first_stage,
                "depth": args.depth, "generate_data": args.generate_data, "generate_test": args.generate_test,
                "template": args.template, "source_field": args.source_field, "target_field": args.target_field}
    if args.text_fields:
        changes["text_fields"] = tuple(f.strip() for f in args.text_fields.split(",") if f.strip())
    base = QUICK if args.quick and not args.suite else Settings()  # --quick sizes the built-in tasks only
    return base.replace(**{k: v for k, v in changes.items() if v is not None})


# Suite flags and the suites they change (`ettin` runs glue, the mteb retrieval suites and lm-eval).
_MTEB = ("mteb", "mteb-retrieval", "csn", "mldr", "followir", "ettin")
_SUITE_FLAGS = {"tasks": None, "data_dir": None, "limit": None, "lr": ("glue", *_MTEB),
                "finetune_batch_size": ("glue", *_MTEB), "finetune_data": _MTEB, "num_fewshot": ("lm-eval", "ettin"),
                "think_tokens": ("rank1",), "first_stage": ("rank1",), "depth": ("rank1",)}


# Flags only the built-in tasks read (the suites take their published values or their own flags).
_BUILTIN_FLAGS = {name.replace("-", "_"): f"--{name}" for name in (
    "lm-tokens", "pseudo-perplexity-tokens", "max-queries", "max-examples", "min-per-class", "max-per-class",
    "learning-rate", "pooling", "max-new-tokens", "train", "dev", "text-fields", "label-field", "beir",
    "generate-data", "generate-test", "template", "source-field", "target-field")}


def check_flags_apply(args: argparse.Namespace) -> None:
    """A flag that would change nothing in this evaluation is refused, never silently ignored."""
    from twofold.errors import TwofoldError
    from twofold.eval.suites import suite_names

    suite_flags = [name for name in _SUITE_FLAGS if given(args, {name: name})]
    if not args.suite:
        if suite_flags:
            flag = "--" + suite_flags[0].replace("_", "-")
            raise TwofoldError(f"{flag} applies to the published suites; add --suite NAME "
                               f"(the built-in tasks are chosen with --task)")
        return
    if args.quick:
        raise TwofoldError("--quick sizes the built-in tasks (--task); for a quick look at a suite use --limit N")
    builtin = given(args, _BUILTIN_FLAGS)
    if builtin:
        raise TwofoldError(f"{builtin[0]} applies to the built-in tasks (--task), not to --suite {args.suite}; "
                           f"drop {'/'.join(builtin)}")
    running = set(suite_names(args.suite))
    for name in suite_flags:
        suites = _SUITE_FLAGS[name]
        if suites is not None and not running & set(suites):
            raise TwofoldError(f"--{name.replace('_', '-')} applies to --suite {' or '.join(suites)}, not to "
                               f"--suite {args.suite}; drop it")


def run_eval(args: argparse.Namespace) -> int:
    """The built-in tasks (`--task`, default) or the published suites (`--suite`): each room checks
    its inputs and finds its models before the output folder is touched; both end in one table and report."""
    from twofold.errors import TwofoldError

    if args.suite and args.task:
        raise TwofoldError("--task runs the built-in tasks and --suite the published suites; give one of them")
    check_flags_apply(args)
    results, out, title = (run_suites if args.suite else run_tasks)(args)
    _finish(results, out, title, say_none="no scores" if args.suite else None)
    return 0


def _out(args: argparse.Namespace) -> Path:
    from twofold.files import check_out

    return check_out(Path(args.out) if args.out else Path(args.path) / "eval", "folder of results", update=True)


def _finish(results: list, out: Path, title: str, say_none: str | None) -> None:
    """The table of scores (or `say_none` when there are none), the failed tasks, the report."""
    from twofold.report import terminal_table, write_report

    scored = [r for r in results if r.metrics]
    print(terminal_table(results) if scored or say_none is None else say_none)
    for r in results:
        if r.error:
            print(f"failed: {r.column} {r.task}: {r.error}")
    print(f"results and report: {write_report(results, out, title=title)}")


def run_suites(args: argparse.Namespace) -> tuple[list, Path, str]:
    """`--suite`: check everything, then run each suite's tasks on each model, saving as each finishes."""
    from twofold.errors import TwofoldError
    from twofold.eval.suites import check_kinds, plan, run_plan
    from twofold.eval.suites.members import exported, suite_members

    options = settings_from(args)
    if options.data_dir is not None and not options.data_dir.is_dir():
        raise TwofoldError(f"--data-dir {options.data_dir}: no such folder")
    steps = plan(args.suite, options)  # names, versions and local data checked before any model work
    found = suite_members(args.path, args.all_checkpoints, args.tokenizer, args.name)
    check_kinds([member for member, _ in found], steps, say=lambda line: None)  # before anything is written
    out = _out(args)
    print(f"suites: {', '.join(dict.fromkeys(step.suite.name for step in steps))} on "
          f"{', '.join(m.label for m, _ in found)}; results in {out}", flush=True)
    sources = {id(member): source for member, source in found}
    scratch = out / "work" / "exports"
    results = run_plan([member for member, _ in found], steps, out,
                       prepare=lambda member: exported(member, sources[id(member)], scratch, args.tokenizer))
    return results, out, f"Evaluation of {args.path}: --suite {args.suite}"


def run_tasks(args: argparse.Namespace) -> tuple[list, Path, str]:
    """`--task`: check the tasks' inputs and every model's tokenizer, then run the tasks model by model."""
    from twofold.data.tokenizer import load_tokenizer
    from twofold.errors import TwofoldError
    from twofold.eval.tasks import check_tasks, evaluate
    from twofold.models import models_under
    from twofold.results import save_results

    settings = settings_from(args)
    tasks = check_tasks([t.strip() for spec in args.task for t in spec.split(",") if t.strip()], settings)
    found = models_under(args.path, args.all_checkpoints)
    if args.name and len({f.name for f in found}) > 1:
        raise TwofoldError(f"--name labels one model, but {args.path} holds {len(found)}; leave --name out")
    for f in found:  # all found before any work
        if (args.tokenizer or f.tokenizer()) is None:
            raise TwofoldError(f"no tokenizer found for {f.name}; "
                               "pass --tokenizer DIR (a tokenizer.json or its folder)")
    tokenizers = [load_tokenizer(args.tokenizer or f.tokenizer()) for f in found]
    out = _out(args)
    results = []
    for f, tokenizer in zip(found, tokenizers):
        label = f"{f.name}@{f.tag}" if f.tag else f.name
        print(f"evaluating {label}: {', '.join(tasks)}", flush=True)
        found_results = evaluate(f.load(), tokenizer, tasks, args.name or f.name, settings,
                                 checkpoint=f.tag, tokens=f.tokens)
        save_results(found_results, out)
        results += found_results
    return results, out, f"Evaluation of {args.path}"
