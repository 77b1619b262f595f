"""The training loop: one member of a pair (encoder: MLM, decoder: CLM) through a recipe.

A member run directory holds

    run.json          what was asked: recipe, stores, objective, model config, options
    checkpoints/      see `twofold.train.checkpoint`
    metrics.jsonl     one line per optimizer step (and per held-out evaluation)
    {phase}/data_order/   the batch order of each phase (see `twofold.data.orderlog`)

Time is counted in tokens (sequence slots: sequences × seq_len). Every step takes the global
batch the schedule gives at the tokens seen so far; the LR is evaluated at the tokens seen
after the step. A phase ends with the step that reaches its token budget, and always with a
tagged checkpoint. Everything a step depends on (weights, optimizer, loader step, RNG) is in
the checkpoint, so a resumed run computes exactly what the uninterrupted run would have.

Both members of a pair call `train_member` with the same recipe, stores and seed: their
loaders yield the same token sequences step by step, only the objective differs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from twofold import __version__
from twofold.config import Phase, Recipe, recipe_from_dict
from twofold.errors import TwofoldError
from twofold.train import checkpoint
from twofold.train.distributed import World, barrier, sum_across, wrap
from twofold.train.optim import build_optimizer, clip_grad_norm, set_lr
from twofold.train.schedule import StepBatches, lr_at

OBJECTIVES = {"mlm": False, "clm": True}  # objective → causal
RUN_FILE = "run.json"
METRICS = "metrics.jsonl"
EVAL_MASK_RATE = 0.15  # held-out MLM is always measured at Ettin's evaluation rate


@dataclass(frozen=True)
class Options:
    """How to run (not what to learn: that is the recipe)."""

    stores: tuple[str, ...]
    objective: str = "mlm"
    eval_stores: tuple[str, ...] = ()
    eval_every_tokens: int | None = None  # None: at every checkpoint
    eval_sequences: int = 32
    micro_batch_sequences: int | None = None  # per rank and forward pass; None: the rank's share
    keep_last: int = 2
    save_every_steps: int | None = None  # extra untagged checkpoints for resume
    parallel: str = "ddp"
    precision: str = "auto"  # auto: bf16 autocast on a GPU that has it, else fp32
    compile: bool = False
    progress: bool = True
    cross: bool = False  # run the recipe's `cross` phase (continuation) instead of the others
    num_workers: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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


class NonFiniteLoss(TwofoldError):
    """A NaN or infinite loss or gradient: the run stops; the last good checkpoint stays."""


# ---------------------------------------------------------------- entry points


def start(run_dir: str | Path, recipe: Recipe, options: Options, world: World,
          init_from: str | None = None) -> Path:
    """Create a member run (refusing to overwrite one) and train it to the end."""
    run_dir = Path(run_dir)
    if options.objective not in OBJECTIVES:
        raise TwofoldError(f"objective {options.objective!r} is unknown; use mlm (encoder) or clm (decoder)")
    taken = (run_dir / RUN_FILE).exists()
    barrier(world)  # every rank looks before rank 0 writes
    if taken:
        raise TwofoldError(f"{run_dir} already holds a run; resume it with --resume {run_dir} or choose another --out")
    if options.cross and recipe.cross is None:
        raise TwofoldError(f"recipe {recipe.name} has no `cross` phase for --init-from; add one or use the ettin recipe")
    model_config, initial = _initial_model(recipe, options, init_from)
    if world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / RUN_FILE, {
            "version": __version__, "recipe": recipe.to_dict(), "options": options.to_dict(),
            "model": model_config.to_dict(), "init_from": init_from, "world_size": world.world_size})
    barrier(world)
    return _Trainer(run_dir, recipe, options, model_config, world, initial).run()


def resume(run_dir: str | Path, world: World, overrides: dict | None = None) -> Path:
    """Continue a member run from its newest intact checkpoint (or from scratch if it has none)."""
    run_dir = Path(run_dir)
    saved = read_run(run_dir)
    recipe = recipe_from_dict(saved["recipe"], saved["recipe"]["name"])
    options = Options(**{**saved["options"], "stores": tuple(saved["options"]["stores"]),
                         "eval_stores": tuple(saved["options"]["eval_stores"]), **(overrides or {})})
    from twofold.model import ModelConfig

    model_config = ModelConfig.from_dict(saved["model"])
    initial = None
    if saved.get("init_from"):
        _, initial = _initial_model(recipe, options, saved["init_from"])
    return _Trainer(run_dir, recipe, options, model_config, world, initial, resume=True).run()


def read_run(run_dir: str | Path) -> dict:
    run_file = Path(run_dir) / RUN_FILE
    if not run_file.is_file():
        raise TwofoldError(f"{run_dir} is not a training run (no {RUN_FILE}); give the --out of a `twofold train`")
    return json.loads(run_file.read_text())


# ---------------------------------------------------------------- the trainer


class _Trainer:
    def __init__(self, run_dir: Path, recipe: Recipe, options: Options, model_config, world: World,
                 initial: dict | None, resume: bool = False):
        from twofold.model import TwofoldModel

        self.run_dir, self.recipe, self.options, self.world = run_dir, recipe, options, world
        self.phases: tuple[Phase, ...] = (recipe.cross,) if options.cross else recipe.phases
        torch.manual_seed(recipe.seed)
        self.model = TwofoldModel(model_config)
        if initial is not None:
            self.model.load_state_dict(initial)
        self.model.to(world.device)
        # FSDP2 swaps parameters for sharded ones: wrap first, then build the optimizer.
        self.net = wrap(self.model, world, options.parallel)
        first_peak = self.phases[0].lr_schedule(recipe.optimizer.lr).peak
        self.optimizer = build_optimizer(self.model, recipe.optimizer, peak_lr=first_peak)
        self.progress = Progress()
        self.resumed_data: dict | None = None  # the data loader state to continue from
        if resume:
            self._restore()
        elif world.main:
            (run_dir / METRICS).write_text("")
        if options.compile:
            self.net = torch.compile(self.net)
        self.autocast = _autocast(options.precision, world.device)

    # ------------------------------------------------------------ phases

    def run(self) -> Path:
        while self.progress.phase_index < len(self.phases):
            self._run_phase(self.phases[self.progress.phase_index])
            p = self.progress
            p.history.append({"phase": self.phases[p.phase_index].name, "step": p.step, "tokens": p.tokens})
            p.phase_index, p.phase_step, p.phase_tokens = p.phase_index + 1, 0, 0
        return self.run_dir

    def _run_phase(self, phase: Phase) -> None:
        from twofold.data.loader import BatchLoader

        p, index = self.progress, self.progress.phase_index
        batches = StepBatches(phase.batch, phase.seq_len)
        loader = BatchLoader(
            list(self.options.stores), _data_mixture(phase), seq_len=phase.seq_len,
            batch_size=batches.size, objective=self.options.objective, seed=self.recipe.seed + index,
            rank=self.world.rank, world_size=self.world.world_size, mask_rate=phase.mask_rate,
            num_workers=self.options.num_workers, run_dir=self.run_dir / phase.name,
            model_vocab_size=self.model.config.vocab_size)
        if self.resumed_data is not None:  # refuses other stores, mixture, seed or seq_len
            loader.load_state_dict(self.resumed_data)
            self.resumed_data = None
        schedule = phase.lr_schedule(self.recipe.optimizer.lr)
        evaluator = _HeldOut(self, phase) if self.options.eval_stores else None
        bar = _bar(phase, p.phase_tokens, self.world.main and self.options.progress)
        started, tokens_at_start = time.perf_counter(), p.phase_tokens
        batch_iter = iter(loader)
        while p.phase_tokens < phase.tokens:
            batch = next(batch_iter)
            sequences = batches.size(batch.step)
            tokens_after = batches.tokens_before(batch.step) + sequences * phase.seq_len
            lr = lr_at(schedule, tokens_after)
            set_lr(self.optimizer, lr, peak=schedule.peak)
            loss, grad_norm = self._step(batch, phase)
            p.phase_step, p.phase_tokens = batch.step + 1, tokens_after
            p.step, p.tokens = p.step + 1, p.tokens + sequences * phase.seq_len
            elapsed = time.perf_counter() - started
            speed = (p.phase_tokens - tokens_at_start) / max(elapsed, 1e-9)
            self._log({"step": p.step, "phase": phase.name, "tokens": p.tokens, "phase_tokens": p.phase_tokens,
                       "loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens_per_s": speed,
                       "batch_sequences": sequences, "seq_len": phase.seq_len,
                       "mask_rate": phase.mask_rate if self.options.objective == "mlm" else None})
            if bar is not None:
                bar.set_postfix(step=p.step, loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
                bar.update(tokens_after - bar.n)
            tokens_before = tokens_after - sequences * phase.seq_len
            due = self._checkpoint_due(phase, tokens_before, tokens_after)
            if evaluator is not None and (due or self._eval_due()):
                self._log({"step": p.step, "phase": phase.name, "tokens": p.tokens, "eval_loss": evaluator()})
                p.last_eval_tokens = p.tokens
            if due or self._periodic_save_due():
                tag = checkpoint.checkpoint_tag(phase.tag, tokens_before, phase.checkpoint_every_tokens) if due else None
                self._save(tag, loader)
        if bar is not None:
            bar.close()

    def _checkpoint_due(self, phase: Phase, before: int, after: int) -> bool:
        every = phase.checkpoint_every_tokens
        return after >= phase.tokens or after // every > before // every

    def _eval_due(self) -> bool:
        every = self.options.eval_every_tokens
        return every is not None and self.progress.tokens - self.progress.last_eval_tokens >= every

    def _periodic_save_due(self) -> bool:
        every = self.options.save_every_steps
        return every is not None and self.progress.step % every == 0

    # ------------------------------------------------------------ one optimizer step

    def _step(self, batch, phase: Phase) -> tuple[float, float]:
        micro = split_batch(batch, self.options.micro_batch_sequences)
        device = self.world.device
        targets = torch.tensor([float(batch.num_targets)], dtype=torch.float64, device=device)
        total_targets = sum_across(targets, self.world).item()
        # Sum of token losses over the global batch / its targets, whatever the split: DDP
        # averages gradients over ranks, hence the world-size factor.
        scale = self.world.world_size / max(total_targets, 1.0)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for i, part in enumerate(micro):
            part = part.to(device)
            sync = i == len(micro) - 1 or not hasattr(self.net, "no_sync")
            with (torch.enable_grad() if sync else self.net.no_sync()), self.autocast:
                out = forward(self.net, part)
                (out.loss * out.num_targets * scale).backward()
            loss_sum += out.loss.detach().double() * out.num_targets
        loss = (sum_across(loss_sum, self.world) / max(total_targets, 1.0)).item()
        grad_norm = clip_grad_norm(self.model, self.recipe.optimizer.grad_clip).item()
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            what = "loss" if not math.isfinite(loss) else "gradient norm"
            last = checkpoint.list_checkpoints(self.run_dir / "checkpoints")
            kept = f"the last good checkpoint {last[-1].name} is intact" if last else "no checkpoint was written yet"
            raise NonFiniteLoss(
                f"step {self.progress.step + 1} (phase {phase.name}, batch {batch.step}): the {what} is "
                f"{loss if what == 'loss' else grad_norm}; training stopped and {kept}; inspect the batch "
                f"(twofold data show-batch {self.run_dir / phase.name} --step {batch.step}), then resume, "
                "or start anew with a lower LR (--set optimizer.lr=…)")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss, grad_norm

    # ------------------------------------------------------------ state

    def _save(self, tag: str | None, loader) -> None:
        states = checkpoint.capture(self.model, self.optimizer)  # collective under FSDP2
        if self.world.main:
            checkpoint.save(self.run_dir / "checkpoints", step=self.progress.step, states=states,
                            progress=dataclasses.asdict(self.progress),
                            data=loader.state_dict(), config=self.model.config.to_dict(),
                            recipe=self.recipe.to_dict(), tag=tag, keep_last=self.options.keep_last)
        barrier(self.world)

    def _restore(self) -> None:
        found = checkpoint.load_latest(self.run_dir / "checkpoints", self.model, self.optimizer)
        if found is None:
            if self.world.main:
                (self.run_dir / METRICS).write_text("")
            return
        self.progress = Progress(**found.progress)
        self.resumed_data = found.data
        if self.world.main:
            _truncate_metrics(self.run_dir / METRICS, self.progress.step)

    def _log(self, record: dict) -> None:
        if self.world.main:
            with open(self.run_dir / METRICS, "a") as handle:
                handle.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------- pieces


def forward(model, batch):
    """The model on a packed batch; loss is the mean over the batch's labelled tokens."""
    return model(batch.input_ids, labels=batch.labels, cu_seqlens=batch.cu_seqlens,
                 max_seqlen=batch.max_seqlen, position_ids=batch.position_ids)


def split_batch(batch, sequences: int | None) -> list:
    """A rank's packed batch cut into micro-batches of at most `sequences` sequences."""
    count = batch.num_sequences
    if sequences is None or sequences >= count:
        return [batch]
    parts = []
    offsets = batch.sequence_offsets.long()
    cu = batch.cu_seqlens.long()
    for first in range(0, count, sequences):
        last = min(first + sequences, count)
        begin, end = int(offsets[first]), int(offsets[last])
        inside = cu[(cu >= begin) & (cu <= end)] - begin
        lengths = inside[1:] - inside[:-1]
        parts.append(dataclasses.replace(
            batch, input_ids=batch.input_ids[begin:end], labels=batch.labels[begin:end],
            position_ids=batch.position_ids[begin:end], cu_seqlens=inside.to(torch.int32),
            max_seqlen=int(lengths.max()) if len(lengths) else 0,
            sequence_offsets=(offsets[first:last + 1] - begin).to(torch.int32),
            segments=batch.segments[first:last], groups=batch.groups[first:last]))
    return parts


class _HeldOut:
    """Mean loss on a fixed held-out set (MLM at 15%), the same sequences at every evaluation."""

    def __init__(self, trainer: _Trainer, phase: Phase):
        from twofold.data.loader import BatchLoader

        o = trainer.options
        mask_rate = EVAL_MASK_RATE
        loader = BatchLoader(list(o.eval_stores), _data_mixture(phase, restrict=False), seq_len=phase.seq_len,
                             batch_size=o.eval_sequences, objective=o.objective, seed=trainer.recipe.seed,
                             mask_rate=mask_rate, rank=trainer.world.rank, world_size=trainer.world.world_size,
                             model_vocab_size=trainer.model.config.vocab_size)
        self.trainer, self.batch = trainer, loader.batch(0)

    @torch.no_grad()
    def __call__(self) -> float:
        t = self.trainer
        t.model.eval()
        try:
            with t.autocast:
                out = forward(t.model, self.batch.to(t.world.device))
            total = sum_across(torch.stack([out.loss.double() * out.num_targets, out.num_targets.double()]), t.world)
        finally:
            t.model.train()
        return (total[0] / total[1].clamp(min=1)).item()


def _data_mixture(phase: Phase, restrict: bool = True):
    from twofold.data.mixture import Mixture

    mix = phase.mixture
    include = None if isinstance(mix.groups, str) or not restrict else tuple(mix.groups)
    return Mixture(weights=mix.weights, temperature=mix.temperature, include=include)


def _initial_model(recipe: Recipe, options: Options, init_from: str | None):
    """The model config for this run, and weights to start from (cross-objective) or None."""
    from twofold.data.sampling import Corpus
    from twofold.data.store import TokenStore
    from twofold.model import preset

    causal = OBJECTIVES[options.objective]
    corpus = Corpus([TokenStore(s) for s in options.stores])
    ids = corpus.special_ids
    vocab = max(preset(recipe.model).vocab_size, -(-corpus.vocab_size // 64) * 64)
    config = preset(recipe.model, causal=causal, vocab_size=vocab, pad_token_id=ids["pad"],
                    cls_token_id=ids["cls"], sep_token_id=ids["sep"], bos_token_id=ids["cls"],
                    eos_token_id=ids["sep"], mask_token_id=ids["mask"])
    if init_from is None:
        return config, None
    source, state = _weights_of(init_from)
    shape = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    differ = [f"{k} {getattr(source, k)} vs {getattr(config, k)}" for k in shape if getattr(source, k) != getattr(config, k)]
    if differ:
        raise TwofoldError(f"--init-from {init_from} does not fit recipe model {recipe.model}: {', '.join(differ)}; "
                           "choose the recipe size (or --set model=…) that matches it")
    return config, state


def _weights_of(init_from: str):
    """(ModelConfig, state dict) of a run's newest intact checkpoint or of a Hugging Face directory."""
    from twofold.model import ModelConfig, TwofoldModel

    path = Path(init_from)
    if (path / RUN_FILE).is_file() or (path / "checkpoints").is_dir():
        saved = read_run(path)
        model = TwofoldModel(ModelConfig.from_dict(saved["model"]))
        if checkpoint.load_latest(path / "checkpoints", model, restore_rng=False) is None:
            raise TwofoldError(f"--init-from {path}: the run has no checkpoint yet")
        return model.config, model.state_dict()
    if (path / "config.json").is_file():
        import twofold

        model = twofold.load(path)
        return model.config, model.state_dict()
    raise TwofoldError(f"--init-from {path}: neither a twofold run nor a Hugging Face model directory")


def _autocast(precision: str, device: torch.device):
    if precision not in ("auto", "fp32", "bf16"):
        raise TwofoldError(f"--precision {precision!r}: use auto, fp32 or bf16")
    bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" or (precision == "auto" and bf16_ok):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def _bar(phase: Phase, done: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=phase.tokens, initial=done, unit="tok", unit_scale=True, desc=phase.name,
                dynamic_ncols=True)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop lines of steps after the checkpoint: the resumed run writes them again."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError):
            continue  # a torn last line
    path.write_text("".join(f"{line}\n" for line in kept))


def _write_json(path: Path, data: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=1) + "\n")
    temporary.replace(path)


# ---------------------------------------------------------------- pairs

PAIR_FILE = "pair.json"
MEMBERS = {"encoder": "mlm", "decoder": "clm"}


def start_pair(run_dir: str | Path, recipe: Recipe, options: Options, world: World,
               init_from: dict[str, str] | None = None) -> Path:
    """Train the encoder, then the decoder, with the identical recipe, seed and batch order."""
    run_dir = Path(run_dir)
    taken = (run_dir / PAIR_FILE).exists() or (run_dir / RUN_FILE).exists()
    barrier(world)  # every rank looks before rank 0 writes
    if taken:
        raise TwofoldError(f"{run_dir} already holds a run; resume it with --resume {run_dir} or choose another --out")
    if world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / PAIR_FILE, {"version": __version__, "members": list(MEMBERS),
                                          "recipe": recipe.to_dict(), "options": options.to_dict(),
                                          "init_from": init_from or {}})
    barrier(world)
    return resume_any(run_dir, world)


def resume_any(run_dir: str | Path, world: World, overrides: dict | None = None) -> Path:
    """Resume a member run, or each member of a pair run (starting those not begun).

    `overrides` change how to run (e.g. progress), never what is learnt.
    """
    run_dir = Path(run_dir)
    if not (run_dir / PAIR_FILE).is_file():
        return resume(run_dir, world, overrides)
    pair = json.loads((run_dir / PAIR_FILE).read_text())
    recipe = recipe_from_dict(pair["recipe"], pair["recipe"]["name"])
    for member, objective in MEMBERS.items():
        member_dir = run_dir / member
        if (member_dir / RUN_FILE).is_file():
            resume(member_dir, world, overrides)
        else:
            saved = pair["options"]
            options = Options(**{**saved, "stores": tuple(saved["stores"]), "eval_stores": tuple(saved["eval_stores"]),
                                 "objective": objective, **(overrides or {})})
            start(member_dir, recipe, options, world, pair["init_from"].get(member))
    return run_dir
