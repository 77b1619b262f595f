"""`--suite mteb` and its presets: MTEB tasks run by the mteb library on a Sentence Transformers
model made from the export (encoder mean pooling, decoder last-token pooling, as the `embed`
recipe pools), from an `embed` fine-tune of it (`--finetune-data DATA`: the published recipe
first), or from a Sentence Transformers directory given as the model.

Presets: `mteb-retrieval` (the retrieval tasks of MTEB(eng, v2)), `csn` (CodeSearchNet
retrieval), `mldr` (MultiLongDocRetrieval, English, at the model's full context) and `followir`
(FollowIR's instruction-retrieval tasks, scored by p-MRR). `mteb` runs any tasks named with
`--tasks`. With `--data-dir DIR`, a task reads its dataset from `DIR/<dataset path>` (e.g.
`DIR/mteb/scifact`) or `DIR/<task name>`: a local copy of its hub repository (as `huggingface-cli
download --repo-type dataset mteb/scifact --local-dir DIR/mteb/scifact` writes it), which mteb
reads, or for a retrieval task of one subset a BEIR folder, which twofold's BEIR reader puts into
the task as mteb's loader would.

mteb and sentence-transformers (optional, the `suites` extra) are imported where used.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np

from twofold.errors import TwofoldError
from twofold.eval.member import EMBEDDER, Member
from twofold.eval.settings import Settings
from twofold.eval.suites.base import hub_data, local_files, pick_tasks, require, result
from twofold.finetune import RECORD, BaseModel, finetune, recipe_for
from twofold.finetune.datasets import read_beir
from twofold.finetune.tasks import embedder
from twofold.local_datasets import own_cache
from twofold.quiet import quiet_head_load_reports, quiet_mteb
from twofold.results import Result

MINIMUM = "2.26"  # mteb.evaluate with prediction folders, InstructionReranking tasks (as tested)
PRESETS = {
    "mteb-retrieval": None,  # read from mteb's MTEB(eng, v2) benchmark
    "csn": ("CodeSearchNetRetrieval",),
    "mldr": ("MultiLongDocRetrieval",),
    "followir": ("Core17InstructionRetrieval", "News21InstructionRetrieval", "Robust04InstructionRetrieval"),
}
LANGUAGES = {"MultiLongDocRetrieval": ["eng"]}  # MLDR: the English subset, as Ettin reports it
FULL_CONTEXT = {"MultiLongDocRetrieval"}
DEFAULT_LENGTH = 512  # tokens per text elsewhere (MTEB's short texts; long ones are cut)


def _mteb():
    require("mteb", MINIMUM, "--suite mteb", "suites")
    import mteb

    return mteb


def preset_tasks(preset: str) -> list[str]:
    if preset == "mteb-retrieval":
        benchmark = _mteb().get_benchmark("MTEB(eng, v2)")
        return [t.metadata.name for t in benchmark.tasks if t.metadata.type == "Retrieval"]
    return list(PRESETS[preset])


def task_lister(preset: str):
    """The `tasks` function of a preset (or of plain `mteb` when `preset` is 'mteb')."""

    def tasks(options: Settings) -> list[str]:
        names = [n for n in options.tasks if isinstance(n, str)]
        extra = [t.metadata.name for t in options.tasks if not isinstance(t, str)]  # task objects (Python API)
        if preset != "mteb":
            return pick_tasks(preset, names, preset_tasks(preset), preset_tasks(preset)) + extra
        if not names and not extra:
            raise TwofoldError("--suite mteb: name the MTEB tasks with --tasks (e.g. SciFact,NFCorpus), or use a "
                               f"preset suite: {', '.join(PRESETS)}")
        known = {t.metadata.name.lower(): t.metadata.name for t in _mteb().get_tasks()}
        for name in names:
            if name.lower() not in known:
                close = difflib.get_close_matches(name, list(known.values()), n=5)
                hint = f"; close: {', '.join(close)}" if close else ""
                raise TwofoldError(f"--suite mteb: unknown MTEB task {name!r}{hint} (mteb.get_tasks() lists them)")
        return [known[n.lower()] for n in names] + extra

    return tasks


# Task objects, resolved once per (name, data dir, objects given) and shared by the members.
_RESOLVED: dict[tuple, object] = {}


def resolve(name: str, options: Settings):
    """mteb's task object for `name`, reading a local copy of its data when `--data-dir` holds one."""
    given = {t.metadata.name: t for t in options.tasks if not isinstance(t, str)}
    key = (name, str(options.data_dir), id(given.get(name)))
    if key in _RESOLVED:
        return _RESOLVED[key]
    if name in given:
        task = given[name]
    else:
        mteb = _mteb()
        task = mteb.get_task(name, languages=LANGUAGES.get(name), eval_splits=["test"]) \
            if name in LANGUAGES else mteb.get_task(name)
    if options.data_dir is not None:
        local = local_copy(task, options.data_dir)
        if local is None:
            path = task.metadata.dataset["path"]
            if Path(path).is_dir():  # a task defined on local files already
                local = Path(path)
            else:
                raise TwofoldError(f"{options.data_dir / path}: missing; --data-dir holds, for each MTEB task, a copy "
                                   f"of its dataset repository (huggingface-cli download --repo-type dataset {path} "
                                   f"--local-dir {options.data_dir / path}) or a BEIR folder "
                                   f"{options.data_dir / name} (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
        found = layout(local, task)
        dataset = {**task.metadata.dataset, "path": str(local)}
        task.metadata = task.metadata.model_copy(update={"dataset": dataset})
        if found == BEIR:
            load_beir(task, local)
    _RESOLVED[key] = task
    return task


def local_copy(task, data_dir: Path) -> Path | None:
    for candidate in (data_dir / task.metadata.dataset["path"], data_dir / task.metadata.name):
        if candidate.is_dir():
            return candidate
    return None


REPOSITORY, BEIR = "dataset repository", "BEIR folder"


def layout(folder: Path, task) -> str:
    """Which layout a local copy has: a copy of the hub repository, which mteb reads itself (README.md
    declaring its `configs:`), or a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), read by
    twofold. A repository copy whose qrels are BEIR's TSV files is read as BEIR for a retrieval task of
    one subset: in a local folder, `datasets` reads TSV qrels beside JSONL files as JSON, and fails."""
    readme = folder / "README.md"
    declares = readme.is_file() and "configs:" in readme.read_text(encoding="utf-8", errors="replace")
    beir = any((folder / name).exists() for name in ("corpus.jsonl", "queries.jsonl", "qrels"))
    tsv = any((folder / "qrels").glob("*.tsv"))
    if beir and (not declares or tsv and _one_retrieval_set(task)):
        return BEIR
    if readme.is_file():  # configs declared, or inferred by `datasets` from the file names
        return REPOSITORY
    raise TwofoldError(f"{folder}: neither a copy of {task.metadata.name}'s dataset repository "
                       f"({task.metadata.dataset['path']}: README.md with its configs:) nor a BEIR folder "
                       "(corpus.jsonl, queries.jsonl, qrels/test.tsv)")


def _one_retrieval_set(task) -> bool:
    return task.metadata.type == "Retrieval" and len(task.hf_subsets) == 1


def load_beir(task, folder: Path) -> None:
    """A BEIR folder into mteb's task object, as mteb's own loader would fill it (corpus, queries with
    judgements, qrels), read by twofold's one BEIR reader (rank1 and `--task beir` read it too).
    A title is joined to its text as mteb joins them."""
    from datasets import Dataset

    name, kind = task.metadata.name, task.metadata.type
    if kind != "Retrieval":
        raise TwofoldError(f"{folder}: a BEIR folder, but {name} ({kind}) reads what BEIR does not hold "
                           "(instructions, candidate lists); give a copy of its dataset repository")
    if not _one_retrieval_set(task):
        raise TwofoldError(f"{folder}: a BEIR folder holds one set, but {name} has subsets "
                           f"{', '.join(task.hf_subsets)}; give a copy of its dataset repository")
    corpus, queries, qrels = read_beir(folder)
    missing = [split for split in task.eval_splits if split not in qrels]
    if missing:
        raise TwofoldError(f"{folder}: no qrels/{missing[0]}.tsv; mteb scores {name} on split "
                           f"{', '.join(task.eval_splits)} (query-id<TAB>corpus-id<TAB>score lines)")
    documents = Dataset.from_dict({"id": list(corpus), "text": list(corpus.values())})
    task.dataset = {task.hf_subsets[0]: {split: {
        "corpus": documents,
        "queries": Dataset.from_dict({"id": list(qrels[split]), "text": [queries[q] for q in qrels[split]]}),
        "relevant_docs": qrels[split], "top_ranked": None} for split in task.eval_splits}}
    task.dataset_transform()
    task.data_loaded = True


def check_data(names: list[str], options: Settings) -> None:
    """Load every task's local copy before any model work: a missing file, config or split is one line."""
    for name in names:
        task = resolve(name, options)
        if not Path(task.metadata.dataset["path"]).is_dir():
            continue  # the hub's: mteb downloads it
        try:
            with own_cache():  # two local copies named alike are never served each other's rows
                task.load_data()
        except Exception as error:  # datasets/mteb say what is missing (a config, a split, a column)
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise TwofoldError(f"{task.metadata.dataset['path']}: the local copy of {name} does not load "
                               f"({type(error).__name__}: {message}); it must hold the hub repository's files "
                               f"(configs and split {', '.join(task.eval_splits)})") from None


def embedding_model(member: Member, options: Settings, name: str):
    """The Sentence Transformers model mteb evaluates, and what it is (raw export, fine-tune, given)."""
    from sentence_transformers import SentenceTransformer

    length = None if name in FULL_CONTEXT else (options.max_length or DEFAULT_LENGTH)
    if member.kind == EMBEDDER:
        model, made = SentenceTransformer(str(member.path)), "sentence-transformers directory"
    elif options.finetune_data:
        out = options.work / member.label.replace("@", "_") / "embed"
        if not (out / RECORD).is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            finetune("embed", str(member.path), options.finetune_data, out,
                     recipe_for("embed", **options.recipe_changes()), name=member.name,
                     say=lambda line: print(f"  embed {line.strip()}", flush=True))
        model, made = SentenceTransformer(str(out)), f"embed fine-tune on {options.finetune_data} ({out})"
    else:
        base = BaseModel(str(member.path), member.name, member.causal)
        model = embedder(base, recipe_for("embed", max_length=length or DEFAULT_LENGTH))
        made = f"export, {'last-token' if member.causal else 'mean'} pooling"
    context = model[0].auto_model.config.max_position_embeddings
    model.max_seq_length = min(length or context, context)
    return model, made


def metric_name(name: str) -> str:
    """mteb's metric names as twofold's: ndcg_at_10 -> ndcg@10, p-MRR -> p-mrr."""
    return name.replace("_at_", "@").lower()


def scores_of(task_result, task) -> tuple[dict[str, float], int]:
    """(metrics, subsets): the main score and nDCG@10 / MRR@10 where reported, averaged over subsets."""
    rows = [row for split in task.eval_splits for row in task_result.scores.get(split, [])]
    if not rows:
        raise TwofoldError(f"mteb returned no scores for {task.metadata.name}")
    main = task.metadata.main_score
    metrics = {metric_name(main): float(np.mean([row[main] for row in rows]))}
    for extra in ("ndcg_at_10", "mrr_at_10"):
        if extra != main and all(extra in row for row in rows):
            metrics[metric_name(extra)] = float(np.mean([row[extra] for row in rows]))
    for side in ("og", "changed"):  # FollowIR: the retrieval scores under each instruction
        if all(isinstance(row.get(side), dict) and "ndcg_at_5" in row[side] for row in rows):
            metrics[f"ndcg@5_{side}"] = float(np.mean([row[side]["ndcg_at_5"] for row in rows]))
    return metrics, len(rows)


def run_task(suite: str):
    def run(member: Member, name: str, options: Settings) -> list[Result]:
        mteb = _mteb()
        task = resolve(name, options)
        quiet_head_load_reports()
        with quiet_mteb():
            model, made = embedding_model(member, options, name)
        predictions = options.work / member.label.replace("@", "_") / "mteb-predictions"
        with quiet_mteb():
            outcome = mteb.evaluate(model, [task], cache=None, prediction_folder=predictions,
                                    encode_kwargs={"batch_size": options.batch_size}, show_progress_bar=True)
        task_result = outcome.task_results[0]
        metrics, subsets = scores_of(task_result, task)
        path = task.metadata.dataset["path"]
        data = local_files(Path(path)) if Path(path).is_dir() else hub_data(path, task.metadata.dataset.get("revision"))
        return [result(member, suite, name, metrics, _queries(task), "mteb", data, seed=options.seed,
                       model=made, type=task.metadata.type, main_score=metric_name(task.metadata.main_score),
                       subsets=subsets, max_seq_length=model.max_seq_length,
                       predictions=str(predictions / f"{name}_predictions.json"),
                       seconds=round(float(task_result.evaluation_time or 0.0), 2))]

    return run


def _queries(task) -> int:
    try:
        return sum(len(split["queries"]) for subset in task.dataset.values() for split in subset.values())
    except (AttributeError, KeyError, TypeError):
        return 0
