"""`twofold.models`: what each way of naming a model names, on real runs, checkpoints and exports,
and the one line it says for a name of a kind the command does not take."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from tests.eval.conftest import tagged_run, tiny_model

from twofold.cli import main
from twofold.errors import TwofoldError
from twofold.hf import save_pretrained
from twofold.models import CHECKPOINT, HF, HUB, PAIR, RUN, models_under, pair_members, resolve
from twofold.train import checkpoint


@pytest.fixture(scope="module")
def house(tmp_path_factory, tokenizer):
    """A run with checkpoints step1 and step2, an HF export, and a pair of exports."""
    root = tmp_path_factory.mktemp("models")
    run = tagged_run(root / "run", tokenizer, causal=False)
    save_pretrained(tiny_model(tokenizer, causal=False), root / "export", tokenizer=tokenizer.source)
    for member, causal in (("encoder", False), ("decoder", True)):
        save_pretrained(tiny_model(tokenizer, causal=causal), root / "pair" / member, tokenizer=tokenizer.source)
    return root, run


def named(ref):
    """A reference as comparable values (a run by its folder)."""
    return ref.given, ref.kind, ref.path, ref.name, ref.run.path if ref.run else None, ref.checkpoint


def weights_of(path):
    return checkpoint.load(path, restore_rng=False).states.model


def same_weights(model, weights) -> bool:
    state = model.state_dict()
    return all(torch.equal(state[name], weights[name]) for name in state if name in weights)


def test_each_name_names_its_model(house):
    root, run = house
    step1, step2 = checkpoint.list_checkpoints(run / "checkpoints")

    newest = resolve(run)
    assert (newest.kind, newest.checkpoint, newest.tag, newest.tokens) == (RUN, step2, "step2", 6000)
    assert same_weights(newest.load(), weights_of(step2))

    tagged = resolve(f"{run}@step1")
    assert (tagged.kind, tagged.checkpoint, tagged.tag, tagged.tokens, tagged.name) == (RUN, step1, "step1", 3000,
                                                                                          "run")
    assert same_weights(tagged.load(), weights_of(step1)) and not same_weights(tagged.load(), weights_of(step2))

    folder = resolve(step1)
    assert (folder.kind, folder.checkpoint, folder.name, folder.run.path) == (CHECKPOINT, step1, "run", run)

    export = resolve(root / "export")
    assert (export.kind, export.path, export.tokenizer()) == (HF, root / "export", root / "export")
    assert resolve(root / "pair").kind == PAIR
    assert resolve("jhu-clsp/ettin-encoder-17m").kind == HUB  # named, not downloaded


def test_a_pair_gives_its_members_named_by_their_side(house):
    root, _ = house
    encoder, decoder = pair_members(root / "pair")
    assert (encoder.name, encoder.path, decoder.name, decoder.path) == (
        "encoder", root / "pair" / "encoder", "decoder", root / "pair" / "decoder")
    assert not encoder.load().config.causal and decoder.load().config.causal


def test_every_checkpoint_under_a_run_is_found_in_order(house):
    _, run = house
    found = models_under(run, all_checkpoints=True)
    assert [(f.tag, f.tokens) for f in found] == [("step1", 3000), ("step2", 6000)]
    assert [f.tag for f in models_under(run)] == ["step2"]


@pytest.mark.parametrize("given, accept, says", [
    ("{root}/pair", (HF, RUN, CHECKPOINT), "is a pair run (or a folder with encoder/ and decoder/); give a Hugging "
                                           "Face model directory, a `twofold train` run (RUN or RUN@TAG) or a "
                                           "checkpoint directory, e.g. {root}/pair/encoder"),
    ("{root}/missing", (HF, RUN), "no such file or directory; give a Hugging Face model directory or a `twofold "
                                  "train` run (RUN or RUN@TAG)"),
    ("{root}/run@decay9", (RUN,), "no checkpoint tagged 'decay9'"),
    ("{root}/export@step1", (HF, RUN), "is no `twofold train` run (no run.json) to take checkpoint 'step1' from"),
    ("{root}", (HF, RUN), "neither a twofold run nor a Hugging Face model directory (no config.json, run.json)"),
    ("org/model", (HF, RUN, CHECKPOINT), "no such file or directory"),  # a hub id where none is taken
])
def test_a_name_of_another_kind_is_one_line_saying_what_to_give(house, given, accept, says):
    root, _ = house
    with pytest.raises(TwofoldError) as error:
        resolve(given.format(root=root), "merge input", accept)
    message = str(error.value)
    assert says.format(root=root) in message and "\n" not in message
    assert message.startswith(f"merge input {given.format(root=root)}") and message.count("merge input") == 1
    assert "None" not in message


def test_init_from_is_named_as_every_command_names_a_model(house, capsys):
    root, _ = house
    argv = ["train", "--recipe", "demo", "--store", str(root / "no-store"), "--out", str(root / "new-run"),
            "--objective", "clm", "--init-from", str(root / "pair")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--init-from" in err and "is a pair run" in err and "\n" not in err
    assert not (root / "new-run").exists()


def test_a_folder_of_models_lists_each_in_name_order(house):
    root, run = house
    found = models_under(root)  # export/ and run/; pair/ is neither a model nor a run
    assert [(f.kind, f.name, f.path, f.tag) for f in found] == [(HF, "export", root / "export", ""),
                                                                (RUN, "run", run, "step2")]
    assert [(f.name, f.tag) for f in models_under(root, all_checkpoints=True)] == [("run", "step1"), ("run", "step2")]
    assert [(f.kind, f.name) for f in models_under(root / "pair")] == [(HF, "decoder"), (HF, "encoder")]


def test_the_newest_checkpoint_may_be_untagged_but_every_checkpoint_means_every_tagged_one(tmp_path, tokenizer):
    run = tagged_run(tmp_path / "run", tokenizer, causal=True)
    model = tiny_model(tokenizer, causal=True)
    checkpoint.save(run / "checkpoints", step=9, states=checkpoint.capture(model), progress={"tokens": 9000},
                    data={}, config=model.config.to_dict(), recipe={})
    assert [(f.tag, f.tokens) for f in models_under(run)] == [(checkpoint.list_checkpoints(run / "checkpoints")[-1]
                                                             .name, 9000)]
    assert [f.tag for f in models_under(run, all_checkpoints=True)] == ["step1", "step2"]


@pytest.mark.parametrize("name, all_checkpoints, says", [
    ("file.txt", False, "{p}: not a directory; give a Hugging Face model directory, a `twofold train` run (RUN or "
     "RUN@TAG) or a pair run (or a folder with encoder/ and decoder/), or a folder of them"),
    ("export", True, "{p} is one model; --all-checkpoints needs a training run (a folder with run.json)"),
    ("empty", False, "{p}: not a model directory (no config.json) and holds no model directories or training runs; "
     "give"),
    ("pair", True, "{p}: not a model directory (no config.json) and holds no training runs (folders with run.json); "
     "give"),
    ("fresh", False, "{p}: no checkpoints yet; train longer or give another run"),
    ("fresh", True, "{p}: no tagged checkpoints yet; train longer or give another run"),
])
def test_a_folder_without_models_is_refused_in_one_line(house, tmp_path, name, all_checkpoints, says):
    root, run = house
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "run.json").write_text((run / "run.json").read_text())
    path = (root if name in ("export", "pair") else tmp_path) / name
    with pytest.raises(TwofoldError) as error:
        models_under(path, all_checkpoints)
    assert str(error.value).startswith(says.format(p=path))


def test_runs_pairs_checkpoints_and_hub_ids_as_each_is_named(house, tmp_path):
    root, run = house
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "run.json").write_text((run / "run.json").read_text())
    with pytest.raises(TwofoldError, match=r"is a `twofold train` run \(RUN or RUN@TAG\); give a Hugging Face model "
                                           r"directory$"):
        resolve(tmp_path / "fresh", "export", (HF,))  # its kind is named before its checkpoints are read
    (tmp_path / "paired").mkdir()
    (tmp_path / "paired" / "pair.json").write_text("{}")
    assert resolve(tmp_path / "paired").kind == PAIR
    for ref in (resolve(tmp_path / "paired"), resolve(root / "pair")):
        with pytest.raises(TwofoldError, match=r"a pair names no single model to load"):
            ref.load()
        with pytest.raises(TwofoldError, match=r"a pair is no single checkpoint to export"):
            ref.export(tmp_path / "out")
    loose = tmp_path / "loose"  # a checkpoint folder copied out of its run
    shutil.copytree(checkpoint.list_checkpoints(run / "checkpoints")[0], loose)
    ref = resolve(loose)
    assert (ref.kind, ref.name, ref.run, ref.tag, ref.tokenizer()) == (CHECKPOINT, "loose", None, "step1", None)
    assert same_weights(ref.load(), weights_of(loose))
    hub = resolve("jhu-clsp/ettin-encoder-17m")
    assert (hub.path, hub.name, hub.checkpoint, hub.tag, hub.tokens) == (None, "ettin-encoder-17m", None, "", None)
    for not_hub in ("jhu-clsp/ettin encoder", "/ettin", "a/b/c"):
        with pytest.raises(TwofoldError, match="no such file or directory"):
            resolve(not_hub)


def test_a_checkpoint_exports_as_a_hugging_face_directory(house, tmp_path, tokenizer):
    root, run = house
    export = resolve(root / "export")
    assert export.export(tmp_path / "unused") == root / "export" and not (tmp_path / "unused").exists()
    ref = resolve(f"{run}@step1")
    out = ref.export(tmp_path / "out", tokenizer=root / "export")
    assert out == tmp_path / "out" and (out / "tokenizer.json").is_file()
    assert same_weights(resolve(out).load(), weights_of(ref.checkpoint))
    no_tokenizer = tmp_path / "bare"
    save_pretrained(tiny_model(tokenizer, causal=False), no_tokenizer)
    assert resolve(no_tokenizer).tokenizer() is None


def test_pair_members_refuse_a_folder_that_is_no_pair(house):
    root, _ = house
    with pytest.raises(TwofoldError, match=r"^merge input .*export: not a pair run \(no pair.json\) nor a folder with "
                                           r"encoder/ and decoder/; give a pair run"):
        pair_members(root / "export", "merge input")
    with pytest.raises(TwofoldError, match=r"^--pair .*pair/encoder is a Hugging Face model directory; give a "
                                           r"`twofold train` run \(RUN or RUN@TAG\)$"):
        pair_members(root / "pair", "--pair", accept=(RUN,))


def test_every_way_of_naming_gives_the_whole_reference(house, tmp_path):
    root, run = house
    step1, step2 = checkpoint.list_checkpoints(run / "checkpoints")
    assert named(resolve(run)) == (str(run), RUN, run, "run", run, step2)
    assert named(resolve(f"{run}@step1")) == (f"{run}@step1", RUN, run, "run", run, step1)
    assert named(resolve(step1)) == (str(step1), CHECKPOINT, step1, "run", run, step1)
    assert named(resolve(root / "export")) == (str(root / "export"), HF, root / "export", "export", None, None)
    assert named(resolve(root / "pair")) == (str(root / "pair"), PAIR, root / "pair", "pair", None, None)
    assert named(resolve("org/name")) == ("org/name", HUB, None, "name", None, None)
    assert [named(f) for f in models_under(root / "export")] == [
        (str(root / "export"), HF, root / "export", "export", None, None)]
    assert [named(f) for f in models_under(run, all_checkpoints=True)] == [
        (str(run), RUN, run, "run", run, step1), (str(run), RUN, run, "run", run, step2)]
    odd = tmp_path / "runs@2"  # an @ in a folder's name: the tag is what follows the last one
    shutil.copytree(run, odd / "run")
    assert named(resolve(f"{odd / 'run'}@step2"))[1:4] == (RUN, odd / "run", "run")


def test_the_default_names_in_messages(house):
    root, _ = house
    with pytest.raises(TwofoldError, match=r"^model .*missing: no such file or directory"):
        resolve(root / "missing")
    with pytest.raises(TwofoldError, match=r"^pair .*export: not a pair run"):
        pair_members(root / "export")
    with pytest.raises(TwofoldError, match=r"^pair .*pair/encoder is a Hugging Face model directory"):
        pair_members(root / "pair", accept=(RUN,))


def test_a_runs_tokenizer_is_the_one_its_first_store_was_made_with(house, tmp_path, tokenizer):
    _, run = house
    store = tmp_path / "store"
    store.mkdir()
    (store / "manifest.json").write_text(json.dumps({"tokenizer": {"path": str(Path(tokenizer.source).parent)}}))
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    info = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps(info | {"options": {"stores": [str(store)]}}))
    assert resolve(copy).tokenizer() == Path(tokenizer.source).parent
    assert resolve(f"{copy}@step1").tokenizer() == Path(tokenizer.source).parent
