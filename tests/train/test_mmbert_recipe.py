"""mmBERT (arXiv 2509.06888; jhu-clsp/mmBERT configs/*): per-size schedules as the trainer
applies them, the published language sets, the decay variants, and sampling over languages."""

import pytest
import torch

from twofold.errors import TwofoldError
from twofold.model import TwofoldModel, preset
from twofold.train.optim import build_optimizer, set_lr, set_weight_decay
from twofold.train.recipe import load_recipe
from twofold.train.schedule import lr_at

B = 10**9
PEAK = 8e-4


def lr_in(recipe, phase: str, fraction: float) -> float:
    """The LR the trainer sets `fraction` of the way through a phase."""
    p = recipe.phase[phase]
    return lr_at(p.lr_schedule(recipe.optimizer.lr), fraction * p.tokens)


def applied_weight_decay(recipe, phase: str, fraction: float) -> float:
    """The fraction of a weight StableAdamW removes in one step there (zero gradient: decay only)."""
    model = TwofoldModel(preset("tiny")).double()  # float64: the decay is a 1e-5 fraction
    p = recipe.phase[phase]
    schedule = p.lr_schedule(recipe.optimizer.lr)
    optimizer = build_optimizer(model, recipe.optimizer, peak_lr=schedule.peak)
    # as the trainer sets them: the phase's weight decay, relative to the LR the phase starts from
    set_weight_decay(optimizer, recipe.optimizer.weight_decay if p.weight_decay is None else p.weight_decay)
    set_lr(optimizer, lr_at(schedule, fraction * p.tokens), peak=schedule.weight_decay_lr)
    weight = model.model.layers[1].mlp.Wi.weight
    before = weight.detach().clone()
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    return 1 - (weight.detach() / before).mean().item()


def test_small_schedule_as_published():
    """mmBERT-small: warmup 4B to 8e-4; mid-training constant at 4e-4 with wd 4e-5; decay linear to 0.02x."""
    r = load_recipe("mmbert", size="small")
    assert lr_in(r, "pretrain", 2 * B / r.phase["pretrain"].tokens) == pytest.approx(PEAK / 2)
    assert lr_in(r, "pretrain", 4 * B / r.phase["pretrain"].tokens) == pytest.approx(PEAK)
    assert lr_in(r, "pretrain", 1.0) == pytest.approx(PEAK)
    for fraction in (0.0, 0.5, 1.0):
        assert lr_in(r, "extension", fraction) == pytest.approx(4e-4)
    assert applied_weight_decay(r, "extension", 0.5) == pytest.approx(4e-5, rel=1e-3)
    assert applied_weight_decay(r, "pretrain", 1.0) == pytest.approx(8e-5, rel=1e-3)
    assert lr_in(r, "decay", 0.0) == pytest.approx(4e-4)
    assert lr_in(r, "decay", 0.5) == pytest.approx((4e-4 + 0.02 * PEAK) / 2)  # linear
    assert lr_in(r, "decay", 1.0) == pytest.approx(0.02 * PEAK)
    pretrain = r.phase["pretrain"]
    assert (pretrain.batch_warmup_tokens, pretrain.batch_sequences, pretrain.mask_rate) == (100 * B, 4608, 0.30)


def test_base_schedule_as_published():
    """mmBERT-base: warmup 3B, batch warmup 60B; mid-training constant at 8e-4; decay 1 - sqrt to 0.02x."""
    r = load_recipe("mmbert", size="base")
    assert lr_in(r, "pretrain", 1.5 * B / r.phase["pretrain"].tokens) == pytest.approx(PEAK / 2)
    assert lr_in(r, "pretrain", 3 * B / r.phase["pretrain"].tokens) == pytest.approx(PEAK)
    assert lr_in(r, "extension", 0.5) == pytest.approx(PEAK)
    assert applied_weight_decay(r, "extension", 0.5) == pytest.approx(8e-5, rel=1e-3)
    assert lr_in(r, "decay", 0.25) == pytest.approx(PEAK * (0.02 + 0.98 * (1 - 0.5)))  # 1 - sqrt(1/4)
    assert lr_in(r, "decay", 1.0) == pytest.approx(0.02 * PEAK)
    assert r.phase["pretrain"].batch_warmup_tokens == 60 * B
    assert r.phase["pretrain"].mask_rate == 0.25  # the base config's mlm_probability (the paper: 30%)


@pytest.mark.parametrize("size", ["small", "base"])
def test_shared_mmbert_settings(size):
    r = load_recipe("mmbert", size=size)
    assert [p.tokens for p in r.phases] == [2300 * B, 600 * B, 100 * B]
    assert [p.seq_len for p in r.phases] == [1024, 8192, 8192]
    assert [p.mask_rate for p in r.phases][1:] == [0.15, 0.05]
    assert [p.mixture.temperature for p in r.phases] == [0.7, 0.5, 0.3]
    assert [(p.rope_theta_global, p.rope_theta_local) for p in r.phases] == [(1e4, 1e4), (16e4, 16e4), (16e4, 16e4)]
    assert {p.checkpoint_every_tokens for p in r.phases} == {10 * B}
    assert {p.batch_sequences for p in r.phases} == {4608}
    opt = r.optimizer
    assert (opt.betas, opt.eps, opt.weight_decay, opt.lr) == ((0.9, 0.95), 1e-8, 8e-5, 8e-4)
    assert r.cross is None and r.model == f"mmbert-{size}"


def test_published_language_sets_grow_60_110_1833():
    r = load_recipe("mmbert", size="base")
    sets = [set(p.mixture.groups) for p in r.phases]
    assert [len(s) for s in sets] == [61, 110, 1834]  # + `code` in each
    assert sets[0] < sets[1] < sets[2] and "code" in sets[0] and "eng" in sets[0]
    assert all(len(p.mixture.groups) == len(set(p.mixture.groups)) for p in r.phases)


def test_decay_variants():
    variants = {name: load_recipe("mmbert", size="small", variant=name) for name in ("eng", "cont", "all")}
    decay = {name: r.phase["decay"].mixture for name, r in variants.items()}
    mid = set(variants["eng"].phase["extension"].mixture.groups)
    assert set(decay["eng"].groups) == set(decay["cont"].groups) == mid
    assert decay["eng"].boost == {"eng": 1.43} and decay["cont"].boost is None
    assert len(decay["all"].groups) == 1834
    assert {r.variant for r in variants.values()} == {"eng", "cont", "all"}
    # Only the decay differs: the earlier phases are the same run.
    assert len({(r.phase["pretrain"], r.phase["extension"]) for r in variants.values()}) == 1
    assert variants["eng"].to_dict()["variant"] == "eng"
    with pytest.raises(TwofoldError, match="has no variant 'english'; variants: eng, cont, all"):
        load_recipe("mmbert", size="small", variant="english")


def test_tiny_size_takes_the_largest_languages_of_the_stores():
    r = load_recipe("mmbert", size="tiny", variant="eng")
    assert [p.mixture.top for p in r.phases] == [6, 12, 12]
    assert [p.mixture.groups for p in r.phases] == [("en",)] * 3  # English always, then the largest
    assert r.phase["decay"].mixture.boost == {"en": 1.43}
    assert load_recipe("mmbert", size="tiny").phase["decay"].mixture.groups is None  # every language
