"""Mixtures: how often each group (e.g. a language) is sampled in a training phase.

Either explicit `weights`, or a temperature τ over token counts, `p_i ∝ n_i^τ` (mmBERT: τ=0.7
in pretraining, 0.5 mid-training, 0.3 in decay; τ=1 is size-proportional, small τ flattens).
`groups` lists the groups of this phase (progressive inclusion: 60 → 110 → all languages);
by default all groups are included. `plan` says, for a token budget, how often each group
is seen (epochs; above 1 means upsampling).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from twofold.errors import TwofoldError
from twofold.files import read_yaml, save_figure


@dataclass(frozen=True)
class Mixture:
    weights: Mapping[str, float] | None = None
    temperature: float | None = None
    groups: tuple[str, ...] | None = None  # None: every group of the stores

    def __post_init__(self) -> None:
        if self.weights is not None and self.temperature is not None:
            raise TwofoldError("mixture: give either weights or temperature, not both")
        if self.temperature is not None and not self.temperature > 0:
            raise TwofoldError(f"mixture: temperature must be > 0, got {self.temperature}; "
                               "use e.g. 0.7 (1 = size-proportional)")
        if self.weights is not None:
            object.__setattr__(self, "weights", {str(k): float(v) for k, v in self.weights.items()})
            negative = {k: v for k, v in self.weights.items() if v < 0}
            if negative:
                raise TwofoldError(f"mixture: weights must be >= 0, got {negative}")
            if not any(v > 0 for v in self.weights.values()):
                raise TwofoldError("mixture: all weights are zero; give at least one group a positive weight")
        if self.groups is not None:
            object.__setattr__(self, "groups", tuple(str(g) for g in self.groups))
            if not self.groups:
                raise TwofoldError("mixture: groups lists no group; name at least one or leave it out")

    def probabilities(self, group_tokens: Mapping[str, int]) -> dict[str, float]:
        """Sampling probability of each included group, given the token count of every group."""
        named = set(self.groups or ()) | set(self.weights or ())
        missing = sorted(named - set(group_tokens))
        if missing:
            raise TwofoldError(
                f"mixture: group(s) {', '.join(missing)} named in the phase are provided by no store "
                f"(stores have: {', '.join(sorted(group_tokens))}); fix the names or add a source"
            )
        groups = list(self.groups) if self.groups is not None else sorted(
            self.weights if self.weights is not None else group_tokens)
        if self.weights is not None:
            unweighted = [g for g in groups if g not in self.weights]
            if unweighted:
                raise TwofoldError(f"mixture: included group(s) {', '.join(unweighted)} have no "
                                   "weight; add weights for them")
            raw = {g: self.weights[g] for g in groups}
            if not any(raw.values()):
                raise TwofoldError("mixture: every included group has weight 0; give one a positive weight")
        else:
            tau = 1.0 if self.temperature is None else self.temperature
            raw = {g: float(group_tokens[g]) ** tau if group_tokens[g] > 0 else 0.0 for g in groups}
        empty = [g for g, w in raw.items() if w > 0 and group_tokens[g] == 0]
        if empty or not any(raw.values()):
            raise TwofoldError(f"mixture: group(s) {', '.join(empty or groups)} have no tokens; "
                               "drop them from the phase")
        total = sum(raw.values())
        return {g: w / total for g, w in raw.items() if w > 0}

    def to_dict(self) -> dict:
        return {"weights": dict(self.weights) if self.weights is not None else None,
                "temperature": self.temperature,
                "groups": list(self.groups) if self.groups is not None else None}

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "mixture") -> Mixture:
        unknown = set(data) - {"weights", "temperature", "groups"}
        if unknown:
            raise TwofoldError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                               "use weights, temperature, groups")
        groups = data.get("groups")
        return cls(weights=data.get("weights"), temperature=data.get("temperature"),
                   groups=tuple(groups) if groups is not None else None)

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def load_mixture(path: str | Path) -> Mixture:
    """A mixture from a YAML file with keys weights / temperature / groups."""
    path = Path(path)
    if not path.is_file():
        raise TwofoldError(f"mixture file not found: {path}")
    data = read_yaml(path, "a mixture is a mapping with weights / temperature / groups") or {}
    if not isinstance(data, dict):
        raise TwofoldError(f"{path}: a mixture is a mapping with weights / temperature / groups")
    return Mixture.from_dict(data, where=str(path))


@dataclass(frozen=True)
class PlanRow:
    group: str
    tokens: int  # available in the stores
    probability: float
    tokens_drawn: float  # expected, for the budget
    epochs: float  # tokens_drawn / tokens: > 1 means the group is repeated (upsampled)


def plan(mixture: Mixture, group_tokens: Mapping[str, int], token_budget: int) -> list[PlanRow]:
    if token_budget <= 0:
        raise TwofoldError(f"plan: token budget must be positive, got {token_budget}")
    probabilities = mixture.probabilities(group_tokens)
    return [PlanRow(g, group_tokens[g], p, p * token_budget, p * token_budget / group_tokens[g])
            for g, p in sorted(probabilities.items(), key=lambda item: -item[1])]


def format_plan(rows: list[PlanRow]) -> str:
    lines = [f"{'group':<20} {'tokens':>14} {'p':>8} {'drawn':>14} {'epochs':>8}"]
    lines += [f"{r.group:<20} {r.tokens:>14,} {r.probability:>8.4f} {r.tokens_drawn:>14,.0f} {r.epochs:>8.2f}"
              for r in rows]
    return "\n".join(lines)


def plot_plan(rows: list[PlanRow], path: str | Path, title: str = "") -> Path:
    """Bar chart of sampling probability and epochs per group."""
    from matplotlib.figure import Figure  # the object API: no global pyplot state

    groups = [r.group for r in rows]
    width = max(6.0, 0.35 * len(rows) + 2)
    figure = Figure(figsize=(width, 6))
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.bar(groups, [r.probability for r in rows], color="tab:blue")
    top.set_ylabel("sampling probability")
    bottom.bar(groups, [r.epochs for r in rows], color="tab:orange")
    bottom.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    bottom.set_ylabel("epochs over budget")
    bottom.tick_params(axis="x", rotation=90 if len(rows) > 12 else 0)
    figure.suptitle(title or "mixture plan")
    figure.tight_layout()
    return save_figure(figure, path, dpi=100)
