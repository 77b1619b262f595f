"""Each phase trains with its own RoPE θ: the rotary embedding's inverse frequencies change at
the phase boundaries, and each checkpoint and Hugging Face export carries its phase's θ."""

import json

import pytest
import torch
import transformers

import twofold
from twofold.model import transformer
from twofold.train import checkpoint, loop, runs
from twofold.train.distributed import World
from twofold.train.recipe import load_recipe
from twofold.train.rundir import RunDir

# Every phase a few steps of a tiny model, the recipe's other values untouched.
SHAPE = {"pretrain": dict(seq_len=64, batch_sequences=2, tokens=384, lr_warmup_tokens=128),
         "extension": dict(seq_len=128, batch_sequences=2, tokens=512),
         "decay": dict(seq_len=128, batch_sequences=2, tokens=512),
         "cross": dict(seq_len=128, batch_sequences=2, tokens=512, lr_warmup_tokens=128, lr_decay_tokens=256,
                       batch_warmup_tokens=0)}


def small(name, size=None):
    overrides = ["model=tiny"]
    for phase, values in SHAPE.items():
        values = {**values, "checkpoint_every_tokens": values["tokens"]}
        if phase == "pretrain" and name == "demo":
            values = {**values, "batch_start_sequences": 1, "batch_warmup_tokens": 128}
        overrides += [f"phase.{phase}.{key}={value}" for key, value in values.items()]
    return load_recipe(name, size=size, overrides=overrides)


def theta_of(inv_freq: torch.Tensor, head_dim: int) -> float:
    """θ back from the rotary's inverse frequencies: inv_freq[i] = θ^(-2i / head_dim)."""
    return float(inv_freq[1].double() ** (-head_dim / 2))


@pytest.fixture
def rotary_spy(monkeypatch):
    """Every (θ_global, θ_local) pair the model's rotary embedding computed cos/sin with, in order."""
    used, pending = [], []
    real = transformer.rope_cos_sin

    def spy(position_ids, inv_freq):
        pending.append(theta_of(inv_freq, 2 * inv_freq.numel()))
        if len(pending) == 2:  # Body.rope: global, then local
            used.append(tuple(pending))
            pending.clear()
        return real(position_ids, inv_freq)

    monkeypatch.setattr(transformer, "rope_cos_sin", spy)
    return used


def steps_by_phase(run):
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [line["phase"] for line in lines if "loss" in line]


def train(tmp_path, recipe, name="run", store=None, init_from=None, **options):
    opts = loop.Options(stores=(str(store),), progress=False, **options)
    return runs.start(tmp_path / name, recipe, opts, World(), init_from=init_from)


# (recipe, size) -> θ global/local per phase, as the recipes' sources give them (docs/recipes.md)
EXPECTED = {
    ("ettin", "17m"): {"pretrain": (1e4, 1e4), "extension": (1.6e5, 1e4), "decay": (1.6e5, 1e4),
                       "cross": (1.6e5, 1.6e5)},
    ("ettin", "400m"): {"pretrain": (1e4, 1e4), "extension": (1.6e5, 1.6e5), "decay": (1.6e5, 1.6e5),
                        "cross": (1.6e5, 1.6e5)},
    ("demo", None): {"pretrain": (1e4, 1e4), "extension": (1.6e5, 1e4), "decay": (1.6e5, 1e4),
                     "cross": (1.6e5, 1.6e5)},
}


@pytest.mark.parametrize("name,size", list(EXPECTED), ids=["ettin-17m", "ettin-400m", "demo"])
def test_every_phase_trains_and_saves_with_its_theta(tmp_path, tiny_store, rotary_spy, name, size):
    expected = EXPECTED[(name, size)]
    recipe = small(name, size)
    run = train(tmp_path, recipe, store=tiny_store)
    phases = steps_by_phase(run)
    assert len(rotary_spy) == len(phases) and set(phases) == {"pretrain", "extension", "decay"}
    for step, (phase, used) in enumerate(zip(phases, rotary_spy), start=1):
        assert used == pytest.approx(expected[phase], rel=1e-5), f"step {step} ({phase})"
    for path in checkpoint.list_checkpoints(run / "checkpoints"):
        state = checkpoint.read_state(path)
        phase = recipe.phases[state["progress"]["phase_index"]].name
        config = state["config"]
        assert (config["global_rope_theta"], config["local_rope_theta"]) == expected[phase], path.name

    # the cross-objective continuation starts a run with the cross phase's θ
    rotary_spy.clear()
    cross = train(tmp_path, recipe, "cross", store=tiny_store, objective="clm", cross=True, init_from=str(run))
    assert len(rotary_spy) == len(steps_by_phase(cross)) > 1
    assert all(used == pytest.approx(expected["cross"], rel=1e-5) for used in rotary_spy)


def test_exports_carry_their_phase_theta_into_transformers(tmp_path, tiny_store):
    recipe = small("ettin", "17m")
    run = RunDir(train(tmp_path, recipe, store=tiny_store))
    ids = torch.randint(5, 500, (2, 100))
    tags = [checkpoint.tag_of(p) for p in run.checkpoints(tagged_only=True)]
    assert [t.rstrip("0123456789") for t in tags] == ["step", "ext", "decay"]
    for tag, phase in zip(tags, recipe.phases):
        out = run.export(tmp_path / tag, tag)
        saved = json.loads((out / "config.json").read_text())
        thetas = {kind: p["rope_theta"] for kind, p in saved["rope_parameters"].items()}
        assert thetas == {"full_attention": phase.rope_theta_global, "sliding_attention": phase.rope_theta_local}
        assert (saved["attention_dropout"], saved["attention_output_dropout"]) == (0.0, 0.1)
        hf, info = transformers.AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"]
        rotary = hf.model.rotary_emb  # the θ transformers computes with
        used = [theta_of(getattr(rotary, f"{kind}_inv_freq"), 32) for kind in ("full_attention", "sliding_attention")]
        assert used == pytest.approx([phase.rope_theta_global, phase.rope_theta_local], rel=1e-5)
        with torch.no_grad():  # and the weights are the checkpoint's: the same logits as twofold's
            assert (hf.eval()(input_ids=ids).logits - twofold.load(out).eval()(ids).logits).abs().max() <= 1e-4
