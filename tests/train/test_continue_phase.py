"""`--phase NAME --init-from MODEL`: continue any phase of a recipe from another model's weights
(a Hugging Face directory, a run, RUN@TAG) — the domain-adaptation path: a released encoder's
decay phase continued on one's own corpus. Weights only, a fresh optimizer, and the phase's
schedule from its first step."""

import json
import math

import pytest
import torch

from twofold.cli import main
from twofold.data.sampling import Corpus
from twofold.data.store import TokenStore
from twofold.hf import load, save_pretrained
from twofold.model import TwofoldModel, preset
from twofold.train import checkpoint

PEAK = 3e-3  # the tiny recipe's (tests/train/conftest.py); its decay: 1K tokens, 4 × 128 a step


@pytest.fixture
def first_forward_weights(monkeypatch):
    """The weights the model holds when training makes its first forward pass."""
    seen = []
    real = TwofoldModel.forward

    def forward(self, *args, **kwargs):
        if self.training and not seen:
            seen.append({name: value.detach().clone() for name, value in self.state_dict().items()})
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TwofoldModel, "forward", forward)
    return seen


def hf_model(folder, store, seed: int, **shape):
    """A randomly initialised model saved in the Hugging Face format, sized for the store."""
    corpus = Corpus([TokenStore(store)])
    torch.manual_seed(seed)
    model = TwofoldModel(preset("tiny", **shape).for_tokenizer(corpus.vocab_size, corpus.special_ids))
    save_pretrained(model, folder)
    return folder


def train(*args: str) -> int:
    return main(["train", "--objective", "mlm", "--no-progress", *map(str, args)])


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_decay_from_a_hugging_face_model_starts_from_its_weights_and_the_decay_schedule(
        tmp_path, tiny_store, tiny_recipe, first_forward_weights):
    init = hf_model(tmp_path / "released", tiny_store, seed=7)
    run = tmp_path / "adapted"
    assert train("--recipe", tiny_recipe, "--store", tiny_store, "--out", run, "--phase", "decay",
                 "--init-from", init) == 0
    expected = load(init).state_dict()
    assert first_forward_weights[0].keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(first_forward_weights[0][name], value), name
    lines = metrics(run)
    assert [line["phase"] for line in lines] == ["decay", "decay"] and lines[0]["step"] == 1
    for line in lines:  # 1 − sqrt from 0.5 × peak to 0.02 × peak over the phase's 1,000 tokens, from its first step
        t = min(line["phase_tokens"], 1000)  # the last step may overshoot the budget
        assert line["lr"] == pytest.approx(PEAK * (0.02 + 0.48 * (1 - math.sqrt(t / 1000))), rel=1e-12)
    assert [checkpoint.tag_of(p) for p in checkpoint.list_checkpoints(run / "checkpoints")] == ["decay2"]
    assert not (run / "pretrain").exists() and (run / "decay" / "data_order").is_dir()
    saved = json.loads((run / "run.json").read_text())
    assert saved["options"]["first_phase"] == "decay" and not saved["options"]["cross"]
    init.rename(tmp_path / "moved")  # a run with checkpoints resumes from them, whatever became of its source
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0  # a finished continuation: nothing more
    assert len(metrics(run)) == 2


def test_extension_from_a_run_at_a_tag_runs_it_and_the_phases_after(tmp_path, tiny_store, tiny_recipe,
                                                                      first_forward_weights):
    source = tmp_path / "source"
    assert train("--recipe", tiny_recipe, "--store", tiny_store, "--out", source, "--phase", "decay") == 0
    first_forward_weights.clear()
    run = tmp_path / "continued"
    assert train("--recipe", tiny_recipe, "--store", tiny_store, "--out", run, "--phase", "extension",
                 "--init-from", f"{source}@decay2") == 0
    tagged = checkpoint.find_tagged(source / "checkpoints", "decay2")
    expected = checkpoint.load(tagged, restore_rng=False).states.model
    for name, value in expected.items():
        assert torch.equal(first_forward_weights[0][name], value), name
    phases = [line["phase"] for line in metrics(run)]
    assert phases[0] == "extension" and phases[-1] == "decay" and "pretrain" not in phases
    assert metrics(run)[0]["lr"] == pytest.approx(PEAK * (0.5 + 0.5 * (1 - math.sqrt(512 / 2000))), rel=1e-12)


@pytest.mark.parametrize("problem", ["phase", "shape", "tag"])
def test_a_continuation_that_cannot_fit_is_one_line_and_writes_nothing(tmp_path, tiny_store, tiny_recipe,
                                                                       capsys, problem):
    run = tmp_path / "refused"
    if problem == "phase":
        args = ["--phase", "cooldown", "--init-from", hf_model(tmp_path / "ok", tiny_store, seed=1)]
        says = "--phase cooldown: recipe"
    elif problem == "shape":  # another size: three layers where the recipe's model has two
        other = hf_model(tmp_path / "other", tiny_store, seed=1, num_hidden_layers=3)
        args = ["--phase", "decay", "--init-from", other]
        says = "num_hidden_layers 3 vs 2"
    else:
        source = tmp_path / "source"
        assert train("--recipe", tiny_recipe, "--store", tiny_store, "--out", source, "--phase", "decay") == 0
        capsys.readouterr()
        args = ["--phase", "decay", "--init-from", f"{source}@ext4"]
        says = "no checkpoint tagged 'ext4'"
    assert train("--recipe", tiny_recipe, "--store", tiny_store, "--out", run, *args) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err
    assert not run.exists()
