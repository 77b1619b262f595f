"""One fine-tune (or a learning-rate sweep) of one model, or of both members of a pair.

    from twofold.finetune import finetune, finetune_pair, recipe_for
    result = finetune("embed", "runs/demo/export/encoder", "stdlib", "runs/ft/embed", recipe_for("embed"))
    results = finetune_pair("classify", "runs/demo/pair", "stdlib", "runs/ft/classify")

Every learning rate trains a fresh copy of the model on the same batches; the one with the
best dev score is kept (Ettin's protocol) and all are recorded (a single learning rate has
nothing to select: the dev split is not scored). `out` holds the kept model as
its library saves it (it loads unchanged there), `finetune.json` (inputs with checksums, task,
recipe, sweep, scores before and after) and `results/` in twofold's evaluation Result format
(`twofold compare out/results`). `out` is written beside itself and renamed into place at the
end: it is whole or absent. A pair writes `out/encoder`, `out/decoder` and `out/finetune.json`;
both members see identical data (negatives mined once), batches and recipe.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from twofold._version import __version__
from twofold.errors import TwofoldError
from twofold.files import atomic_write_text, publish_directory, sha256_file
from twofold.finetune.datasets import LabelledData, RetrievalData, load_labelled, load_retrieval
from twofold.finetune.generation_data import GenerationData, load_generation
from twofold.finetune.inputs import BaseModel, resolve, resolve_pair
from twofold.finetune.recipes import RETRIEVAL_TASKS, Recipe, recipe_for
from twofold.finetune.tasks import (
    TASK_TABLE,
    OrderRecorder,
    check_environment,
    check_fits,
    embedder,
    mine,
    pooling_used,
    primary_metric,
    rerank_candidates,
    unfit,
)
from twofold.quiet import quiet_head_load_reports
from twofold.results import Result, save_results

Data = RetrievalData | LabelledData | GenerationData
RECORD = "finetune.json"
RESULTS = "results"


@dataclass
class Prepared:
    """What every member of a comparison trains and is scored on: built once, shared."""

    train: object  # a datasets.Dataset (retrieval, negatives mined) or the labelled examples
    dev: object
    test: object
    negatives: dict = field(default_factory=dict)


@dataclass
class FinetuneResult:
    out: Path
    task: str
    model: str
    kind: str
    learning_rate: float
    metric: str
    before: dict[str, float]  # test metrics of the model before fine-tuning
    test: dict[str, float]  # test metrics of the kept model
    dev: dict[str, float]
    sweep: list[dict]
    results: list[Result]  # the kept model's test scores and the scores before fine-tuning

    @property
    def improved(self) -> bool:
        return self.test[self.metric] > self.before[self.metric]


def load_data(task: str, spec: str, dev: str | None = None, test: str | None = None, seed: int = 0, **options):
    """RetrievalData for retrieval tasks, LabelledData for classify (see `twofold.finetune.datasets`),
    GenerationData for generate (`twofold.finetune.generation_data`)."""
    if task == "generate":
        return load_generation(spec, dev, test, seed, **options)
    if task in RETRIEVAL_TASKS:
        keep = {k: v for k, v in options.items() if k in ("packages", "max_train")}
        return load_retrieval(spec, dev, test, seed, **keep)
    return load_labelled(spec, dev, test, seed, **options)


def prepare(task: str, data: RetrievalData | LabelledData, recipe: Recipe, miner_base: BaseModel | None) -> Prepared:
    """Training rows (with hard negatives mined by `miner_base`'s embedder) and the scored splits."""
    if task in ("classify", "generate"):
        return Prepared(data.train, data.dev, data.test)
    needs_miner = recipe.hard_negatives > 0 or task == "rerank"
    miner = embedder(miner_base, recipe) if needs_miner and miner_base is not None else None
    fmt = "labeled-pair" if task == "rerank" else "n-tuple"
    train = mine(data.train, miner, recipe.hard_negatives if miner else 0, fmt, recipe.seed)
    negatives = {"per_query": recipe.hard_negatives, "mined_with": miner_base.name if miner else None,
                 "library": "sentence_transformers.util.mine_hard_negatives"}
    if task == "rerank":
        dev, test = rerank_candidates(data.dev, miner), rerank_candidates(data.test, miner)
        return Prepared(train, dev, test, negatives | {"candidates": "positives + the miner's top 19 others"})
    return Prepared(train, data.dev, data.test, negatives)


def finetune(task: str, model: str | Path | BaseModel, data: str | Data, out: str | Path,
             recipe: Recipe | None = None, *, name: str | None = None, prepared: Prepared | None = None,
             say=print) -> FinetuneResult:
    """Fine-tune `model` on `data` with `recipe` (default: the task's published one); write `out`."""
    recipe, out, scratch = _begin(task, recipe, out)
    try:
        base = model if isinstance(model, BaseModel) else resolve(model, scratch / ".inputs", name)
        check_fits(task, base)
        data = load_data(task, data, seed=recipe.seed) if isinstance(data, str) else data
        prepared = prepared or prepare(task, data, recipe, base)
        result = _finetune(task, base, data, prepared, recipe, scratch, out, say)
        shutil.rmtree(scratch / ".inputs", ignore_errors=True)
        publish_directory(scratch, out)
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def finetune_pair(task: str, pair: str | Path, data: str | Data, out: str | Path,
                  recipe: Recipe | None = None, say=print) -> list[FinetuneResult]:
    """Both members of a pair with the same data, negatives, batches and recipe; `out/{encoder,decoder}`.

    A task only one member can do (sparse needs the encoder's MLM head, generate a decoder)
    fine-tunes that member and says why the other is left out."""
    recipe, out, scratch = _begin(task, recipe, out)
    try:
        encoder, decoder = resolve_pair(pair, scratch / ".inputs")
        reasons = {m.name: unfit(task, m) for m in (encoder, decoder)}
        left_out = {name: reason for name, reason in reasons.items() if reason}
        members = [m for m in (encoder, decoder) if not reasons[m.name]]
        for reason in left_out.values():
            say(f"left out: {reason}")
        data = load_data(task, data, seed=recipe.seed) if isinstance(data, str) else data
        prepared = prepare(task, data, recipe, encoder)  # mined once, with the encoder
        results = []
        for member in members:
            say(f"{member.name}: {task} on {data.name}")
            member_dir = scratch / member.name
            member_dir.mkdir()
            results.append(_finetune(task, member, data, prepared, recipe, member_dir, out / member.name, say))
        record = {"task": task, "pair": str(Path(pair).resolve()), "members": [r.model for r in results],
                  "left_out": left_out,
                  "recipe": recipe.to_dict(), "data": _data_record(data, prepared),
                  "data_order_identical": len({json.dumps([s["data_order"] for s in r.sweep]) for r in results}) == 1
                  if len(results) > 1 else None,
                  "results": [_summary(r) for r in results]}
        atomic_write_text(scratch / RECORD, json.dumps(record, indent=1) + "\n")
        shutil.rmtree(scratch / ".inputs", ignore_errors=True)
        publish_directory(scratch, out)
        return [_moved(r, out / r.model) for r in results]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ----------------------------------------------------------------------------- one member

def _finetune(task: str, base: BaseModel, data, prepared: Prepared, recipe: Recipe, workdir: Path, final: Path,
              say) -> FinetuneResult:
    spec = TASK_TABLE[task]
    metric = primary_metric(task, data)
    extra = {"labels": data.labels} if task == "classify" else {}
    # The dev split selects among learning rates; with one there is nothing to select, so it is not scored.
    splits = {"dev": prepared.dev, "test": prepared.test} if len(recipe.learning_rates) > 1 else {"test": prepared.test}
    untrained = spec.build(base, recipe, **extra)
    before = {name: spec.score(untrained, split, recipe) for name, split in splits.items()}
    parameters = _parameters(untrained)
    del untrained
    shown = "dev" if "dev" in splits else "test"  # what the sweep's progress lines report
    test_called = getattr(data, "test_split", "test")  # GLUE's scored part is its dev set
    called = "dev" if shown == "dev" else test_called
    _warn_if_too_small(prepared.test, test_called)
    say(f"  before fine-tuning: {called} {metric} {before[shown].get(metric, float('nan')):.4f}")
    sweep, best = [], None
    for i, lr in enumerate(recipe.learning_rates):
        candidate = workdir / f".sweep-{i}"
        model = spec.build(base, recipe, **extra)
        recorder = OrderRecorder(None)
        started = time.perf_counter()
        spec.train(model, prepared.train, recipe, lr, candidate / "trainer", recorder)
        seconds = time.perf_counter() - started
        scores = {name: spec.score(model, split, recipe) for name, split in splits.items()}
        dev, test = scores.get("dev", {}), scores["test"]
        sweep.append({"learning_rate": lr, "dev": dev, "test": test, "seconds": round(seconds, 2),
                      "batches": recorder.batches, "optimizer_steps": recorder.steps,
                      "data_order": recorder.hexdigest})
        say(f"  lr {lr:g}: {called} {metric} {scores[shown][metric]:.4f} ({seconds:.0f} s)")
        if best is None or dev[metric] > sweep[best]["dev"][metric]:
            spec.save(model, candidate / "model")
            if best is not None:
                shutil.rmtree(workdir / f".sweep-{best}")
            best = i
        else:
            shutil.rmtree(candidate)
        del model
    kept = sweep[best]
    for item in (workdir / f".sweep-{best}" / "model").iterdir():
        os.replace(item, workdir / item.name)
    shutil.rmtree(workdir / f".sweep-{best}")
    details = spec.details(recipe)
    results = _results(task, base, data, kept, before["test"], parameters, recipe, len(_items(prepared.test)), details)
    save_results(results, workdir / RESULTS)
    record = {"task": task, "library": spec.library, "twofold_version": __version__, "model": base.source,
              "member": "decoder" if base.causal else "encoder", "name": base.name,
              "data": _data_record(data, prepared),
              "recipe": recipe.to_dict(), "pooling": pooling_used(task, base, recipe), "metric": metric,
              "selected": {"learning_rate": kept["learning_rate"], "dev": kept["dev"]}, "test": kept["test"],
              "before": before, "sweep": sweep, "environment": _environment(), **details}
    atomic_write_text(workdir / RECORD, json.dumps(record, indent=1) + "\n")
    return FinetuneResult(final, task, base.name, record["member"], kept["learning_rate"], metric, before["test"],
                          kept["test"], kept["dev"], sweep, results)


SMALL_SPLIT = 50  # fewer scored queries (examples) than this: one more or less right moves the score by > 2%


def _warn_if_too_small(split, called: str) -> None:
    """On small data the automatic split can be a handful of items, on which a fine-tune's score may not
    move at all: say so, with its size, rather than print equal scores before and after."""
    items = len(_items(split))
    if items < SMALL_SPLIT:
        what = f"{items} queries over {len(split.corpus)} documents" if hasattr(split, "corpus") else \
            f"{items} examples"
        warnings.warn(f"the {called} split is {what}: too small for the score to move much (each one is "
                      f"{100 / max(items, 1):.0f}% of it); give more data or a larger --test", stacklevel=3)


def _items(split) -> list:
    return list(split.queries) if hasattr(split, "queries") else list(split)


def _parameters(model) -> int:
    module = getattr(model, "model", model)
    return sum(p.numel() for p in module.parameters())


def _results(task, base: BaseModel, data, kept: dict, before: dict, parameters: int, recipe: Recipe,
             n: int, details: dict) -> list[Result]:
    """The kept model's test scores and the scores before; `details`: the task's (decoding, signatures)."""
    common = {"task": f"finetune-{task}", "model": base.name, "seed": recipe.seed, "n": n,
              "kind": "decoder" if base.causal else "encoder", "parameters": parameters}
    return [
        Result(**common, metrics=kept["test"], variant=data.name,
               details={"learning_rate": kept["learning_rate"], "dev": kept["dev"], "before": before, **details}),
        Result(**common, metrics=before, variant=f"{data.name}/before", details={"fine_tuned": False, **details}),
    ]


def _data_record(data, prepared: Prepared) -> dict:
    return {"name": data.name, "fingerprint": data.fingerprint,
            "files": {str(path): sha256_file(path) for path in data.files},
            "examples": {"train": len(data.train), "dev": len(_items(prepared.dev)),
                         "test": len(_items(prepared.test))},
            "negatives": prepared.negatives, "labels": getattr(data, "labels", None)}


def _summary(result: FinetuneResult) -> dict:
    return {"model": result.model, "kind": result.kind, "learning_rate": result.learning_rate,
            "metric": result.metric, "before": result.before, "test": result.test}


def _moved(result: FinetuneResult, out: Path) -> FinetuneResult:
    result.out = out
    return result


def _environment() -> dict:
    versions = {}
    for package in ("torch", "transformers", "sentence-transformers", "pylate", "datasets", "sacrebleu"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    return {"python": sys.version.split()[0], "device": device, **versions}


def _begin(task: str, recipe: Recipe | None, out: str | Path) -> tuple[Recipe, Path, Path]:
    """What is checked before any work, then the hidden working folder: (recipe, out, scratch)."""
    check_environment(task)
    quiet_head_load_reports()  # the body of an export is loaded without its pretraining head
    recipe = recipe or recipe_for(task)
    out = Path(out)
    _check_out(out)
    return recipe, out, _scratch(out)


def _check_out(out: Path) -> None:
    if out.exists():
        raise TwofoldError(f"{out} already exists; fine-tuning never overwrites — pass a new --out")


def _scratch(out: Path) -> Path:
    scratch = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    return scratch
