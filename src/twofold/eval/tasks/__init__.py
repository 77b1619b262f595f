"""The built-in tasks: the registry, and `evaluate` / `evaluate_pair`: run tasks on models, get `Result`s.

    from twofold.eval.tasks import evaluate_pair, Settings
    from twofold.results import save_results
    results = evaluate_pair(encoder, decoder, tokenizer, settings=Settings(seed=0))
    save_results(results, "runs/demo/eval")

Each task is a function (Subject, Settings) -> list[Result]. Tasks that read the user's
files check them (`check`) before any model work starts, so a bad file fails in a second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twofold.data.tokenizer import Tokenizer
from twofold.errors import TwofoldError
from twofold.eval.settings import QUICK, Settings
from twofold.eval.tasks.classification import check_trainer, package_classification, user_classification
from twofold.eval.tasks.generation import generation, test_set
from twofold.eval.tasks.lm import language_modelling
from twofold.eval.tasks.retrieval import code_search, retrieve
from twofold.eval.tasks.samples import samples
from twofold.eval.tasks.subject import Subject
from twofold.finetune.datasets import beir_test_set, train_and_dev
from twofold.model import TwofoldModel
from twofold.results import Result


@dataclass(frozen=True)
class Task:
    run: Callable[[Subject, Settings], list[Result]]
    help: str
    builtin: bool = True  # needs nothing but the model
    check: Callable[[Settings], object] | None = None


def _beir(subject: Subject, settings: Settings) -> list[Result]:
    data = beir_test_set(settings.beir, settings.max_queries, settings.seed)
    return retrieve(subject, data, settings, "beir", variant_prefix=f"{data.name}/")


TASKS: dict[str, Task] = {
    "lm": Task(language_modelling,
               "held-out stdlib text: MLM accuracy + pseudo-perplexity (encoder), perplexity (decoder)"),
    "code-search": Task(code_search, "held-out stdlib functions, docstring line -> code: nDCG@10, MRR@10"),
    "package-classification": Task(package_classification,
                                   "fine-tune: held-out function docstring -> stdlib package: accuracy",
                                   check=check_trainer),
    "samples": Task(samples, "decoder continuations of fixed prompts, encoder fill-mask guesses"),
    "classification": Task(user_classification, "fine-tune on --train, accuracy on --dev (TSV/CSV/JSONL)",
                           builtin=False,
                           check=lambda s: (check_trainer(s),
                                            train_and_dev(s.train, s.dev, s.text_fields, s.label_field))),
    "generate": Task(generation, "decoders: greedy completions of --generate-data's test split (default: held-out "
                                 "code -> docstring line): chrF, chrF++, BLEU (sacrebleu), exact match", builtin=False,
                     check=test_set),
    "beir": Task(_beir, "zero-shot retrieval on a BEIR directory (--beir): nDCG@10, MRR@10", builtin=False,
                 check=lambda s: beir_test_set(s.beir, s.max_queries, s.seed)),
}
BUILTIN_TASKS = tuple(name for name, task in TASKS.items() if task.builtin)


def check_tasks(names: Sequence[str], settings: Settings) -> list[str]:
    """The task names, validated, with their input files read once to fail early."""
    names = list(dict.fromkeys(names or BUILTIN_TASKS))
    unknown = [name for name in names if name not in TASKS]
    if unknown:
        raise TwofoldError(f"unknown task {unknown[0]!r}; valid tasks: {', '.join(TASKS)}")
    for name in names:
        if TASKS[name].check is not None:
            TASKS[name].check(settings)
    return names


def evaluate(model: TwofoldModel, tokenizer: Tokenizer, tasks: Sequence[str] = (), name: str | None = None,
             settings: Settings | None = None, checkpoint: str = "", tokens: int | None = None) -> list[Result]:
    """Run `tasks` (default: every built-in task) on one model."""
    settings = settings or Settings()
    names = check_tasks(tasks, settings)
    subject = Subject(model, tokenizer, name or ("decoder" if model.config.causal else "encoder"),
                      checkpoint=checkpoint, tokens=tokens)
    return [result for task in names for result in TASKS[task].run(subject, settings)]


def evaluate_pair(encoder: TwofoldModel, decoder: TwofoldModel, tokenizer: Tokenizer,
                  tasks: Sequence[str] = (), settings: Settings | None = None,
                  names: tuple[str, str] = ("encoder", "decoder")) -> list[Result]:
    """The same tasks, settings and seed for both members of a pair."""
    settings = settings or Settings()
    check_tasks(tasks, settings)  # both members' inputs before either runs
    return [*evaluate(encoder, tokenizer, tasks, names[0], settings),
            *evaluate(decoder, tokenizer, tasks, names[1], settings)]


__all__ = ["BUILTIN_TASKS", "QUICK", "TASKS", "Settings", "Task", "check_tasks", "evaluate", "evaluate_pair"]
