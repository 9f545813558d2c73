"""The service's re-ranking settings: the deployment's file and a request's overrides.

The deployment's rules come from a JSON or TOML file (``liverec serve RUN --rerank FILE``, or
``LIVEREC_SERVE_RERANK``), read and checked before the service starts
(:func:`load_rerank_file`; every mistake is one line naming the field)::

    candidates = 200            # top-scored items the stage re-ranks to k
    max_candidates = 800        # a list the rules leave short re-ranks a wider pool, up to
                                # this (default 4 x candidates; = candidates: never wider)
    locked = ["allow"]          # rules a request may not switch off (flags and deny never can)
    relevance = "probability"   # scores -> relevance: "minmax" (default) or the softmax
    order = "score"             # final order: "greedy" (as picked, default) or by score

    [rules]
    deny = ["B0001"]            # item ids never shown
    allow = ["B0002", "B0003"]  # when set, only these may be shown
    max_per_category = 3
    category_caps = {"category:skincare" = 1}
    attributes = [{include = ["category:skincare"], exclude = ["adult"]}]

    [mmr]
    lambda = 0.3                # diversity weight (Carbonell & Goldstein 1998)
    similarity = "sum"          # "max": MMR; "sum": the list's ILD (max-sum diversification)

    [calibration]
    lambda = 0.2                # category calibration to the history (Steck 2018)
    alpha = 0.01

    [exposure]
    head_fraction = 0.2         # the 20% most popular items are "head"
    max_head_share = 0.5        # at most half of a list
    penalty = 0.1               # log-popularity penalty

Rules by name, in the stage's order (:data:`RULES`); answers list the ones in effect:
``flags`` (items flagged unsafe or unavailable), ``deny``, ``allow``, ``attributes``,
``category_caps``, ``mmr``, ``calibration``, ``exposure``. ``flags`` and ``deny`` are always on.

A request (GET query or POST body of ``/v1/recommend``) overrides the file for itself
(:class:`RerankRequest`): ``rerank=false`` switches off every rule that may be switched off,
``rules_off`` names some; then ``mmr_lambda``, ``calibration_lambda``, ``exposure_penalty``,
``max_head_share`` and ``max_per_category`` set that rule's value and switch it on (0 for a
lambda or penalty switches it off).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from liverec.errors import ConfigError
from liverec.rerank.config import ORDERS, RELEVANCES, SIMILARITIES

RULES = ("flags", "deny", "allow", "attributes", "category_caps", "mmr", "calibration",
         "exposure")
ALWAYS = frozenset({"flags", "deny"})  # never switched off by a request
SWITCHABLE = tuple(r for r in RULES if r not in ALWAYS)
RuleName = Literal[RULES]  # type: ignore[valid-type]
SwitchableRule = Literal[SWITCHABLE]  # type: ignore[valid-type]
WEIGHTS = ("mmr_lambda", "calibration_lambda", "exposure_penalty")  # at most 1 together

_Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
_Weight = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class AttributeFilterFile(_File):
    include: list[str] | None = Field(None, description="keep items with any of these")
    exclude: list[str] = Field(default_factory=list, description="drop items with any")


class RulesFile(_File):
    deny: list[_Id] = Field(default_factory=list)
    allow: list[_Id] | None = None
    attributes: list[AttributeFilterFile] = Field(default_factory=list)
    max_per_category: int | None = Field(None, ge=1)
    category_caps: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)


class MMRFile(_File):
    lam: _Weight = Field(0.3, alias="lambda")
    similarity: Literal[SIMILARITIES] = "max"  # type: ignore[valid-type]


class CalibrationFile(_File):
    lam: _Weight = Field(0.5, alias="lambda")
    alpha: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.01


class ExposureFile(_File):
    head_fraction: _Weight = 0.2
    max_head_share: _Weight = 1.0
    penalty: _Weight = 0.0


class RerankFile(_File):
    """What a deployment's re-ranking file holds (see the module docstring)."""

    candidates: int = Field(200, ge=1, le=10_000)
    max_candidates: int | None = Field(None, ge=1, le=100_000)
    locked: list[SwitchableRule] = Field(default_factory=list)
    relevance: Literal[RELEVANCES] = "minmax"  # type: ignore[valid-type]
    order: Literal[ORDERS] = "greedy"  # type: ignore[valid-type]
    rules: RulesFile = Field(default_factory=RulesFile)
    mmr: MMRFile | None = None
    calibration: CalibrationFile | None = None
    exposure: ExposureFile | None = None

    def configured(self) -> frozenset[str]:
        """The rules this file switches on (``flags`` always; ``deny`` when it lists ids)."""
        r = self.rules
        on = {"flags", *(["deny"] if r.deny else []),
              *(["allow"] if r.allow is not None else []),
              *(["attributes"] if r.attributes else []),
              *(["category_caps"] if r.max_per_category or r.category_caps else [])}
        on |= {name for name in ("mmr", "calibration") if getattr(self, name)
               and getattr(self, name).lam > 0}
        if self.exposure and (self.exposure.penalty > 0 or self.exposure.max_head_share < 1):
            on.add("exposure")
        return frozenset(on)

    def pool_limit(self) -> int:
        """The largest pool a short list widens to (at least ``candidates``)."""
        return max(self.candidates, self.max_candidates or 4 * self.candidates)

    def weights(self) -> float:
        return ((self.mmr.lam if self.mmr else 0.0)
                + (self.calibration.lam if self.calibration else 0.0)
                + (self.exposure.penalty if self.exposure else 0.0))


def _read(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"rerank file {path}: cannot read it ({exc.strerror})") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"rerank file {path}: give a .json or .toml file")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"rerank file {path}: not valid {path.suffix[1:].upper()} ({exc})"
                          ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"rerank file {path}: expected an object at the top")
    return data


def load_rerank_file(path: str | Path) -> RerankFile:
    """Read and check a deployment's re-ranking file (JSON or TOML).

    Raises:
        ConfigError: one line naming the file and each wrong field (unknown keys, values out of
            range, weights mmr + calibration + exposure penalty above 1, ...).
    """
    path = Path(path)
    try:
        cfg = RerankFile.model_validate(_read(path))
    except ValidationError as exc:
        what = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'file'}: {e['msg']}"
                         for e in exc.errors()[:5])
        raise ConfigError(f"rerank file {path}: {what}") from None
    if cfg.weights() > 1 + 1e-12:
        raise ConfigError(f"rerank file {path}: mmr.lambda + calibration.lambda + "
                          f"exposure.penalty must be <= 1, got {cfg.weights():g}")
    return cfg


@dataclass(frozen=True)
class RerankRequest:
    """A request's overrides of the deployment's rules (hashable: plans are cached by it).

    Attributes:
        enabled: False switches off every rule a request may switch off.
        off: rules to switch off (among :data:`SWITCHABLE`).
        mmr_lambda, calibration_lambda, exposure_penalty, max_head_share, max_per_category:
            a value switches that rule on with it (applied after ``enabled`` and ``off``).
        where: ``query`` or ``body``, for the location of errors.
    """

    enabled: bool = True
    off: frozenset[str] = frozenset()
    mmr_lambda: float | None = None
    calibration_lambda: float | None = None
    exposure_penalty: float | None = None
    max_head_share: float | None = None
    max_per_category: int | None = None
    where: str = field(default="query", compare=False)

    def __post_init__(self) -> None:
        for name in (*WEIGHTS, "max_head_share"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and 0 <= v <= 1):
                raise ConfigError(f"{name} must be in [0, 1], got {v!r}")
        unknown = set(self.off) - set(SWITCHABLE)
        if unknown:
            raise ConfigError(f"rules_off: unknown rule(s) {sorted(unknown)}; "
                              f"choose among {list(SWITCHABLE)}")

    @classmethod
    def of(cls, values: dict, where: str) -> RerankRequest:
        """From the request's fields (``rerank``, ``rules_off`` and the values)."""
        return cls(enabled=values.get("rerank", True),
                   off=frozenset(values.get("rules_off") or ()),
                   **{k: values.get(k) for k in (*WEIGHTS, "max_head_share",
                                                 "max_per_category")},
                   where=where)


DEFAULT_REQUEST = RerankRequest()
