"""The search space: model and optimiser settings, each a dotted RunConfig key.

A parameter is categorical (a tuple of choices) or a float range (optionally log-scaled) with
the grid values the grid sampler walks. Two keys set more than their own field:
``model.dropout`` sets all three dropouts and ``model.d_model`` keeps the base config's
``d_ff / d_model`` ratio. ``SearchSpace.covering(base)`` widens the space so the base config is
a point of it: the study enqueues that point as trial 0 (the reference every trial is compared
with).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from liverec.config import RunConfig, apply_overrides, to_dict
from liverec.errors import ConfigError


@dataclass(frozen=True)
class Param:
    """One searched setting: categorical ``choices``, or a float range [low, high]."""

    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    grid: tuple = ()  # float ranges: the values the grid sampler tries

    @property
    def categorical(self) -> bool:
        return bool(self.choices)

    def grid_values(self) -> list:
        return list(self.choices or self.grid)

    def covering(self, value: Any) -> Param:
        """This parameter widened so that ``value`` is one of its points."""
        if self.categorical:
            if value in self.choices:
                return self
            return dataclasses.replace(self, choices=tuple(_sorted([*self.choices, value])))
        value = float(value)
        grid = self.grid if value in self.grid else tuple(sorted({*self.grid, value}))
        return dataclasses.replace(self, low=min(self.low, value), high=max(self.high, value),
                                   grid=grid)


def _sorted(values: list) -> list:
    try:
        return sorted(values)
    except TypeError:
        return values


DEFAULT_PARAMS: dict[str, Param] = {
    "model.d_model": Param(choices=(32, 64, 128)),
    "model.n_layers": Param(choices=(1, 2, 3)),
    "model.n_heads": Param(choices=(1, 2, 4)),
    "model.dropout": Param(low=0.0, high=0.6, grid=(0.1, 0.3, 0.5)),
    "model.max_len": Param(choices=(20, 50, 100)),
    "train.lr": Param(low=1e-4, high=1e-2, log=True, grid=(3e-4, 1e-3, 3e-3)),
    "train.weight_decay": Param(choices=(0.0, 1e-4, 1e-3, 1e-2, 1e-1)),
    "train.batch_size": Param(choices=(64, 128, 256, 512)),
    "train.optimizer": Param(choices=("adamw", "adam", "sgd")),
    "train.schedule": Param(choices=("cosine", "constant")),
}


@dataclass(frozen=True)
class SearchSpace:
    """Named parameters (dotted RunConfig keys) and how a point becomes a RunConfig."""

    params: dict[str, Param] = dataclasses.field(default_factory=lambda: dict(DEFAULT_PARAMS))

    @classmethod
    def from_dict(cls, spec: dict[str, Any] | None) -> SearchSpace:
        """The default space changed by ``spec``: key -> list of choices, {"low", "high",
        "log", "grid"} for a float range, or null to leave the setting out (base value)."""
        params = dict(DEFAULT_PARAMS)
        for key, value in (spec or {}).items():
            section, _, name = key.partition(".")
            if section not in ("model", "train") or not name:
                raise ConfigError(f"search space: {key!r} is not a model.* or train.* setting")
            if value is None:
                params.pop(key, None)
            elif isinstance(value, list) and value:
                params[key] = Param(choices=tuple(value))
            elif isinstance(value, dict) and {"low", "high"} <= set(value):
                params[key] = Param(low=float(value["low"]), high=float(value["high"]),
                                    log=bool(value.get("log", False)),
                                    grid=tuple(float(v) for v in value.get("grid", ())))
            else:
                raise ConfigError(f"search space: {key!r} needs a list of choices, "
                                  f"{{'low', 'high'[, 'log', 'grid']}} or null; got {value!r}")
        return cls(params)

    def covering(self, base: RunConfig) -> SearchSpace:
        """The space widened so that the base config's values are points of it."""
        point = self.point_of(base)
        return SearchSpace({k: p.covering(point[k]) for k, p in self.params.items()})

    def point_of(self, cfg: RunConfig) -> dict[str, Any]:
        """The values a config has for every searched key."""
        data = to_dict(cfg)
        out = {}
        for key in self.params:
            section, name = key.split(".", 1)
            if name not in data[section]:
                raise ConfigError(f"search space: unknown setting {key!r}")
            out[key] = data[section][name]
        return out

    def grid(self) -> dict[str, list]:
        """The grid sampler's search space."""
        return {k: p.grid_values() for k, p in self.params.items()}

    def suggest(self, trial) -> dict[str, Any]:
        """Ask an Optuna trial for one point of the space."""
        point = {}
        for key, p in self.params.items():
            if p.categorical:
                point[key] = trial.suggest_categorical(key, list(p.choices))
            else:
                point[key] = trial.suggest_float(key, p.low, p.high, log=p.log)
        return point

    def apply(self, base: RunConfig, point: dict[str, Any]) -> RunConfig:
        """``base`` with ``point`` applied (dropout and d_model carry their companions)."""
        overrides = dict(point)
        if "model.dropout" in overrides:
            for companion in ("model.attn_dropout", "model.emb_dropout"):
                overrides.setdefault(companion, overrides["model.dropout"])
        if "model.d_model" in overrides and "model.d_ff" not in overrides:
            ratio = base.model.d_ff / base.model.d_model
            overrides["model.d_ff"] = int(round(ratio * overrides["model.d_model"]))
        cfg = apply_overrides(base, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
        if cfg.model.d_model % cfg.model.n_heads:
            raise ConfigError(f"model.d_model={cfg.model.d_model} is not divisible by "
                              f"model.n_heads={cfg.model.n_heads}")
        return cfg

