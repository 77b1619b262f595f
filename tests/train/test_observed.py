"""What the trainer *did*, observed, against what the recipe says, computed here independently.

One in-process run of a small recipe with a batch-size warmup, an LR warmup and decay, weight
decay, two mask rates, a temperature mixture and a held-out set. The optimizer's `step` and the
model's `forward` are wrapped to record what happened (the LR in the param groups, the batches
the model received, what decay did to the weights), the order log gives the sequences of each
step and their groups, and every expected number is computed in this file from the recipe's
numbers, never by twofold's own schedule, sampling or masking code.
"""

import json
import math

import numpy as np
import pytest
import torch

from twofold.data.objectives import IGNORE_INDEX
from twofold.data.store import TokenStore
from twofold.train import checkpoint, loop, runs
from twofold.train.distributed import World
from twofold.train.recipe import load_recipe
from twofold.train.rundir import RunDir

PEAK, WEIGHT_DECAY, TAU = 2.0e-3, 0.1, 0.3
RECIPE = f"""\
model: tiny
seed: 3
optimizer: {{name: stable_adamw, lr: {PEAK}, weight_decay: {WEIGHT_DECAY}, betas: [0.9, 0.98], eps: 1.0e-6}}
phase:
  pretrain: {{tokens: 12K, seq_len: 32, mask_rate: 0.3, lr_warmup_tokens: 2K, batch_sequences: 32,
             batch_start_sequences: 4, batch_warmup_tokens: 4K, checkpoint_every_tokens: 6K, tag: step,
             mixture: {{temperature: {TAU}}}}}
  decay: {{tokens: 4K, seq_len: 64, mask_rate: 0.15, lr_decay: one_minus_sqrt, lr_min_ratio: 0.1,
          batch_sequences: 8, checkpoint_every_tokens: 4K, tag: decay}}
"""


def expected_steps():
    """(phase, sequences, LR) of every step, from the recipe's numbers by hand.

    Pretrain: each step takes int(4 + 28 · min(1, tokens_before / 4000)) sequences of 32 tokens;
    its LR is the peak times min(1, tokens_after / 2000). Decay: 8 sequences of 64 tokens; the
    LR is peak · (0.1 + 0.9 · (1 − sqrt(tokens_after / 4000))), the last step at the phase's end.
    """
    steps, tokens = [], 0
    while tokens < 12_000:
        sequences = int(4 + 28 * min(1.0, tokens / 4000))
        tokens += sequences * 32
        steps.append(("pretrain", sequences, PEAK * min(1.0, tokens / 2000)))
    tokens = 0
    while tokens < 4_000:
        tokens += 8 * 64
        steps.append(("decay", 8, PEAK * (0.1 + 0.9 * (1 - math.sqrt(min(tokens, 4000) / 4000)))))
    return steps


class Observer:
    """Wraps the trainer's optimizer and forward pass and writes down what they did."""

    def __init__(self, monkeypatch, zero_first_gradient=False):
        self.lrs, self.max_lrs, self.batches, self.first_step = [], [], [], None
        self.zero_first_gradient = zero_first_gradient
        real_build, real_forward = loop.build_optimizer, loop.forward

        def build(model, config, peak_lr=None):
            optimizer = real_build(model, config, peak_lr)
            real_step = optimizer.step

            def step(*args, **kwargs):
                self.lrs.append([group["lr"] for group in optimizer.param_groups])
                self.max_lrs.append([group.get("max_lr") for group in optimizer.param_groups])
                if self.zero_first_gradient and self.first_step is None:
                    before = {name: p.detach().clone() for name, p in model.named_parameters()}
                    for p in model.parameters():
                        p.grad = torch.zeros_like(p)
                    result = real_step(*args, **kwargs)
                    after = {name: p.detach().clone() for name, p in model.named_parameters()}
                    self.first_step = (before, after, optimizer.param_groups[0]["lr"])
                    return result
                return real_step(*args, **kwargs)

            optimizer.step = step
            return optimizer

        def forward(model, batch):
            self.batches.append((model.training, batch.input_ids.clone(), batch.labels.clone()))
            return real_forward(model, batch)

        monkeypatch.setattr(loop, "build_optimizer", build)
        monkeypatch.setattr(loop, "forward", forward)


def order_log(run, phase):
    lines = (run / phase / "data_order" / "rank0.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def observed(tmp_path_factory, tiny_store):
    path = tmp_path_factory.mktemp("observed") / "recipe.yaml"
    path.write_text(RECIPE)
    recipe = load_recipe(str(path))
    options = loop.Options(stores=(str(tiny_store),), objective="mlm", progress=False,
                           eval_stores=(str(tiny_store),), eval_sequences=48)
    with pytest.MonkeyPatch.context() as patch:
        observer = Observer(patch, zero_first_gradient=True)
        run = runs.start(tmp_path_factory.mktemp("runs") / "enc", recipe, options, World())
    return run, observer


def test_sequences_per_step_follow_the_batch_warmup(observed):
    run, _ = observed
    sizes = [("pretrain", len(r["sequences"])) for r in order_log(run, "pretrain")]
    sizes += [("decay", len(r["sequences"])) for r in order_log(run, "decay")]
    assert sizes == [(phase, n) for phase, n, _ in expected_steps()]


def test_the_optimizer_steps_with_the_scheduled_learning_rate(observed):
    _, observer = observed
    expected = [lr for _, _, lr in expected_steps()]
    assert len(observer.lrs) == len(expected)
    for k, (groups, want) in enumerate(zip(observer.lrs, expected), start=1):
        assert groups == pytest.approx([want] * len(groups), rel=1e-9), f"step {k}"
    assert all(m == [PEAK] * len(m) for m in observer.max_lrs)  # the decay is relative to the peak


def test_weight_decay_shrinks_weights_and_spares_norms_and_biases(observed):
    """Step 1 ran on zero gradients: Adam's update is 0, only decoupled decay moves a weight."""
    _, observer = observed
    before, after, lr = observer.first_step
    factor = 1 - WEIGHT_DECAY * lr / PEAK
    decayed = spared = 0
    for name, new in after.items():
        old = before[name]
        if "norm" in name or name.endswith("bias"):
            assert torch.equal(new, old), f"{name} must not decay"
            spared += 1
        else:
            torch.testing.assert_close(new, old * factor, rtol=1e-6, atol=0)
            assert not torch.equal(new, old)
            decayed += 1
    assert decayed >= 8 and spared >= 4


def labelled_share(batches):
    """Labelled tokens / tokens that could be labelled (not special) over (inputs, labels) pairs."""
    labelled = regular = 0
    for inputs, labels in batches:
        original = torch.where(labels != IGNORE_INDEX, labels, inputs)
        regular += int((original > 4).sum())  # the tiny store's specials are ids 0–4
        labelled += int((labels != IGNORE_INDEX).sum())
    return labelled / regular, regular


def test_each_phase_masks_at_its_rate_and_held_out_at_15_percent(observed):
    _, observer = observed
    steps = expected_steps()
    training = [(i, lab) for t, i, lab in observer.batches if t]
    held_out = [(i, lab) for t, i, lab in observer.batches if not t]
    assert len(training) == len(steps) and held_out
    pretrain = [b for b, (phase, _, _) in zip(training, steps) if phase == "pretrain"]
    decay = [b for b, (phase, _, _) in zip(training, steps) if phase == "decay"]
    for batches, rate in ((pretrain, 0.3), (decay, 0.15), (held_out, 0.15)):
        share, n = labelled_share(batches)
        assert abs(share - rate) < 5 * math.sqrt(rate * (1 - rate) / n), (rate, share, n)


def group_shares(store: TokenStore, records) -> tuple[float, int]:
    groups = [store.groups[int(store.doc_groups[seq[0][1]])] for r in records for seq in r["sequences"]]
    return groups.count("prose") / len(groups), len(groups)


def expected_prose_share(store: TokenStore, tau: float) -> float:
    """p ∝ n^τ over each group's document tokens, counted from the store's arrays."""
    lengths = np.diff(np.asarray(store.offsets, np.int64))
    tokens = {g: float(lengths[np.asarray(store.doc_groups) == i].sum()) for i, g in enumerate(store.groups)}
    return tokens["prose"] ** tau / sum(n ** tau for n in tokens.values())


def test_group_shares_follow_each_phases_mixture(observed, tiny_store):
    run, _ = observed
    store = TokenStore(tiny_store)
    for phase, tau in (("pretrain", TAU), ("decay", 1.0)):  # decay names no mixture: size-proportional
        share, n = group_shares(store, order_log(run, phase))
        p = expected_prose_share(store, tau)
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n), (phase, share, p, n)
    assert expected_prose_share(store, TAU) - expected_prose_share(store, 1.0) > 0.15  # the test can tell


class Stop(Exception):
    pass


def test_resume_continues_after_the_checkpoint(tmp_path, tiny_store, monkeypatch):
    """Stopped in step 9 (checkpoints at steps 5 and 7), resumed: the resumed process starts at the
    checkpoint's step + 1 in metrics.jsonl and at its data step in the order log; retraining from
    step 0 (or from a later step) fails."""
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    recipe = load_recipe(str(path), scale=0.5)
    options = loop.Options(stores=(str(tiny_store),), objective="clm", progress=False, save_every_steps=5)
    calls = {"n": 0}
    real_forward = loop.forward

    def crash_at_step_9(model, batch):
        calls["n"] += 1
        if calls["n"] == 9:
            raise Stop
        return real_forward(model, batch)

    monkeypatch.setattr(loop, "forward", crash_at_step_9)
    with pytest.raises(Stop):
        runs.start(tmp_path / "run", recipe, options, World())
    run = RunDir(tmp_path / "run")
    saved = checkpoint.list_checkpoints(run.checkpoints_dir)[-1]
    state = checkpoint.read_state(saved)
    assert state["step"] == 7 and len(run.metrics()) == 8  # step 8 ran after the checkpoint
    logged = len(order_log(run.path, "pretrain"))

    written = []
    real_append = RunDir.append_metrics
    monkeypatch.setattr(RunDir, "append_metrics", lambda self, record: (written.append(record),
                                                                         real_append(self, record))[1])
    calls["n"] = -10**9  # no more crashes
    runs.resume(run.path, World())
    steps = [r["step"] for r in written if "loss" in r]
    assert steps[0] == state["step"] + 1 and calls["n"] == -10**9 + len(steps)
    resumed = order_log(run.path, "pretrain")[logged:]
    assert resumed[0]["step"] == state["data"]["step"] == state["progress"]["phase_step"]
    assert [r["step"] for r in run.metrics() if "loss" in r] == list(range(1, steps[-1] + 1))
