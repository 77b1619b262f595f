"""`twofold.models`: what each way of naming a model names, on real runs, checkpoints and exports,
and the one line it says for a name of a kind the command does not take."""

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
    assert says.format(root=root) in message and "\n" not in message and message.startswith("merge input")


def test_init_from_is_named_as_every_command_names_a_model(house, capsys):
    root, _ = house
    argv = ["train", "--recipe", "demo", "--store", str(root / "no-store"), "--out", str(root / "new-run"),
            "--objective", "clm", "--init-from", str(root / "pair")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--init-from" in err and "is a pair run" in err and "\n" not in err
    assert not (root / "new-run").exists()
