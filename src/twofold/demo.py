"""`twofold demo`: the Ettin experiment in miniature — offline, on a laptop CPU, in minutes.

Stages (the first two reuse what an earlier demo already built, unless `fresh`):
1. the built-in `stdlib` corpus -> a byte-level BPE trained on its *train* split;
2. token stores of the train split (training) and the held-out split (held-out loss);
3. jobs, run side by side on worker processes (`twofold.lanes`), each as soon as what it needs
   is done: an encoder and a decoder trained with the scaled three-phase `demo` recipe on
   identical batches (always retrained: the demo is about watching that happen), the cross
   arm (the decoder continued as an encoder), each exported in the Hugging Face format and
   evaluated from its export; the same fine-tunes of all three, per task and seed; baselines;
4. `report.md` with the finding, the scores, samples, the training curves and the times.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from twofold.errors import TwofoldError
from twofold.eval import Settings
from twofold.files import check_out
from twofold.lanes import Job, lanes_for, run_jobs

DEMO_VOCAB = 4096
# Training tokens per member: what the encoder needs to leave the masked-LM plateau (docs/demo.md).
DEMO_BUDGET = 2_500_000
HELD_OUT_SEQUENCES = 16  # the fixed held-out set scored at every checkpoint
# Sample sizes that keep the evaluation of both members around two minutes on 2 cores.
DEMO_EVAL = Settings(max_length=128, lm_tokens=10_000, pseudo_perplexity_tokens=256, max_queries=300,
                     max_examples=1_000, epochs=2, learning_rate=3e-4)


COMPLETION_ITEMS = 200  # multiple-choice code completion items (binomial s.e. <= 0.035)
CROSS_ARM = "encoder-from-decoder"
ARMS = ("encoder", "decoder", CROSS_ARM)
# The downstream fine-tunes: the same for every model (twofold finetune's recipes, sized for a CPU).
DEMO_SEEDS = (1, 2, 3)
DOWNSTREAM_TASKS = ("code-search", "package-classification")
DOWNSTREAM_RECIPES = {
    "embed": dict(learning_rates=(1e-3,), batch_size=32, max_length=96, hard_negatives=0, epochs=1),
    "classify": dict(learning_rates=(1e-3,), batch_size=32, max_length=96, epochs=2),
}
DOWNSTREAM_TRAIN = {"embed": 800, "classify": None}  # training examples (None: all 667)

# Everything the demo writes into its folder (hidden names: partial outputs of a killed run).
JOBS_LOG = "jobs.log"  # what the worker processes print
DEMO_ENTRIES = {"tokenizer", "store", "pair", "cross", "export", "eval", "report.md", "loss.png", "schedule.png",
                "scores.png", "vs-parameters.png", "vs-tokens.png", JOBS_LOG}


def made_by_demo(root: Path) -> bool:
    return all(entry.name in DEMO_ENTRIES or entry.name.startswith(".") for entry in root.iterdir())


@dataclass(frozen=True)
class DemoLayout:
    root: Path

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def store(self) -> Path:
        return self.root / "store" / "train"

    @property
    def held_out_store(self) -> Path:
        return self.root / "store" / "held-out"

    @property
    def pair(self) -> Path:
        return self.root / "pair"

    def export(self, member: str) -> Path:
        return self.root / "export" / member

    @property
    def cross(self) -> Path:
        return self.root / "cross"

    @property
    def eval(self) -> Path:
        return self.root / "eval"


def run_demo(out: str | Path = "runs/demo", budget: int | None = None, fresh: bool = False,
             settings: Settings = DEMO_EVAL, packages: tuple[str, ...] = (), progress: bool = True,
             say=print, seeds: tuple[int, ...] = DEMO_SEEDS, downstream_sizes: dict | None = None,
             completion_items: int = COMPLETION_ITEMS) -> Path:
    """Run every stage; return the path of `report.md`.

    `budget`: training tokens per member (default `DEMO_BUDGET`). `packages` limits the
    training corpus to some top-level stdlib packages (tests, quick looks); the evaluation
    always uses the whole held-out split. `seeds`: of the downstream fine-tunes.
    `downstream_sizes`: training examples per fine-tuning task (default `DOWNSTREAM_TRAIN`), and
    with key "test" a cap on their dev/test examples (tests only). `completion_items`: of the
    multiple-choice code completion. The jobs run in spawned processes: a script that calls this
    needs the usual `if __name__ == "__main__":` guard.
    """
    import torch

    from twofold.train.recipe import load_recipe

    layout = DemoLayout(Path(out))
    # --fresh and every rerun delete what an earlier demo made: never a folder of other files
    check_out(layout.root, "demo", holds=made_by_demo, overwrite=True)
    recipe = load_recipe("demo", budget=budget or DEMO_BUDGET)
    check_budget(budget or DEMO_BUDGET)
    if fresh and layout.root.exists():
        shutil.rmtree(layout.root)
    layout.root.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    with previous_kept(layout):
        prepare_corpus(layout, packages, progress, say, times)
        lanes, threads = lanes_for(torch.get_num_threads())
        pair = _start_pair(layout, recipe)
        jobs = _jobs(layout, pair, recipe, settings, seeds, downstream_sizes or DOWNSTREAM_TRAIN, completion_items)
        with _stage("training, evaluation and fine-tunes", say, times):
            say(f"  {len(jobs)} jobs, {lanes} side by side ({threads} thread{'s' * (threads > 1)} each)")
            results, job_times = _run(layout, recipe, jobs, lanes, threads, progress, say)
        _save(layout, results)
        with _stage("report", say, times):
            report = _report(layout, recipe, results, times, job_times)

    from twofold.report import spread_markdown

    say("")
    say(spread_markdown(results, list(ARMS)))
    say("")
    say(findings(results))
    say(f"\nreport: {report}  (total {sum(times.values()):.0f} s: "
        + ", ".join(f"{name.split(' (')[0]} {seconds:.0f} s" for name, seconds in times.items()) + ")")
    return report


@contextmanager
def previous_kept(layout: DemoLayout):
    """A run that fails (disk full, interrupted, a bad input found late) leaves the previous
    demo's results as they were: they wait in `.previous` until the new ones are complete.
    The tokenizer and stores stay in place (reused, or rebuilt whole)."""
    replaced = DEMO_ENTRIES - {"tokenizer", "store"}
    keep = layout.root / ".previous"
    shutil.rmtree(keep, ignore_errors=True)
    old = [entry for entry in layout.root.iterdir() if entry.name in replaced]
    if old:
        keep.mkdir()
        for entry in old:
            os.replace(entry, keep / entry.name)
    try:
        yield
    except BaseException:
        for entry in layout.root.iterdir():
            if entry.name in replaced or entry.name == ".downstream":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        for entry in old:
            os.replace(keep / entry.name, entry)
        shutil.rmtree(keep, ignore_errors=True)
        raise
    shutil.rmtree(keep, ignore_errors=True)


def minimum_budget(recipe) -> int:
    """The smallest --budget at which every phase, cross included, gets at least one full batch."""
    total = sum(p.tokens for p in recipe.phases)
    needs = [(p.batch_start_sequences or p.batch_sequences) * p.seq_len * total / p.tokens
             for p in (*recipe.phases, *([recipe.cross] if recipe.cross else []))]
    return math.ceil(max(needs))


def check_budget(budget: int) -> None:
    """One line before anything is written when `budget` cannot give every phase a batch."""
    from twofold.train.recipe import load_recipe

    least = minimum_budget(load_recipe("demo"))
    if budget < least:
        raise TwofoldError(f"--budget {budget:,} is too small: every phase of the demo recipe (cross included) "
                           f"needs at least one batch, which takes --budget {least:,} or more")


# ----------------------------------------------------------------------------- stages

def prepare_corpus(layout: DemoLayout, packages: tuple[str, ...] = (), progress: bool = True, say=print,
                   times: dict[str, float] | None = None):
    """Stages 1-2: the tokenizer and the two token stores, reused when already built."""
    times = {} if times is None else times
    with _stage("tokenizer", say, times):
        tokenizer = _tokenizer(layout, packages, say)
    with _stage("token stores", say, times):
        _stores(layout, tokenizer, packages, progress, say)
    return tokenizer


def _tokenizer(layout: DemoLayout, packages: tuple[str, ...], say):
    from twofold.data.stdlib import stdlib_documents
    from twofold.data.tokenizer import load_tokenizer, train_tokenizer

    if (layout.tokenizer / "tokenizer.json").exists():
        say(f"  reusing {layout.tokenizer}")
        return load_tokenizer(layout.tokenizer)
    texts = (document.text for document in stdlib_documents("train", packages or None))
    tokenizer = train_tokenizer(texts, DEMO_VOCAB, layout.tokenizer)
    say(f"  byte-level BPE, {tokenizer.vocab_size} tokens, trained on the stdlib train split")
    return tokenizer


def _stores(layout: DemoLayout, tokenizer, packages: tuple[str, ...], progress: bool, say) -> None:
    from twofold.data.sources import SourceSpec
    from twofold.data.store import TokenStore, prepare_store

    for path, part in ((layout.store, "train"), (layout.held_out_store, "held-out")):
        if path.exists():
            store = TokenStore(path)
            if store.manifest["tokenizer"]["hash"] == tokenizer.hash:
                say(f"  reusing {path}: {store.manifest['num_tokens']:,} tokens")
                continue
            shutil.rmtree(path)  # made with another tokenizer: rebuild
        # `packages` narrows the training corpus only; held-out loss uses the whole held-out split.
        chosen = "+".join(packages) if part == "train" else ""
        spec = SourceSpec(path="stdlib", part=part, name=f"stdlib-{part}", packages=chosen)
        manifest = prepare_store([spec], tokenizer, path, progress=progress)
        say(f"  {path}: {manifest['num_documents']:,} documents, {manifest['num_tokens']:,} tokens ({part} split)")


# ----------------------------------------------------------------------------- the jobs

def _jobs(layout: DemoLayout, pair, recipe, settings: Settings, seeds: tuple[int, ...], sizes: dict,
          completion_items: int) -> list[Job]:
    """Stage 3 as jobs: train each arm (and export it), evaluate it, fine-tune it per task and
    seed; the data and baselines of each task. The decoder's chain (decoder, cross arm, their
    evaluations and fine-tunes) is the longest, so its jobs go first when a process is free."""
    from twofold.finetune import recipe_for

    options = _options(layout)
    work = layout.root / ".downstream"
    train = {arm: f"train {arm}" for arm in ARMS}
    jobs = [
        Job(train["decoder"], _train_member, (pair.member("decoder").path, recipe,
                                              options.replace(objective="clm"), layout.export("decoder")),
            priority=100),
        Job(train["encoder"], _train_member, (pair.member("encoder").path, recipe,
                                              options.replace(objective="mlm"), layout.export("encoder")),
            priority=90),
        # Ettin's cross-objective continuation: the trained decoder, its causal mask dropped,
        # trained further with MLM (the recipe's `cross` phase) — does that close the gap?
        Job(train[CROSS_ARM], _train_member, (layout.cross, recipe, options.replace(objective="mlm", cross=True),
                                              layout.export(CROSS_ARM), pair.member("decoder").path),
            after=(train["decoder"],), priority=95),
        Job("language-model baselines", _language_model_baselines, (layout, settings)),
    ]
    jobs += [Job(f"evaluate {arm}", _evaluate_arm, (layout, arm, settings, completion_items), after=(train[arm],),
                 priority=50) for arm in ARMS]
    for task, changes in DOWNSTREAM_RECIPES.items():
        task_recipe = recipe_for(task, **changes)
        data = f"data {task}"
        # negatives, if a recipe mines any, come from the first arm: the data waits for it
        jobs += [Job(data, _task_data, (task, sizes, task_recipe, seeds, layout.export(ARMS[0]), work),
                     after=(train[ARMS[0]],), priority=60),
                 Job(f"baselines {task}", _task_baselines, (task,), needs=(data,), priority=10)]
        jobs += [Job(f"{task} seed {seed} {arm}", _fine_tune, (task, layout.export(arm), arm, task_recipe, seed, work),
                     needs=(data,), after=(train[arm],), priority=20 + rank)
                 for seed in seeds for rank, arm in enumerate(ARMS)]
    return jobs


def _start_pair(layout: DemoLayout, recipe):
    """A new pair run (and no cross arm) in place of an earlier demo's: the demo always shows
    training happen."""
    from twofold.train.distributed import World
    from twofold.train.runs import create_pair

    for old in (layout.pair, layout.cross):
        if old.exists():
            shutil.rmtree(old)
    return create_pair(layout.pair, recipe, _options(layout), World())


def _options(layout: DemoLayout):
    from twofold.train.loop import Options

    return Options(stores=(str(layout.store),), eval_stores=(str(layout.held_out_store),),
                   eval_sequences=HELD_OUT_SEQUENCES, progress=False)


def _run(layout: DemoLayout, recipe, jobs: list[Job], lanes: int, threads: int, progress: bool, say):
    """All jobs, side by side; (results in a fixed order, seconds of each job)."""
    from twofold.train.show import human_tokens

    member = sum(phase.tokens for phase in recipe.phases)
    say(f"  recipe demo: {', '.join(p.name for p in recipe.phases)}; {human_tokens(member)} tokens per member "
        f"on identical batches, {human_tokens(recipe.cross.tokens)} more MLM tokens for the cross arm; "
        f"worker output: {layout.root / JOBS_LOG}")
    watch = _Watch(layout, jobs, 2 * member + recipe.cross.tokens, progress)
    seconds: dict[str, float] = {}

    def done(job: Job, value, took: float) -> None:
        seconds[job.name] = took
        watch.write(job, f"  {_describe(job, value)} ({took:.0f} s)", say)

    try:
        values = run_jobs(jobs, lanes, threads, layout.root / JOBS_LOG, done=done, tick=watch.tick)
    finally:
        watch.close()
    shutil.rmtree(layout.root / ".downstream", ignore_errors=True)
    results = [r for job in jobs if job.run in (_evaluate_arm, _fine_tune, _task_baselines, _language_model_baselines)
               for r in values[job.name]]
    results += _completion_baseline(results)
    trained = training_tokens(layout)
    for result in results:
        if result.model in trained:
            result.tokens = trained[result.model]
    return results, seconds


class _Watch:
    """Progress while the jobs run: a bar of training tokens (all three runs, from their metrics
    logs) until the last training ends, then one of jobs done."""

    def __init__(self, layout: DemoLayout, jobs: list[Job], tokens: int, progress: bool):
        self.logs = [run.metrics_file for run in _runs(layout).values()]
        self.jobs, self.finished = len(jobs), 0
        self.trainings = sum(job.run is _train_member for job in jobs)
        self.bar = _bar(total=tokens, unit="tok", unit_scale=True, desc="training") if progress else None

    def tick(self) -> None:
        if self.bar is not None and self.trainings:
            seen = sum(_last_tokens(log) for log in self.logs)
            self.bar.update(max(0, min(seen, self.bar.total) - self.bar.n))

    def write(self, job: Job, line: str, say) -> None:
        self.finished += 1
        self.trainings -= job.run is _train_member
        if self.bar is None:
            say(line)
            return
        self.bar.write(line)
        if job.run is _train_member and not self.trainings:
            self.bar.close()
            self.bar = _bar(total=self.jobs, initial=self.finished, unit="job", desc="evaluation and fine-tunes")
        elif not self.trainings:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _bar(**kwargs):
    from tqdm import tqdm

    return tqdm(dynamic_ncols=True, **kwargs)


def _last_tokens(metrics: Path) -> int:
    """Tokens of the newest record of a run's metrics log (0 before it exists)."""
    try:
        with open(metrics, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 4096))
            lines = handle.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        match = re.search(r'"tokens": (\d+)', line)
        if match:
            return int(match.group(1))
    return 0


def _describe(job: Job, value) -> str:
    """One line for a finished job."""
    if job.run is _train_member:
        return f"{job.name}: exported to {value} (loads with transformers' " \
               f"{'AutoModelForCausalLM' if job.name.endswith(' decoder') else 'AutoModelForMaskedLM'})"
    if job.run is _fine_tune:
        metric = "ndcg@10" if job.args[0] == "embed" else "accuracy"
        scores = {r.variant: r.metrics[metric] for r in value}
        before = f"{scores['zero-shot']:.3f} -> " if "zero-shot" in scores else ""
        return f"{job.name}: {metric} {before}{scores['fine-tuned']:.3f}"
    if job.run is _task_data:
        return f"{job.name}: {len(value.data.train):,} training examples, {len(value.data.test):,} test"
    return f"{job.name}: {len(value)} results"


# Job functions: they run in worker processes, so they take paths and plain values.

def _train_member(run_dir: Path, recipe, options, export: Path, init_from: Path | None = None) -> Path:
    """Train one run to the end and export it in the Hugging Face format."""
    from twofold.train.distributed import World
    from twofold.train.rundir import RunDir
    from twofold.train.runs import start

    start(run_dir, recipe, options, World(), init_from=str(init_from) if init_from else None)
    return RunDir(run_dir).export(export, overwrite=True)


def _runs(layout: DemoLayout) -> dict:
    from twofold.train.rundir import PairDir, RunDir

    pair = PairDir(layout.pair)
    return {"encoder": pair.member("encoder"), "decoder": pair.member("decoder"), CROSS_ARM: RunDir(layout.cross)}


def training_tokens(layout: DemoLayout) -> dict[str, int]:
    """Tokens each arm was trained on, from the runs' own logs (the cross arm: the decoder's and its own)."""
    seen = {arm: max((r["tokens"] for r in run.metrics() if "tokens" in r), default=0)
            for arm, run in _runs(layout).items()}
    seen[CROSS_ARM] += seen["decoder"]
    return seen


def _evaluate_arm(layout: DemoLayout, arm: str, settings: Settings, completion_items: int) -> list:
    """Language modelling, samples and code completion of one arm, from its export."""
    from twofold.data.tokenizer import load_tokenizer
    from twofold.eval import evaluate
    from twofold.eval.completion import code_completion
    from twofold.eval.subject import Subject
    from twofold.hf import load

    tokenizer = load_tokenizer(layout.export(arm))
    model = load(layout.export(arm)).eval()
    results = evaluate(model, tokenizer, ("lm", "samples"), arm, settings)
    return results + code_completion(Subject(model, tokenizer, arm), settings, count=completion_items)


def _language_model_baselines(layout: DemoLayout, settings: Settings) -> list:
    import numpy as np

    from twofold.data.store import TokenStore
    from twofold.data.tokenizer import load_tokenizer
    from twofold.eval.baselines import language_model_baselines

    tokenizer = load_tokenizer(layout.tokenizer)
    counts = np.bincount(np.asarray(TokenStore(layout.store).tokens), minlength=tokenizer.vocab_size)
    return language_model_baselines(tokenizer, counts, settings)


def _completion_baseline(results) -> list:
    from twofold.eval.baselines import baseline

    scored = next(r for r in results if r.task == "code-completion")
    return [baseline("code-completion", "random", {"accuracy": scored.details["chance"]}, scored.n)]


@dataclass
class TaskData:
    data: object  # the task's RetrievalData / LabelledData
    prepared: dict  # {seed: the rows every model trains on}


def _task_data(task: str, sizes: dict, recipe, seeds: tuple[int, ...], miner: Path, work: Path) -> TaskData:
    from twofold.eval.downstream import prepared_seeds, task_data

    data = task_data(task, sizes)
    return TaskData(data, prepared_seeds(task, data, recipe, seeds, miner, work))


def _task_baselines(task: str, data: TaskData) -> list:
    from twofold.eval.downstream import task_baselines

    return task_baselines(task, data.data)


def _fine_tune(task: str, model: Path, arm: str, recipe, seed: int, work: Path, data: TaskData) -> list:
    from transformers.utils import logging as hf_logging

    from twofold.eval.downstream import fine_tune

    # without load reports (a classifier's new head is "missing" by design) and progress bars
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return fine_tune(task, model, arm, data.data, data.prepared[seed], recipe, seed, work)


def _save(layout: DemoLayout, results) -> None:
    """Every result in `eval/`, the fine-tunes of each seed in `eval/seed-N/` (one file per result)."""
    from twofold.eval import save_results

    if layout.eval.exists():
        shutil.rmtree(layout.eval)
    for seed in sorted({r.seed for r in results}):
        folder = layout.eval / f"seed-{seed}" if any(r.seed == seed and r.task in DOWNSTREAM_TASKS
                                                     and r.kind != "baseline" for r in results) else layout.eval
        save_results([r for r in results if r.seed == seed], folder)


def _report(layout: DemoLayout, recipe, results, times: dict[str, float], job_times: dict[str, float]) -> Path:
    from twofold.files import atomic_write_text
    from twofold.report import models_markdown, plot_spread, plot_training, samples_markdown, spread_markdown
    from twofold.train.show import plot_recipe

    plot_training(_runs(layout), layout.root / "loss.png")
    plot_recipe(recipe, layout.root / "schedule.png")
    plot_spread(results, layout.root / "scores.png")
    models = [r for r in results if r.metrics and r.kind != "baseline"]
    parts = [
        "# twofold demo: an encoder and a decoder trained alike",
        "The same recipe, data and batches for both members (and a third arm: the decoder continued "
        "as an encoder); then the same fine-tunes for all three, scored on held-out modules beside "
        "baselines on the same texts and queries.",
        "## What this shows, and what it does not", findings(results),
        "## Models", models_markdown(models),
        "## Scores", spread_markdown(results, list(ARMS)),
        "Cells: mean ± sample standard deviation over the fine-tuning seeds "
        f"({', '.join(str(s) for s in _fine_tuning_seeds(results))}); "
        "language modelling and code completion are deterministic (one value). `best`: the model "
        "whose worst seed beats every other model's best seed; otherwise `within spread`; for code "
        "completion, the model ahead of every other by more than two standard errors of the "
        "difference; otherwise `within 2 s.e.`. "
        "Baselines are scored on the same tokens, queries and test examples.",
        "![scores](scores.png)",
        "## Samples", samples_markdown(results),
        "## Training",
        "Both members saw the same token sequences in the same order (their batch-order logs hash "
        f"equal at every step: `{layout.pair}/<member>/<phase>/data_order`); only the attention mask "
        "and the objective differ. The cross arm starts from the decoder's last checkpoint.",
        "![loss](loss.png)",
        "![schedule](schedule.png)",
        "## Time", _times_markdown(times), _job_times_markdown(job_times),
        "## Reproduce",
        "```\nmake demo                      # or: twofold demo --out runs/demo [--budget 2.5M] [--fresh]\n"
        f"twofold eval {layout.export('encoder')}\n"
        f"twofold compare {layout.eval}\n```",
    ]
    path = layout.root / "report.md"
    atomic_write_text(path, "\n\n".join(parts) + "\n")
    return path


def _fine_tuning_seeds(results) -> list[int]:
    return sorted({r.seed for r in results if r.task in DOWNSTREAM_TASKS and r.kind != "baseline"})


def _times_markdown(times: dict[str, float]) -> str:
    lines = ["| stage | seconds |", "|---|---:|"]
    lines += [f"| {name} | {seconds:.0f} |" for name, seconds in times.items()]
    lines.append(f"| total | {sum(times.values()):.0f} |")
    return "\n".join(lines)


def _job_times_markdown(job_times: dict[str, float]) -> str:
    """Seconds of the jobs in one process each, summed by kind (fine-tunes: over seeds)."""
    kinds: dict[str, float] = {}
    for name, seconds in job_times.items():
        kind = re.sub(r" seed \d+", "", name)
        kinds[kind] = kinds.get(kind, 0.0) + seconds
    lines = ["The jobs ran side by side; each one's own seconds (fine-tunes: all seeds together):", "",
             "| job | seconds |", "|---|---:|"]
    lines += [f"| {name} | {seconds:.0f} |" for name, seconds in kinds.items()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the finding


def findings(results) -> str:
    """What the numbers say about Ettin's finding at this scale, sentence by sentence, never forced."""
    from twofold.report import spread_rows

    table = {(row.task, row.metric): row for row in spread_rows([r for r in results if r.metrics])}
    mean = lambda key, model: table[key].cells[model].mean if key in table and model in table[key].cells else None
    lines = []
    for task, metric, what in (("package-classification[fine-tuned]", "accuracy", "classification"),
                               ("code-search[fine-tuned]", "ndcg@10", "retrieval (code search)")):
        row = table.get((task, metric))
        if row is None:
            continue
        winner = row.winner(["encoder", "decoder"])
        pair = f"encoder {row.cells['encoder']} vs decoder {row.cells['decoder']} {metric}"
        if winner == "encoder":
            lines.append(f"- **{what}: the encoder wins** ({pair}), beyond the seeds' spread — as Ettin finds.")
        elif winner == "decoder":
            lines.append(f"- **{what}: the decoder wins** ({pair}), beyond the seeds' spread — the opposite "
                         "of Ettin's finding at this scale.")
        else:
            lines.append(f"- {what}: no winner ({pair}): the difference is within the seeds' spread.")
        cross = row.winner([CROSS_ARM, "encoder"]) if CROSS_ARM in row.cells else ""
        if cross:
            verdict = {"encoder": "does not close the gap: the encoder stays ahead",
                       CROSS_ARM: "overtakes the encoder", "within spread": "is level with the encoder",
                       "tie": "is level with the encoder"}[cross]
            lines.append(f"  The decoder continued as an encoder ({row.cells[CROSS_ARM]}) {verdict}.")
    ppl, pseudo = mean(("lm", "perplexity"), "decoder"), mean(("lm[pseudo]", "pseudo_perplexity"), "encoder")
    if ppl is not None and pseudo is not None:
        lines.append(f"- generation: decoder perplexity {ppl:.1f}, encoder pseudo-perplexity {pseudo:.1f}. These "
                     "are not the same quantity (the encoder sees both sides of each token, which makes its "
                     "number lower for the same skill), so the multiple-choice completion below is the fair test.")
    completion = table.get(("code-completion", "accuracy"))
    if completion is not None and {"encoder", "decoder"} <= set(completion.cells):
        lines.append("- " + _completion_sentence(results))
    lines.append("- " + _targets_sentence(table))
    lines.append("- What it does not show: these are models of about a million parameters trained on "
                 f"{_tokens_text(results)} tokens of one corpus (the Python standard library), with one "
                 "pretraining seed (the seeds vary the fine-tunes only); Ettin's finding is about 17M–1B "
                 "models on trillions of tokens. A result here that disagrees with the paper says this scale "
                 "is too small to show it, not that the paper is wrong.")
    return "\n".join(lines)


def _completion_sentence(results) -> str:
    import math

    scored = {r.model: r for r in results if r.task == "code-completion" and r.kind != "baseline"}
    encoder, decoder = scored["encoder"], scored["decoder"]
    a, b = encoder.metrics["accuracy"], decoder.metrics["accuracy"]
    noise = 2 * math.sqrt(encoder.details["stderr"] ** 2 + decoder.details["stderr"] ** 2)
    text = (f"code completion ({decoder.n} items, 4 choices, chance 0.25): decoder {b:.3f} vs encoder {a:.3f} "
            f"(pseudo-log-likelihood)")
    if b - a > noise:
        return f"**{text}: the decoder wins** beyond two standard errors ({noise:.3f}) — as Ettin finds."
    if a - b > noise:
        return f"**{text}: the encoder wins** beyond two standard errors ({noise:.3f}) — not what Ettin finds."
    return f"{text}: the difference is within two standard errors ({noise:.3f}); no winner."


def _targets_sentence(table) -> str:
    def get(key, model):
        row = table.get(key)
        return row.cells[model].mean if row is not None and model in row.cells else None

    checks = []
    accuracy, frequent = get(("lm[masked]", "mlm_accuracy"), "encoder"), get(("lm[masked]", "mlm_accuracy"),
                                                                                "most-frequent token")
    if accuracy is not None:
        checks.append(f"encoder MLM accuracy {accuracy:.3f} (target ≥ 0.25; most frequent token {frequent:.3f})")
    ppl, unigram = get(("lm", "perplexity"), "decoder"), get(("lm", "perplexity"), "unigram")
    if ppl is not None and unigram is not None:
        checks.append(f"decoder perplexity {ppl:.1f} = unigram/{unigram / ppl:.1f} (target ≤ unigram/5 "
                      f"= {unigram / 5:.1f})")
    ndcg, random = get(("code-search[fine-tuned]", "ndcg@10"), "encoder"), get(("code-search[fine-tuned]",
                                                                                 "ndcg@10"), "random")
    if ndcg is not None and random:
        checks.append(f"fine-tuned encoder nDCG@10 {ndcg:.3f} = {ndcg / random:.1f}× random (target ≥ 5×)")
    acc, top = get(("package-classification[fine-tuned]", "accuracy"), "encoder"), get(
        ("package-classification[fine-tuned]", "accuracy"), "majority")
    if acc is not None and top is not None:
        checks.append(f"classification {acc:.3f} vs majority {top:.3f} (target ≥ majority + 0.15)")
    return "did the members learn? " + "; ".join(checks) + "."


def _tokens_text(results) -> str:
    from twofold.train.show import human_tokens

    seen = sorted({r.tokens for r in results if r.model in ("encoder", "decoder") and r.tokens})
    return human_tokens(seen[0]) if seen else "a few million"


@contextmanager
def _stage(name: str, say, times: dict[str, float]):
    """Announce a stage and time it."""
    say(f"[{name}]")
    start = time.perf_counter()
    yield
    times[name] = time.perf_counter() - start
    say(f"  done in {times[name]:.0f} s")
