"""What the trainer *did*, observed, against what the recipe says, computed here independently.

One in-process run of a small recipe with a batch-size warmup, an LR warmup and decay, weight
decay, two mask rates, a temperature mixture and a held-out set. The optimizer's `step` and the
model's `forward` are wrapped to record what happened (the LR in the param groups, the batches
the model received, what decay did to the weights), the order log gives the sequences of each
step and their groups, and every expected number is computed in this file from the recipe's
numbers, never by twofold's own schedule, sampling or masking code.
"""

import dataclasses
import itertools
import json
import math
import re
import shutil
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from twofold.data.batches import Batch
from twofold.data.mixture import Mixture
from twofold.data.objectives import IGNORE_INDEX
from twofold.data.store import TokenStore
from twofold.errors import TwofoldError
from twofold.model import TwofoldModel, preset
from twofold.train import checkpoint, loop, runs
from twofold.train.distributed import World
from twofold.train.recipe import load_recipe
from twofold.train.rundir import RunDir

PEAK, WEIGHT_DECAY, TAU, CLIP = 2.0e-3, 0.1, 0.3, 1.0
RECIPE = f"""\
model: tiny
seed: 3
optimizer: {{name: stable_adamw, lr: {PEAK}, weight_decay: {WEIGHT_DECAY}, betas: [0.9, 0.98], eps: 1.0e-6,
            grad_clip: {CLIP}}}
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

    def __init__(self, monkeypatch, zero_first_gradient=False, keep_gradients=0):
        self.lrs, self.max_lrs, self.batches, self.first_step = [], [], [], None
        self.forwards, self.steps = [], []  # per forward: what it computed; per optimizer step: time, grad norm
        self.references = []  # (loss of the model called here, loss the trainer's forward got)
        self.gradients = []  # the flat gradient of each of the first `keep_gradients` training forwards
        self.zero_first_gradient = zero_first_gradient
        real_build, real_forward = loop.build_optimizer, loop.forward

        def build(model, config, peak_lr=None):
            optimizer = real_build(model, config, peak_lr)
            real_step = optimizer.step

            def step(*args, **kwargs):
                grads = [p.grad.double().norm() for p in model.parameters() if p.grad is not None]
                self.steps.append((time.perf_counter(), float(torch.stack(grads).norm())))
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
            started = time.perf_counter()
            out = real_forward(model, batch)
            if len(self.references) < 2 and model.training:  # the model on the batch's documents, called here
                with torch.no_grad(), torch.random.fork_rng():  # its dropout draws leave the run's stream
                    ref = model(batch.input_ids, labels=batch.labels, cu_seqlens=batch.cu_seqlens,
                                max_seqlen=int((batch.cu_seqlens[1:] - batch.cu_seqlens[:-1]).max()),
                                position_ids=batch.position_ids)
                self.references.append((float(ref.loss), float(out.loss.detach())))
            norm = None
            if torch.is_grad_enabled():  # the gradient of this batch's mean token loss, by autograd here
                params = [p for p in model.parameters() if p.requires_grad]
                grads = torch.autograd.grad(out.loss, params, retain_graph=True, allow_unused=True)
                norm = float(torch.stack([g.double().norm() for g in grads if g is not None]).norm())
                if len(self.gradients) < keep_gradients:
                    self.gradients.append(torch.cat([(torch.zeros_like(p) if g is None else g).double().flatten()
                                                     for p, g in zip(params, grads)]))
            self.forwards.append({"time": started, "training": model.training, "loss": float(out.loss.detach()),
                                  "targets": int(out.num_targets), "sequences": batch.num_sequences,
                                  "grad_norm": norm, "autocast": torch.is_autocast_enabled("cpu")})
            return out

        self.started, self.logged = time.perf_counter(), []  # (time, record) of every metrics line
        real_append = RunDir.append_metrics

        def append(rundir, record):
            real_append(rundir, record)
            self.logged.append((time.perf_counter(), dict(record)))

        monkeypatch.setattr(loop, "build_optimizer", build)
        monkeypatch.setattr(loop, "forward", forward)
        monkeypatch.setattr(RunDir, "append_metrics", append)


def order_log(run, phase):
    lines = (run / phase / "data_order" / "rank0.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def observed(tmp_path_factory, tiny_store):
    recipe = recipe_from(tmp_path_factory.mktemp("observed"), RECIPE)
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


def crash_in_step(step: int, monkeypatch) -> dict:
    """Make the run's `step`-th forward raise Stop; the returned {"n": forwards so far} can be set
    far below `step` to let a resume run on."""
    calls = {"n": 0}
    real_forward = loop.forward

    def crashing(model, batch):
        calls["n"] += 1
        if calls["n"] == step:
            raise Stop
        return real_forward(model, batch)

    monkeypatch.setattr(loop, "forward", crashing)
    return calls


def test_resume_continues_after_the_checkpoint(tmp_path, tiny_store, monkeypatch):
    """Stopped in step 9 (checkpoints at steps 5 and 7), resumed: the resumed process starts at the
    checkpoint's step + 1 in metrics.jsonl and at its data step in the order log; retraining from
    step 0 (or from a later step) fails."""
    recipe = recipe_from(tmp_path, RECIPE, scale=0.5)
    options = loop.Options(stores=(str(tiny_store),), objective="clm", progress=False, save_every_steps=5)
    calls = crash_in_step(9, monkeypatch)
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


def metric_lines(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_metrics_jsonl_records_each_step_as_it_happened(observed):
    """One line per optimizer step: its number, phase, tokens, batch, LR, and the loss and gradient
    norm of what the model computed (the loss as the forward returned it, the norm by autograd here)."""
    run, observer = observed
    lines = [r for r in metric_lines(run) if "loss" in r]
    training = [f for f in observer.forwards if f["training"]]
    steps = expected_steps()
    assert len(lines) == len(training) == len(steps)
    tokens = phase_tokens = 0
    for k, (line, seen, (phase, sequences, lr)) in enumerate(zip(lines, training, steps), start=1):
        seq_len = 32 if phase == "pretrain" else 64
        phase_tokens = (phase_tokens if k > 1 and steps[k - 2][0] == phase else 0) + sequences * seq_len
        tokens += sequences * seq_len
        assert (line["step"], line["phase"], line["tokens"], line["phase_tokens"]) == (k, phase, tokens, phase_tokens)
        assert (line["batch_sequences"], line["seq_len"]) == (sequences, seq_len) == (seen["sequences"], seq_len)
        assert line["mask_rate"] == (0.3 if phase == "pretrain" else 0.15)
        assert line["lr"] == pytest.approx(lr, rel=1e-9)
        assert math.isfinite(line["loss"]) and line["loss"] == pytest.approx(seen["loss"], rel=1e-12, abs=0)
        assert line["grad_norm"] == pytest.approx(seen["grad_norm"], rel=1e-4), f"step {k}"
        assert not seen["autocast"]  # precision auto on a CPU: fp32, no autocast
    for reference, got in observer.references:  # documents, positions: the trainer passed the batch's own
        assert got == pytest.approx(reference, rel=1e-6)
    assert len(observer.references) == 2
    # the last checkpoint's progress records the finished phase: its name, last step and tokens
    pretrain = [r for r in lines if r["phase"] == "pretrain"][-1]
    last = checkpoint.read_state(checkpoint.list_checkpoints(run / "checkpoints")[-1])
    assert last["progress"]["history"] == [{"phase": "pretrain", "step": pretrain["step"],
                                             "tokens": pretrain["tokens"]}]


def test_gradients_are_clipped_to_the_recipes_norm(observed):
    """The optimizer steps on the gradient of the mean token loss, scaled down to norm 1 where larger."""
    run, observer = observed
    lines = [r for r in metric_lines(run) if "loss" in r]
    assert len(observer.steps) == len(lines)
    clipped = 0
    for line, (_, norm) in zip(lines, observer.steps):
        assert norm == pytest.approx(min(line["grad_norm"], CLIP), rel=1e-4)
        clipped += line["grad_norm"] > CLIP * 1.01
    assert clipped >= 2  # the recipe's clip did act


def test_tokens_per_second_is_the_phases_tokens_over_its_wall_time(observed):
    """tokens_per_s of a step: the phase's tokens so far / the time since the phase began, bounded here
    by the times of the forward passes, optimizer steps and metrics lines."""
    _, observer = observed
    forwards = [f["time"] for f in observer.forwards if f["training"]]
    logged = [(t, r) for t, r in observer.logged if "loss" in r]
    lower = observer.started
    first = None
    for k, ((t_log, r), t_fwd, (t_opt, _)) in enumerate(zip(logged, forwards, observer.steps)):
        if k == 0 or r["phase"] != logged[k - 1][1]["phase"]:
            first = t_fwd
            lower = max([t for t, _ in observer.logged if t < t_fwd], default=observer.started)
        assert r["phase_tokens"] / (t_log - lower) <= r["tokens_per_s"] <= r["phase_tokens"] / (t_opt - first), k


def checkpoint_steps():
    """(phase, step within the phase, step of the run) where the recipe's checkpoints fall: a phase's
    step that passes a multiple of checkpoint_every_tokens, and its last step."""
    marks, run_step = [], 0
    for phase, every, total in (("pretrain", 6000, 12_000), ("decay", 4000, 4000)):
        tokens = 0
        for k, (name, sequences, _) in enumerate([s for s in expected_steps() if s[0] == phase], start=1):
            seq_len = 32 if name == "pretrain" else 64
            before, tokens, run_step = tokens, tokens + sequences * seq_len, run_step + 1
            if tokens >= total or tokens // every > before // every:
                marks.append((phase, k, run_step))
    return marks


def test_held_out_loss_is_logged_at_each_checkpoint_on_a_fixed_batch(observed):
    run, observer = observed
    marks = checkpoint_steps()
    assert len(marks) == 3
    evals = [r for r in metric_lines(run) if "eval_loss" in r]
    held_out = [f for f in observer.forwards if not f["training"]]
    assert [(r["phase"], r["step"]) for r in evals] == [(phase, step) for phase, _, step in marks]
    tokens = {k: sum(n * (32 if p == "pretrain" else 64) for p, n, _ in expected_steps()[:k]) for _, _, k in marks}
    assert [r["tokens"] for r in evals] == [tokens[step] for _, _, step in marks]
    assert len(held_out) == len(evals) and all(f["sequences"] == 48 for f in held_out)
    for r, f in zip(evals, held_out):
        assert math.isfinite(r["eval_loss"]) and r["eval_loss"] == pytest.approx(f["loss"], rel=1e-6)
    assert evals[1]["eval_loss"] < evals[0]["eval_loss"]
    held_inputs = [(i, lab) for t, i, lab in observer.batches if not t]
    assert torch.equal(held_inputs[0][0], held_inputs[1][0]) and torch.equal(held_inputs[0][1], held_inputs[1][1])


def test_checkpoints_carry_the_phase_tags_at_the_recipes_token_marks(observed):
    run, _ = observed
    saved = checkpoint.list_checkpoints(run / "checkpoints")
    tags = {"pretrain": "step", "decay": "decay"}
    assert [p.name for p in saved] == [f"{step:09d}-{tags[phase]}{k}" for phase, k, step in checkpoint_steps()]
    last = checkpoint.read_state(saved[-1])
    assert last["step"] == len(expected_steps()) and last["tag"] == f"decay{checkpoint_steps()[-1][1]}"


SMALL = """\
model: tiny
seed: 5
optimizer: {name: stable_adamw, lr: 1.0e-3, betas: [0.9, 0.98], eps: 1.0e-6}
phase:
  pretrain: {tokens: 2048, seq_len: 32, mask_rate: 0.3, batch_sequences: 8, checkpoint_every_tokens: 1K, tag: step}
  decay: {tokens: 768, seq_len: 64, mask_rate: 0.15, lr_decay: linear, batch_sequences: 4,
          checkpoint_every_tokens: 512, tag: decay}
"""


def recipe_from(tmp_path, text: str, name: str = "recipe", scale: float = 1.0):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return load_recipe(str(path), scale=scale)


def small_recipe(tmp_path):
    return recipe_from(tmp_path, SMALL, "small")


def with_dropout(text: str) -> str:
    return text.replace("phase:\n", "dropout: {attention_output: 0.1}\nphase:\n")


def with_seed(text: str, phase: str, seed: int) -> str:
    return text.replace(f"  {phase}: {{tokens:", f"  {phase}: {{seed: {seed}, tokens:")


def phase_losses(tmp_path, name: str, text: str, options) -> dict[str, list[float]]:
    """The loss of every step of a run of the recipe `text`, by phase."""
    run = runs.start(tmp_path / name, recipe_from(tmp_path, text, name), options, World())
    losses: dict[str, list[float]] = {}
    for r in metric_lines(run):
        if "loss" in r:
            losses.setdefault(r["phase"], []).append(r["loss"])
    return losses


def test_clm_run_evaluates_on_its_token_cadence_and_shows_a_progress_bar(tmp_path, tiny_store, monkeypatch, capsys):
    """256 tokens a step (8 × 32, then 4 × 64): held-out loss when 768 tokens have passed since the last
    one (exactly 768 counts) or a checkpoint is due (at the phase's end too); the progress bar names
    each phase, counts its tokens and shows the last step, loss and LR."""
    observer = Observer(monkeypatch)
    options = loop.Options(stores=(str(tiny_store),), objective="clm", progress=True, eval_stores=(str(tiny_store),),
                           eval_every_tokens=768, eval_sequences=4)
    run = runs.start(tmp_path / "dec", small_recipe(tmp_path), options, World())
    lines = metric_lines(run)
    steps = [r for r in lines if "loss" in r]
    assert [r["tokens"] for r in steps] == [256 * k for k in range(1, 12)]
    assert all(r["mask_rate"] is None for r in steps)  # no masking in a CLM run
    expected, last = [], 0
    for k in range(1, 12):
        tokens, phase_tokens = 256 * k, 256 * k if k <= 8 else 256 * (k - 8)
        every, total = (1000, 2048) if k <= 8 else (512, 768)
        due = phase_tokens >= total or phase_tokens // every > (phase_tokens - 256) // every
        if due or tokens - last >= 768:
            expected.append(k)
            last = tokens
    assert expected == [3, 4, 7, 8, 10, 11]  # 11: the phase's end, no multiple of 512 passed
    assert [r["step"] for r in lines if "eval_loss" in r] == expected
    held_out = [(i, lab) for t, i, lab in observer.batches if not t]
    assert len(held_out) == len(expected)
    # the held-out set is scored with the run's objective: nearly every token is a target
    for inputs, labels in [(i, lab) for _, i, lab in observer.batches]:
        assert (labels != IGNORE_INDEX).sum() > 0.8 * inputs.numel()
    err = capsys.readouterr().err
    for phase, total in (("pretrain", "2.05k"), ("decay", "768")):
        last_line = [r for r in steps if r["phase"] == phase][-1]
        shown = re.findall(rf"{phase}: 100%\|[^\r\n]*", err)
        assert shown, err[-2000:]
        final = shown[-1]
        assert f"/{total} [" in final and "tok/s" in final, final
        assert f"loss={last_line['loss']:.4f}, lr={last_line['lr']:.2e}, step={last_line['step']}]" in final, final


class InfiniteGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def test_an_infinite_gradient_with_a_finite_loss_stops_the_run(tmp_path, tiny_store, monkeypatch, capsys):
    real = loop.forward

    def poisoned(model, batch):
        out = real(model, batch)
        out.loss = InfiniteGradient.apply(out.loss)
        return out

    monkeypatch.setattr(loop, "forward", poisoned)
    options = loop.Options(stores=(str(tiny_store),), objective="mlm", progress=False)
    with pytest.raises(loop.NonFiniteLoss) as error:
        runs.start(tmp_path / "inf", small_recipe(tmp_path), options, World())
    message = str(error.value)
    assert message.startswith("step 1 (phase pretrain, batch 0): the gradient norm is ")
    assert "; training stopped and no checkpoint was written yet; inspect the batch" in message
    assert RunDir(tmp_path / "inf").metrics() == []  # the step did not count
    assert "pretrain" not in capsys.readouterr().err  # progress=False: no bar


def test_options_survive_a_json_round_trip_and_replace(tiny_store):
    options = loop.Options(stores=("a", "b"), objective="clm", eval_stores=("c",), eval_every_tokens=7,
                           eval_sequences=3, micro_batch_sequences=2, keep_last=5, save_every_steps=9,
                           parallel="fsdp", precision="bf16", compile=True, progress=False, cross=True,
                           num_workers=2, tensorboard=True, reseed_rng=True)
    data = json.loads(json.dumps(options.to_dict()))
    assert loop.Options.from_dict(data) == options
    old = {k: v for k, v in data.items() if k != "eval_stores"}  # a run.json from before eval_stores
    assert loop.Options.from_dict(old) == options.replace(eval_stores=())
    absolute = tuple(str(Path(name).resolve()) for name in ("a", "b"))  # once, on construction
    assert options.stores == absolute and options.replace(keep_last=1).stores == absolute
    assert options.replace(keep_last=1).keep_last == 1


def test_autocast_is_fp32_on_a_cpu_unless_bf16_is_asked_for(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    def inside(precision):
        with loop._autocast(precision, cpu):
            x = torch.ones(2, 2) @ torch.ones(2, 2)
            return torch.is_autocast_enabled("cpu"), x.dtype

    assert inside("auto") == (False, torch.float32)
    assert inside("fp32") == (False, torch.float32)
    assert inside("bf16") == (True, torch.bfloat16)
    with pytest.raises(TwofoldError):
        loop._autocast("fp16", cpu)
    # on a CUDA device (here without CUDA: the context is built, not entered): bf16 for auto where supported
    with pytest.warns(UserWarning):
        assert loop._autocast("auto", cuda).fast_dtype == torch.bfloat16
        assert loop._autocast("bf16", cuda).fast_dtype == torch.bfloat16
        assert loop._autocast("fp32", cuda).fast_dtype != torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert loop._autocast("auto", cuda).fast_dtype != torch.bfloat16


def test_micro_batches_split_the_step_and_accumulate_its_mean_loss_and_gradient(tmp_path, tiny_store, monkeypatch):
    """micro_batch_sequences 3: steps of 8 sequences run as forwards of 3, 3 and 2; the step's loss is the
    mean over all its targets and the optimizer steps on the gradient of that mean (Σ n_i g_i / N)."""
    observer = Observer(monkeypatch, keep_gradients=3)
    options = loop.Options(stores=(str(tiny_store),), objective="mlm", progress=False, micro_batch_sequences=3)
    run = runs.start(tmp_path / "micro", small_recipe(tmp_path), options, World())
    steps = [r for r in metric_lines(run) if "loss" in r]
    forwards = [f for f in observer.forwards if f["training"]]
    assert [f["sequences"] for f in forwards] == [3, 3, 2] * 8 + [3, 1] * 3
    parts = [forwards[3 * k:3 * k + 3] for k in range(8)] + [forwards[24 + 2 * k:26 + 2 * k] for k in range(3)]
    assert len(steps) == len(parts) == len(observer.steps)
    for line, part in zip(steps, parts):
        targets = sum(f["targets"] for f in part)
        assert line["loss"] == pytest.approx(sum(f["loss"] * f["targets"] for f in part) / targets, rel=1e-9)
    first = forwards[:3]
    gradient = sum(g * f["targets"] for g, f in zip(observer.gradients, first)) / sum(f["targets"] for f in first)
    assert steps[0]["grad_norm"] == pytest.approx(float(gradient.norm()), rel=1e-4)
    assert observer.steps[0][1] == pytest.approx(float(gradient.norm()), rel=1e-4)  # no clip in this recipe


def test_a_resumed_run_computes_what_the_uninterrupted_run_did(tmp_path, tiny_store, monkeypatch):
    """Crashed in step 9, resumed from the checkpoint of step 7: its later lines (loss, gradient norm, LR,
    tokens) equal an uninterrupted run's, dropout included (its random stream comes back from the
    checkpoint), and its tokens/s counts only the tokens it trained itself."""
    recipe = recipe_from(tmp_path, with_dropout(RECIPE), scale=0.5)
    options = loop.Options(stores=(str(tiny_store),), objective="clm", progress=False, save_every_steps=5)
    keep = options.replace(keep_last=100)  # all checkpoints of the uninterrupted run stay
    whole = [r for r in metric_lines(runs.start(tmp_path / "whole", recipe, keep, World())) if "loss" in r]
    saved = [p.name.partition("-") for p in checkpoint.list_checkpoints(tmp_path / "whole" / "checkpoints")]
    tagged = {int(step) for step, _, tag in saved if tag}
    every_fifth = {5 * k for k in range(1, len(whole) // 5 + 1)}
    untagged = {int(step) for step, _, tag in saved if not tag}
    assert untagged == every_fifth - tagged and untagged  # untagged: every 5th step off the token marks, all kept
    calls = crash_in_step(9, monkeypatch)
    with pytest.raises(Stop):
        runs.start(tmp_path / "run", recipe, options, World())
    calls["n"] = -10**9
    observer = Observer(monkeypatch)
    runs.resume(tmp_path / "run", World())
    resumed = [r for r in metric_lines(tmp_path / "run") if "loss" in r]
    keys = ("step", "phase", "tokens", "phase_tokens", "lr", "loss", "grad_norm", "batch_sequences")
    assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in whole]  # CPU: bit for bit
    first = [r for _, r in observer.logged if "loss" in r][0]
    assert first["step"] == 8  # the checkpoint of step 7 (tagged: it closes the first 6K/2 tokens)
    trained = first["phase_tokens"] - whole[6]["phase_tokens"]
    forward_started = observer.forwards[0]["time"]
    stepped = min(t for t, _ in observer.steps if t > forward_started)  # (loading the optimizer may step it)
    assert first["tokens_per_s"] <= trained / (stepped - forward_started)


def test_the_first_phases_seed_draws_the_initial_weights(tmp_path, tiny_store):
    """A phase's own seed replaces the recipe's for its streams; the first phase's draws the initial
    weights, a later phase's seed leaves the first phase's steps as they were (the data keep the recipe's seed)."""
    options = loop.Options(stores=(str(tiny_store),), objective="clm", progress=False)
    pretrain = lambda name, text: phase_losses(tmp_path, name, text, options)["pretrain"]
    plain = pretrain("plain", SMALL)
    assert pretrain("later", with_seed(SMALL, "decay", 9)) == plain
    assert pretrain("first", with_seed(SMALL, "pretrain", 9))[0] != plain[0]


def test_compile_runs_every_step_through_the_compiled_module(tmp_path, tiny_store, monkeypatch):
    """--compile: the steps run through what torch.compile returned for the model. torch.compile is
    stood in for by a recording wrapper: Inductor needs minutes to compile on this CPU (the real
    compile is checked by hand, docs/training.md)."""
    compiled = []

    class Compiled(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net, self.calls = net, 0

        def forward(self, *args, **kwargs):
            self.calls += 1
            return self.net(*args, **kwargs)

    settings = []
    monkeypatch.setattr(torch, "compile", lambda net, **how: settings.append(how) or compiled.append(Compiled(net))
                        or compiled[-1])
    options = loop.Options(stores=(str(tiny_store),), objective="clm", progress=False, compile=True)
    run = runs.start(tmp_path / "compiled", small_recipe(tmp_path), options, World())
    steps = [r for r in metric_lines(run) if "loss" in r]
    assert len(compiled) == 1 and isinstance(compiled[0].net, TwofoldModel)
    assert compiled[0].calls == len(steps) > 0
    assert settings == [{"fullgraph": True, "dynamic": False}]  # one graph, shapes fixed


def test_checkpoints_record_the_recipe_and_where_each_finished_phase_ended(observed):
    """A checkpoint says what trained it: the run's recipe, and the run's step and tokens at the end
    of every finished phase (at the decay checkpoint: pretraining, ended at its last step)."""
    run, _ = observed
    pretrain = [sequences for phase, sequences, _ in expected_steps() if phase == "pretrain"]
    state = json.loads((checkpoint.find_tagged(run / "checkpoints", "decay8") / "state.json").read_text())
    assert state["recipe"] == RunDir(run).info["recipe"] and state["recipe"]["phase"]["pretrain"]["seq_len"] == 32
    assert state["progress"]["history"] == [{"phase": "pretrain", "step": len(pretrain), "tokens": 32 * sum(pretrain)}]


def test_a_later_phases_own_seed_draws_that_phases_dropout(tmp_path, tiny_store):
    """Dropout draws from streams seeded as each phase begins: a decay phase with a seed of its own
    drops other activations in decay than the recipe's seed does (the masks and the data follow the
    recipe's seed), and pretraining stays as it was."""
    options = loop.Options(stores=(str(tiny_store),), objective="mlm", progress=False)
    plain = phase_losses(tmp_path, "plain", with_dropout(SMALL), options)
    seeded = phase_losses(tmp_path, "seeded", with_seed(with_dropout(SMALL), "decay", 9), options)
    assert seeded["pretrain"] == plain["pretrain"]
    assert all(a != b for a, b in zip(seeded["decay"], plain["decay"])) and len(plain["decay"]) == 3


def test_a_step_with_one_labelled_token_takes_that_tokens_loss_and_gradient(tmp_path, tiny_store):
    """The step's loss is the sum of its token losses over its targets, also for a single target
    (no floor above 1 in the division), and so is the gradient the optimizer gets."""
    recipe = small_recipe(tmp_path)
    options = loop.Options(stores=(str(tiny_store),), objective="mlm", progress=False)
    trainer = loop.Trainer(RunDir(tmp_path / "one"), recipe, options, model_config=preset("tiny", causal=False),
                           world=World())
    ids = torch.arange(5, 21, dtype=torch.int64)
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[6] = 11
    batch = Batch(input_ids=ids, labels=labels, position_ids=torch.arange(16), cu_seqlens=torch.tensor([0, 16],
                  dtype=torch.int32), max_seqlen=16, sequence_offsets=torch.tensor([0, 16], dtype=torch.int32),
                  step=0, rank=0, first_sequence=0)
    out = trainer.model(ids, labels=labels, cu_seqlens=batch.cu_seqlens, max_seqlen=16)
    grads = torch.autograd.grad(out.loss, list(trainer.model.parameters()))
    expected_norm = float(torch.stack([g.double().norm() for g in grads]).norm())
    norms = []
    real_step = trainer.optimizer.step
    trainer.optimizer.step = lambda: norms.append(float(torch.stack(
        [p.grad.double().norm() for p in trainer.model.parameters()]).norm())) or real_step()
    loss, grad_norm, _ = trainer._accumulate(batch, recipe.phases[0])
    trainer.optimizer.step()
    assert loss.item() == pytest.approx(out.loss.item(), rel=1e-6)
    assert grad_norm.item() == pytest.approx(expected_norm, rel=1e-5)
    assert norms == [pytest.approx(expected_norm, rel=1e-5)]


def test_tokens_per_second_counts_each_phases_own_tokens_and_time(tmp_path, tiny_store, monkeypatch):
    """With a clock that ticks one second per reading, a step's tokens/s is the tokens its phase has
    trained so far over the steps taken in it: every phase counts from zero."""
    ticks = itertools.count()
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    options = loop.Options(stores=(str(tiny_store),), objective="clm", progress=False)
    lines = [r for r in metric_lines(runs.start(tmp_path / "clock", small_recipe(tmp_path), options, World()))
             if "loss" in r]
    for phase in ("pretrain", "decay"):
        steps = [r for r in lines if r["phase"] == phase]
        assert [r["tokens_per_s"] for r in steps] == [r["phase_tokens"] / (k + 1) for k, r in enumerate(steps)]
        assert len(steps) > 1


def test_stores_whose_tokenizer_outgrows_the_model_are_refused_for_training_and_held_out(tmp_path, tiny_store):
    """The training and the held-out loaders both check the model's vocabulary against their stores'
    tokenizer before a step (else a larger id would fail deep inside the embedding)."""
    vocab = TokenStore(tiny_store).vocab_size
    bigger = tmp_path / "bigger"
    shutil.copytree(tiny_store, bigger)
    manifest = json.loads((bigger / "manifest.json").read_text())
    manifest["tokenizer"]["vocab_size"] = vocab + 100
    (bigger / "manifest.json").write_text(json.dumps(manifest))
    recipe = small_recipe(tmp_path)
    for name, stores, eval_stores in (("train", (bigger,), ()), ("held-out", (tiny_store,), (bigger,))):
        options = loop.Options(stores=(str(stores[0]),), objective="mlm", progress=False,
                               eval_stores=tuple(map(str, eval_stores)))
        trainer = loop.Trainer(RunDir(tmp_path / name), recipe, options,
                               model_config=preset("tiny", causal=False, vocab_size=vocab), world=World())
        with pytest.raises(TwofoldError, match=f"vocab_size {vocab} is smaller than the stores' tokenizer"):
            trainer.run()


def test_the_held_out_batch_draws_every_group_and_is_the_same_in_every_phase_of_a_shape(tmp_path, tiny_store):
    """The held-out set is every group of the held-out stores, whatever the phase trains on (here
    prose only), and the same sequences for phases of one shape (held-out losses stay comparable)."""
    recipe = small_recipe(tmp_path)
    options = loop.Options(stores=(str(tiny_store),), objective="mlm", progress=False, eval_stores=(str(tiny_store),),
                           eval_sequences=24)
    trainer = loop.Trainer(RunDir(tmp_path / "held"), recipe, options, model_config=preset("tiny", causal=False),
                           world=World())
    prose = dataclasses.replace(recipe.phases[0].data(seed=recipe.seed), mixture=Mixture(groups=("prose",)))
    first = loop._HeldOut(trainer, prose).batch
    later = loop._HeldOut(trainer, dataclasses.replace(prose, seed=recipe.seed + 1)).batch  # phase index 1
    assert set(first.groups) == set(TokenStore(tiny_store).groups) and first.num_sequences == 24
    assert torch.equal(first.input_ids, later.input_ids) and torch.equal(first.labels, later.labels)


def test_a_resumed_phases_progress_bar_starts_where_the_checkpoint_left_it(tmp_path, tiny_store, monkeypatch, capsys):
    """Stopped in step 6 of 8, resumed from the checkpoint at 1K of pretraining's 2K tokens: the bar
    starts at 50%, not at 0, so its rate and ETA count only what is left."""
    options = loop.Options(stores=(str(tiny_store),), objective="clm", progress=False)
    calls = crash_in_step(6, monkeypatch)
    with pytest.raises(Stop):
        runs.start(tmp_path / "run", small_recipe(tmp_path), options, World())
    calls["n"] = -10**9
    capsys.readouterr()
    runs.resume(tmp_path / "run", World(), {"progress": True})
    first = re.search(r"pretrain:\s+(\d+)%", capsys.readouterr().err)
    assert first and first.group(1) == "50"


def test_phase_k_draws_its_data_with_the_recipes_seed_plus_k(tmp_path, tiny_store):
    """A phase's batches depend on the recipe's seed and the phase's place only: the decay phase
    (k = 1) of a run with seed 5 reads what a run whose only phase is that decay reads with seed 6."""
    options = loop.Options(stores=(str(tiny_store),), objective="clm", progress=False)
    alone = SMALL.replace("seed: 5", "seed: 6").replace(
        "  pretrain: {tokens: 2048, seq_len: 32, mask_rate: 0.3, batch_sequences: 8, checkpoint_every_tokens: 1K, "
        "tag: step}\n", "")
    both = runs.start(tmp_path / "both", small_recipe(tmp_path), options, World())
    single = runs.start(tmp_path / "single", recipe_from(tmp_path, alone, "alone"), options, World())
    hashes = lambda run: [(r["step"], r["hash"]) for r in order_log(run, "decay")]
    assert hashes(both) == hashes(single) and len(hashes(both)) == 3
