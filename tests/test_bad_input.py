"""Bad input, as a new user would give it: every case ends in one line on stderr (exit 2, no
traceback) that names the file or option, and every file that existed before is byte-identical
after (a refused command writes nothing at all). The classes of bad input are in docs/errors.md."""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import safetensors.torch
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from tests.snapshot import Tree

from twofold.cli import main
from twofold.data.stdlib import stdlib_documents
from twofold.data.store import TokenStore
from twofold.errors import TwofoldError
from twofold.train import checkpoint

RECIPE = """\
model: tiny
seed: 21
optimizer: {name: stable_adamw, lr: 3.0e-3, betas: [0.9, 0.98], eps: 1.0e-6, weight_decay: 3.0e-4}
phase:
  pretrain: {tokens: 2K, seq_len: 64, mask_rate: 0.3, lr_warmup_tokens: 256, batch_sequences: 8,
             checkpoint_every_tokens: 1K, tag: step}
  decay: {tokens: 1K, seq_len: 64, mask_rate: 0.15, lr_decay: one_minus_sqrt, lr_start_ratio: 0.5,
          lr_min_ratio: 0.02, batch_sequences: 8, checkpoint_every_tokens: 1K, tag: decay}
"""
# Checkpoints of a run, tagged by the optimizer steps of their phase: step2 (step 2), step4 (step 4,
# the end of pretraining), decay2 (step 6).
CHECKPOINTS = ["000000002-step2", "000000004-step4", "000000006-decay2"]


def cli(*argv) -> None:
    assert main([str(a) for a in argv]) == 0


def write_jsonl(path, texts, **fields):
    path.write_text("".join(json.dumps({"text": t, **fields}) + "\n" for t in texts))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tokenizer, two token stores, a finished run, its export and results, made with the CLI."""
    root = tmp_path_factory.mktemp("world")
    json_docs = [d.text for d in stdlib_documents(packages=["json"])]
    email_docs = [d.text[:200] for d in stdlib_documents(packages=["email"])][:3]  # a smaller corpus
    write_jsonl(root / "corpus.jsonl", json_docs)
    write_jsonl(root / "other.jsonl", email_docs)
    (root / "recipe.yaml").write_text(RECIPE)
    cwd = os.getcwd()
    os.chdir(root)  # relative --tokenizer, as a user types it
    try:
        cli("data", "tokenizer", "train", "--source", "corpus.jsonl", "--vocab-size", 400, "--out", "tok")
        cli("data", "prepare", "--source", "corpus.jsonl", "--tokenizer", "tok", "--out", "store")
        cli("data", "prepare", "--source", "other.jsonl", "--tokenizer", "tok", "--out", "other")
    finally:
        os.chdir(cwd)
    cli(*train(root, root / "run"))
    cli("export", root / "run", "--out", root / "export")
    results = root / "results"
    results.mkdir()
    (results / "a.json").write_text(json.dumps({"task": "lm", "model": "a", "metrics": {"perplexity": 9.5},
                                                "seed": 0, "n": 100, "kind": "encoder", "parameters": 1000}))
    return root


def train(world, out, *extra):
    return ["train", "--recipe", world / "recipe.yaml", "--store", world / "store", "--out", out,
            "--objective", "mlm", "--no-progress", *extra]


def refused(capsys, argv, roots, *needles) -> str:
    """`twofold ARGV` exits 2 with one line on stderr holding `needles`, and writes nothing under `roots`."""
    trees = [Tree(root) for root in roots]
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("twofold: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert str(needle) in err, err
    for tree in trees:
        tree.assert_unchanged()
    return err


def copy_run(world, tmp_path, drop_final=True):
    """The run and its store under tmp_path (the paths it records rewritten); without its final
    checkpoint it is a run that was interrupted at the end of pretraining."""
    shutil.copytree(world / "store", tmp_path / "store")
    shutil.copytree(world / "run", tmp_path / "run")
    for file in [tmp_path / "run" / "run.json", *(tmp_path / "run").glob("*/data_order/loader.json")]:
        file.write_text(file.read_text().replace(str(world / "store"), str(tmp_path / "store")))
    if drop_final:
        shutil.rmtree(tmp_path / "run" / "checkpoints" / CHECKPOINTS[-1])
    return tmp_path / "run"


def torn(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ------------------------------------------------------------------ 1, 7, 8: where outputs go


def command_writing(kind, world, out):
    return {
        "prepare": ["data", "prepare", "--source", world / "corpus.jsonl", "--tokenizer", world / "tok", "--out", out],
        "tokenizer": ["data", "tokenizer", "train", "--source", world / "corpus.jsonl", "--vocab-size", 300,
                      "--out", out],
        "train": train(world, out),
        "export": ["export", world / "run", "--out", out],
        "eval": ["eval", world / "export", "--task", "lm", "--quick", "--out", out],
        "compare": ["compare", world / "results", "--out", out],
        "demo": ["demo", "--out", out, "--no-progress"],
    }[kind]


@pytest.mark.parametrize("kind", ["prepare", "tokenizer", "train", "export", "eval", "compare", "demo"])
def test_out_naming_an_existing_file_is_refused(tmp_path, world, capsys, kind):
    out = tmp_path / "notes.txt"
    out.write_text("my notes\n")
    argv = command_writing(kind, world, out) + (["--overwrite"] if kind in ("prepare", "export") else [])
    refused(capsys, argv, [tmp_path, world], f"{out}: is a file, not a folder", "--out names a folder")


@pytest.mark.parametrize("kind", ["prepare", "tokenizer", "train", "export", "demo"])
def test_out_naming_a_folder_of_other_files_is_refused_even_with_overwrite(tmp_path, world, capsys, kind):
    out = tmp_path / "papers"
    out.mkdir()
    (out / "draft.tex").write_text("\\section{}\n")
    argv = command_writing(kind, world, out) + (["--overwrite"] if kind in ("prepare", "export") else [])
    refused(capsys, argv, [tmp_path, world], out, "holds other files")


def test_overwrite_replaces_a_store_and_without_it_a_store_is_kept(tmp_path, world, capsys):
    shutil.copytree(world / "other", tmp_path / "store")
    argv = command_writing("prepare", world, tmp_path / "store")
    refused(capsys, argv, [tmp_path], "already holds a token store", "--overwrite")
    cli(*argv, "--overwrite")
    assert TokenStore(tmp_path / "store").fingerprint == TokenStore(world / "store").fingerprint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no .old or .partial left


@pytest.mark.parametrize("kind", ["prepare", "tokenizer", "train", "export", "eval", "compare", "demo"])
def test_a_read_only_location_is_refused_before_any_work(world, read_only_dir, capsys, kind):
    refused(capsys, command_writing(kind, world, read_only_dir / "out"), [read_only_dir, world],
            read_only_dir, "not writable")


# ------------------------------------------------------------------ 2, 11: the data of a run


def test_a_refused_resume_writes_nothing(tmp_path, world, capsys):
    run = copy_run(world, tmp_path)
    shutil.rmtree(tmp_path / "store")
    shutil.copytree(world / "other", tmp_path / "store")  # another corpus where the run's store was
    refused(capsys, ["train", "--resume", run, "--no-progress"], [tmp_path, world],
            "token store differs from the checkpoint's")
    # put the right store back: the batch order log still describes it
    shutil.rmtree(tmp_path / "store")
    shutil.copytree(world / "store", tmp_path / "store")
    cli("data", "show-batch", run / "pretrain", "--step", 1)
    assert "step 1 of" in capsys.readouterr().out


def test_show_batch_says_when_the_store_changed(tmp_path, world, capsys):
    run = copy_run(world, tmp_path, drop_final=False)
    shutil.rmtree(tmp_path / "store")
    shutil.copytree(world / "other", tmp_path / "store")
    refused(capsys, ["data", "show-batch", run / "pretrain", "--step", 1], [tmp_path, world],
            "the stores were rebuilt or replaced")
    # a log whose loader.json names the replacement (as a refused resume once rewrote it)
    loader = run / "pretrain" / "data_order" / "loader.json"
    description = json.loads(loader.read_text())
    description["fingerprint"] = TokenStore(tmp_path / "store").fingerprint
    loader.write_text(json.dumps(description))
    refused(capsys, ["data", "show-batch", run / "pretrain", "--step", 3], [tmp_path, world],
            "the store changed since the run")


# ------------------------------------------------------------------ 3, 6: what a store promises


def edit_manifest(store, change):
    manifest = json.loads((store / "manifest.json").read_text())
    change(manifest)
    (store / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("edit, file, message", [
    (lambda m: m.update(fingerprint="0" * 64), "manifest.json", "the fingerprint does not match"),
    (lambda m: m.update(num_tokens=m["num_tokens"] - 100), "tokens.bin", "bytes where manifest.json promises"),
    (lambda m: m.update(num_documents=m["num_documents"] + 1), "offsets.bin", "bytes where manifest.json promises"),
    (lambda m: m["groups"][0].update(tokens=m["groups"][0]["tokens"] * 2), "manifest.json", "the groups hold"),
    (lambda m: m["tokenizer"].update(vocab_size=100), "manifest.json", "does not fit vocab_size 100"),
    (lambda m: m.pop("groups"), "manifest.json", "lacks 'groups'"),
], ids=["fingerprint", "num_tokens", "num_documents", "group tokens", "vocab_size", "no groups"])
def test_an_edited_manifest_is_refused_by_info_verify_and_by_training(tmp_path, world, capsys, edit, file, message):
    store = tmp_path / "store"
    shutil.copytree(world / "store", store)
    edit_manifest(store, edit)
    refused(capsys, ["data", "info", store, "--verify"], [tmp_path], f"{store / file}: ", message)
    argv = train(world, tmp_path / "run")
    argv[argv.index(world / "store")] = store
    refused(capsys, argv, [tmp_path, world], f"{store / file}: ", message)


def test_a_named_stdlib_source_is_counted_under_its_name(tmp_path, world):
    """The manifest counted a stdlib source named otherwise (the demo's stdlib-train) as empty."""
    cli("data", "prepare", "--source", "path=stdlib,name=std,packages=json", "--tokenizer", world / "tok",
        "--out", tmp_path / "store")
    store = TokenStore(tmp_path / "store")
    assert store.manifest["sources"][0]["name"] == "std"
    assert store.manifest["sources"][0]["documents"] == store.num_documents > 0
    store.verify()


def test_source_counts_are_checked_by_verify(tmp_path, world, capsys):
    store = tmp_path / "store"
    shutil.copytree(world / "store", store)
    edit_manifest(store, lambda m: m["sources"][0].update(documents=1))
    cli("data", "info", store)  # provenance only: opening the store does not read doc_sources.bin
    refused(capsys, ["data", "info", store, "--verify"], [tmp_path],
            f"{store / 'doc_sources.bin'}: the documents and tokens per entry differ from the sources of manifest.json")


@pytest.mark.parametrize("name", ["tokens.bin", "offsets.bin", "doc_groups.bin"])
def test_a_truncated_data_file_is_refused_on_open(tmp_path, world, capsys, name):
    store = tmp_path / "store"
    shutil.copytree(world / "store", store)
    data = (store / name).read_bytes()
    (store / name).write_bytes(data[:-16])
    with pytest.raises(TwofoldError, match=f"{name}: .* bytes where manifest.json promises .* \\(truncated\\)"):
        TokenStore(store)
    argv = train(world, tmp_path / "run")
    argv[argv.index(world / "store")] = store
    refused(capsys, argv, [tmp_path, world], store / name, "truncated")


def test_token_ids_outside_the_vocabulary_stop_training_before_the_step(tmp_path, world, capsys):
    store = tmp_path / "store"
    shutil.copytree(world / "store", store)
    tokens = np.memmap(store / "tokens.bin", dtype=np.uint16, mode="r+")
    offsets = np.fromfile(store / "offsets.bin", dtype=np.int64)
    tokens[offsets[:-1][np.diff(offsets) > 0]] = 60_000  # every document's first token: past any vocabulary
    tokens.flush()
    del tokens
    argv = train(world, tmp_path / "run")
    argv[argv.index(world / "store")] = store
    tree = Tree(tmp_path)
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{store / 'tokens.bin'}: document" in err and "token id 60000" in err, err
    tree.assert_kept()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # no step was taken
    assert not checkpoint.list_checkpoints(tmp_path / "run" / "checkpoints")
    refused(capsys, ["data", "info", store, "--verify"], [tmp_path], "tokens.bin: checksum differs")


@pytest.mark.parametrize("argv, message", [
    (["--workers", "-1"], "--workers: -1 is too small: it must be at least 0"),
    (["--keep-last", "0"], "--keep-last: 0 is too small"),
    (["--micro-batch", "two"], "--micro-batch: 'two' is not a whole number"),
])
def test_out_of_range_numbers_are_refused(tmp_path, world, capsys, argv, message):
    refused(capsys, train(world, tmp_path / "run", *argv), [tmp_path, world], message)


# ------------------------------------------------------------------ 4: text that is not text


def test_lone_surrogates_are_replaced_and_counted_like_invalid_utf8(tmp_path, world, capsys):
    corpus = tmp_path / "emoji.jsonl"
    corpus.write_text('{"text": "half an emoji \\ud83d here", "id": "x\\udc00", "lang": "en\\ud800"}\n'
                      '{"text": "a whole one \\ud83d\\ude00", "id": "y", "lang": "en"}\n')
    cli("data", "prepare", "--source", f"path={corpus},id_field=id,group_field=lang", "--tokenizer", world / "tok",
        "--out", tmp_path / "store")
    store = TokenStore(tmp_path / "store")
    assert store.manifest["sources"][0]["replaced_characters"] == 3
    assert store.doc_ids == ["x\ufffd", "y"] and store.groups == ["en\ufffd", "en"]
    from twofold.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(world / "tok")
    assert tokenizer.decode(store.document(0)) == "half an emoji \ufffd here"
    assert tokenizer.decode(store.document(1)) == "a whole one \U0001F600"


# ------------------------------------------------------------------ 5: every JSON file read back


def _pair(tmp_path, world):
    (tmp_path / "pair").mkdir()
    (tmp_path / "pair" / "pair.json").write_text('{"members": ["encoder", "decoder"], "reci')
    return tmp_path / "pair" / "pair.json", ["train", "--resume", tmp_path / "pair"]


JSON_FILES = {
    "store manifest": lambda t, w: (t / "store" / "manifest.json", ["data", "info", t / "store"]),
    "run.json": lambda t, w: (t / "run" / "run.json", ["train", "--resume", t / "run"]),
    "pair.json": _pair,
    "loader.json": lambda t, w: (t / "run" / "pretrain" / "data_order" / "loader.json",
                                 ["data", "show-batch", t / "run" / "pretrain", "--step", 0]),
    "checkpoint state.json": lambda t, w: (t / "run" / "checkpoints" / CHECKPOINTS[-1] / "state.json",
                                           ["eval", t / "run", "--task", "lm", "--quick", "--out", t / "eval"]),
    "tokenizer_config.json": lambda t, w: (t / "tok" / "tokenizer_config.json",
                                           ["data", "prepare", "--source", w / "corpus.jsonl", "--tokenizer",
                                            t / "tok", "--out", t / "new"]),
    "model config.json": lambda t, w: (t / "export" / "config.json", ["model", "info", t / "export"]),
    "result": lambda t, w: (t / "results" / "a.json", ["compare", t / "results" / "a.json", "--out", t / "c"]),
}


@pytest.mark.parametrize("what", JSON_FILES)
def test_every_json_file_read_back_that_is_torn_is_one_line(tmp_path, world, capsys, what):
    copy_run(world, tmp_path, drop_final=False)
    for name in ("tok", "export", "results"):
        shutil.copytree(world / name, tmp_path / name)
    file, argv = JSON_FILES[what](tmp_path, world)
    if file.name != "pair.json":
        torn(file)
    refused(capsys, argv, [tmp_path, world], file, "not valid JSON")


@pytest.mark.parametrize("what", ["mixture", "recipe"])
def test_a_yaml_file_that_is_not_yaml_is_one_line(tmp_path, world, capsys, what):
    broken = tmp_path / f"{what}.yaml"
    broken.write_text("weights: {en: 1\n  fr: [\n")
    argv = {"mixture": ["data", "plan", "--store", world / "store", "--mixture", broken, "--tokens", "1M",
                        "--png", tmp_path / "plan.png"],
            "recipe": ["train", "--recipe", broken, "--store", world / "store", "--out", tmp_path / "run",
                       "--objective", "mlm"]}[what]
    refused(capsys, argv, [tmp_path, world], broken, "not valid YAML")


# ------------------------------------------------------------------ 9: a full disk


def enospc(path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_disk_full_in_training_keeps_the_checkpoints_before_it_and_resume_is_exact(
        tmp_path, world, capsys, monkeypatch):
    real, saved = safetensors.torch.save_file, []

    def fills_up(tensors, path, metadata=None):  # the second checkpoint meets a full disk
        if len(saved) == 3:  # safetensors reports it as it does on a real full disk
            raise SafetensorError(f"Error while serializing: I/O error: No space left on device (os error "
                                  f"{errno.ENOSPC})")
        saved.append(path)
        real(tensors, path, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", fills_up)
    out = tmp_path / "run"
    assert main([str(a) for a in train(world, out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk full" in err and f"checkpoint {CHECKPOINTS[0]} is intact" in err, err
    assert [p.name for p in (out / "checkpoints").iterdir()] == [CHECKPOINTS[0]]  # no .tmp-* left behind
    checkpoint.verify(out / "checkpoints" / CHECKPOINTS[0])
    monkeypatch.undo()  # space freed
    cli("train", "--resume", out, "--no-progress")
    final, expected = (load_file(str(r / "checkpoints" / CHECKPOINTS[-1] / "model.safetensors"))
                       for r in (out, world / "run"))
    assert final.keys() == expected.keys() and all(torch.equal(final[k], expected[k]) for k in final)


def test_disk_full_in_prepare_keeps_the_store_it_would_replace(tmp_path, world, capsys, monkeypatch):
    from twofold.data import store as store_module

    shutil.copytree(world / "other", tmp_path / "store")
    real = store_module._HashedFile.write

    def fills_up(self, data):
        if self.handle.name.endswith("tokens.bin") and self.handle.tell() > 2000:
            raise enospc(self.handle.name)
        real(self, data)

    monkeypatch.setattr(store_module._HashedFile, "write", fills_up)
    refused(capsys, command_writing("prepare", world, tmp_path / "store") + ["--overwrite"], [tmp_path, world],
            f"{tmp_path / 'store' / 'tokens.bin'}: No space left on device; free space")


def test_disk_full_in_export_keeps_the_export_it_would_replace(tmp_path, world, capsys, monkeypatch):
    shutil.copytree(world / "export", tmp_path / "export")

    def full(tensors, path, metadata=None):
        raise SafetensorError(f"Error while serializing: I/O error: No space left on device (os error {errno.ENOSPC})")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    refused(capsys, ["export", world / "run", "--out", tmp_path / "export", "--overwrite"], [tmp_path, world],
            f"{tmp_path / 'export' / 'model.safetensors'}: No space left on device")


def _limit_file_size():  # in the child: files may not grow past 64 KB; the kernel refuses with EFBIG
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))


@pytest.mark.parametrize("kind, file", [("tokenizer", "tokenizer.json"), ("export", "model.safetensors")])
def test_a_write_the_kernel_refuses_is_one_line_and_leaves_nothing(tmp_path, world, kind, file):
    """A real write error from the Rust writers (tokenizers, safetensors), not a simulated one."""
    import sys

    out = tmp_path / "out"
    argv = [str(a) for a in command_writing(kind, world, out)]
    if kind == "tokenizer":
        argv[argv.index("300")] = "2000"  # a tokenizer.json larger than the limit
    tree = Tree(tmp_path)
    result = subprocess.run([sys.executable, "-m", "twofold", *argv], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, preexec_fn=_limit_file_size)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"twofold: error: {out / file}: File too large; the file system refuses files this " \
                            "large; write elsewhere\n"
    tree.assert_unchanged()


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 2 MB file system (tmpfs): room for one checkpoint of the tiny model, not two."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                                           capture_output=True).returncode:
        pytest.skip("needs root and permission to mount a tmpfs")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.slow
def test_a_real_full_disk_in_training(tmp_path, world, tiny_disk, capsys):
    out = tiny_disk / "run"
    assert main([str(a) for a in train(world, out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk full" in err and f"checkpoint {CHECKPOINTS[0]} is intact" in err, err
    assert [p.name for p in (out / "checkpoints").iterdir()] == [CHECKPOINTS[0]]
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)  # space freed
    cli("train", "--resume", out, "--no-progress")
    final, expected = (load_file(str(r / "checkpoints" / CHECKPOINTS[-1] / "model.safetensors"))
                       for r in (out, world / "run"))
    assert all(torch.equal(final[k], expected[k]) for k in expected)


# ------------------------------------------------------------------ 10, 12, 13, 14


@pytest.mark.parametrize("value", ["high", None, True])
def test_compare_refuses_a_metric_that_is_not_a_number(tmp_path, world, capsys, value):
    shutil.copytree(world / "results", tmp_path / "results")
    file = tmp_path / "results" / "b.json"
    file.write_text(json.dumps({"task": "lm", "model": "b", "metrics": {"perplexity": value}, "seed": 0, "n": 1}))
    refused(capsys, ["compare", tmp_path / "results", "--out", tmp_path / "c"], [tmp_path, world],
            file, "metric 'perplexity' is", "not a number")


def test_an_unknown_model_field_is_named_with_the_valid_ones():
    from twofold.model import preset

    with pytest.raises(TwofoldError, match="unknown field hidden_sise; valid fields: vocab_size, hidden_size"):
        preset("tiny", hidden_sise=3)
    with pytest.raises(TwofoldError, match="hidden_size is '64'; it must be int"):
        preset("tiny", hidden_size="64")


def test_a_relative_tokenizer_path_resolves_from_any_directory(tmp_path, world, capsys, monkeypatch):
    assert TokenStore(world / "store").manifest["tokenizer"]["path"] == str(world / "tok" / "tokenizer.json")
    monkeypatch.chdir(tmp_path)
    cli("export", world / "run", "--out", "hf")
    assert "warning" not in capsys.readouterr().err
    assert (tmp_path / "hf" / "tokenizer.json").read_bytes() == (world / "tok" / "tokenizer.json").read_bytes()


def test_the_checkpoint_fallback_warning_is_one_line(tmp_path, world, capsys):
    run = copy_run(world, tmp_path, drop_final=False)
    damaged = run / "checkpoints" / CHECKPOINTS[2] / "model.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:-8])
    capsys.readouterr()
    cli("train", "--resume", run, "--no-progress")
    err = capsys.readouterr().err
    assert err == (f"twofold: warning: resuming from {CHECKPOINTS[1]} instead: checkpoint "
                   f"{damaged.parent}: model.safetensors does not match its checksum (truncated or altered)\n")


# ------------------------------------------------------------------ numbers: finite and in range

# Every numeric flag of every command, with values outside its range: (command line before the flag, flag, values).
# The refusal comes while parsing, so the models and stores named need not exist.
NUMERIC_FLAGS = [
    (["finetune", "embed", "m", "--data", "stdlib"], "--lr", ["nan", "-1e-5", "0", "", "1e-5,inf", "1e-5,,2e-5"]),
    (["finetune", "classify", "m", "--data", "stdlib"], "--epochs", ["nan", "inf", "0", "-1"]),
    (["finetune", "embed", "m", "--data", "stdlib"], "--batch-size", ["0", "-8", "1.5"]),
    (["finetune", "embed", "m", "--data", "stdlib"], "--mini-batch-size", ["0"]),
    (["finetune", "embed", "m", "--data", "stdlib"], "--warmup", ["1", "-0.1", "nan"]),
    (["finetune", "embed", "m", "--data", "stdlib"], "--max-length", ["0"]),
    (["finetune", "embed", "m", "--data", "stdlib"], "--hard-negatives", ["-1"]),
    (["finetune", "embed", "m", "--data", "stdlib"], "--seed", ["-1"]),
    (["finetune", "embed", "m", "--data", "stdlib"], "--max-train", ["-1", "0"]),
    (["merge", "a", "b", "--method", "linear"], "--weights", ["1,inf", "1,nan", "1,-1", "1,0", ""]),
    (["merge", "a", "b", "--base", "c"], "--density", ["0", "1.5", "nan"]),
    (["merge", "a", "b", "--base", "c"], "--lambda", ["0", "-1", "nan", "inf"]),
    (["recipe", "show", "demo"], "--scale", ["0", "-1", "nan", "inf"]),
    (["recipe", "show", "demo"], "--budget", ["0", "-1", "nan", "inf"]),
    (["train", "--recipe", "demo", "--store", "s", "--objective", "mlm"], "--scale", ["-1", "nan"]),
    (["train", "--recipe", "demo", "--store", "s", "--objective", "mlm"], "--eval-every", ["0", "nan"]),
    (["eval", "m"], "--learning-rate", ["nan", "0", "-1e-4"]),
    (["eval", "m"], "--epochs", ["0"]),
    (["eval", "m"], "--max-length", ["0"]),
    (["eval", "m", "--suite", "glue"], "--lr", ["nan", "1e-5,inf", ""]),
    (["eval", "m", "--suite", "glue"], "--limit", ["0"]),
    (["eval", "m", "--suite", "rank1"], "--depth", ["0"]),
    (["eval", "m", "--suite", "rank1"], "--think-tokens", ["-1"]),
    (["eval-languages", "m", "--store", "s"], "--rate", ["0", "1", "nan"]),
    (["eval-languages", "m", "--store", "s"], "--seq-len", ["3"]),
    (["eval-languages", "m", "--store", "s"], "--sequences", ["0"]),
    (["data", "plan", "--store", "s"], "--temperature", ["0", "-0.5", "nan", "inf"]),
    (["data", "plan", "--store", "s"], "--tokens", ["0", "nan"]),
    (["demo"], "--budget", ["0", "nan"]),
]
NUMERIC_CASES = [(argv, flag, value) for argv, flag, values in NUMERIC_FLAGS for value in values]


@pytest.mark.parametrize("argv, flag, value", NUMERIC_CASES,
                         ids=[f"{argv[0]}{flag}={value}" for argv, flag, value in NUMERIC_CASES])
def test_every_numeric_flag_refuses_values_out_of_range(tmp_path, capsys, argv, flag, value):
    err = refused(capsys, [*argv, f"{flag}={value}", "--out", tmp_path / "out"], [tmp_path], f"{flag}: ")
    assert any(word in err for word in ("out of range", "too small", "not a")), err


def test_numeric_flags_take_the_edges_of_their_range(tmp_path):
    """The ranges are not drawn too tight: the values at their closed ends parse."""
    from twofold.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["finetune", "embed", "m", "--data", "stdlib", "--out", "o", "--warmup", "0",
                              "--hard-negatives", "0", "--seed", "0", "--lr", "1e-5,3e-5"])
    assert (args.warmup_ratio, args.hard_negatives, args.lr) == (0.0, 0, (1e-5, 3e-5))
    args = parser.parse_args(["merge", "a", "b", "--base", "c", "--density", "1,0.5", "--out", "o"])
    assert args.density == (1.0, 0.5)


# Recipe values out of range, as `--set` gives them: each refused naming the key.
RECIPE_VALUES = [
    ("phase.decay.lr_min_ratio", ["2", "0.6", "-0.1", ".nan"]),  # the decay starts at 0.5: it may not rise
    ("phase.decay.lr_start_ratio", ["1.5", "0", ".inf"]),
    ("phase.pretrain.lr_start_ratio", ["2"]),
    ("phase.pretrain.mask_rate", ["1", "-0.1", ".nan"]),
    ("phase.pretrain.tokens", ["0", "-5", ".inf"]),
    ("phase.pretrain.seq_len", ["2"]),
    ("phase.pretrain.batch_sequences", ["0"]),
    ("phase.pretrain.lr_warmup_tokens", ["-1"]),
    ("phase.pretrain.checkpoint_every_tokens", ["0"]),
    ("phase.pretrain.lr", ["0", ".nan"]),
    ("phase.pretrain.rope_theta_global", ["0"]),
    ("optimizer.lr", ["0", "-1", ".inf", ".nan"]),
    ("optimizer.eps", ["0"]),
    ("optimizer.weight_decay", ["-1"]),
    ("optimizer.grad_clip", ["0"]),
    ("dropout.mlp", ["1", "-0.1"]),
    ("seed", ["-1"]),
]
RECIPE_CASES = [(key, value) for key, values in RECIPE_VALUES for value in values]


@pytest.mark.parametrize("key, value", RECIPE_CASES, ids=[f"{k}={v}" for k, v in RECIPE_CASES])
def test_every_recipe_value_out_of_range_is_refused_naming_its_key(tmp_path, capsys, key, value):
    refused(capsys, ["recipe", "show", "demo", "--set", f"{key}={value}", "--out", tmp_path / "plot.png"],
            [tmp_path], f"{key} = ")


def test_a_decay_may_end_at_its_start_and_a_constant_phase_ignores_its_floor(tmp_path, capsys):
    cli("recipe", "show", "demo", "--set", "phase.decay.lr_min_ratio=0.5", "--out", tmp_path / "a.png")
    cli("recipe", "show", "demo", "--set", "phase.pretrain.lr_min_ratio=0.9", "--out", tmp_path / "b.png")


def test_scale_and_budget_together_are_refused(tmp_path, capsys):
    refused(capsys, ["recipe", "show", "demo", "--scale", "2", "--budget", "1M", "--out", tmp_path / "p.png"],
            [tmp_path], "--scale 2 and --budget 1000000")


# ------------------------------------------------------------------ flags that would change nothing

IDLE_FLAGS = [
    (["eval", "m", "--tasks", "sst2"], "--tasks applies to the published suites"),
    (["eval", "m", "--limit", "5"], "--limit applies to the published suites"),
    (["eval", "m", "--data-dir", "d"], "--data-dir applies to the published suites"),
    (["eval", "m", "--depth", "10"], "--depth applies to the published suites"),
    (["eval", "m", "--suite", "glue", "--think-tokens", "8"], "--think-tokens applies to --suite rank1"),
    (["eval", "m", "--suite", "lm-eval", "--first-stage", "bm25"], "--first-stage applies to --suite rank1"),
    (["eval", "m", "--suite", "rank1", "--num-fewshot", "2"], "--num-fewshot applies to --suite lm-eval"),
    (["eval", "m", "--suite", "lm-eval", "--finetune-data", "stdlib"], "--finetune-data applies to --suite mteb"),
    (["eval", "m", "--suite", "rank1", "--lr", "1e-5"], "--lr applies to --suite glue"),
    (["eval", "m", "--suite", "glue", "--quick"], "--quick sizes the built-in tasks"),
    (["eval", "m", "--suite", "glue", "--learning-rate", "1e-4"],
     "--learning-rate applies to the built-in tasks (--task), not to --suite glue; drop --learning-rate"),
    (["eval", "m", "--suite", "mteb", "--max-queries", "500", "--pooling", "mean"], "drop --max-queries/--pooling"),
    (["eval", "m", "--suite", "rank1", "--beir", "d"], "--beir applies to the built-in tasks"),
    (["eval", "m", "--suite", "glue", "--generate-data", "stdlib"], "--generate-data applies to the built-in tasks"),
    (["finetune", "embed", "m", "--data", "stdlib", "--text-fields", "a"], "--text-fields applies to finetune"),
    (["finetune", "rerank", "m", "--data", "stdlib", "--label-field", "y"], "--label-field applies to finetune"),
    (["finetune", "embed", "m", "--data", "stdlib", "--regression"], "--regression applies to finetune classify"),
    (["finetune", "sparse", "m", "--data", "stdlib", "--pooling", "mean"], "--pooling applies to finetune embed"),
    (["finetune", "classify", "m", "--data", "stdlib", "--hard-negatives", "2"], "--hard-negatives applies to"),
    (["finetune", "embed", "m", "--data", "x.jsonl", "--packages", "json"], "--packages picks packages of"),
    (["finetune", "classify", "m", "--data", "stdlib", "--hard-negatives", "0"], "--hard-negatives applies to"),
    (["finetune", "classify", "m", "--data", "stdlib", "--regression", "--text-fields", "sentence", "--label-field",
      "label", "--pooling", "mean", "--mini-batch-size", "32"],
     "--mini-batch-size applies to finetune embed and colbert, not classify; drop it"),
    (["finetune", "rerank", "m", "--data", "stdlib", "--mini-batch-size", "32"], "embed and colbert, not rerank"),
    (["finetune", "sparse", "m", "--data", "stdlib", "--mini-batch-size", "8"], "embed and colbert, not sparse"),
    (["finetune", "embed", "m", "--data", "stdlib", "--template", "{source}"], "--template applies to finetune gen"),
    (["finetune", "classify", "m", "--data", "stdlib", "--max-new-tokens", "8"], "--max-new-tokens applies to"),
    (["merge", "a", "--method", "linear"], "one MODEL (a) is not a merge"),
    (["merge", "a", "b", "--method", "linear", "--lambda", "2"], "--lambda scales TIES' task vector"),
]


@pytest.mark.parametrize("argv, message", IDLE_FLAGS, ids=[" ".join(a) for a, _ in IDLE_FLAGS])
def test_a_flag_that_would_change_nothing_is_refused(tmp_path, capsys, argv, message):
    refused(capsys, [*argv, "--out", tmp_path / "out"], [tmp_path], message)


def test_a_cached_loss_flag_is_taken_where_a_cached_loss_reads_it():
    from twofold.cli import build_parser
    from twofold.commands.finetune import check_flags_apply

    for task in ("embed", "colbert"):
        check_flags_apply(build_parser().parse_args(["finetune", task, "m", "--data", "stdlib", "--out", "o",
                                                     "--mini-batch-size", "32", "--hard-negatives", "0"]))


DATA_PLAN_IDLE = [
    (["--tokens", "1M", "--batch-scale", "1"], "plan: --batch-scale changes the recipe of --recipe, which is not "),
    (["--tokens", "1M", "--size", "17m", "--set", "seed=1"], "drop --size/--set or add --recipe"),
    (["--tokens", "1M", "--mixture", "m.yaml", "--include", "a"], "--mixture FILE holds the weights, temperature "
                                                                  "and groups; drop --include"),
    (["--recipe", "demo", "--include", ""], "drop --include (or use --set)"),
]


@pytest.mark.parametrize("argv, message", DATA_PLAN_IDLE, ids=[" ".join(a) for a, _ in DATA_PLAN_IDLE])
def test_a_data_plan_flag_that_would_change_nothing_is_refused(tmp_path, capsys, argv, message):
    refused(capsys, ["data", "plan", "--store", tmp_path / "store", *argv], [tmp_path], message)


# Every flag a run fixes when it starts, with the value it takes when left out where it has one:
# given on --resume, even so, it would change nothing.
FIXED_FLAGS = [["--recipe", "demo"], ["--size", "17m"], ["--variant", "eng"], ["--scale", "1"],
               ["--budget", "1M"], ["--batch-scale", "1"], ["--set", "seed=21"], ["--store", "s"], ["--out", "o"],
               ["--pair"], ["--objective", "mlm"], ["--init-from", "m"], ["--branch-from", "r"],
               ["--phase", "pretrain"], ["--order", "d"], ["--eval-store", "s"], ["--eval-every", "1K"],
               ["--eval-sequences", "32"], ["--micro-batch", "8"], ["--keep-last", "2"], ["--save-every-steps", "1"],
               ["--parallel", "ddp"], ["--precision", "auto"], ["--compile"], ["--no-compile"], ["--log-every", "1"],
               ["--workers", "0"], ["--tensorboard"]]
READ_ON_RESUME = {"--resume", "--device", "--no-progress", "--reseed-rng", "-h"}


@pytest.mark.parametrize("extra", FIXED_FLAGS, ids=[" ".join(f) for f in FIXED_FLAGS])
def test_resume_refuses_every_flag_the_run_fixed_even_at_its_default_value(tmp_path, world, capsys, extra):
    refused(capsys, ["train", "--resume", world / "run", "--no-progress", *extra], [world],
            f"{extra[0].replace('--no-compile', '--compile/--no-compile')}", "would change nothing")


def test_a_fresh_run_records_the_defaults_of_flags_left_out_and_the_values_given(tmp_path, world):
    """Left-out flags are None on the command line; the run records Options' defaults for them."""
    from twofold.train.loop import Options

    left_out = json.loads((world / "run" / "run.json").read_text())["options"]
    defaults = Options(stores=())
    assert {k: left_out[k] for k in ("objective", "eval_sequences", "keep_last", "parallel", "precision", "compile",
                                     "num_workers", "tensorboard")} == \
        {k: getattr(defaults, k) for k in ("objective", "eval_sequences", "keep_last", "parallel", "precision",
                                           "compile", "num_workers", "tensorboard")}
    cli(*train(world, tmp_path / "run", "--keep-last", "3", "--eval-sequences", "4", "--precision", "fp32",
               "--no-compile", "--batch-scale", "1"))
    given = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (given["options"]["keep_last"], given["options"]["eval_sequences"], given["options"]["precision"],
            given["options"]["compile"]) == (3, 4, "fp32", False)
    # --batch-scale 1 trains the recipe as left out
    assert given["recipe"] == json.loads((world / "run" / "run.json").read_text())["recipe"]


def test_every_train_flag_is_fixed_at_the_start_or_read_on_resume():
    from twofold.cli import build_parser
    from twofold.commands.train import FIXED_AT_START

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = {flag for action in commands.choices["train"]._actions for flag in action.option_strings}
    assert flags - READ_ON_RESUME - {"--help"} == {f[0] for f in FIXED_FLAGS}
    assert {flag for flags in FIXED_AT_START.values() for flag in flags.split("/")} == {f[0] for f in FIXED_FLAGS}


def test_reseed_rng_on_a_run_that_needs_no_fresh_streams_is_refused(tmp_path, world, capsys):
    run = copy_run(world, tmp_path, drop_final=False)
    refused(capsys, ["train", "--resume", run, "--no-progress", "--reseed-rng"], [tmp_path],
            "--reseed-rng: ", "would change nothing")


# ------------------------------------------------------------------ data read differently from what was written


def test_a_column_no_example_reads_is_named_in_a_warning(tmp_path):
    from twofold.finetune.datasets import load_retrieval

    rows = [{"query": f"q{i}", "positive": f"p{i}", "hard_negative": f"n{i}", "id": i} for i in range(40)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.warns(UserWarning, match=r"column\(s\) 'hard_negative' \(40 rows\) not read") as caught:
        data = load_retrieval(str(path))
    assert len(caught) == 1 and "'id'" not in str(caught[0].message)
    assert all(set(example) == {"query", "positive"} for example in data.train)


def test_a_negatives_column_the_reader_knows_gives_no_warning(tmp_path, recwarn):
    from twofold.finetune.datasets import load_retrieval

    rows = [{"anchor": f"q{i}", "positive": f"p{i}", "negative": f"n{i}", "query_id": i} for i in range(40)]
    path = tmp_path / "triplets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_retrieval(str(path))
    assert not [w for w in recwarn if "not read" in str(w.message)]
    assert all(example["negative_1"].startswith("n") for example in data.train)


def test_a_choice_flag_names_its_choices(tmp_path, capsys):
    refused(capsys, ["eval", "m", "--pooling", "max", "--out", tmp_path / "out"], [tmp_path],
            "--pooling: invalid choice: 'max'", "'cls', 'mean', 'last'")


@pytest.mark.parametrize("budget", ["1", "5K"])
def test_a_demo_budget_below_its_minimum_says_the_minimum(tmp_path, capsys, budget):
    """Not the scaled recipe's complaint about a `--set` key, which `demo` does not have."""
    err = refused(capsys, ["demo", "--budget", budget, "--out", tmp_path / "demo"], [tmp_path],
                  "is too small", "takes --budget")
    assert "--set" not in err


def test_an_interrupt_that_comes_back_wrapped_is_still_an_interrupt(monkeypatch, capsys):
    """A SIGTERM that lands while a library makes a class: Python 3.11 wraps it (RuntimeError from
    `__set_name__`), and transformers' lazy import wraps that again. Seen once in a loaded test run."""
    import twofold.commands.languages as languages

    class Interrupts:
        def __set_name__(self, owner, name):
            raise KeyboardInterrupt

    def work(args):
        try:
            type("Made", (), {"field": Interrupts()})  # the class a library module defines at import
        except Exception as error:
            raise RuntimeError("Could not import module 'Trainer'") from error

    def other_failure(args):
        raise RuntimeError("a bug, not an interrupt")

    argv = ["eval-languages", "m", "--store", "s"]
    monkeypatch.setattr(languages, "run_eval_languages", work)
    assert main(argv) == 130 and capsys.readouterr().err == "twofold: interrupted\n"
    monkeypatch.setattr(languages, "run_eval_languages", other_failure)
    with pytest.raises(RuntimeError, match="a bug, not an interrupt"):
        main(argv)
