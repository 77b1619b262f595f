"""Training recipes as typed data: YAML presets, size variants, `--set` overrides, `--scale`.

A recipe is a model preset, an optimizer, a seed, training dropout and an ordered set of
phases (Ettin: `pretrain`, `extension`, `decay`, plus `cross` for cross-objective
continuation, which starts a new run and so stands outside the token axis of the others).
Each phase owns its token budget, sequence length, RoPE θ, MLM mask rate, data
mixture, LR schedule, batch size (+ warmup) and checkpoint interval with its tag prefix.

Loading goes: preset YAML (`yaml.safe_load`) → the chosen size's overrides → the chosen
variant's overrides → `--set` overrides → typed build with validation → `--scale`. So `--set`
values are in the recipe's own (unscaled) units and `--scale` shrinks everything uniformly
afterwards.

Multilingual recipes sample languages (the stores' groups). A recipe may name sets of them in
a top-level `language_sets` table, each a list or a text file with one name per line (a path
relative to the recipe file; for presets, the packaged recipes folder; from `--set`, relative
to the working directory). A phase's `mixture.groups` is `all`, a set's name, or a list of
group and set names; the sets are expanded when the recipe is built, so a built recipe (and
`run.json`) lists every language. `variants` (like `sizes`) are named overrides: mmBERT's
three decay mixtures, chosen with `--variant NAME` and recorded in the recipe.

Every mistake (unknown key, wrong type, impossible value) is one `TwofoldError` line naming
the key path as `--set` would spell it, e.g. `phase.decay.lr_min_ratio`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from twofold.data.loader import MIN_ROW_TOKENS, DataSpec
from twofold.data.mixture import Mixture
from twofold.data.order import BatchSchedule
from twofold.errors import TwofoldError

ALL = "all"  # recipe spelling of "every group" (Mixture.groups = None)
CROSS = "cross"
LR_DECAYS = ("none", "linear", "cosine", "one_minus_sqrt")
ROW_LAYOUTS = ("packed", "documents")
BATCH_RAMPS = ("tokens", "steps")
OPTIMIZERS = ("stable_adamw", "adamw")
# Fields counted in tokens: `--scale` multiplies exactly these.
TOKEN_FIELDS = ("tokens", "lr_warmup_tokens", "lr_decay_tokens", "batch_warmup_tokens",
                "checkpoint_every_tokens")
_SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


@dataclass(frozen=True)
class Schedule:
    """The learning rate across one phase: warmup, a stable stretch, then a decay to the end."""

    peak: float
    tokens: int  # phase length
    warmup_tokens: int = 0
    decay: str = "none"  # shape: none | linear | cosine | one_minus_sqrt
    decay_tokens: int = 0  # the decay occupies the last `decay_tokens` of the phase
    start_ratio: float = 1.0  # LR after warmup, as a fraction of peak
    min_ratio: float = 1.0  # LR at the phase end (α_f), as a fraction of peak

    @property
    def weight_decay_lr(self) -> float:
        """The LR that decoupled weight decay is relative to: the phase's starting LR.

        Upstream configures each phase's optimizer with that LR (Ettin's decay phase: 0.5×peak,
        jhu-clsp/ettin-encoder-vs-decoder pretraining/configs/standard/*/prolong_decay/*.yaml), and
        its StableAdamW decays weights by `wd · lr_t / lr` (optimi's `decouple_lr`, `max_lr = lr`).
        """
        return self.peak * self.start_ratio


@dataclass(frozen=True)
class Phase:
    name: str
    tokens: int
    seq_len: int
    batch_sequences: int
    checkpoint_every_tokens: int
    tag: str  # checkpoint tag prefix: step, ext, decay, cross
    mask_rate: float = 0.30  # MLM only
    rope_theta_global: float = 160_000.0
    rope_theta_local: float = 10_000.0
    mixture: Mixture = field(default_factory=Mixture)  # the data layer's: groups, τ or weights
    lr: float | None = None  # peak LR of this phase; None: the optimizer's
    lr_warmup_tokens: int = 0
    lr_decay: str = "none"
    lr_decay_tokens: int | None = None  # None: the decay spans the whole phase after warmup
    lr_start_ratio: float = 1.0
    lr_min_ratio: float = 1.0
    batch_start_sequences: int | None = None  # None: no batch-size warmup
    batch_warmup_tokens: int = 0
    batch_ramp: str = "tokens"  # the warmup grows the batch linearly in tokens seen, or in steps
    seed: int | None = None  # seed of the random streams (init, dropout) in this phase; None: the recipe's
    layout: str = "packed"  # rows: packed windows of seq_len, or one document chunk per row (documents)
    min_row_tokens: int = MIN_ROW_TOKENS  # documents: shorter chunks are dropped (at most seq_len applies)
    mean_row_tokens: float | None = None  # documents: expected real tokens per row, for step estimates only
    weight_decay: float | None = None  # decoupled weight decay in this phase; None: the optimizer's

    def lr_schedule(self, optimizer_lr: float) -> Schedule:
        decay_tokens = self.lr_decay_tokens
        if decay_tokens is None:
            decay_tokens = self.tokens - self.lr_warmup_tokens
        return Schedule(
            peak=self.lr if self.lr is not None else optimizer_lr, tokens=self.tokens,
            warmup_tokens=self.lr_warmup_tokens, decay=self.lr_decay,
            decay_tokens=0 if self.lr_decay == "none" else decay_tokens,
            start_ratio=self.lr_start_ratio,
            min_ratio=self.lr_start_ratio if self.lr_decay == "none" else self.lr_min_ratio,
        )

    @property
    def batch(self) -> BatchSchedule:
        return BatchSchedule(self.batch_sequences, self.batch_start_sequences, self.batch_warmup_tokens,
                             ramp=self.batch_ramp)

    def data(self, seed: int) -> DataSpec:
        """What this phase's batches are made of (the data layer's description)."""
        # A row holds at most seq_len tokens, so no threshold above it (a phase scaled down to
        # short sequences keeps its full rows).
        return DataSpec(self.mixture, self.seq_len, self.batch, self.mask_rate, seed, layout=self.layout,
                        min_row_tokens=min(self.min_row_tokens, self.seq_len))

    @property
    def row_tokens(self) -> float:
        """Real tokens per row: seq_len when packed; the expected mean with a row per document chunk."""
        return self.seq_len if self.layout == "packed" else min(self.mean_row_tokens or self.seq_len, self.seq_len)


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "stable_adamw"  # or adamw (torch's)
    lr: float = 1e-3  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.0  # never applied to norms and biases
    grad_clip: float | None = None  # max global grad norm; None: off


@dataclass(frozen=True)
class Dropout:
    """Dropout probabilities while training (inference never drops). FlexBERT's split, which
    Ettin's and mmBERT's configs use: attention probabilities vs the attention output."""

    attention_output: float = 0.0  # after the attention's Wo (FlexBERT attn_out_dropout_prob)
    attention: float = 0.0  # on the attention probabilities (attention_probs_dropout_prob)
    embedding: float = 0.0  # after the embedding norm (embed_dropout_prob)
    mlp: float = 0.0  # inside the GeGLU, before Wo (mlp_dropout_prob)

    def model_fields(self) -> dict[str, float]:
        """The `ModelConfig` fields these set."""
        return {"attention_output_dropout": self.attention_output, "attention_dropout": self.attention,
                "embedding_dropout": self.embedding, "mlp_dropout": self.mlp}

    @property
    def active(self) -> bool:
        return any(self.model_fields().values())


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str  # model preset, see twofold.model.preset
    optimizer: OptimizerConfig
    phase: dict[str, Phase]  # in training order
    seed: int = 21
    dropout: Dropout = field(default_factory=Dropout)
    size: str | None = None  # how this recipe was made (recorded, not applied again)
    variant: str | None = None  # likewise: the `variants` entry applied
    scale: float = 1.0
    batch_scale: float = 1.0  # every phase's batch (sequences) × this, recorded like `scale`

    @property
    def phases(self) -> tuple[Phase, ...]:
        """The phases of one run from scratch, in order (all but `cross`)."""
        return tuple(p for p in self.phase.values() if p.name != CROSS)

    @property
    def cross(self) -> Phase | None:
        return self.phase.get(CROSS)

    def check_groups(self, group_tokens: dict[str, int], cross: bool = False, first: int = 0) -> None:
        """Each phase of the run (from its `first`) finds its languages (groups) in the stores; else
        one line naming the phase."""
        for phase in (self.cross,) if cross else self.phases[first:]:
            try:
                phase.mixture.probabilities(group_tokens)
            except TwofoldError as error:
                problem = str(error).removeprefix("mixture: ")
                raise TwofoldError(f"recipe {self.name}: phase.{phase.name}.mixture: {problem}") from None

    def to_dict(self) -> dict:
        """The raw form `recipe_from_dict` reads back (phases keyed by name, lists for tuples)."""
        raw = _plain(dataclasses.asdict(self))
        for settings in raw["phase"].values():
            del settings["name"]
        return raw


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------- loading


def preset_names() -> list[str]:
    folder = resources.files("twofold") / "recipes"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_recipe(name_or_path: str, size: str | None = None, overrides: list[str] = (),
                scale: float | None = None, budget: int | None = None, variant: str | None = None,
                batch_scale: float | None = None) -> Recipe:
    """A preset name (`ettin`, `mmbert`, `demo`) or a YAML path → a validated `Recipe`.

    `overrides` are `KEY.PATH=VALUE` strings; `scale` (or a total token `budget` for the
    run's phases, one of them, since either sets the other) shrinks every token count keeping
    its proportions; `batch_scale` (None: 1) multiplies every phase's batch size.
    """
    if scale is not None and budget is not None:
        raise TwofoldError(f"--scale {scale:g} and --budget {budget}: the budget sets the scale; give one of them")
    raw, label = _read_yaml(name_or_path)
    raw = _apply_size(raw, size, label)
    raw = _apply_variant(raw, variant, label)
    _anchor_set_files(raw, _recipe_folder(name_or_path))
    for item in overrides:
        _apply_override(raw, item)
    recipe = recipe_from_dict(raw, label)
    if budget is not None:
        if budget <= 0:
            raise TwofoldError(f"--budget {budget} must be a positive token count")
        scale = budget / sum(p.tokens for p in recipe.phases)
    recipe = scaled(recipe, scale) if scale not in (None, 1.0) else recipe
    return batch_scaled(recipe, batch_scale) if batch_scale not in (None, 1.0) else recipe


def recipe_from_dict(raw: dict, label: str = "recipe") -> Recipe:
    if not isinstance(raw, dict):
        raise TwofoldError(f"{label}: expected a mapping of recipe keys, got {raw!r}")
    raw = dict(raw)
    raw.setdefault("name", label)
    language_sets = _language_sets(raw.pop("language_sets", None), label)
    phases = raw.get("phase")
    if not isinstance(phases, dict) or not phases:
        raise TwofoldError(f"{label}: `phase` must map phase names to their settings, got {phases!r}")
    built = {}
    for name, settings in phases.items():
        if isinstance(settings, dict) and "name" in settings:
            raise TwofoldError(f"{label}: phase.{name}.name: a phase is named by its key; remove `name`")
        settings = {**settings, "name": name} if isinstance(settings, dict) else settings
        if isinstance(settings, dict) and isinstance(settings.get("mixture"), dict):
            settings["mixture"] = _expand_mixture(settings["mixture"], language_sets, f"phase.{name}.mixture", label)
        built[name] = _build(Phase, settings, f"phase.{name}", label)
    recipe = _build(Recipe, {**raw, "phase": {}}, "", label)
    recipe = dataclasses.replace(recipe, phase=built)
    validate(recipe, label)
    return recipe


def scaled(recipe: Recipe, factor: float) -> Recipe:
    """The same recipe at `factor` × its token counts, every proportion kept.

    Budgets round to the nearest token; the parts inside a phase (warmups, decay length,
    checkpoint interval) round down so they never outgrow it.
    """
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise TwofoldError(f"--scale {factor!r} must be a positive number (e.g. 1e-6)")

    def shrink(phase: Phase) -> Phase:
        changes = {"tokens": max(1, round(phase.tokens * factor))}
        for name in TOKEN_FIELDS[1:]:
            value = getattr(phase, name)
            if value is not None:
                changes[name] = math.floor(value * factor)
        changes["checkpoint_every_tokens"] = max(1, changes["checkpoint_every_tokens"])
        return dataclasses.replace(phase, **changes)

    phases = {name: shrink(p) for name, p in recipe.phase.items()}
    result = dataclasses.replace(recipe, phase=phases, scale=recipe.scale * factor)
    validate(result, f"{recipe.name} at --scale {factor:g}")
    return result


def batch_scaled(recipe: Recipe, factor: float) -> Recipe:
    """The same recipe with every phase's batch (and batch-warmup start) × `factor`, rounded
    down (so a step never outgrows the tokens it was scaled to fit) to at least one sequence.
    Warmups stay in tokens, so they span fewer or more steps."""
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise TwofoldError(f"--batch-scale {factor!r} must be a positive number (e.g. 0.01)")

    def resize(sequences: int | None) -> int | None:
        return None if sequences is None else max(1, math.floor(sequences * factor + 1e-9))

    phases = {name: dataclasses.replace(p, batch_sequences=resize(p.batch_sequences),
                                        batch_start_sequences=resize(p.batch_start_sequences))
              for name, p in recipe.phase.items()}
    result = dataclasses.replace(recipe, phase=phases, batch_scale=recipe.batch_scale * factor)
    validate(result, f"{recipe.name} at --batch-scale {factor:g}")
    return result


def _read_yaml(name_or_path: str) -> tuple[dict, str]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise TwofoldError(f"recipe file {path} does not exist; "
                               f"give a YAML path or one of {', '.join(preset_names())}")
        text, label = path.read_text(), str(path)
    elif name_or_path in preset_names():
        text = (resources.files("twofold") / "recipes" / f"{name_or_path}.yaml").read_text()
        label = name_or_path
    else:
        raise TwofoldError(f"unknown recipe {name_or_path!r}; "
                           f"choose one of {', '.join(preset_names())} or a .yaml path")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TwofoldError(f"recipe {label} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(raw, dict):
        raise TwofoldError(f"recipe {label} must be a YAML mapping of recipe keys")
    return raw, label


def _apply_size(raw: dict, size: str | None, label: str) -> dict:
    sizes = raw.pop("sizes", None) or {}
    if size is None:
        if sizes:
            raise TwofoldError(f"recipe {label} needs --size, one of {', '.join(map(str, sizes))}")
        return raw
    if size not in sizes:
        choices = ", ".join(map(str, sizes)) if sizes else "none (omit --size)"
        raise TwofoldError(f"recipe {label} has no size {size!r}; sizes: {choices}")
    return {**_merge(raw, sizes[size]), "size": size}


def _apply_variant(raw: dict, variant: str | None, label: str) -> dict:
    variants = raw.pop("variants", None) or {}
    if variant is None:
        return raw
    if variant not in variants:
        choices = ", ".join(map(str, variants)) if variants else "none (omit --variant)"
        raise TwofoldError(f"recipe {label} has no variant {variant!r}; variants: {choices}")
    return {**_merge(raw, variants[variant]), "variant": variant}


def _recipe_folder(name_or_path: str) -> Path:
    """Where a recipe's relative language-set files live: beside it (presets: the package's folder)."""
    if Path(name_or_path).suffix in (".yaml", ".yml"):
        return Path(name_or_path).resolve().parent
    return Path(str(resources.files("twofold") / "recipes"))


def _anchor_set_files(raw: dict, folder: Path) -> None:
    """Language-set and weight files named in the recipe file are relative to it; make them absolute."""
    sets = raw.get("language_sets")
    if isinstance(sets, dict):
        for name, value in sets.items():
            if isinstance(value, str) and value != ALL:
                sets[name] = str(folder / value)
    for settings in (raw.get("phase") or {}).values():
        mixture = settings.get("mixture") if isinstance(settings, dict) else None
        if isinstance(mixture, dict) and isinstance(mixture.get("weights_from"), str):
            mixture["weights_from"] = str(folder / mixture["weights_from"])


LanguageSet = list[str] | dict | None  # the groups, {"top": N, "with": [...]}, or None for every group


def _language_sets(raw: Any, label: str) -> dict[str, LanguageSet]:
    """`language_sets`: name → a list of names, a file of names, `all`, or `{top: N, with: [names]}`
    (N groups: those named, then the others with the most tokens in the stores; a stand-in for
    "the high-resource languages" that needs no list)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        _fail(label, "language_sets", raw, "must map set names to lists of names, files of names, all or {top: N}")
    sets: dict[str, LanguageSet] = {}
    for name, value in raw.items():
        path = f"language_sets.{name}"
        if value == ALL:
            sets[str(name)] = None
            continue
        if isinstance(value, dict):
            if "top" not in value or set(value) - {"top", "with"} or not isinstance(value.get("with", []), list):
                _fail(label, path, value, "must be {top: N} or {top: N, with: [names]} when it is a mapping")
            top = _coerce(value["top"], int, f"{path}.top", label)
            named = [m for item in map(str, value.get("with", [])) for m in (
                sets[item] if isinstance(sets.get(item), list) else [item])]
            sets[str(name)] = {"top": top, "with": list(dict.fromkeys(named))}
            continue
        if isinstance(value, str):
            file = Path(value)
            if not file.is_file():
                _fail(label, path, value, "is not a file; give a list of names or a file with one name per line")
            lines = (line.split("#", 1)[0].strip() for line in file.read_text(encoding="utf-8").splitlines())
            value = [line for line in lines if line]
        if not isinstance(value, list) or not value or not all(isinstance(v, (str, int)) for v in value):
            _fail(label, path, value, "must be a non-empty list of names (or a file of names, all, {top: N})")
        members = []  # a set may name the list sets above it: the 110 = the 60 + 50 more
        for item in map(str, value):
            earlier = sets.get(item)
            members += earlier if isinstance(earlier, list) else [item]
        sets[str(name)] = list(dict.fromkeys(members))
    return sets


def _expand_mixture(mixture: dict, sets: dict[str, LanguageSet], path: str, label: str) -> dict:
    """Set names in `groups` and `boost` replaced by the groups they stand for; `weights_from`
    read into `weights`."""
    mixture = dict(mixture)
    if "groups" in mixture:
        groups = _expand_groups(mixture["groups"], sets, f"{path}.groups", label)
        if isinstance(groups, dict):  # {top: N, with: […]}: the stores decide the other groups
            mixture["groups"] = groups["with"] or None
            mixture["top"] = groups["top"]
        else:
            mixture["groups"] = groups
    if isinstance(mixture.get("boost"), dict):
        boost = {}
        for name, factor in mixture["boost"].items():
            members = sets.get(name, [name])
            if not isinstance(members, list):
                _fail(label, f"{path}.boost.{name}", factor, "boosts a set that is not a list of names")
            boost.update(dict.fromkeys(members, factor))
        mixture["boost"] = boost
    if "weights_from" in mixture:
        groups = mixture.get("groups") if isinstance(mixture.get("groups"), list) else None
        mixture["weights"] = _weights_from(mixture.pop("weights_from"), groups, f"{path}.weights_from", label)
    return mixture


def _weights_from(spec: Any, groups: list | None, path: str, label: str) -> dict[str, float]:
    """`FILE.csv:COLUMN` → {name in the first column: that column's number}, e.g. mmBERT's published
    tokens per language and phase (jhu-clsp/mmBERT statistics/language_counts.csv, columns pretrain,
    ext, decay-eng, decay-mid, decay-all): sampling in proportion to them draws the languages as the
    published run did. Rows at 0 and, when the phase lists its groups, rows outside them are left out."""
    import csv

    file, sep, column = str(spec).rpartition(":")
    if not sep or not file.endswith(".csv"):
        _fail(label, path, spec, "must be FILE.csv:COLUMN, e.g. language_counts.csv:decay-eng")
    if not Path(file).is_file():
        _fail(label, path, spec, f"names {file}, which is not a file")
    with open(file, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header = rows[0] if rows else []
    if column not in header[1:]:
        _fail(label, path, spec, f"names no column of {file} (columns: {', '.join(header[1:])})")
    at = header.index(column)
    wanted = set(map(str, groups)) if groups is not None else None
    weights = {}
    for line, row in enumerate(rows[1:], start=2):
        number = parse_number(row[at].replace(",", "")) if len(row) > at else None
        if number is None or number < 0:
            _fail(label, path, spec, f"has {row[at] if len(row) > at else 'nothing'!r} at {file}:{line}, "
                  "not a count")
        if number > 0 and (wanted is None or row[0] in wanted):
            weights[row[0]] = float(number)
    return weights


def _expand_groups(value: Any, sets: dict[str, LanguageSet], path: str, label: str) -> Any:
    """`all`, a set's name, or a list of group and set names → the list of groups (first mention kept)."""
    if value is None or value == ALL:
        return value
    if isinstance(value, str):
        if value not in sets:
            known = ", ".join(sets) or "none (add a language_sets table)"
            _fail(label, path, value, f"names no language set (sets: {known}); for single groups write a list")
        return ALL if sets[value] is None else sets[value]
    if not isinstance(value, list) or not all(isinstance(item, (str, int)) for item in value):
        return value  # the typed build names the problem (a nested list is no group name)
    expanded = []
    for item in value:
        members = sets.get(item, [item]) if isinstance(item, str) else [item]
        if not isinstance(members, list):
            _fail(label, path, value, f"lists set {item!r}, which is not a list of names; name it alone")
        expanded += members
    return list(dict.fromkeys(expanded))


def _merge(base: dict, top: dict) -> dict:
    merged = dict(base)
    for key, value in (top or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _apply_override(raw: dict, item: str) -> None:
    """`phase.decay.lr_min_ratio=0.02` → raw["phase"]["decay"]["lr_min_ratio"] = 0.02."""
    key, sep, text = item.partition("=")
    keys = key.strip().split(".")
    if not sep or not all(keys):
        raise TwofoldError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. phase.decay.lr_min_ratio=0.02")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise TwofoldError(f"--set {item!r}: {text!r} is not a YAML value; quote text or write a number") from None
    node = raw
    for depth, name in enumerate(keys[:-1]):
        if depth == 1 and keys[0] == "phase" and name not in node:
            raise TwofoldError(f"--set {key}: no phase {name!r}; phases: {', '.join(node)}")
        child = node.get(name)
        if child is None:
            child = node[name] = {}
        if not isinstance(child, dict):
            raise TwofoldError(f"--set {key}: {'.'.join(keys[:depth + 1])} is a value, not a group of keys")
        node = child
    node[keys[-1]] = value


# ---------------------------------------------------------------- typed build


def _fail(label: str, path: str, value: Any, problem: str) -> typing.NoReturn:
    raise TwofoldError(f"recipe {label}: {path} = {value!r} {problem}; fix the recipe or use --set {path}=…")


def _build(cls, raw: Any, path: str, label: str):
    if not isinstance(raw, dict):
        _fail(label, path or "(top level)", raw, f"must be a mapping of {cls.__name__} keys")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise TwofoldError(f"recipe {label}: unknown key {_join(path, key)}; known keys here: {known}")
    values = {}
    for name, spec in fields.items():
        if name in raw:
            values[name] = _coerce(raw[name], hints[name], _join(path, name), label)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise TwofoldError(f"recipe {label}: missing key {_join(path, name)}; add it to the recipe or --set it")
    return cls(**values)


_MIXTURE_FIELDS = {"groups": tuple[str, ...] | None, "top": int | None, "temperature": float | None,
                   "boost": dict[str, float] | None, "weights": dict[str, float] | None,
                   "sources": dict[str, float] | None}


def _mixture(raw: Any, path: str, label: str) -> Mixture:
    """The data layer's `Mixture` from a recipe mapping; its own checks name the recipe key."""
    if not isinstance(raw, dict):
        _fail(label, path, raw, "must be a mapping of groups / top / temperature / boost / weights / sources")
    unknown = sorted(set(raw) - set(_MIXTURE_FIELDS))
    if unknown:
        raise TwofoldError(f"recipe {label}: unknown key {_join(path, unknown[0])}; known keys here: "
                           f"{', '.join(_MIXTURE_FIELDS)}")
    values = {}
    for key, value in raw.items():
        if key == "groups" and value == ALL:
            value = None
        values[key] = _coerce(value, _MIXTURE_FIELDS[key], _join(path, key), label)
    try:
        return Mixture(**values)
    except TwofoldError as error:
        problem = str(error).removeprefix("mixture: ")
        raise TwofoldError(f"recipe {label}: {path}: {problem}; fix the recipe or use --set {path}.…") from None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)


def _coerce(value: Any, tp: Any, path: str, label: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return _coerce(value, option, path, label)
            except TwofoldError:
                if option is options[-1]:
                    raise
    if tp is Mixture:
        return _mixture(value, path, label)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, label)
    if tp is bool:
        if isinstance(value, bool):
            return value
        _fail(label, path, value, "must be true or false")
    if tp is int:
        number = parse_number(value)
        if number is None or number != int(number):
            _fail(label, path, value, "must be a whole number (token counts may use K/M/B/T, e.g. 8.5B)")
        return int(number)
    if tp is float:
        number = parse_number(value, suffixes=False)
        if number is None:
            _fail(label, path, value, "must be a number")
        return float(number)
    if tp is str:
        if isinstance(value, str):
            return value
        _fail(label, path, value, "must be text")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            _fail(label, path, value, "must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]", label) for i, v in enumerate(value))
        if len(value) != len(args):
            _fail(label, path, value, f"must be a list of {len(args)} values")
        return tuple(_coerce(v, a, f"{path}[{i}]", label) for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            _fail(label, path, value, "must be a mapping")
        return {str(k): _coerce(v, args[1], f"{path}.{k}", label) for k, v in value.items()}
    raise TypeError(f"no coercion for {tp}")  # a bug in this module, not user input


def human_tokens(count: float) -> str:
    """1.7T, 250B, 8.5B, 125K: token counts the way recipes write them (`parse_number` reads them)."""
    for suffix, unit in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(count) >= unit:
            return f"{count / unit:.3g}{suffix}"
    return f"{count:g}"


def parse_number(value: Any, suffixes: bool = True) -> float | None:
    """A YAML number, or text such as `3e-3` (YAML 1.1 reads it as text) or `8.5B`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip().replace("_", "")
    scale = 1.0
    if suffixes and text[-1:].lower() in _SUFFIXES:
        text, scale = text[:-1], _SUFFIXES[text[-1].lower()]
    try:
        number = float(text) * scale
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return round(number) if suffixes and abs(number - round(number)) < 1e-6 * max(1.0, abs(number)) else number


# ---------------------------------------------------------------- validation


def validate(recipe: Recipe, label: str) -> None:
    """Impossible values → one clear line naming the key."""
    def need(ok: bool, path: str, value: Any, rule: str) -> None:
        if not ok:
            _fail(label, path, value, rule)

    opt = recipe.optimizer
    need(opt.name in OPTIMIZERS, "optimizer.name", opt.name, f"must be one of {', '.join(OPTIMIZERS)}")
    need(opt.lr > 0, "optimizer.lr", opt.lr, "must be positive")
    for i, beta in enumerate(opt.betas):
        need(0 <= beta < 1, f"optimizer.betas[{i}]", beta, "must be in [0, 1)")
    need(opt.eps > 0, "optimizer.eps", opt.eps, "must be positive")
    need(opt.weight_decay >= 0, "optimizer.weight_decay", opt.weight_decay, "must be >= 0")
    need(opt.grad_clip is None or opt.grad_clip > 0, "optimizer.grad_clip", opt.grad_clip,
         "must be positive or null")
    need(recipe.seed >= 0, "seed", recipe.seed, "must be >= 0")
    for name, value in dataclasses.asdict(recipe.dropout).items():
        need(0 <= value < 1, f"dropout.{name}", value, "must be in [0, 1)")
    need(bool(recipe.phases), "phase", list(recipe.phase), "must hold at least one phase besides cross")
    tags = []
    for name, p in recipe.phase.items():
        at = f"phase.{name}"
        need(p.tokens > 0, f"{at}.tokens", p.tokens, "must be a positive token count")
        need(p.seq_len >= 4, f"{at}.seq_len", p.seq_len, "must be at least 4")
        need(0 <= p.mask_rate < 1, f"{at}.mask_rate", p.mask_rate, "must be in [0, 1)")
        need(p.rope_theta_global > 0, f"{at}.rope_theta_global", p.rope_theta_global, "must be positive")
        need(p.rope_theta_local > 0, f"{at}.rope_theta_local", p.rope_theta_local, "must be positive")
        need(p.seed is None or p.seed >= 0, f"{at}.seed", p.seed, "must be >= 0 or null")
        need(p.lr is None or p.lr > 0, f"{at}.lr", p.lr, "must be positive or null")
        need(0 <= p.lr_warmup_tokens <= p.tokens, f"{at}.lr_warmup_tokens", p.lr_warmup_tokens,
             f"must be in [0, tokens = {p.tokens}]")
        need(p.lr_decay in LR_DECAYS, f"{at}.lr_decay", p.lr_decay, f"must be one of {', '.join(LR_DECAYS)}")
        room = p.tokens - p.lr_warmup_tokens
        need(p.lr_decay_tokens is None or 0 < p.lr_decay_tokens <= room, f"{at}.lr_decay_tokens",
             p.lr_decay_tokens, f"must be in (0, tokens - lr_warmup_tokens = {room}] or null")
        need(0 < p.lr_start_ratio <= 1, f"{at}.lr_start_ratio", p.lr_start_ratio,
             "must be in (0, 1] (a fraction of the peak LR)")
        if p.lr_decay != "none":  # a decay never rises
            need(0 <= p.lr_min_ratio <= p.lr_start_ratio, f"{at}.lr_min_ratio", p.lr_min_ratio,
                 f"must be in [0, lr_start_ratio = {p.lr_start_ratio:g}] (the LR decays to it)")
        else:
            need(0 <= p.lr_min_ratio <= 1, f"{at}.lr_min_ratio", p.lr_min_ratio, "must be in [0, 1]")
        need(p.batch_sequences >= 1, f"{at}.batch_sequences", p.batch_sequences, "must be at least 1")
        start = p.batch_start_sequences
        need(start is None or 1 <= start <= p.batch_sequences, f"{at}.batch_start_sequences", start,
             f"must be in [1, batch_sequences = {p.batch_sequences}] or null")
        need(p.batch_warmup_tokens >= 0, f"{at}.batch_warmup_tokens", p.batch_warmup_tokens, "must be >= 0")
        need(p.batch_ramp in BATCH_RAMPS, f"{at}.batch_ramp", p.batch_ramp, f"must be one of {', '.join(BATCH_RAMPS)}")
        need(p.layout in ROW_LAYOUTS, f"{at}.layout", p.layout, f"must be one of {', '.join(ROW_LAYOUTS)}")
        need(p.min_row_tokens >= 1, f"{at}.min_row_tokens", p.min_row_tokens, "must be at least 1")
        need(p.mean_row_tokens is None or p.mean_row_tokens > 0, f"{at}.mean_row_tokens", p.mean_row_tokens,
             "must be positive or null")
        # Rows of documents have no fixed length, so the batch's size cannot follow tokens seen.
        need(p.layout == "packed" or p.batch_ramp == "steps" or not p.batch.warms_up, f"{at}.batch_ramp",
             p.batch_ramp, "must be steps when the layout is documents and the batch warms up")
        need(p.weight_decay is None or p.weight_decay >= 0, f"{at}.weight_decay", p.weight_decay,
             "must be >= 0 or null")
        need(p.checkpoint_every_tokens > 0, f"{at}.checkpoint_every_tokens", p.checkpoint_every_tokens,
             "must be a positive token count")
        need(re.fullmatch(r"[A-Za-z][A-Za-z_-]*", p.tag) is not None, f"{at}.tag", p.tag,
             "must be letters, '_' or '-' (the checkpoint number follows it)")
        need(p.tag not in tags, f"{at}.tag", p.tag, "is used by another phase; tags must differ")
        tags.append(p.tag)
