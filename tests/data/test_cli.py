"""`twofold data …` end to end through `twofold.cli.main`, including the exit-2 error contract."""

import pytest
from tests.data.conftest import write_jsonl

from twofold.cli import main
from twofold.data.store import TokenStore
from twofold.data.tokenizer import load_tokenizer


def test_tokenizer_train_prepare_info_and_plan(tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", [
        {"text": f"document number {i} says {'hello ' * (i % 7)}", "lang": "en" if i % 3 else "fr"}
        for i in range(60)])
    source = f"path={corpus},group_field=lang"
    assert main(["data", "tokenizer", "train", "--source", source, "--vocab-size", "300",
                 "--out", str(tmp_path / "tok")]) == 0
    assert main(["data", "tokenizer", "info", str(tmp_path / "tok")]) == 0
    vocab = load_tokenizer(tmp_path / "tok").vocab_size
    assert 256 < vocab <= 300 and f"vocab {vocab}" in capsys.readouterr().out
    assert main(["data", "prepare", "--source", source, "--tokenizer", str(tmp_path / "tok"),
                 "--out", str(tmp_path / "store")]) == 0
    store = TokenStore(tmp_path / "store")
    assert store.num_documents == 60 and set(store.groups) == {"en", "fr"}
    capsys.readouterr()
    assert main(["data", "info", str(tmp_path / "store"), "--verify"]) == 0
    out = capsys.readouterr().out
    assert store.fingerprint in out and "checksums    ok" in out
    assert "en" in out and f"{store.group_tokens()['fr']:,}" in out
    png = tmp_path / "plan.png"
    assert main(["data", "plan", "--store", str(tmp_path / "store"), "--temperature", "0.5",
                 "--tokens", "10k", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "epochs" in out and png.read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "m.yaml").write_text("weights: {en: 1, fr: 3}\n")
    assert main(["data", "plan", "--store", str(tmp_path / "store"), "--mixture", str(tmp_path / "m.yaml"),
                 "--tokens", "1e4", "--png", str(png)]) == 0
    assert "0.7500" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["data", "info", "{tmp}/nothing"], "not a complete token store"),
    (["data", "prepare", "--source", "{tmp}/missing.txt", "--tokenizer", "{tok}", "--out", "{tmp}/s"],
     "no such file or directory"),
    (["data", "prepare", "--source", "{tmp}/c.jsonl", "--tokenizer", "{tmp}/none", "--out", "{tmp}/s"],
     "tokenizer not found"),
    (["data", "prepare", "--source", "{tmp}/bad.jsonl", "--tokenizer", "{tok}", "--out", "{tmp}/s"],
     "bad.jsonl:2"),
    (["data", "plan", "--store", "{store}", "--temperature", "0", "--tokens", "1M"],
     "--temperature: 0 is out of range: it must be a finite positive number"),
    (["data", "plan", "--store", "{store}", "--weights", "big=-1", "--tokens", "1M"], "weights must be >= 0"),
    (["data", "plan", "--store", "{store}", "--include", "big,xx", "--tokens", "1M"], "provided by no store"),
    (["data", "plan", "--store", "{store}", "--tokens", "lots"], "is not a token count"),
    (["data", "show-batch", "{tmp}", "--step", "0"], "loader.json: not found"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, tokenizer, group_store, capsys, argv, message):
    write_jsonl(tmp_path / "c.jsonl", [{"text": "x"}])
    (tmp_path / "bad.jsonl").write_text('{"text": "x"}\nnope\n')
    directory = tokenizer.source.rsplit("/", 1)[0]
    argv = [a.format(tmp=tmp_path, tok=directory, store=group_store) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("twofold: error: ") and message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_the_data_package_never_imports_the_model_or_training():
    import subprocess
    import sys

    code = ("import sys, twofold.data, twofold.data.loader, twofold.data.tokenizer; "
            "print([m for m in sys.modules if m.startswith(('twofold.model', 'twofold.train'))])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
