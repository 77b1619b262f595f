"""mmBERT end to end at tiny scale on real multilingual text (Django's translation catalogues,
99 locales): three phases with languages entering, the three decay variants from one
mid-training checkpoint, their TIES merge, and held-out MLM accuracy per language.

The documented version of these commands is in docs/training.md ("mmBERT end to end")."""

import json

import pytest

from twofold.cli import main

pytestmark = pytest.mark.slow
BUDGET = "40K"  # tokens over the three phases; the tiny model keeps it to minutes on 2 CPU cores
# the batch shrinks with the budget, so that the decay's 1.33K tokens hold whole steps
TINY = ["--recipe", "mmbert", "--size", "tiny", "--budget", BUDGET, "--batch-scale", "0.32", "--set", "model=tiny"]


@pytest.fixture(scope="module")
def django_dir():
    django = pytest.importorskip("django", reason="Django's catalogues are the corpus: "
                                                  "pip install 'twofold[multilingual]' (make test-slow does)")
    from pathlib import Path

    return str(Path(django.__file__).parent)


def loader_description(run, phase):
    return json.loads((run / phase / "data_order" / "loader.json").read_text())


def test_mmbert_end_to_end(tmp_path, django_dir, capsys):
    source = f"kind=gettext,path={django_dir},name=django"
    assert main(["data", "tokenizer", "train", "--source", source, "--vocab-size", "2048", "--out",
                 str(tmp_path / "tok")]) == 0
    for part, store in (("train", "train"), ("held-out", "held")):
        assert main(["data", "prepare", "--source", f"{source},part={part}", "--tokenizer", str(tmp_path / "tok"),
                     "--out", str(tmp_path / store)]) == 0
    groups = {g["name"] for g in json.loads((tmp_path / "train" / "manifest.json").read_text())["groups"]}
    assert len(groups) >= 20 and {"fr", "de", "ja", "ar", "en"} <= groups

    capsys.readouterr()
    assert main(["data", "plan", "--store", str(tmp_path / "train"), *TINY[:-2], "--variant", "eng",
                 "--png", str(tmp_path / "plan.png")]) == 0
    table = capsys.readouterr().out
    assert "groups" in table and (tmp_path / "plan.png").read_bytes()[:4] == b"\x89PNG"

    runs = tmp_path / "runs"
    common = ["--store", str(tmp_path / "train"), "--objective", "mlm", "--no-progress", *TINY]
    assert main(["train", *common, "--variant", "all", "--out", str(runs / "all")]) == 0
    for variant in ("eng", "cont"):
        assert main(["train", *common, "--variant", variant, "--out", str(runs / variant),
                     "--branch-from", str(runs / "all")]) == 0

    # Languages enter phase by phase: 6, then 12 (English among them), then all of them.
    entering = [set(loader_description(runs / "all", p)["probabilities"]) for p in ("pretrain", "extension", "decay")]
    assert [len(s) for s in entering] == [6, 12, len(groups)] and entering[0] < entering[1] and "en" in entering[0]
    # The English-heavy decay: English has 1.43 times the share n^τ alone would give it.
    eng = loader_description(runs / "eng", "decay")
    cont = loader_description(runs / "cont", "decay")
    assert set(eng["probabilities"]) == set(cont["probabilities"]) == entering[1]
    odds = lambda p: p["en"] / (1 - p["en"])  # noqa: E731
    assert odds(eng["probabilities"]) / odds(cont["probabilities"]) == pytest.approx(1.43)
    branched = json.loads((runs / "eng" / "run.json").read_text())["branched_from"]
    assert branched["shared_phases"] == ["pretrain", "extension"]
    start_tag = branched["checkpoint"].split("-", 1)[1]

    merged = tmp_path / "merged"
    assert main(["merge", "--method", "ties", "--base", f"{runs / 'eng'}@{start_tag}", str(runs / "eng"),
                 str(runs / "cont"), str(runs / "all"), "--density", "0.5", "--out", str(merged),
                 "--no-progress"]) == 0
    record = json.loads((merged / "merge.json").read_text())
    assert len(record["models"]) == 3 and record["base"]["kind"] == "checkpoint"

    capsys.readouterr()
    out = tmp_path / "eval"
    assert main(["eval-languages", str(runs / "eng"), str(runs / "cont"), str(runs / "all"), str(merged),
                 "--names", "decay-eng,decay-cont,decay-all,ties", "--store", str(tmp_path / "held"),
                 "--sequences", "4", "--seq-len", "128", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[-4:] == ["decay-eng", "decay-cont", "decay-all", "ties"]
    scores = json.loads((out / "scores.json").read_text())["scores"]
    assert set(scores) == {"decay-eng", "decay-cont", "decay-all", "ties"}
    held = {g["name"] for g in json.loads((tmp_path / "held" / "manifest.json").read_text())["groups"]}
    assert len(held) >= 20 and all(set(per) == held for per in scores.values())
    assert all(0 <= s["accuracy"] <= 1 and s["masked"] > 0 for per in scores.values() for s in per.values())
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
