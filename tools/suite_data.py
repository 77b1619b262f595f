"""Tiny local copies of the suites' data, written in the formats the real data has:

- GLUE: the GLUE download's folders (`CoLA/` without a header line, `STS-B/`, `MRPC/` with theirs);
- MTEB: a dataset repository as the hub holds it (README.md with `configs:`, JSONL files), for a
  retrieval task and for FollowIR (queries `N-og` / `N-changed`, instructions, top-ranked lists,
  `qrel_diff`: the documents the altered instruction made non-relevant);
- lm-eval: task YAMLs on local JSONL files (multiple choice, and log-likelihood as LAMBADA);
- BEIR: corpus.jsonl, queries.jsonl, qrels/test.tsv (rank1, and mteb's retrieval tasks), and the
  same set as an MTEB dataset repository.
"""

from __future__ import annotations

import json
from pathlib import Path

TOPICS = [
    ("json", "parse json text into python objects", "def loads(s): return json.decoder.decode(s)"),
    ("email", "send an email message over smtp", "def send(msg): smtp.sendmail(msg['From'], msg['To'], msg)"),
    ("path", "join two file system paths", "def join(a, b): return a.rstrip('/') + '/' + b"),
    ("sort", "sort a list of numbers in place", "def sort(xs): xs.sort(); return xs"),
    ("http", "download a web page with http get", "def get(url): return urllib.request.urlopen(url).read()"),
    ("zip", "compress files into a zip archive", "def pack(files): zipfile.ZipFile('a.zip', 'w').write(files)"),
    ("time", "format the current date and time", "def now(): return time.strftime('%Y-%m-%d %H:%M')"),
    ("hash", "compute the sha256 digest of bytes", "def digest(b): return hashlib.sha256(b).hexdigest()"),
]


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# ----------------------------------------------------------------------------- GLUE

def write_glue(root: Path, train: int = 24, dev: int = 8) -> Path:
    """root/glue/{CoLA,STS-B,MRPC} in the GLUE download's layout (CoLA: no header line)."""
    glue = root / "glue"
    sentences = [f"{topic} {words}" for topic, words, _ in TOPICS] * 8

    def cola(n, offset):
        return "".join(f"gj04\t{(i + offset) % 2}\t\t{sentences[i + offset]}\n" for i in range(n))

    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"

    def sts(n, offset):
        return header + "".join(f"{i}\tmain\tx\t2012\t{i}\tnone\tnone\t{sentences[i + offset]}\t"
                                f"{sentences[i + offset + 1]}\t{(i * 7 % 50) / 10:.3f}\n" for i in range(n))

    mrpc_header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"

    def mrpc(n, offset):
        return mrpc_header + "".join(f"{(i + offset) % 2}\t{i}\t{i + 1}\t{sentences[i + offset]}\t"
                                     f"{sentences[i + offset + 2]}\n" for i in range(n))

    for task, rows in (("CoLA", cola), ("STS-B", sts), ("MRPC", mrpc)):
        (glue / task).mkdir(parents=True)
        (glue / task / "train.tsv").write_text(rows(train, 0))
        (glue / task / "dev.tsv").write_text(rows(dev, train))
    return root


# ----------------------------------------------------------------------------- MTEB

def _readme(directory: Path, configs: dict[str, tuple[str, str]]) -> None:
    """README.md with the `configs:` a dataset repository on the hub declares: name -> (split, file)."""
    lines = ["---", "configs:"]
    for name, (split, file) in configs.items():
        lines += [f"- config_name: {name}", "  data_files:", f"  - split: {split}", f"    path: {file}"]
    (directory / "README.md").write_text("\n".join(lines + ["---", ""]))


def write_retrieval(directory: Path) -> Path:
    """A BEIR-style retrieval set as an MTEB dataset repository: one relevant document per query."""
    jsonl(directory / "corpus.jsonl", [{"_id": f"d{i}", "title": "", "text": code}
                                       for i, (_, _, code) in enumerate(TOPICS)])
    jsonl(directory / "queries.jsonl", [{"_id": f"q{i}", "text": text} for i, (_, text, _) in enumerate(TOPICS)])
    jsonl(directory / "qrels" / "test.jsonl", [{"query-id": f"q{i}", "corpus-id": f"d{i}", "score": 1}
                                               for i in range(len(TOPICS))])
    _readme(directory, {"corpus": ("corpus", "corpus.jsonl"), "queries": ("queries", "queries.jsonl"),
                        "default": ("test", "qrels/test.jsonl")})
    return directory


def retrieval_task(directory: Path, name: str = "TinyCodeRetrieval"):
    """A custom MTEB retrieval task on `directory` (the way a user adds a task to mteb)."""
    from mteb.abstasks import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    class Tiny(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name=name, description="docstring line -> code, 8 pairs", reference=None,
            dataset={"path": str(directory), "revision": "local"}, type="Retrieval", category="t2t",
            modalities=["text"], eval_splits=["test"], eval_langs=["eng-Latn"], main_score="ndcg_at_10",
            date=None, domains=None, task_subtypes=None, license=None, annotations_creators=None, dialect=None,
            sample_creation=None, bibtex_citation="")

    return Tiny()


def write_followir(directory: Path) -> Path:
    """FollowIR's layout (mteb/Core17InstructionRetrieval): each query twice, with the original
    instruction (`N-og`) and an altered one (`N-changed`) under which some documents stop being
    relevant (`qrel_diff`); the model reranks each query's `top_ranked` documents."""
    queries, instructions, qrels, top, diff = [], [], [], [], []
    for i, (topic, text, _) in enumerate(TOPICS[:4]):
        documents = [f"d{j}" for j in range(len(TOPICS))]
        for side, instruction, relevant in (
                ("og", f"Relevant documents are code about {topic} or any other topic.", [i, (i + 1) % 8]),
                ("changed", f"Relevant documents are code about {topic} only, nothing else.", [i])):
            qid = f"{i}-{side}"
            queries.append({"_id": qid, "text": text})
            instructions.append({"query-id": qid, "instruction": instruction})
            qrels += [{"query-id": qid, "corpus-id": f"d{j}", "score": 1} for j in relevant]
            top.append({"query-id": qid, "corpus-ids": documents})
        diff.append({"query-id": str(i), "corpus-ids": [f"d{(i + 1) % 8}"]})
    jsonl(directory / "corpus.jsonl", [{"_id": f"d{i}", "title": "", "text": code}
                                       for i, (_, _, code) in enumerate(TOPICS)])
    jsonl(directory / "queries.jsonl", queries)
    jsonl(directory / "instruction.jsonl", instructions)
    jsonl(directory / "top_ranked.jsonl", top)
    jsonl(directory / "qrels" / "test.jsonl", qrels)
    jsonl(directory / "qrel_diff.jsonl", diff)
    _readme(directory, {"corpus": ("corpus", "corpus.jsonl"), "queries": ("queries", "queries.jsonl"),
                        "instruction": ("instruction", "instruction.jsonl"),
                        "top_ranked": ("top_ranked", "top_ranked.jsonl"), "default": ("test", "qrels/test.jsonl"),
                        "qrel_diff": ("qrel_diff", "qrel_diff.jsonl")})
    return directory


# ----------------------------------------------------------------------------- lm-eval

def write_lmeval(directory: Path, name: str, rows: list[dict], kind: str = "multiple_choice") -> Path:
    """An lm-eval task YAML on a local JSONL file.

    multiple_choice rows: {"context", "choices": [...], "gold": index}; loglikelihood rows
    (as LAMBADA): {"context", "target"}, whose `acc` is whether the target is the greedy output.
    """
    data = jsonl(directory / f"{name}.jsonl", rows)
    common = [f"task: {name}", "dataset_path: json", "dataset_kwargs:", "  data_files:", f"    test: {data}",
              "test_split: test", "doc_to_text: '{{context}}'", "target_delimiter: ''"]  # choices carry their spaces
    if kind == "multiple_choice":
        body = ["output_type: multiple_choice", "doc_to_choice: '{{choices}}'", "doc_to_target: gold",
                "metric_list:", "  - metric: acc", "    aggregation: mean", "    higher_is_better: true"]
    else:
        body = ["output_type: loglikelihood", "doc_to_target: '{{target}}'", "metric_list:",
                "  - metric: perplexity", "    aggregation: perplexity", "    higher_is_better: false",
                "  - metric: acc", "    aggregation: mean", "    higher_is_better: true"]
    (directory / f"{name}.yaml").write_text("\n".join(common + body) + "\n")
    return directory


# ----------------------------------------------------------------------------- BEIR

def write_beir(directory: Path) -> Path:
    jsonl(directory / "corpus.jsonl", [{"_id": f"d{i}", "title": "", "text": code}
                                       for i, (_, _, code) in enumerate(TOPICS)])
    jsonl(directory / "queries.jsonl", [{"_id": f"q{i}", "text": f"{topic}: {text}"}
                                        for i, (topic, text, _) in enumerate(TOPICS)])
    (directory / "qrels").mkdir()
    (directory / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\td{i}\t1\n" for i in range(len(TOPICS))))
    return directory


def beir_as_repository(beir: Path, directory: Path) -> Path:
    """The BEIR folder's set as an MTEB dataset repository (README.md configs, JSONL qrels), which mteb
    reads itself: the same documents, queries and judgements in the other layout."""
    directory.mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (directory / name).write_bytes((beir / name).read_bytes())
    lines = (beir / "qrels" / "test.tsv").read_text().splitlines()[1:]
    jsonl(directory / "qrels" / "test.jsonl", [dict(zip(("query-id", "corpus-id", "score"), (q, d, int(s))))
                                               for q, d, s in (line.split("\t") for line in lines)])
    _readme(directory, {"corpus": ("corpus", "corpus.jsonl"), "queries": ("queries", "queries.jsonl"),
                        "default": ("test", "qrels/test.jsonl")})
    return directory


def write_run(path: Path, ranking: dict[str, list[str]]) -> Path:
    """A TREC run file: each query's documents best first."""
    path.write_text("".join(f"{q} Q0 {d} {rank} {100 - rank} test\n" for q, docs in ranking.items()
                            for rank, d in enumerate(docs, start=1)))
    return path


def write_multilingual_retrieval(directory: Path, subsets: list[str]) -> Path:
    """A retrieval repository with one set of configs per subset (`python-corpus`, `python-queries`,
    `python-qrels`), as mteb/CodeSearchNetRetrieval and mteb/MultiLongDocRetrieval lay theirs out."""
    configs = {}
    for subset in subsets:
        jsonl(directory / subset / "corpus.jsonl", [{"_id": f"{subset}-d{i}", "title": "", "text": code}
                                                    for i, (_, _, code) in enumerate(TOPICS)])
        jsonl(directory / subset / "queries.jsonl", [{"_id": f"{subset}-q{i}", "text": text}
                                                     for i, (_, text, _) in enumerate(TOPICS)])
        jsonl(directory / subset / "qrels.jsonl", [{"query-id": f"{subset}-q{i}", "corpus-id": f"{subset}-d{i}",
                                                    "score": 1} for i in range(len(TOPICS))])
        configs |= {f"{subset}-corpus": ("corpus", f"{subset}/corpus.jsonl"),
                    f"{subset}-queries": ("queries", f"{subset}/queries.jsonl"),
                    f"{subset}-qrels": ("test", f"{subset}/qrels.jsonl")}
    _readme(directory, configs)
    return directory
