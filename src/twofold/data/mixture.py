"""Mixtures: how often each group (a language, in a multilingual recipe) is sampled in a phase.

Either explicit `weights`, or a temperature τ over the token counts of the included groups,
`p_i ∝ b_i · n_i^τ` (mmBERT: τ=0.7 in pretraining, 0.5 mid-training, 0.3 in decay; τ=1 is
size-proportional, small τ flattens; `boost` b_i defaults to 1 and lets a variant favour a
language, e.g. an English-heavy decay). The groups of a phase are `groups` (a list), or `top`
(N groups: those of `groups`, then the others with the most tokens), or every group: progressive
language addition (60 → 110 → all languages) is a larger set in each phase. Only the included
groups enter the normalisation, so a language outside the set is never drawn. `plan` says,
for a token budget, how often each group is seen (epochs; above 1 means upsampling).

Several sources inside a language: name the groups `LANGUAGE/SOURCE` (e.g. `eng/web`,
`eng/code`) and give `sources` fixed weights. The rest of the mixture (τ, weights, groups,
top, boost) then speaks of languages, over each language's tokens summed across its sources,
and a language's share is split among its sources in proportion to their weights:
`p(L/s) = p(L) · w_s / Σ_{s' of L} w_s'`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from twofold.errors import TwofoldError
from twofold.files import read_yaml, save_figure

KEYS = ("groups", "top", "temperature", "boost", "weights", "sources")


def _some(names: list[str], limit: int = 12) -> str:
    """A readable list of names, cut after `limit` (a phase may hold 1833 languages)."""
    more = f" … (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


@dataclass(frozen=True)
class Mixture:
    weights: Mapping[str, float] | None = None
    temperature: float | None = None
    groups: tuple[str, ...] | None = None  # None: every group of the stores (with `top`: always included)
    boost: Mapping[str, float] | None = None  # multiplies n_i^τ of these groups
    top: int | None = None  # include `top` groups: `groups`, then the others with the most tokens
    sources: Mapping[str, float] | None = None  # fixed weights of the sources inside each language

    def __post_init__(self) -> None:
        if self.weights is not None and self.temperature is not None:
            raise TwofoldError("mixture: give either weights or temperature, not both")
        if self.boost is not None:
            if self.weights is not None:
                raise TwofoldError("mixture: boost multiplies n^τ; with explicit weights, change the weights instead")
            object.__setattr__(self, "boost", {str(k): float(v) for k, v in self.boost.items()})
            bad = {k: v for k, v in self.boost.items() if not v > 0}
            if bad:
                raise TwofoldError(f"mixture: boost factors must be > 0, got {bad}")
        if self.top is not None:
            if self.weights is not None:
                raise TwofoldError("mixture: top picks the included groups; give it without weights")
            if isinstance(self.top, bool) or not isinstance(self.top, int) or self.top < 1:
                raise TwofoldError(f"mixture: top must be a whole number >= 1, got {self.top!r}")
            if self.groups is not None and len(self.groups) > self.top:
                raise TwofoldError(f"mixture: top {self.top} is smaller than the {len(self.groups)} groups "
                                   "always included; raise it")
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
        if self.sources is not None:
            object.__setattr__(self, "sources", {str(k): float(v) for k, v in self.sources.items()})
            if any(v < 0 for v in self.sources.values()) or not any(self.sources.values()):
                raise TwofoldError(f"mixture: sources weights must be >= 0 and one positive, got {self.sources}")
        if self.groups is not None:
            object.__setattr__(self, "groups", tuple(str(g) for g in self.groups))
            if not self.groups:
                raise TwofoldError("mixture: groups lists no group; name at least one or leave it out")

    def probabilities(self, group_tokens: Mapping[str, int]) -> dict[str, float]:
        """Sampling probability of each included group, given the token count of every group."""
        if self.sources is not None:
            return self._by_language_and_source(group_tokens)
        named = set(self.groups or ()) | set(self.weights or ()) | set(self.boost or ())
        missing = sorted(named - set(group_tokens))
        if missing:
            raise TwofoldError(
                f"mixture: group(s) {_some(missing)} named in the phase are provided by no store "
                f"(stores have: {_some(sorted(group_tokens))}); fix the names or add a source"
            )
        groups = self.included(group_tokens)
        outside = sorted(set(self.boost or ()) - set(groups))
        if outside:
            raise TwofoldError(f"mixture: boost names group(s) {_some(outside)} that the phase does not include; "
                               "include them or drop the boost")
        if self.weights is not None:
            unweighted = [g for g in groups if g not in self.weights]
            if unweighted:
                raise TwofoldError(f"mixture: included group(s) {_some(unweighted)} have no "
                                   "weight; add weights for them")
            raw = {g: self.weights[g] for g in groups}
            if not any(raw.values()):
                raise TwofoldError("mixture: every included group has weight 0; give one a positive weight")
        else:
            tau = 1.0 if self.temperature is None else self.temperature
            boost = self.boost or {}
            raw = {g: boost.get(g, 1.0) * float(group_tokens[g]) ** tau if group_tokens[g] > 0 else 0.0
                   for g in groups}
        empty = [g for g, w in raw.items() if w > 0 and group_tokens[g] == 0]
        if empty or not any(raw.values()):
            raise TwofoldError(f"mixture: group(s) {_some(empty or groups)} have no tokens; "
                               "drop them from the phase")
        total = sum(raw.values())
        return {g: w / total for g, w in raw.items() if w > 0}

    def _by_language_and_source(self, group_tokens: Mapping[str, int]) -> dict[str, float]:
        """The languages' shares (this mixture over the languages' summed tokens), each split
        among its sources by the fixed `sources` weights."""
        languages: dict[str, dict[str, str]] = {}  # language -> source -> group
        for group in group_tokens:
            language, slash, source = group.partition("/")
            if not slash:
                raise TwofoldError(f"mixture: sources weigh the sources inside each language, so groups are "
                                   f"named LANGUAGE/SOURCE; group {group!r} is not (set group= when preparing)")
            languages.setdefault(language, {})[source] = group
        tokens = {language: sum(group_tokens[g] for g in members.values()) for language, members in languages.items()}
        shares = dataclasses.replace(self, sources=None).probabilities(tokens)
        result = {}
        for language, share in shares.items():
            members = {s: g for s, g in languages[language].items() if group_tokens[g] > 0}
            unweighted = sorted(set(members) - set(self.sources))
            if unweighted:
                raise TwofoldError(f"mixture: source(s) {_some(unweighted)} of language {language} have no weight "
                                   "in sources; add them (0 leaves one out)")
            total = sum(self.sources[s] for s in members)
            if total <= 0:
                raise TwofoldError(f"mixture: every source of language {language} has weight 0; give one a "
                                   "positive weight or leave the language out")
            result.update({g: share * self.sources[s] / total for s, g in members.items() if self.sources[s] > 0})
        return result

    def included(self, group_tokens: Mapping[str, int]) -> list[str]:
        """The groups this phase samples from, given the token count of every group of the stores."""
        if self.top is not None:  # the named groups, then the largest others up to `top`
            if self.top > len(group_tokens):
                raise TwofoldError(f"mixture: top {self.top} asks for more groups than the stores have "
                                   f"({len(group_tokens)}); lower it or add sources")
            chosen = list(self.groups or ())
            others = sorted((g for g in group_tokens if g not in chosen), key=lambda g: (-group_tokens[g], g))
            return sorted(chosen + others[:self.top - len(chosen)])
        if self.groups is not None:
            return list(self.groups)
        if self.weights is not None:
            return sorted(self.weights)
        return sorted(group_tokens)

    def to_dict(self) -> dict:
        data = {"weights": dict(self.weights) if self.weights is not None else None,
                "temperature": self.temperature,
                "groups": list(self.groups) if self.groups is not None else None}
        # Written only when set, so that the order logs of older runs keep their descriptions.
        if self.boost is not None:
            data["boost"] = dict(self.boost)
        if self.top is not None:
            data["top"] = self.top
        if self.sources is not None:
            data["sources"] = dict(self.sources)
        return data

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "mixture") -> Mixture:
        unknown = set(data) - set(KEYS)
        if unknown:
            raise TwofoldError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; use {', '.join(KEYS)}")
        groups = data.get("groups")
        return cls(weights=data.get("weights"), temperature=data.get("temperature"),
                   groups=tuple(groups) if groups is not None else None, boost=data.get("boost"),
                   top=data.get("top"), sources=data.get("sources"))

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


def format_phase_shares(plans: Mapping[str, list[PlanRow]], group_tokens: Mapping[str, int]) -> str:
    """One row per group (largest first), the share p_i of each phase in columns ('-': not included)."""
    phases = list(plans)
    shares = {phase: {r.group: r.probability for r in rows} for phase, rows in plans.items()}
    width = max([len("group"), *(len(g) for g in group_tokens)])
    lines = [f"{'group':<{width}} {'tokens':>14} " + " ".join(f"{p:>12}" for p in phases)]
    for group in sorted(group_tokens, key=lambda g: (-group_tokens[g], g)):
        cells = [f"{shares[p][group]:>12.2%}" if group in shares[p] else f"{'-':>12}" for p in phases]
        lines.append(f"{group:<{width}} {group_tokens[group]:>14,} " + " ".join(cells))
    lines.append(f"{'groups':<{width}} {len(group_tokens):>14,} " + " ".join(f"{len(shares[p]):>12}" for p in phases))
    return "\n".join(lines)


def plot_phase_shares(plans: Mapping[str, list[PlanRow]], group_tokens: Mapping[str, int], path: str | Path,
                      title: str = "") -> Path:
    """Share of each group per phase (log scale), groups ordered by their token count."""
    from matplotlib.figure import Figure

    order = sorted(group_tokens, key=lambda g: (-group_tokens[g], g))
    position = {g: i for i, g in enumerate(order)}
    figure = Figure(figsize=(min(24.0, max(7.0, 0.2 * len(order) + 2)), 5.5))
    axes = figure.subplots()
    available = [group_tokens[g] / max(sum(group_tokens.values()), 1) for g in order]
    axes.plot(range(len(order)), available, color="grey", linestyle="--", linewidth=1,
              label="share of tokens in stores")
    for phase, rows in plans.items():
        rows = sorted(rows, key=lambda r: position[r.group])
        axes.plot([position[r.group] for r in rows], [r.probability for r in rows], marker="o", markersize=4,
                  linestyle="none", label=f"{phase} ({len(rows)} groups)")
    axes.set_yscale("log")
    axes.set_ylabel("sampling share p_i")
    axes.set_xlabel("group, by tokens in the stores (largest first)")
    if len(order) <= 80:
        axes.set_xticks(range(len(order)), order, rotation=90, fontsize=7)
    axes.legend(fontsize=8)
    axes.set_title(title or "language shares per phase")
    figure.tight_layout()
    return save_figure(figure, path, dpi=100)
