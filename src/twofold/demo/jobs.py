"""The demo's third stage as jobs run side by side (`twofold.demo.lanes`): train each arm and
export it, evaluate it, fine-tune it per task and seed; the data and baselines of each task; the
progress watch. Job functions run in worker processes, so they take paths and plain values.
transformers is imported where a fine-tune runs (an optional library, the `demo` extra).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from twofold.data.store import TokenStore
from twofold.data.tokenizer import load_tokenizer
from twofold.demo.completion import code_completion
from twofold.demo.downstream import KEPT, fine_tune, prepared_seeds, task_baselines, task_data
from twofold.demo.lanes import Job, run_jobs
from twofold.demo.layout import (
    ARMS,
    CROSS_ARMS,
    DOWNSTREAM_RECIPES,
    DOWNSTREAM_TASKS,
    FINE_TUNED_ARMS,
    HELD_OUT_SEQUENCES,
    JOBS_LOG,
    KINDS,
    DemoLayout,
)
from twofold.eval.settings import Settings
from twofold.eval.tasks import evaluate
from twofold.eval.tasks.baselines import baseline, language_model_baselines
from twofold.eval.tasks.subject import Subject
from twofold.finetune import recipe_for
from twofold.hf import load
from twofold.results import save_results
from twofold.train.distributed import World
from twofold.train.loop import Options
from twofold.train.rundir import PairDir, RunDir
from twofold.train.runs import create_pair, start
from twofold.train.show import human_tokens


def plan_jobs(layout: DemoLayout, pair, recipe, settings: Settings, seeds: tuple[int, ...], sizes: dict,
              completion_items: int) -> list[Job]:
    """Stage 3 as jobs: train each arm (and export it), evaluate it, fine-tune it per task and
    seed; the data and baselines of each task. The decoder's chain (decoder, its continuation as
    an encoder, their evaluations and fine-tunes) is the longest, so its jobs go first when a
    process is free."""
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
        Job("language-model baselines", _language_model_baselines, (layout, settings)),
    ]
    # Ettin's cross-objective continuations: a trained member, its attention mask switched, trained
    # further with the other objective (the recipe's `cross` phase) — does that close the gap?
    jobs += [Job(train[arm], _train_member,
                 (layout.cross(arm), recipe, options.replace(objective=objective, cross=True), layout.export(arm),
                  pair.member(member).path), after=(train[member],), priority=95 if member == "decoder" else 85)
             for arm, (member, objective) in CROSS_ARMS.items()]
    jobs += [Job(f"evaluate {arm}", _evaluate_arm, (layout, arm, settings, completion_items), after=(train[arm],),
                 priority=50) for arm in ARMS]
    for task, changes in DOWNSTREAM_RECIPES.items():
        task_recipe = recipe_for(task, **changes)
        arms = FINE_TUNED_ARMS[task]
        data = f"data {task}"
        # negatives, if a recipe mines any, come from the first arm: the data waits for it
        jobs += [Job(data, _task_data, (task, sizes, task_recipe, seeds, layout.export(arms[0]), work),
                     after=(train[arms[0]],), priority=60),
                 Job(f"baselines {task}", _task_baselines, (task,), needs=(data,), priority=10)]
        jobs += [Job(f"{task} seed {seed} {arm}", _fine_tune, (task, layout.export(arm), arm, task_recipe, seed, work),
                     needs=(data,), after=(train[arm],), priority=20 + rank)
                 for seed in seeds for rank, arm in enumerate(arms)]
    return jobs


def start_pair(layout: DemoLayout, recipe):
    """A new pair run (and no cross arm) in place of an earlier demo's: the demo always shows
    training happen."""
    for old in (layout.pair, layout.root / "cross"):
        if old.exists():
            shutil.rmtree(old)
    return create_pair(layout.pair, recipe, _options(layout), World())


def _options(layout: DemoLayout):
    return Options(stores=(str(layout.store),), eval_stores=(str(layout.held_out_store),),
                   eval_sequences=HELD_OUT_SEQUENCES, progress=False)


def run_all(layout: DemoLayout, recipe, jobs: list[Job], lanes: int, threads: int, progress: bool, say):
    """All jobs, side by side; (results in a fixed order, seconds of each job)."""
    member = sum(phase.tokens for phase in recipe.phases)
    say(f"  recipe demo: {', '.join(p.name for p in recipe.phases)}; {human_tokens(member)} tokens per member "
        f"on identical batches, {human_tokens(recipe.cross.tokens)} more tokens of the other objective for "
        f"each cross arm; worker output: {layout.root / JOBS_LOG}")
    watch = _Watch(layout, jobs, 2 * member + len(CROSS_ARMS) * recipe.cross.tokens, progress)
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
        self.logs = [run.metrics_file for run in arm_runs(layout).values()]
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
        kind = KINDS[job.name.removeprefix("train ")]
        auto = {"decoder": "AutoModelForCausalLM", "encoder": "AutoModelForMaskedLM"}[kind]
        return f"{job.name}: exported to {value} (loads with transformers' {auto})"
    if job.run is _fine_tune:
        metric = KEPT[job.args[0]][0]
        scores = {r.variant: r.metrics[metric] for r in value}
        before = f"{scores['zero-shot']:.3f} -> " if "zero-shot" in scores else ""
        return f"{job.name}: {metric} {before}{scores['fine-tuned']:.3f}"
    if job.run is _task_data:
        return f"{job.name}: {len(value.data.train):,} training examples, {len(value.data.test):,} test"
    return f"{job.name}: {len(value)} results"


def _train_member(run_dir: Path, recipe, options, export: Path, init_from: Path | None = None) -> Path:
    """Train one run to the end and export it in the Hugging Face format."""
    start(run_dir, recipe, options, World(), init_from=str(init_from) if init_from else None)
    return RunDir(run_dir).export(export, overwrite=True)


def arm_runs(layout: DemoLayout) -> dict:
    pair = PairDir(layout.pair)
    return {"encoder": pair.member("encoder"), "decoder": pair.member("decoder"),
            **{arm: RunDir(layout.cross(arm)) for arm in CROSS_ARMS}}


def own_tokens(layout: DemoLayout) -> dict[str, int]:
    """Tokens each arm's own run trained on, from its metrics log."""
    return {arm: max((r["tokens"] for r in run.metrics() if "tokens" in r), default=0)
            for arm, run in arm_runs(layout).items()}


def training_tokens(layout: DemoLayout) -> dict[str, int]:
    """Tokens each arm was trained on (a cross arm: the member's it continues and its own)."""
    seen = own_tokens(layout)
    return {arm: tokens + (seen[CROSS_ARMS[arm][0]] if arm in CROSS_ARMS else 0) for arm, tokens in seen.items()}


def _evaluate_arm(layout: DemoLayout, arm: str, settings: Settings, completion_items: int) -> list:
    """Language modelling, samples and code completion of one arm, from its export."""
    tokenizer = load_tokenizer(layout.export(arm))
    model = load(layout.export(arm)).eval()
    results = evaluate(model, tokenizer, ("lm", "samples"), arm, settings)
    return results + code_completion(Subject(model, tokenizer, arm), settings, count=completion_items)


def _language_model_baselines(layout: DemoLayout, settings: Settings) -> list:
    tokenizer = load_tokenizer(layout.tokenizer)
    counts = np.bincount(np.asarray(TokenStore(layout.store).tokens), minlength=tokenizer.vocab_size)
    return language_model_baselines(tokenizer, counts, settings)


def _completion_baseline(results) -> list:
    scored = next(r for r in results if r.task == "code-completion")
    return [baseline("code-completion", "random", {"accuracy": scored.details["chance"]}, scored.n)]


@dataclass
class TaskData:
    data: object  # the task's RetrievalData / LabelledData
    prepared: dict  # {seed: the rows every model trains on}


def _task_data(task: str, sizes: dict, recipe, seeds: tuple[int, ...], miner: Path, work: Path) -> TaskData:
    data = task_data(task, sizes)
    return TaskData(data, prepared_seeds(task, data, recipe, seeds, miner, work))


def _task_baselines(task: str, data: TaskData) -> list:
    return task_baselines(task, data.data)


def _fine_tune(task: str, model: Path, arm: str, recipe, seed: int, work: Path, data: TaskData) -> list:
    from transformers.utils import logging as hf_logging

    # without load reports (a classifier's new head is "missing" by design) and progress bars
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return fine_tune(task, model, arm, data.data, data.prepared[seed], recipe, seed, work)


def save(layout: DemoLayout, results) -> None:
    """Every result in `eval/`, the fine-tunes of each seed in `eval/seed-N/` (one file per result)."""
    if layout.eval.exists():
        shutil.rmtree(layout.eval)
    for seed in sorted({r.seed for r in results}):
        folder = layout.eval / f"seed-{seed}" if any(r.seed == seed and r.task in DOWNSTREAM_TASKS
                                                     and r.kind != "baseline" for r in results) else layout.eval
        save_results([r for r in results if r.seed == seed], folder)
