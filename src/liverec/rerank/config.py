"""Frozen settings of the re-ranking stage: one dataclass per rule, composed by RerankConfig.

A deployment sets a RerankConfig; a request overrides it with :meth:`RerankConfig.override`
(``dataclasses.replace``), e.g. to switch diversity off. Every value is checked when built.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from liverec.errors import ConfigError


def _check_weight(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")


def _check_positive_int(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigError(f"{name} must be a positive integer or None, got {value!r}")


def _frozen_strs(name: str, values) -> frozenset[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        raise ConfigError(f"{name} must be a collection of id strings, not one string")
    bad = [v for v in values if not isinstance(v, str)]
    if bad:
        raise ConfigError(f"{name}: ids are strings, got {bad[:3]!r}")
    return frozenset(values)


@dataclass(frozen=True)
class AttributeFilter:
    """Keep items that carry any of ``include`` (None = no requirement) and none of ``exclude``."""

    include: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "include", _frozen_strs("attribute include", self.include))
        object.__setattr__(self, "exclude", _frozen_strs("attribute exclude", self.exclude))


@dataclass(frozen=True)
class HardRules:
    """Rules no score can override. Flagged (unsafe/unavailable) catalogue items and padding are
    always removed; on top of that:

    Attributes:
        allow: external ids; when set, only these items may be shown (an allow list).
        deny: external ids never shown (a deny list); deny wins over allow.
        attributes: attribute filters, all must pass.
        max_per_category: at most this many items of one category in a list (None = no cap).
        category_caps: per-category-code caps, overriding ``max_per_category`` for that code.
    """

    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()
    attributes: tuple[AttributeFilter, ...] = ()
    max_per_category: int | None = None
    category_caps: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow", _frozen_strs("allow", self.allow))
        object.__setattr__(self, "deny", _frozen_strs("deny", self.deny))
        object.__setattr__(self, "attributes", tuple(self.attributes))
        _check_positive_int("max_per_category", self.max_per_category)
        caps = tuple((int(c), int(n)) for c, n in dict(self.category_caps).items())
        for c, n in caps:
            if n < 0:
                raise ConfigError(f"category_caps: cap of category {c} must be >= 0, got {n}")
        object.__setattr__(self, "category_caps", caps)


SIMILARITIES = ("max", "sum")
RELEVANCES = ("minmax", "probability")
ORDERS = ("greedy", "score")


@dataclass(frozen=True)
class MMRConfig:
    """Diversity: each next item maximises ``(1 - lam) * rel(i) - lam * sim(i, list)``.

    ``similarity="max"``: ``sim = max_{j in list} cos(v_i, v_j)``, maximal marginal relevance
    (Carbonell & Goldstein, SIGIR 1998; the paper's lambda weighs relevance: paper = 1 - lam).
    ``similarity="sum"``: ``sim = 2 / (k (k - 1)) * sum_{j in list} cos(v_i, v_j)``, the item's
    share of the list's mean pairwise similarity, so the greedy list maximises
    ``(1 - lam) * sum rel + lam * ILD`` (max-sum diversification, Gollapudi & Sharma, WWW
    2009; ILD = intra-list diversity, the mean pairwise cosine distance). With
    ``RerankConfig.relevance="probability"`` that is the expected hit rate of the list traded
    against its ILD. ``lam`` weighs diversity (0 = off).
    """

    lam: float = 0.3
    similarity: str = "max"

    def __post_init__(self) -> None:
        _check_weight("mmr lam", self.lam)
        if self.similarity not in SIMILARITIES:
            raise ConfigError(f"mmr similarity must be one of {SIMILARITIES}, "
                              f"got {self.similarity!r}")


@dataclass(frozen=True)
class CalibrationConfig:
    """Calibrated recommendations (Steck, RecSys 2018): the list's category mix q follows the
    history's p. Each next item maximises ``(1 - lam) * rel(i) - lam * KL(p || q~)`` of the list
    with it, where ``q~ = (1 - alpha) q + alpha p`` keeps KL finite (the paper's alpha = 0.01).
    """

    lam: float = 0.5
    alpha: float = 0.01

    def __post_init__(self) -> None:
        _check_weight("calibration lam", self.lam)
        _check_weight("calibration alpha", self.alpha)
        if self.alpha == 0.0:
            raise ConfigError("calibration alpha must be > 0 (KL would be infinite)")


@dataclass(frozen=True)
class ExposureConfig:
    """Exposure control against popularity bias (Abdollahpouri et al., "Controlling popularity
    bias in learning to rank recommendation", RecSys 2017; "Managing popularity bias in
    recommender systems with personalized re-ranking", FLAIRS 2019), two knobs:

    Attributes:
        head_fraction: the ``head_fraction`` most popular share of the catalogue is "head".
        max_head_share: a hard cap: at most ``floor(max_head_share * k)`` head items in a list
            of k (1.0 = no cap).
        penalty: a soft weight ``lam_pop``: each item's gain loses ``lam_pop * pop~(i)``, with
            ``pop~ = log(1 + pop) / log(1 + max pop)`` in [0, 1], and relevance keeps
            ``1 - lam_pop`` (0 = off).
    """

    head_fraction: float = 0.2
    max_head_share: float = 1.0
    penalty: float = 0.0

    def __post_init__(self) -> None:
        _check_weight("exposure head_fraction", self.head_fraction)
        _check_weight("exposure max_head_share", self.max_head_share)
        _check_weight("exposure penalty", self.penalty)


@dataclass(frozen=True)
class RerankConfig:
    """The whole stage: hard rules, then a greedy list under the soft objectives.

    Attributes:
        rules: hard rules (always on; flags always apply).
        mmr: diversity (None = off).
        calibration: category calibration (None = off).
        exposure: head-item cap (None = off).
        n_candidates: how many top-scored items the stage receives (200 by default).
        relevance: how scores become ``rel``: "minmax" scales them to [0, 1] over the
            candidates; "probability" is the softmax over the candidates, the model's
            next-item probabilities for a model trained with full-softmax cross-entropy
            (``rel`` then sums to 1, so ``sum rel`` over a list is its expected hit rate).
        order: the final list's order: "greedy" (the order items were picked) or "score"
            (the picked items by score: the same set, so the same diversity, calibration and
            exposure, with the likeliest items first).
    """

    rules: HardRules = field(default_factory=HardRules)
    mmr: MMRConfig | None = None
    calibration: CalibrationConfig | None = None
    exposure: ExposureConfig | None = None
    n_candidates: int = 200
    relevance: str = "minmax"
    order: str = "greedy"

    def __post_init__(self) -> None:
        _check_positive_int("n_candidates", self.n_candidates)
        if self.relevance not in RELEVANCES:
            raise ConfigError(f"relevance must be one of {RELEVANCES}, got {self.relevance!r}")
        if self.order not in ORDERS:
            raise ConfigError(f"order must be one of {ORDERS}, got {self.order!r}")
        total = ((self.mmr.lam if self.mmr else 0.0)
                 + (self.calibration.lam if self.calibration else 0.0)
                 + (self.exposure.penalty if self.exposure else 0.0))
        if total > 1.0 + 1e-12:
            raise ConfigError("mmr lam + calibration lam + exposure penalty must be <= 1, "
                              f"got {total:g}")

    def override(self, **changes) -> RerankConfig:
        """A per-request copy with some fields replaced (e.g. ``mmr=None`` turns MMR off)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown rerank setting(s): {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict:
        """The rules in effect as plain JSON-able data (for reports and the dashboard)."""
        def plain(v):
            if isinstance(v, frozenset):
                return sorted(v)
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v
        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}
