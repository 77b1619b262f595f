"""The whole protocol at tiny scale (slow): `--suite ettin` on a pair, every part from local copies."""

import json
from pathlib import Path

import pytest
from tests.eval.test_suites import pair  # noqa: F401  (the module's tiny pair fixture)
from tools import suite_data

from twofold.cli import main
from twofold.results import load_results

pytestmark = pytest.mark.slow

CSN = ["python", "javascript", "go", "ruby", "java", "php"]


def test_ettin_protocol_on_a_pair_ends_in_the_table_and_the_figure(tmp_path, pair):  # noqa: F811
    data = suite_data.write_glue(tmp_path / "data")
    suite_data.write_multilingual_retrieval(data / "mteb" / "CodeSearchNetRetrieval", CSN)
    suite_data.write_multilingual_retrieval(data / "mteb" / "MultiLongDocRetrieval", ["en"])
    suite_data.write_lmeval(data / "lm-eval", "tiny_mc", [
        {"context": "import", "choices": [" os", " json"], "gold": 0},
        {"context": "def read(path):\n    return", "choices": [" open(path)", " 1"], "gold": 0}])
    pairs = suite_data.jsonl(tmp_path / "pairs.jsonl", [{"query": text, "positive": code}
                                                        for _, text, code in suite_data.TOPICS * 3])
    out = tmp_path / "out"
    argv = ["eval", str(pair), "--suite", "ettin", "--tasks",
            "glue,csn,mldr,lm-eval,glue:cola,glue:stsb,lm-eval:tiny_mc", "--data-dir", str(data),
            "--finetune-data", str(pairs), "--lr", "3e-4", "--epochs", "1", "--finetune-batch-size", "8",
            "--max-length", "32", "--out", str(out)]
    assert main(argv) == 0
    results = load_results(out)
    families = {(r.model, r.task): r for r in results if r.suite == "ettin"}
    assert set(families) == {(m, f"ettin/{f}") for m in ("encoder", "decoder")
                             for f in ("glue", "csn", "mldr", "lm-eval")}
    for member in ("encoder", "decoder"):
        csn = next(r for r in results if r.model == member and r.task == "csn/CodeSearchNetRetrieval")
        assert csn.details["subsets"] == 6 and csn.details["model"].startswith("embed fine-tune on")
        assert families[member, "ettin/csn"].metrics["score"] == csn.metrics["ndcg@10"]
        glue = next(r for r in results if r.model == member and r.task == "glue/average")
        assert families[member, "ettin/glue"].metrics["score"] == glue.metrics["score"]
        mldr = next(r for r in results if r.model == member and r.task == "mldr/MultiLongDocRetrieval")
        assert mldr.details["max_seq_length"] == 1024  # the tiny preset's full context
    finetune = json.loads((out / "work" / "encoder" / "embed" / "finetune.json").read_text())
    assert finetune["task"] == "embed" and finetune["recipe"]["learning_rates"] == [3e-4]
    report = (out / "report.md").read_text()
    assert "![ettin](ettin.png)" in report and "ettin/lm-eval" in report
    assert Path(out / "ettin.png").read_bytes()[:4] == b"\x89PNG"
