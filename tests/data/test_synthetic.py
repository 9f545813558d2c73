"""The synthetic shop: schema, determinism, known-answer cycles, habits, speed."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from liverec.config import SyntheticConfig
from liverec.data.synthetic import category_names, generate
from liverec.data.tables import INTERACTION_SCHEMA, ITEM_SCHEMA
from liverec.errors import ConfigError

SMALL = SyntheticConfig(n_users=200, n_items=60, n_categories=5, min_len=4, max_len=12, seed=3)


def test_schema_ids_and_lengths():
    ds = generate(SMALL)
    assert dict(ds.interactions.schema) == INTERACTION_SCHEMA
    assert dict(ds.items.schema) == ITEM_SCHEMA
    assert ds.n_users == 200
    assert ds.items["item"].to_list() == [f"I{i:03d}" for i in range(1, 61)]
    assert ds.interactions["user"].min() == "U0001" and ds.interactions["user"].max() == "U0200"
    assert set(ds.interactions["item"]) <= set(ds.items["item"])
    lengths = ds.interactions.group_by("user").len()["len"]
    assert lengths.min() >= 4 and lengths.max() <= 12
    sorted_ = ds.interactions.sort(["user", "ts"], maintain_order=True)
    assert ds.interactions.equals(sorted_)
    step = pl.col("ts").diff().drop_nulls()
    increasing = ds.interactions.group_by("user").agg(ok=(step > 0).all())
    assert increasing["ok"].all()
    assert ds.interactions["ts"].min() >= 1_700_000_000


def test_default_ids_are_padded_like_the_examples():
    ds = generate(SyntheticConfig(n_users=2000, n_items=500, min_len=1, max_len=2))
    assert ds.items["item"][0] == "I0001" and ds.items["item"][-1] == "I0500"
    assert ds.interactions["user"][0] == "U00001" and ds.interactions["user"][-1] == "U02000"


def test_items_have_attributes_titles_and_text():
    items = generate(SMALL).items
    for row in items.head(20).to_dicts():
        keys = [a.split(":")[0] for a in row["attributes"]]
        assert keys == ["category", "brand", "color", "price"]
        assert " — " in row["title"] and row["text"].startswith(row["title"])
        category = row["attributes"][0].split(":", 1)[1]
        assert category in row["text"]
    assert items["attributes"].list.get(0).n_unique() == 5  # every category used


def test_deterministic_by_seed():
    a, b = generate(SMALL), generate(SMALL)
    assert a.interactions.equals(b.interactions) and a.items.equals(b.items)
    c = generate(replace(SMALL, seed=4))
    assert not a.interactions.equals(c.interactions)


def test_known_answer_next_item_is_last_plus_one():
    cfg = replace(SMALL, known_answer=True, n_items=17)
    ds = generate(cfg)
    assert ds.items["item"].to_list() == [str(i) for i in range(17)]
    assert ds.items["title"].str.len_chars().min() > 0
    df = ds.interactions.with_columns(i=pl.col("item").cast(pl.Int64))
    pairs = df.with_columns(prev=pl.col("i").shift(1).over("user")).drop_nulls("prev")
    assert pairs.height == df.height - ds.n_users
    assert ((pairs["prev"] + 1) % 17 == pairs["i"]).all()
    lengths = df.group_by("user").len()["len"]
    assert lengths.min() >= cfg.min_len and lengths.max() <= cfg.max_len


def test_habit_strength_one_follows_category_chains():
    """With habit 1 every step is the chain successor, so each item has one fixed successor."""
    ds = generate(replace(SMALL, habit_strength=1.0))
    df = ds.interactions.with_columns(nxt=pl.col("item").shift(-1).over("user")).drop_nulls()
    assert (df.group_by("item").agg(pl.col("nxt").n_unique())["nxt"] == 1).all()
    cats = dict(zip(ds.items["item"], ds.items["attributes"].list.get(0), strict=True))
    assert all(cats[a] == cats[b] for a, b in df.select("item", "nxt").rows())


def test_habit_zero_is_popularity_skewed_within_tastes():
    ds = generate(replace(SMALL, habit_strength=0.0, n_users=400))
    counts = ds.interactions.group_by("item").len()["len"].to_numpy()
    assert counts.max() > 4 * np.median(counts)  # Zipf-like popularity
    user_cats = ds.interactions.join(
        ds.items.select("item", cat=pl.col("attributes").list.get(0)), on="item"
    ).group_by("user").agg(pl.col("cat").n_unique())
    assert user_cats["cat"].max() <= 3  # 2-3 favourite categories


def test_more_categories_than_names_and_tiny_shops():
    names = category_names(14)
    assert len(set(names)) == 14 and names[12] == "skincare 2"
    ds = generate(SyntheticConfig(n_users=5, n_items=3, n_categories=20, min_len=1, max_len=3))
    assert ds.n_users == 5 and set(ds.interactions["item"]) <= {"I01", "I02", "I03"}


@pytest.mark.parametrize(
    "bad",
    [{"n_users": 0}, {"min_len": 5, "max_len": 4}, {"min_len": 0}, {"habit_strength": 1.5}],
)
def test_invalid_config(bad):
    with pytest.raises(ConfigError, match="data.synthetic"):
        generate(replace(SMALL, **bad))


def test_default_size_is_fast():
    generate(replace(SyntheticConfig(), n_users=10))  # warm up polars
    start = time.perf_counter()
    ds = generate(SyntheticConfig())
    assert time.perf_counter() - start < 0.5
    assert ds.n_users == 2000 and ds.items.height == 500
