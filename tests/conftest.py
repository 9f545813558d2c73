"""Shared fixtures: a tiny model config and a known-answer dataset a model learns in seconds.

Known answer: cyclic sequences over N items where the next item is always (last + 1) mod N.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from liverec.config import (
    DataConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    SyntheticConfig,
    TrainConfig,
)
from liverec.data.prepare import prepare
from liverec.data.tables import Dataset, empty_items

N_ITEMS = 50


def cyclic_dataset(n_users: int = 300, n_items: int = N_ITEMS, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_items, n_users)
    lengths = rng.integers(6, 15, n_users)
    users = np.repeat([f"u{u:04d}" for u in range(n_users)], lengths)
    steps = np.concatenate([np.arange(n) for n in lengths])
    items = (np.repeat(starts, lengths) + steps) % n_items
    df = pl.DataFrame({"user": users, "item": items.astype(str),
                       "ts": pl.Series(steps, dtype=pl.Int64)})
    return Dataset("cyclic", df, empty_items(df["item"]))


@pytest.fixture(scope="session")
def known_answer_data():
    return prepare(cyclic_dataset(), DataConfig(source="cyclic"))


@pytest.fixture(scope="session")
def tiny_model_config() -> ModelConfig:
    return ModelConfig(n_items=N_ITEMS, d_model=8, n_layers=2, n_heads=2, d_ff=16, max_len=16,
                       dropout=0.0, attn_dropout=0.0, emb_dropout=0.0)


@pytest.fixture(scope="session")
def tiny_run_config(tiny_model_config) -> RunConfig:
    return RunConfig(
        name="tiny",
        data=DataConfig(source="cyclic"),
        model=tiny_model_config,
        train=TrainConfig(lr=1e-2, epochs=8, batch_size=64, warmup_steps=5, patience=3,
                          progress=False),
        eval=EvalConfig(baselines=("pop",)),
    )


@pytest.fixture(scope="session")
def trained_run(tiny_run_config, known_answer_data, tmp_path_factory):
    """A tiny model trained on the known-answer data (shared by the tests that only read it)."""
    from liverec.train.loop import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    model = dataclasses.replace(tiny_run_config.model, d_model=16, d_ff=32)
    cfg = dataclasses.replace(tiny_run_config, model=model)
    result = train(cfg, known_answer_data, out)
    return out, result


# a repeat-heavy listening log (data/listening.py): about 65% of next events are repeats
LISTENING = SyntheticConfig(kind="listening", n_users=200, n_items=60, n_categories=4,
                            min_len=15, max_len=40, seed=1)


@pytest.fixture(scope="session")
def repeat_run(tmp_path_factory):
    """(run directory, prepared data): a tiny model in the repeat-aware mode on the listening
    log (eval.protocol "repeat": ``repeat.json`` fitted on validation after training)."""
    from liverec.data.synthetic import generate
    from liverec.train.loop import train

    data_cfg = DataConfig(synthetic=LISTENING, cache=False)
    prepared = prepare(generate(LISTENING), data_cfg)
    cfg = RunConfig(
        name="listen", data=data_cfg,
        model=ModelConfig(n_items=LISTENING.n_items, d_model=16, n_layers=1, n_heads=1,
                          d_ff=32, max_len=20, dropout=0.1, attn_dropout=0.1,
                          emb_dropout=0.1),
        train=TrainConfig(lr=1e-2, epochs=4, batch_size=64, warmup_steps=5, patience=3,
                          progress=False, checkpoint=False),
        eval=EvalConfig(protocol="repeat", baselines=("pop",)),
    )
    out = tmp_path_factory.mktemp("runs") / "listen"
    train(cfg, prepared, out)
    assert (out / "repeat.json").is_file()
    return out, prepared


def titled_cyclic_dataset(n_users: int = 200, n_items: int = 40, seed: int = 0) -> Dataset:
    """The cyclic known-answer data with a catalogue: item i is titled by its family (i // 5)."""
    base = cyclic_dataset(n_users, n_items, seed)
    ids = [str(i) for i in range(n_items)]
    items = pl.DataFrame({
        "item": ids,
        "title": [f"product {i} family{i // 5}" for i in range(n_items)],
        "text": [""] * n_items,
        "attributes": [[f"family:f{i // 5}", "17"] for i in range(n_items)],
    })
    return Dataset("titled", base.interactions, items)


@pytest.fixture
def text_cache(tmp_path, monkeypatch):
    """An empty, private on-disk cache (text vectors and prepared data) for one test."""
    monkeypatch.setenv("LIVEREC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
