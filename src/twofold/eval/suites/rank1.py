"""`--suite rank1`: rerank a first-stage run with a decoder scored as rank1 scores (Weller et al.
2025, arXiv 2502.18418; jhu-clsp/rank1), and report nDCG@10 before and after.

Each (query, passage) of the first stage's top `--depth` is put to the decoder as

    Determine if the following passage is relevant to the query. Answer only with 'true' or
    'false'.\\nQuery: {query}\\nPassage: {passage}\\n<think>

With `--think-tokens N` the model first writes up to N reasoning tokens (greedy; stopping at
`</think>`); then `</think>` closes the reasoning, and the score is p(true) / (p(true) + p(false))
from the logits of the next token (" true" and " false", their first tokens). With N = 0 (the
default) the verdict follows `<think>\\n</think>` at once. Ties keep the first stage's order.

First stage: `bm25` (bm25s, BM25 with Lucene's idf, k1 1.5, b 0.75, English stopwords; as with Lucene,
only documents sharing a word with the query are retrieved, so a query may get fewer than `--depth`), a TREC run
file (`qid Q0 docid rank score tag`), or an embedder (an export or Sentence Transformers
directory; cosine similarity). Data: a BEIR folder per task under `--data-dir`
(`DIR/<task>/corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv`), else the MTEB task of that name.

mteb, sentence-transformers and transformers (optional, the `suites` extra) are imported where used.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from twofold.errors import TwofoldError
from twofold.eval.member import EMBEDDER, Member, kind_of
from twofold.eval.metrics import bm25_run, retrieval_scores
from twofold.eval.progress import progress
from twofold.eval.settings import Settings
from twofold.eval.suites.base import hub_data, local_files, result
from twofold.finetune import BaseModel, recipe_for
from twofold.finetune.datasets import RetrievalSet, beir_test_set
from twofold.finetune.tasks import embedder
from twofold.results import Result

PROMPT = ("Determine if the following passage is relevant to the query. Answer only with 'true' or 'false'.\n"
          "Query: {query}\nPassage: {passage}\n<think>")
DEFAULT_TASKS = ("SciFact", "NFCorpus", "ArguAna", "SCIDOCS", "FiQA2018", "TRECCOVID")  # BEIR sets rank1 reports
PASSAGE_CHARACTERS = 4000  # passages are cut to this many characters, queries kept whole


def tasks(options: Settings) -> list[str]:
    if not options.tasks:
        return list(DEFAULT_TASKS)
    if options.data_dir is not None:
        missing = [t for t in options.tasks if not (options.data_dir / t).is_dir()]
        if missing:
            found = sorted(p.name for p in options.data_dir.iterdir() if (p / "corpus.jsonl").is_file())
            raise TwofoldError(f"--suite rank1: unknown task {missing[0]!r}: no BEIR folder "
                               f"{options.data_dir / missing[0]}; valid tasks here: {', '.join(found) or 'none'}")
    return list(dict.fromkeys(options.tasks))


def load(name: str, options: Settings) -> tuple[RetrievalSet, dict]:
    """The task's test queries, corpus and judgements, and where they came from."""
    if options.data_dir is not None:
        folder = options.data_dir / name
        return beir_test_set(str(folder), options.limit or 10**9, options.seed), local_files(folder)
    import mteb

    try:
        task = mteb.get_task(name)
        task.load_data()
    except KeyError:
        raise TwofoldError(f"--suite rank1: unknown task {name!r}; name an MTEB retrieval task or give "
                           "--data-dir with a BEIR folder of that name") from None
    except Exception as error:
        raise TwofoldError(f"rank1 {name}: its data does not load ({type(error).__name__}: {error}); with no "
                           "internet, give --data-dir with a BEIR folder per task") from None
    split = task.dataset["default"]["test"]
    corpus = {row["id"]: f"{row.get('title') or ''} {row['text']}".strip() for row in split["corpus"]}
    queries = {row["id"]: row["text"] for row in split["queries"]}
    qrels = {q: docs for q, docs in split["relevant_docs"].items() if any(v > 0 for v in docs.values())}
    chosen = sorted(qrels)[:options.limit] if options.limit else sorted(qrels)
    return (RetrievalSet({q: queries[q] for q in chosen}, corpus, {q: qrels[q] for q in chosen}, name),
            hub_data(task.metadata.dataset["path"], task.metadata.dataset.get("revision")))


def check_data(names: list[str], options: Settings) -> None:
    if options.data_dir is not None:
        for name in names:
            load(name, options)
    first_stage_kind(options.first_stage)


# ----------------------------------------------------------------------------- first stage

def first_stage_kind(spec: str) -> str:
    path = Path(spec)
    if spec == "bm25":
        return "bm25"
    if path.is_file():
        return "run"
    if path.is_dir() and (path / "config.json").is_file():
        return "dense"
    raise TwofoldError(f"--first-stage {spec!r}: give bm25, a TREC run file (qid Q0 docid rank score tag) or an "
                       "embedder directory (an export or a Sentence Transformers model)")


def bm25(data: RetrievalSet, depth: int) -> dict[str, dict[str, float]]:
    return bm25_run(data.queries, data.corpus, depth)


def read_run(path: Path, data: RetrievalSet, depth: int) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 5:
                raise TwofoldError(f"{path}:{number}: expected 'qid Q0 docid rank score [tag]'")
            try:
                run.setdefault(fields[0], {})[fields[2]] = float(fields[4])
            except ValueError:
                raise TwofoldError(f"{path}:{number}: score {fields[4]!r} is not a number") from None
    return {q: dict(sorted(docs.items(), key=lambda d: -d[1])[:depth]) for q, docs in run.items() if q in data.queries}


def dense(model_dir: Path, data: RetrievalSet, depth: int, batch_size: int) -> dict[str, dict[str, float]]:
    from sentence_transformers import SentenceTransformer

    kind, causal = kind_of(model_dir)
    model = SentenceTransformer(str(model_dir)) if kind == EMBEDDER else \
        embedder(BaseModel(str(model_dir), model_dir.name, causal), recipe_for("embed"))
    ids, queries = list(data.corpus), list(data.queries)
    docs = model.encode([data.corpus[i] for i in ids], batch_size=batch_size, convert_to_tensor=True)
    asked = model.encode([data.queries[q] for q in queries], batch_size=batch_size, convert_to_tensor=True)
    top = model.similarity(asked, docs).topk(min(depth, len(ids)), dim=-1)
    return {q: {ids[i]: float(s) for s, i in zip(values.tolist(), indices.tolist())}
            for q, values, indices in zip(queries, top.values, top.indices)}


def first_stage(data: RetrievalSet, options: Settings) -> dict[str, dict[str, float]]:
    kind = first_stage_kind(options.first_stage)
    if kind == "bm25":
        return bm25(data, options.depth)
    if kind == "run":
        return read_run(Path(options.first_stage), data, options.depth)
    return dense(Path(options.first_stage), data, options.depth, options.batch_size)


# ----------------------------------------------------------------------------- the reranker

class Rank1Scorer:
    """rank1's relevance score from a causal LM: p(true) / (p(true) + p(false)) after the reasoning."""

    def __init__(self, path: str | Path, think_tokens: int = 0, batch_size: int = 16, device: str | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(str(path)).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.think_tokens = think_tokens
        self.batch_size = batch_size
        self.context = getattr(self.model.config, "max_position_embeddings", 2048)
        true, false = (self.tokenizer(word, add_special_tokens=False)["input_ids"] for word in (" true", " false"))
        if not true or not false or true[0] == false[0]:
            raise TwofoldError(f"{path}: the tokenizer cannot tell ' true' from ' false' by their first token")
        self.true, self.false = true[0], false[0]

    def prompt_ids(self, query: str, passage: str) -> list[int]:
        text = PROMPT.format(query=query, passage=passage[:PASSAGE_CHARACTERS])
        ids = self.tokenizer(text)["input_ids"]
        room = self.context - self.think_tokens - 8  # the reasoning and "</think>" must fit
        return ids if len(ids) <= room else ids[:1] + ids[len(ids) - room + 1:]  # keep BOS, cut the passage start

    @torch.no_grad()
    def _think(self, ids: list[int]) -> list[int]:
        """The prompt, the model's greedy reasoning (at most `think_tokens`), then `</think>`."""
        close = self.tokenizer("\n</think>", add_special_tokens=False)["input_ids"]
        if self.think_tokens:
            tensor = torch.tensor([ids], device=self.device)
            out = self.model.generate(tensor, attention_mask=torch.ones_like(tensor), max_new_tokens=self.think_tokens,
                                      do_sample=False, pad_token_id=self.tokenizer.pad_token_id)
            thought = self.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
            thought = thought.split("</think>")[0]
            ids = ids + self.tokenizer(thought, add_special_tokens=False)["input_ids"]
        return ids + close

    @torch.no_grad()
    def scores(self, pairs: list[tuple[str, str]], progress=None) -> list[float]:
        sequences = [self._think(self.prompt_ids(q, p)) for q, p in pairs] if self.think_tokens else \
            [self.prompt_ids(q, p) + self.tokenizer("\n</think>", add_special_tokens=False)["input_ids"]
             for q, p in pairs]
        out = [0.0] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: -len(sequences[i]))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            width = max(len(sequences[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(chunk):
                ids[row, :len(sequences[i])] = torch.tensor(sequences[i])
                mask[row, :len(sequences[i])] = 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            last = logits[torch.arange(len(chunk)), mask.sum(1).to(self.device) - 1].float()
            verdict = torch.stack([last[:, self.true], last[:, self.false]], dim=-1).softmax(-1)[:, 0]
            for row, i in enumerate(chunk):
                out[i] = float(verdict[row])
            if progress is not None:
                progress.update(len(chunk))
        return out


def rerank(scorer: Rank1Scorer, data: RetrievalSet, run: dict[str, dict[str, float]], label: str):
    """The run reordered by rank1's score (first-stage order breaks ties), and passages/s."""
    pairs = [(q, d) for q, docs in run.items() for d in sorted(docs, key=lambda d: -docs[d])]
    started = time.perf_counter()
    with progress(label, f"rank1 {data.name}", len(pairs), "passage") as bar:
        values = scorer.scores([(data.queries[q], data.corpus[d]) for q, d in pairs], bar)
    seconds = time.perf_counter() - started
    reranked: dict[str, dict[str, float]] = {}
    for position, ((q, d), value) in enumerate(zip(pairs, values)):
        reranked.setdefault(q, {})[d] = value - 1e-9 * position  # stable: earlier first-stage rank wins ties
    return reranked, len(pairs) / max(seconds, 1e-9)


_SCORERS: dict[tuple, Rank1Scorer] = {}


def run(member: Member, name: str, options: Settings) -> list[Result]:
    data, provenance = load(name, options)
    qrels = {q: data.qrels[q] for q in data.queries if q in data.qrels}
    stage = first_stage(data, options)
    stage = {q: stage.get(q, {}) for q in qrels}
    key = (str(member.path), options.think_tokens, options.batch_size)
    if key not in _SCORERS:
        _SCORERS.clear()
        _SCORERS[key] = Rank1Scorer(member.path, options.think_tokens, options.batch_size)
    reranked, speed = rerank(_SCORERS[key], data, stage, member.label)
    before, after = retrieval_scores(qrels, stage), retrieval_scores(qrels, reranked)
    common = dict(first_stage=options.first_stage, depth=options.depth, think_tokens=options.think_tokens)
    return [result(member, "rank1", name, before, len(qrels), "bm25s" if options.first_stage == "bm25" else "ranx",
                   provenance, seed=options.seed, variant="first-stage", **common),
            result(member, "rank1", name, after, len(qrels), "transformers", provenance, seed=options.seed,
                   variant="reranked", passages_per_second=round(speed, 2), before=before, **common)]
