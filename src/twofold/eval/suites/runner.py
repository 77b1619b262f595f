"""The suite registry, the check before any work, and the loop that runs suites on models.

`plan` validates everything a run needs before a model is loaded — suite and task names, the
libraries' versions, the local data — so that bad input is one line and nothing is written.
`run_plan` runs each task of each suite on each model; every task's results are written as
soon as it finishes, and a task that fails writes its error and the suite goes on.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from twofold.errors import TwofoldError
from twofold.eval.member import CLASSIFIER, DECODER, EMBEDDER, ENCODER, Member
from twofold.eval.settings import Settings
from twofold.eval.suites.base import Suite, failure, pick_tasks, result
from twofold.eval.suites.glue import summarize
from twofold.results import Result, result_filename, save_results

LM_KINDS = (ENCODER, DECODER)


def _lazy(module: str, attribute: str, distribution: str, extra: str) -> Callable:
    """`module.attribute`, imported when first called; a missing library is one line."""

    def call(*args, **kwargs):
        try:
            loaded = importlib.import_module(f"twofold.eval.suites.{module}")
        except ImportError as error:
            raise TwofoldError(f"this suite needs {distribution} ({error.name or error}); "
                               f"pip install 'twofold[{extra}]'") from None
        return getattr(loaded, attribute)(*args, **kwargs)

    return call


def _mteb_suite(name: str, help: str) -> Suite:
    lister = _lazy("mteb_suite", "task_lister", "mteb", "suites")
    runner = _lazy("mteb_suite", "run_task", "mteb", "suites")
    return Suite(name, help, (ENCODER, DECODER, EMBEDDER), lambda options: lister(name)(options),
                 lambda member, task, options: runner(name)(member, task, options), "mteb",
                 _lazy("mteb_suite", "check_data", "mteb", "suites"),
                 {CLASSIFIER: "glue (classifiers are fine-tuned there)"})


SUITES: dict[str, Suite] = {
    "glue": Suite("glue", "GLUE: 8 tasks fine-tuned with the classify recipe and its sweep; official metrics, average",
                  LM_KINDS, _lazy("glue", "tasks", "transformers", "finetune"), _lazy("glue", "run", "transformers",
                                                                                       "finetune"),
                  "transformers", _lazy("glue", "check_data", "transformers", "finetune"),
                  {EMBEDDER: "mteb", CLASSIFIER: "none (glue fine-tunes the base model: pass the export)"}),
    "mteb": _mteb_suite("mteb", "MTEB tasks named by --tasks, on a Sentence Transformers model of the export"),
    "mteb-retrieval": _mteb_suite("mteb-retrieval", "MTEB(eng, v2) retrieval tasks (nDCG@10)"),
    "csn": _mteb_suite("csn", "CodeSearchNet retrieval (MTEB), nDCG@10"),
    "mldr": _mteb_suite("mldr", "MLDR long-document retrieval (English), at the model's full context"),
    "followir": _mteb_suite("followir", "FollowIR instruction retrieval (Core17, News21, Robust04): p-MRR"),
    "lm-eval": Suite("lm-eval", "lm-evaluation-harness tasks (default: Ettin's 11); decoder via hf, encoder via "
                     "masked-LM pseudo-log-likelihood", LM_KINDS, _lazy("lmeval", "tasks", "lm-eval", "lmeval"),
                     _lazy("lmeval", "run", "lm-eval", "lmeval"), "lm-eval",
                     _lazy("lmeval", "check_data", "lm-eval", "lmeval"),
                     {EMBEDDER: "mteb", CLASSIFIER: "glue"}),
    "rank1": Suite("rank1", "rerank BM25 (or a run / dense) top-k with the decoder as rank1 scores; nDCG@10 before "
                   "and after", (DECODER,), _lazy("rank1", "tasks", "bm25s", "suites"),
                   _lazy("rank1", "run", "bm25s", "suites"), "transformers",
                   _lazy("rank1", "check_data", "bm25s", "suites"),
                   {ENCODER: "mteb (retrieval) or lm-eval; rank1 needs a decoder", EMBEDDER: "mteb",
                    CLASSIFIER: "glue"}),
}
# The Ettin paper's protocol (arXiv 2507.11412): the suites, and the family each is plotted as.
ETTIN_SUITES = ("glue", "mteb-retrieval", "csn", "mldr", "lm-eval")
ETTIN_FAMILIES = {"glue": "GLUE", "mteb-retrieval": "retrieval (MTEB v2)", "csn": "code retrieval (CSN)",
                  "mldr": "long-document retrieval (MLDR)", "lm-eval": "generative (lm-eval)"}
ETTIN_EMBED_DATA = "hf:sentence-transformers/msmarco-bm25:triplet"  # MS MARCO hard-negative triplets
ALL = (*SUITES, "ettin")


def suite_names(text: str | Sequence[str]) -> list[str]:
    """'glue,lm-eval' -> ['glue', 'lm-eval'], each checked."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in ALL]
    if unknown or not names:
        raise TwofoldError(f"unknown suite {unknown[0] if unknown else text!r}; valid suites: {', '.join(ALL)}")
    return list(dict.fromkeys(names))


@dataclass
class Step:
    suite: Suite
    tasks: list
    options: Settings
    ettin: bool = False  # part of `--suite ettin`: its results also make the family scores


def tasks_for(suite: str, tasks: Sequence) -> tuple:
    """The `--tasks` entries for `suite`: unqualified names, and `suite:task` ones of this suite."""
    mine = []
    for task in tasks:
        if isinstance(task, str) and ":" in task:
            prefix, name = task.split(":", 1)
            if prefix == suite:
                mine.append(name)
        else:
            mine.append(task)
    return tuple(mine)


def plan(names: Sequence[str], options: Settings) -> list[Step]:
    """One `Step` (suite, its tasks, its options) per suite, everything checked; no model work yet.

    `--tasks` entries apply to every suite, or as `suite:task` to one. `ettin` expands into its
    suites (its unqualified `--tasks` name which of them), the retrieval ones after the `embed`
    fine-tune (`--finetune-data`, default MS MARCO triplets).
    """
    names = suite_names(names)
    prefixes = {t.split(":", 1)[0] for t in options.tasks if isinstance(t, str) and ":" in t}
    strays = sorted(prefixes - set(ALL))
    if strays:
        raise TwofoldError(f"--tasks {strays[0]}:…: no suite {strays[0]!r}; valid suites: {', '.join(ALL)}")
    running = set(names) | (set(ETTIN_SUITES) if "ettin" in names else set())
    idle = sorted(prefixes - running)
    if idle:
        raise TwofoldError(f"--tasks {idle[0]}:…: --suite {idle[0]} is not asked for (--suite {','.join(names)}); "
                           f"add it to --suite or drop those tasks")
    steps = []
    for name in names:
        if name == "ettin":
            plain = [t for t in options.tasks if not (isinstance(t, str) and ":" in t)]
            chosen = pick_tasks("ettin", plain, ETTIN_SUITES, ETTIN_SUITES)
            embed = options.finetune_data or ETTIN_EMBED_DATA
            for part in chosen:
                part_options = replace(options, tasks=tuple(t.split(":", 1)[1] for t in options.tasks
                                                            if isinstance(t, str) and t.startswith(f"{part}:")),
                                       finetune_data=embed if part in ("mteb-retrieval", "csn", "mldr") else None)
                steps.append(Step(SUITES[part], SUITES[part].tasks(part_options), part_options, ettin=True))
        else:
            suite_options = replace(options, tasks=tasks_for(name, options.tasks))
            steps.append(Step(SUITES[name], SUITES[name].tasks(suite_options), suite_options))
    for step in steps:
        if step.suite.check_data is not None:
            step.suite.check_data(step.tasks, step.options)
    return steps


def check_kinds(members: Sequence[Member], steps, say=print) -> dict[str, list]:
    """Which steps each member takes. One model that a suite cannot evaluate, or models none of the
    suites can, is one line naming a suite that would; in a folder of models the others are skipped."""
    taken = {}
    for member in members:
        taken[member.label] = [step for step in steps if member.kind in step.suite.kinds]
    for member in members:
        refused = [step.suite for step in steps if member.kind not in step.suite.kinds]
        if refused and (len(members) == 1 or not any(taken.values())):
            suite = refused[0]
            instead = suite.instead.get(member.kind, "another suite")
            raise TwofoldError(f"{member.path}: {_a(member.kind)}; --suite {suite.name} cannot evaluate it "
                               f"(it takes {', '.join(suite.kinds)}); use --suite {instead}")
        for suite in refused:
            say(f"{member.label}: skipping --suite {suite.name} ({_a(member.kind)}; it takes {', '.join(suite.kinds)})")
    return taken


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def run_plan(members: Sequence[Member], steps, out: str | Path, say=print,
             prepare: Callable[[Member], AbstractContextManager[Member]] | None = None) -> list[Result]:
    """Every step's tasks on every member; results saved to `out` as each task finishes.

    `prepare(member)`, a context manager, gives the member with its HF directory (a checkpoint is
    exported on entry and removed on exit); a task's failure is recorded (`Result.error`) and
    the next task runs.
    """
    out = Path(out)
    taken = check_kinds(members, steps, say)
    results: list[Result] = []
    for member in members:
        if not taken[member.label]:
            continue
        with prepare(member) if prepare else nullcontext(member) as ready:
            results += _run_member(ready, taken[member.label], out, say)
    return results


def _run_member(member: Member, steps: list[Step], out: Path, say) -> list[Result]:
    mine: list[Result] = []
    for step in steps:
        suite, options = step.suite, step.options
        if options.work is None:
            options = replace(options, work=out / "work")
        for task in step.tasks:
            label = task if isinstance(task, str) else task.metadata.name
            say(f"{member.label}: {suite.name} {label}")
            started = time.perf_counter()
            try:
                found = suite.run(member, label, options)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as error:  # recorded, and the suite goes on
                found = [failure(member, suite.name, label, error, suite.library, options.seed)]
                say(f"  failed: {found[0].error}")
            else:
                seconds = round(time.perf_counter() - started, 2)
                for r in found:
                    r.details.setdefault("seconds", seconds)
                _forget_error(out, member, suite.name, label)
            mine += _save(found, out)
        if suite.name == "glue":
            mine += _save(summarize(member, mine), out)
    if any(step.ettin for step in steps):
        mine += _save(families(member, mine), out)
    return mine


def _save(results: list[Result], out: Path) -> list[Result]:
    save_results(results, out)
    return results


def _forget_error(out: Path, member: Member, suite: str, task: str) -> None:
    """A task that now succeeded: the error record of an earlier attempt goes (its scores replace it)."""
    stale = failure(member, suite, task, RuntimeError(""), "")
    (out / result_filename(stale)).unlink(missing_ok=True)


# Which score stands for a task in its family's average (the first one the task reports).
_HEADLINE = ("score", "ndcg@10", "acc_norm", "acc", "exact_match", "p-mrr")


def headline(r: Result) -> float | None:
    for name in _HEADLINE:
        if name in r.metrics:
            return r.metrics[name]
    named = [v for k, v in r.metrics.items() if k.split("[")[0] in _HEADLINE]
    return named[0] if named else None


def families(member: Member, results: Sequence[Result]) -> list[Result]:
    """One `ettin/<family>` result per task family a member was scored on: the mean headline score.

    GLUE: its average; retrieval, CSN, MLDR: mean nDCG@10 of their tasks; lm-eval: mean of each
    task's acc_norm (else acc, else exact match). These are the panels of the paper's figure.
    """
    out = []
    for suite, family in ETTIN_FAMILIES.items():
        if suite == "glue":
            scored = [r for r in results if r.task == "glue/average" and r.model == member.name
                      and r.checkpoint == member.checkpoint]
        else:
            scored = [r for r in results if r.suite == suite and r.metrics and r.model == member.name
                      and r.checkpoint == member.checkpoint]
        values = [(r.task.split("/", 1)[1], headline(r)) for r in scored]
        values = [(task, v) for task, v in values if v is not None]
        if values:
            out.append(result(member, "ettin", suite, {"score": float(np.mean([v for _, v in values]))},
                              len(values), "twofold", {}, seed=scored[0].seed, family=family,
                              tasks=dict(values)))
    return out
