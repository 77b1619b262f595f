"""The training loop: one member of a pair (encoder: MLM, decoder: CLM) through a recipe.

It writes into a member run directory (laid out by `twofold.train.rundir`): checkpoints,
metrics and each phase's batch order. Time is counted in real tokens: sequences × seq_len
when rows are packed, the rows' own lengths with a row per document chunk (`layout:
documents`, where tokens per step vary). Every step takes the global batch the schedule
gives; the LR is evaluated at the tokens seen after the step. A phase ends with the step that reaches its
token budget, and always with a tagged checkpoint. Each phase sets the model's RoPE θ and
starts every rank's random streams (dropout) afresh. Everything a step depends on (weights,
optimizer, loader step, each rank's RNG) is in the checkpoint, so a resumed run computes
exactly what the uninterrupted run would have.

Both members of a pair run this loop with the same recipe, stores and seed: their loaders
yield the same token sequences step by step, and only the objective differs.

A step never waits for the host where a varlen attention kernel serves (CUDA, bf16): each
micro-batch carries its layout and target rows built on the host, padded to fixed shapes
(`Batch.with_targets`) and copied without blocking; the model is compiled once per shape;
loss and gradient norm stay on the device and are read, with the non-finite check, every
`log_every_steps` steps and before any evaluation or checkpoint (`_read`). Each step's
record is still written. On the CPU every step is read at once (a read costs nothing there).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from twofold.data.batches import target_capacity
from twofold.data.loader import BatchLoader, DataSpec, OrderLoader
from twofold.data.order import BatchSchedule
from twofold.data.replay import PublishedOrder
from twofold.errors import TwofoldError
from twofold.model.attention import FAST_KERNELS, fast_kernel
from twofold.model.flops import peak_flops, training_flops
from twofold.train import checkpoint, microbatch, rng
from twofold.train.distributed import World, barrier, sum_across, wrap
from twofold.train.optim import build_optimizer, clip_grad_norm, set_lr, set_weight_decay
from twofold.train.progress import StepLife, phase_bar
from twofold.train.recipe import Phase, Recipe
from twofold.train.rundir import RunDir
from twofold.train.schedule import lr_at

EVAL_MASK_RATE = 0.15  # held-out MLM is always measured at Ettin's evaluation rate


@dataclass(frozen=True)
class Options:
    """How to run (not what to learn: that is the recipe)."""

    stores: tuple[str, ...]
    objective: str = "mlm"
    eval_stores: tuple[str, ...] = ()
    eval_every_tokens: int | None = None  # None: at every checkpoint
    eval_sequences: int = 32
    micro_batch_sequences: int | None = None  # per rank and forward pass; None: chosen to fit (microbatch)
    keep_last: int = 2
    save_every_steps: int | None = None  # extra untagged checkpoints for resume
    parallel: str = "ddp"
    precision: str = "auto"  # auto: bf16 autocast on a GPU that has it, else fp32
    compile: bool | None = None  # None: on where the step has fixed shapes
    fixed_shapes: bool | None = None  # None: where a varlen attention kernel serves (CUDA, bf16)
    attention: str | None = None  # force a varlen kernel ("varlen", "flash"); None: per call
    log_every_steps: int | None = None  # None: every step on the CPU, every 10 on a GPU
    progress: bool = True
    cross: bool = False  # run the recipe's `cross` phase (continuation) instead of the others
    first_phase: str | None = None  # start at this phase of the recipe and run it and the ones after
    order: str | None = None  # a published batch order (Parquet input_ids, step) the first phase replays
    num_workers: int = 0
    tensorboard: bool = False  # also write the metrics as TensorBoard scalars under RUN/tensorboard
    reseed_rng: bool = False  # on resume with another number of ranks mid-phase with dropout: fresh streams

    def __post_init__(self) -> None:
        # Files by absolute path, once: the run resumes and exports from any working directory.
        absolute = lambda paths: tuple(str(Path(p).resolve()) for p in paths)
        object.__setattr__(self, "stores", absolute(self.stores))
        object.__setattr__(self, "eval_stores", absolute(self.eval_stores))
        if self.order is not None:
            object.__setattr__(self, "order", str(Path(self.order).resolve()))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Options:
        """From `to_dict()` after a JSON round trip."""
        return cls(**data)

    def replace(self, **changes) -> Options:
        return dataclasses.replace(self, **changes)


@dataclass
class Progress:
    """Where the run stands after its last completed step."""

    phase_index: int = 0
    phase_step: int = 0  # loader step within the phase
    phase_tokens: int = 0
    step: int = 0  # optimizer steps since the run began
    tokens: int = 0
    last_eval_tokens: int = 0
    history: list = field(default_factory=list)  # finished phases: name, steps, tokens
    micro_batches: dict = field(default_factory=dict)  # phase name -> sequences per forward pass chosen


class NonFiniteLoss(TwofoldError):
    """A NaN or infinite loss or gradient: the run stops; the last good checkpoint stays."""


# ---------------------------------------------------------------- the trainer


class Trainer:
    def __init__(self, run: RunDir, recipe: Recipe, options: Options, *, model_config, world: World,
                 initial: dict | None = None, resume: bool = False):
        from twofold.model import TwofoldModel

        self.rundir, self.recipe, self.options, self.world = run, recipe, options, world
        self.explicit_micro_batch = options.micro_batch_sequences  # None: each phase chooses one to fit
        self.phases: tuple[Phase, ...] = (recipe.cross,) if options.cross else recipe.phases
        self.start = start = first_phase_index(recipe, options)
        torch.manual_seed(self._seed(self.phases[start]))  # the same initial weights on every rank
        self.model = TwofoldModel(model_config)
        if initial is not None:
            self.model.load_state_dict(initial)
        if options.attention is not None and options.attention not in FAST_KERNELS:
            raise TwofoldError(f"attention kernel {options.attention!r} is unknown; "
                               f"use one of {', '.join(FAST_KERNELS)}")
        self.model.attention_kernel = options.attention
        self.model.to(world.device)
        # FSDP2 swaps parameters for sharded ones: wrap first, then build the optimizer.
        self.net = wrap(self.model, world, options.parallel)
        first_peak = self.phases[start].lr_schedule(recipe.optimizer.lr).peak
        self.optimizer = build_optimizer(self.model, recipe.optimizer, peak_lr=first_peak)
        self.progress = Progress(phase_index=start)
        self.resumed_data: dict | None = None  # the data loader state to continue from
        # metrics.jsonl keeps the records up to this step; cut by the first record written, so
        # that a resume the data loader refuses has changed nothing
        self.metrics_kept_to: int | None = 0
        if resume:
            self._restore()
        self.compute_dtype = _compute_dtype(options.precision, world.device)
        self.autocast = _autocast(options.precision, world.device)
        fast = self._varlen_serves()
        self.fixed_shapes = fast if options.fixed_shapes is None else options.fixed_shapes
        if self.fixed_shapes and fast if options.compile is None else options.compile:
            # One graph for a bare model; DDP's optimizer splits the graph at its gradient buckets.
            self.net = _compiled(self.net, whole=self.net is self.model and options.parallel == "ddp")
        self.log_every = options.log_every_steps or (10 if world.device.type == "cuda" else 1)
        if self.log_every < 1:
            raise TwofoldError(f"log_every_steps must be at least 1, got {self.log_every}")
        self.peak = peak_flops(world.device)
        self.pending: list[dict] = []  # records whose loss and gradient norm are still on the device
        if options.tensorboard:
            _tensorboard_available()
        self.board = None  # opened with the first record, like metrics.jsonl

    # ------------------------------------------------------------ phases

    def run(self) -> Path:
        while self.progress.phase_index < len(self.phases):
            self._run_phase(self.phases[self.progress.phase_index])
            p = self.progress
            p.history.append({"phase": self.phases[p.phase_index].name, "step": p.step, "tokens": p.tokens})
            p.phase_index, p.phase_step, p.phase_tokens = p.phase_index + 1, 0, 0
        return self.rundir.path

    def _varlen_serves(self) -> bool:
        """Does a varlen kernel run the attention (one call per layer, no host reads)? Then
        micro-batches are padded to fixed shapes and the model is compiled, by default."""
        if self.options.attention is not None:
            return True
        probe = torch.empty(0, device=self.world.device, dtype=self.compute_dtype)
        return fast_kernel(probe, self.model.config.attention_dropout) is not None

    def _seed(self, phase: Phase) -> int:
        return self.recipe.seed if phase.seed is None else phase.seed

    def _run_phase(self, phase: Phase) -> None:
        p, index = self.progress, self.progress.phase_index
        self.model.set_rope_theta(phase.rope_theta_global, phase.rope_theta_local)
        if p.phase_step == 0:  # a phase begun afresh; a resumed one has its streams back already
            rng.seed_streams(self._seed(phase), index, self.world.rank)
        self.options = self.options.replace(micro_batch_sequences=self._micro_batch(phase))
        data = phase.data(seed=self.recipe.seed + index)
        how = dict(objective=self.options.objective, rank=self.world.rank, world_size=self.world.world_size,
                   num_workers=self.options.num_workers, run_dir=self.rundir.phase_dir(phase.name),
                   model_vocab_size=self.model.config.vocab_size)
        if self.options.order is not None and index == self.start:  # the phase replays a published order
            loader = OrderLoader(PublishedOrder(self.options.order), list(self.options.stores), data, **how)
        else:
            loader = BatchLoader.from_spec(list(self.options.stores), data, **how)
        if self.resumed_data is not None:  # refuses other stores, mixture, seed or seq_len
            loader.load_state_dict(self.resumed_data)
            self.resumed_data = None
        schedule = phase.lr_schedule(self.recipe.optimizer.lr)
        evaluator = _HeldOut(self, data) if self.options.eval_stores else None
        self.bar = phase_bar(phase.name, phase.tokens, p.phase_tokens, self.world.main and self.options.progress)
        self.clock = _Clock(time.perf_counter(), p.phase_tokens)
        life = StepLife(phase.name, self.bar, self.world.main)
        hook = self.net.register_forward_pre_hook(life)  # outside the step: one call per micro-batch
        batch_iter = iter(loader)
        set_weight_decay(self.optimizer, self._weight_decay(phase))
        ends = loader.total_steps  # a replayed order ends the phase with its last step
        while p.phase_tokens < phase.tokens and (ends is None or p.phase_step < ends):
            batch = next(batch_iter)
            sequences = loader.steps.size(batch.step)
            tokens_before, tokens_after = p.phase_tokens, p.phase_tokens + batch.step_tokens
            lr = lr_at(schedule, tokens_after)
            set_lr(self.optimizer, lr, peak=schedule.weight_decay_lr)
            loss, grad_norm, flops = self._lively_step(batch, phase, life)
            p.phase_step, p.phase_tokens = batch.step + 1, tokens_after
            p.step, p.tokens = p.step + 1, p.tokens + batch.step_tokens
            self.pending.append({"record": {
                "step": p.step, "phase": phase.name, "tokens": p.tokens, "phase_tokens": p.phase_tokens,
                "loss": loss, "lr": lr, "grad_norm": grad_norm, "batch_sequences": sequences,
                "micro_batch_sequences": min(self.options.micro_batch_sequences or batch.num_sequences,
                                             batch.num_sequences),
                "batch_tokens": batch.step_tokens, "seq_len": phase.seq_len,
                "mask_rate": phase.mask_rate if self.options.objective == "mlm" else None},
                "flops": flops, "batch_step": batch.step})
            due = self._checkpoint_due(phase, tokens_before, tokens_after) or p.phase_step == ends
            evaluate = evaluator is not None and (due or self._eval_due())
            save = due or self._periodic_save_due()
            read = evaluate or save or p.phase_tokens >= phase.tokens or len(self.pending) >= self.log_every
            values = self._read(phase) if read else []  # stops on a non-finite loss before the update
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self._write(values)
            if evaluate:
                self._log({"step": p.step, "phase": phase.name, "tokens": p.tokens, "eval_loss": evaluator()})
                p.last_eval_tokens = p.tokens
            if save:
                self._save(checkpoint.checkpoint_tag(phase.tag, p.phase_step) if due else None, loader)
        hook.remove()
        if self.bar is not None:
            self.bar.close()

    def _weight_decay(self, phase: Phase) -> float:
        return self.recipe.optimizer.weight_decay if phase.weight_decay is None else phase.weight_decay

    def _checkpoint_due(self, phase: Phase, before: int, after: int) -> bool:
        every = phase.checkpoint_every_tokens
        return after >= phase.tokens or after // every > before // every

    def _eval_due(self) -> bool:
        every = self.options.eval_every_tokens
        return every is not None and self.progress.tokens - self.progress.last_eval_tokens >= every

    def _periodic_save_due(self) -> bool:
        every = self.options.save_every_steps
        return every is not None and self.progress.step % every == 0

    # ------------------------------------------------------------ the micro-batch

    def _micro_batch(self, phase: Phase) -> int | None:
        """Sequences per forward pass in this phase: `--micro-batch` (checked against the memory
        before the run began), the choice a resumed run made, or the most that fit (None: the
        whole step, which fits)."""
        if self.explicit_micro_batch is not None:
            return self.explicit_micro_batch
        if phase.name not in self.progress.micro_batches:
            chosen, note = microbatch.choose(self.model.config, phase, self.options.objective,
                                             self.compute_dtype == torch.bfloat16, self.world)
            if note and self.world.main:
                print(f"twofold: {note}", file=sys.stderr)
            self.progress.micro_batches[phase.name] = chosen
        return self.progress.micro_batches[phase.name]

    def _lively_step(self, batch, phase: Phase, life: StepLife) -> tuple[torch.Tensor, torch.Tensor, float]:
        """`_fitting_step`, its micro-batches watched by `life` (which it leaves, however it ends)."""
        life.begin(self.progress.step + 1, -(-batch.num_sequences // (self.options.micro_batch_sequences
                                                                       or batch.num_sequences)))
        try:
            return self._fitting_step(batch, phase)
        finally:
            life.end()

    def _fitting_step(self, batch, phase: Phase) -> tuple[torch.Tensor, torch.Tensor, float]:
        """`_accumulate`, and on a single GPU with the micro-batch chosen here: a step that runs out
        of memory is undone (gradients, random streams) and taken again with half the micro-batch.
        (The optimizer update comes after, so nothing of the weights has changed yet.)"""
        device = self.world.device
        if self.explicit_micro_batch is not None or self.world.distributed or not microbatch.recovers(device):
            return self._accumulate(batch, phase)
        streams = rng.capture(device)

        def undo(sequences: int) -> None:
            self.optimizer.zero_grad(set_to_none=True)
            rng.restore(streams, device)
            torch.cuda.empty_cache()
            self.options = self.options.replace(micro_batch_sequences=sequences)
            self.progress.micro_batches[phase.name] = sequences
            print(f"twofold: phase {phase.name}: out of GPU memory; trying {sequences} sequences per forward pass",
                  file=sys.stderr)

        result, _ = microbatch.halving(lambda _: self._accumulate(batch, phase),
                                       self.options.micro_batch_sequences or batch.num_sequences, undo)
        return result

    # ------------------------------------------------------------ one optimizer step

    def _accumulate(self, batch, phase: Phase) -> tuple[torch.Tensor, torch.Tensor, float]:
        """One step's gradients: (mean loss, gradient norm) on the device, and its model FLOPs."""
        micro, targets, flops = self._prepare(batch, phase)
        return (*self._device_step(micro, targets), flops)

    def _prepare(self, batch, phase: Phase) -> tuple[list, int, float]:
        """The host's part of a step: micro-batches with their layouts and target rows, the
        rank's target count and the step's model FLOPs on this rank."""
        sequences = self.options.micro_batch_sequences
        parts = batch.split(sequences) if sequences and sequences < batch.num_sequences else [batch]
        flops = sum(training_flops(self.model.config, part.cu_seqlens.diff().numpy(), part.num_targets)
                    for part in parts)
        return self._with_targets(parts, phase), sum(part.num_targets for part in parts), flops

    def _device_step(self, micro: list, targets: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward over the micro-batches, then the gradient clip, without reading
        anything back to the host: (mean loss, gradient norm), device tensors."""
        device, world = self.world.device, self.world
        if world.distributed:  # the global count stays on the device: nothing waits for it
            total = sum_across(_on(device, torch.tensor([float(targets)], dtype=torch.float64)), world)[0]
            total = total.clamp(min=1.0)
        else:
            total = float(max(targets, 1))
        # Sum of token losses over the global batch / its targets, whatever the split: DDP
        # averages gradients over ranks, hence the world-size factor.
        scale = world.world_size / total
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for i, part in enumerate(micro):
            part = part.to(device, non_blocking=True)
            if self.fixed_shapes:  # the one size a compiled graph leaves free: it only reaches attention
                torch._dynamo.maybe_mark_dynamic(part.cu_seqlens, 0)
            sync = i == len(micro) - 1 or not hasattr(self.net, "no_sync")
            with (torch.enable_grad() if sync else self.net.no_sync()), self.autocast:
                out = forward(self.net, part)
                (out.loss * out.num_targets * scale).backward()
            loss_sum += out.loss.detach().double() * out.num_targets
        loss = sum_across(loss_sum, world) / total
        return loss, clip_grad_norm(self.model, self.recipe.optimizer.grad_clip)

    def _with_targets(self, micro: list, phase: Phase) -> list:
        """Each micro-batch with its target rows; with fixed shapes padded to the phase's
        micro-batch of tokens and target rows."""
        if not self.fixed_shapes:
            return [part.with_targets() for part in micro]
        rows = self.options.micro_batch_sequences or -(-phase.batch_sequences // self.world.world_size)
        tokens = rows * phase.seq_len
        targets = target_capacity(tokens, self.options.objective, phase.mask_rate)
        found = max(part.num_targets for part in micro)
        if found > targets:  # about once in 10^9 micro-batches: one more compiled shape
            targets = -(-found // 1024) * 1024
        return [part.with_targets(tokens, targets, phase.seq_len) for part in micro]

    def _read(self, phase: Phase) -> list[tuple[dict, float, float]]:
        """The pending steps with their loss and gradient norm read from the device (one wait);
        stops at the first non-finite one."""
        values = torch.stack([torch.stack([entry["record"]["loss"].double(), entry["record"]["grad_norm"].double()])
                              for entry in self.pending]).tolist()
        pending, self.pending = self.pending, []
        for entry, (loss, grad_norm) in zip(pending, values):
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                self.optimizer.zero_grad(set_to_none=True)
                self._stop_non_finite(phase, entry, loss, grad_norm)
        return [(entry, loss, grad_norm) for entry, (loss, grad_norm) in zip(pending, values)]

    def _write(self, steps: list[tuple[dict, float, float]]) -> None:
        """Metrics records and progress of steps read: tokens/s and MFU since the phase began."""
        if not steps:
            return
        p, clock = self.progress, self.clock
        elapsed = max(time.perf_counter() - clock.started, 1e-9)
        clock.flops += sum(entry["flops"] for entry, _, _ in steps)
        speed = (p.phase_tokens - clock.tokens_at_start) / elapsed
        mfu = clock.flops / elapsed / self.peak if self.peak else None
        for entry, loss, grad_norm in steps:
            self._log({**entry["record"], "loss": loss, "grad_norm": grad_norm, "tokens_per_s": speed, "mfu": mfu})
        if self.bar is not None:
            entry, loss, _ = steps[-1]
            postfix = {"step": entry["record"]["step"], "loss": f"{loss:.4f}", "lr": f"{entry['record']['lr']:.2e}"}
            if mfu is not None:
                postfix["mfu"] = f"{mfu:.1%}"
            self.bar.set_postfix(refresh=False, **postfix)
            self.bar.update(p.phase_tokens - self.bar.n)

    def _stop_non_finite(self, phase: Phase, entry: dict, loss: float, grad_norm: float):
        what = "loss" if not math.isfinite(loss) else "gradient norm"
        last = self.rundir.checkpoints()
        kept = f"the last good checkpoint {last[-1].name} is intact" if last else "no checkpoint was written yet"
        raise NonFiniteLoss(
            f"step {entry['record']['step']} (phase {phase.name}, batch {entry['batch_step']}): the {what} is "
            f"{loss if what == 'loss' else grad_norm}; training stopped and {kept}; inspect the batch "
            f"(twofold data show-batch {self.rundir.phase_dir(phase.name)} --step {entry['batch_step']}), then "
            "resume, or start anew with a lower LR (--set optimizer.lr=…)")

    # ------------------------------------------------------------ state

    def _save(self, tag: str | None, loader) -> None:
        states = checkpoint.capture(self.model, self.optimizer)  # collective under FSDP2
        streams = rng.gather(self.world)  # collective: every rank's own
        if self.world.main:
            checkpoint.save(self.rundir.checkpoints_dir, step=self.progress.step, states=states,
                            progress=dataclasses.asdict(self.progress),
                            data=loader.state_dict(), config=self.model.config.to_dict(),
                            recipe=self.recipe.to_dict(), tag=tag, keep_last=self.options.keep_last,
                            streams=streams)
        barrier(self.world)

    def _restore(self) -> None:
        found = checkpoint.load_latest(self.rundir.checkpoints_dir, self.model, self.optimizer, restore_rng=False)
        if found is None:
            return
        self.progress = Progress(**found.progress)
        p = self.progress
        phase = self.phases[min(p.phase_index, len(self.phases) - 1)]
        rng.streams_for_resume(found.rng, self.world, seed=self._seed(phase), phase_index=p.phase_index,
                               step=p.phase_step, phase_done=p.phase_tokens >= phase.tokens,
                               dropout=self.model.config.has_dropout, reseed=self.options.reseed_rng,
                               where=f"checkpoint {found.path}")
        self.resumed_data = found.data
        self.metrics_kept_to = self.progress.step

    def _log(self, record: dict) -> None:
        if self.world.main and self.metrics_kept_to is not None:
            self.rundir.truncate_metrics(self.metrics_kept_to)
            self.metrics_kept_to = None
            if self.options.tensorboard:
                self.board = _tensorboard(self.rundir.path)
        if self.world.main:
            self.rundir.append_metrics(record)
        if self.board is not None:  # x axis: tokens, as everywhere in twofold
            for key, value in record.items():
                if key not in ("step", "tokens", "phase_tokens") and isinstance(value, (int, float)):
                    self.board.add_scalar(key, value, global_step=record["tokens"])
            self.board.flush()


# ---------------------------------------------------------------- pieces


def first_phase_index(recipe: Recipe, options: Options) -> int:
    """Where a run begins among its phases: 0, or the phase `--phase` names."""
    if options.cross or options.first_phase is None:
        return 0
    names = [phase.name for phase in recipe.phases]
    if options.first_phase not in names:
        raise TwofoldError(f"--phase {options.first_phase}: recipe {recipe.name} has no such phase; "
                           f"its phases: {', '.join(recipe.phase)}")
    return names.index(options.first_phase)


def _tensorboard_available() -> None:
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise TwofoldError("--tensorboard needs the tensorboard package: pip install 'twofold[tensorboard]'") from None


def _tensorboard(run_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def forward(model, batch):
    """The model on a packed batch with its target rows (`Batch.with_targets`); loss is the
    mean over the batch's labelled tokens."""
    return model(batch.input_ids, labels=batch.target_labels, cu_seqlens=batch.cu_seqlens,
                 max_seqlen=batch.max_seqlen, position_ids=batch.position_ids, target_index=batch.target_index)


@dataclass
class _Clock:
    """A phase's progress in time: tokens/s and MFU are averages since the phase (re)started."""

    started: float
    tokens_at_start: int
    flops: float = 0.0


def _on(device: torch.device, tensor: torch.Tensor) -> torch.Tensor:
    """A small host tensor on `device` without waiting for the device (pinned, non-blocking)."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _compiled(net, whole: bool):
    """torch.compile with fixed shapes; the whole model in one graph unless DDP or FSDP2 wrap it
    (DDP's optimizer splits the graph at its gradient buckets)."""
    return torch.compile(net, fullgraph=whole, dynamic=False)


class _HeldOut:
    """Mean loss on a fixed held-out set (MLM at 15%), the same sequences at every evaluation."""

    def __init__(self, trainer: Trainer, data: DataSpec):
        o = trainer.options
        # The phase's shape, but every group of the held-out stores, a fixed batch and rate.
        held_out = dataclasses.replace(data, mixture=dataclasses.replace(data.mixture, groups=None, sources=None),
                                       batch=BatchSchedule(o.eval_sequences), mask_rate=EVAL_MASK_RATE,
                                       seed=trainer.recipe.seed)
        loader = BatchLoader.from_spec(list(o.eval_stores), held_out, objective=o.objective,
                                       rank=trainer.world.rank, world_size=trainer.world.world_size,
                                       model_vocab_size=trainer.model.config.vocab_size)
        self.trainer, self.batch = trainer, loader.batch(0).with_targets()

    @torch.no_grad()
    def __call__(self) -> float:
        t = self.trainer
        t.model.eval()
        try:
            with t.autocast:
                out = forward(t.model, self.batch.to(t.world.device))  # unpadded: evaluation is not compiled
            total = sum_across(torch.stack([out.loss.double() * out.num_targets, out.num_targets.double()]), t.world)
        finally:
            t.model.train()
        return (total[0] / total[1].clamp(min=1)).item()


def _compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """bf16 (autocast) or fp32: `auto` is bf16 on a GPU that has it."""
    if precision not in ("auto", "fp32", "bf16"):
        raise TwofoldError(f"--precision {precision!r}: use auto, fp32 or bf16")
    bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.bfloat16 if precision == "bf16" or (precision == "auto" and bf16_ok) else torch.float32


def _autocast(precision: str, device: torch.device):
    if _compute_dtype(precision, device) == torch.bfloat16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def check_micro_batch(recipe: Recipe, options: Options, model_config, world: World) -> None:
    """Before the run is written: an explicit micro-batch that the memory estimate says cannot
    fit, or a phase where not even one sequence does, is refused (one line with the estimate)."""
    bf16 = _compute_dtype(options.precision, world.device) == torch.bfloat16
    microbatch.check_fits(options.micro_batch_sequences, (recipe.cross,) if options.cross else recipe.phases,
                          model_config, options.objective, bf16, world)
