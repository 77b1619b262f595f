"""`twofold compare RUN_OR_RESULT …`: a side-by-side table and plots of evaluation results."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help="side-by-side table and plots of evaluation results",
        description="Compare evaluation results (result JSON files, or folders holding them such as "
                    "a run's eval/ folder): a terminal table, report.md and PNG plots (scores per task; "
                    "score against parameters when sizes differ; against training tokens for checkpoints).")
    parser.add_argument("inputs", nargs="+", metavar="RUN_OR_RESULT",
                        help="result .json files or folders holding them")
    parser.add_argument("--out", default="compare", help="folder for report.md and the plots (default: compare)")
    parser.add_argument("--title", default="Comparison", help="title of report.md")
    parser.set_defaults(func=run_compare)


def input_label(path: Path) -> str:
    """What names an input's models when two inputs use the same model name: runs/a/eval -> a."""
    folder = path if path.is_dir() else path.parent
    folder = folder.resolve()
    return folder.parent.name if folder.name == "eval" else folder.name


def gather(inputs: list[str]):
    """Every input's results. A model name scored on the same task in two inputs names two models:
    they get the input's label in front. A name whose inputs hold different tasks (the suites of
    one pair, each in its folder) is one model: one column."""
    from twofold.results import load_results

    loaded = [(Path(p), load_results(p)) for p in inputs]
    owners: dict[tuple[str, str], set[str]] = {}
    for path, results in loaded:
        for r in results:
            owners.setdefault((r.model, r.task), set()).add(input_label(path))
    clashing = {model for (model, _), labels in owners.items() if len(labels) > 1}
    gathered = []
    for path, results in loaded:
        for r in results:
            if r.model in clashing:
                r.model = f"{input_label(path)}/{r.model}"
            gathered.append(r)
    return gathered


def run_compare(args: argparse.Namespace) -> int:
    from twofold.files import check_out
    from twofold.report import terminal_table, write_report

    results = gather(args.inputs)
    check_out(args.out, "comparison", update=True)
    print(terminal_table(results))
    print(f"report: {write_report(results, args.out, title=args.title)}")
    return 0
