"""`run_demo`: every stage of `twofold demo`, in order (the package docstring says what each is)."""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from twofold.data.sources import SourceSpec
from twofold.data.stdlib import stdlib_documents
from twofold.data.store import TokenStore, prepare_store
from twofold.data.tokenizer import load_tokenizer, train_tokenizer
from twofold.demo.jobs import plan_jobs, run_all, save, start_pair
from twofold.demo.lanes import lanes_for
from twofold.demo.layout import (
    ARMS,
    COMPLETION_ITEMS,
    DEMO_BUDGET,
    DEMO_EVAL,
    DEMO_SEEDS,
    DEMO_VOCAB,
    DOWNSTREAM_TRAIN,
    DemoLayout,
    check_budget,
    made_by_demo,
    previous_kept,
)
from twofold.demo.report import findings, write_demo_report
from twofold.eval.settings import Settings
from twofold.files import check_out
from twofold.report import spread_markdown
from twofold.train.recipe import load_recipe


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

    layout = DemoLayout(Path(out))
    # --fresh and every rerun delete what an earlier demo made: never a folder of other files
    check_out(layout.root, "demo", holds=made_by_demo, overwrite=True)
    check_budget(budget or DEMO_BUDGET)  # first: a scaled recipe's own complaint would name a --set demo lacks
    recipe = load_recipe("demo", budget=budget or DEMO_BUDGET)
    if fresh and layout.root.exists():
        shutil.rmtree(layout.root)
    layout.root.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    with previous_kept(layout):
        prepare_corpus(layout, packages, progress, say, times)
        lanes, threads = lanes_for(torch.get_num_threads())
        pair = start_pair(layout, recipe)
        jobs = plan_jobs(layout, pair, recipe, settings, seeds, downstream_sizes or DOWNSTREAM_TRAIN, completion_items)
        with _stage("training, evaluation and fine-tunes", say, times):
            say(f"  {len(jobs)} jobs, {lanes} side by side ({threads} thread{'s' * (threads > 1)} each)")
            results, job_times = run_all(layout, recipe, jobs, lanes, threads, progress, say)
        save(layout, results)
        with _stage("report", say, times):
            report = write_demo_report(layout, recipe, results, times, job_times)

    say("")
    say(spread_markdown(results, list(ARMS)))
    say("")
    say(findings(results))
    say(f"\nreport: {report}  (total {sum(times.values()):.0f} s: "
        + ", ".join(f"{name.split(' (')[0]} {seconds:.0f} s" for name, seconds in times.items()) + ")")
    return report


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
    if (layout.tokenizer / "tokenizer.json").exists():
        say(f"  reusing {layout.tokenizer}")
        return load_tokenizer(layout.tokenizer)
    texts = (document.text for document in stdlib_documents("train", packages or None))
    tokenizer = train_tokenizer(texts, DEMO_VOCAB, layout.tokenizer)
    say(f"  byte-level BPE, {tokenizer.vocab_size} tokens, trained on the stdlib train split")
    return tokenizer


def _stores(layout: DemoLayout, tokenizer, packages: tuple[str, ...], progress: bool, say) -> None:
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


@contextmanager
def _stage(name: str, say, times: dict[str, float]):
    """Announce a stage and time it."""
    say(f"[{name}]")
    start = time.perf_counter()
    yield
    times[name] = time.perf_counter() - start
    say(f"  done in {times[name]:.0f} s")
