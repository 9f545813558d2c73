"""A tiny model trained on the titled known-answer data (next = last + 1, families of 5)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from tests.conftest import titled_cyclic_dataset

from liverec.config import DataConfig, RunConfig
from liverec.data.prepare import prepare


def train_titled_run(cfg: RunConfig, out: Path) -> Path:
    """Train the tiny model on 40 titled items (attribute ``family:fN``, N = item // 5)."""
    from liverec.train.loop import train

    data = prepare(titled_cyclic_dataset(), DataConfig(source="titled"))
    model = dataclasses.replace(cfg.model, n_items=40, d_model=16, d_ff=32)
    train(dataclasses.replace(cfg, model=model), data, out)
    return out


@pytest.fixture(scope="session")
def explain_run(tiny_run_config, tmp_path_factory) -> Path:
    return train_titled_run(tiny_run_config, tmp_path_factory.mktemp("explain") / "tiny")


@pytest.fixture(scope="session")
def explainer(explain_run):
    import liverec
    from liverec.explain import Explainer

    return Explainer.from_recommender(liverec.load(explain_run))
