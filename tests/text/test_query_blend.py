"""Query scoring: the blend (fast path vs reference), its settings, the text index."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

from liverec.errors import ConfigError
from liverec.text import HashEncoder
from liverec.text.query import (
    QueryConfig,
    QueryError,
    TextIndex,
    blend_scores,
    blend_scores_reference,
    check_query,
)

WORDS = ["red lipstick matte", "blue nail polish", "green tea shampoo", "vanilla body lotion",
         "black eyeliner pencil", "rose perfume spray", "argan hair oil", "mint lip balm"]


def _items(words=WORDS) -> pl.DataFrame:
    return pl.DataFrame({"item": [f"p{i}" for i in range(len(words))], "title": words})


@pytest.fixture
def index(text_cache) -> TextIndex:
    return TextIndex(HashEncoder(256), template="{title}").fit(_items())


def _random_rows(seed: int, b: int = 5, m: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    gen = np.random.default_rng(seed)
    text = torch.from_numpy(gen.uniform(-1, 1, (b, m))).float()
    model = torch.from_numpy(gen.normal(0, 3, (b, m))).float()
    mask = torch.from_numpy(gen.random((b, m)) < 0.2)
    mask[:, 0] = True
    text[mask] = float("-inf")
    model[mask] = float("-inf")
    model[0, 5] = float("-inf")  # masked in one input only: masked in the blend too
    return text, model


@pytest.mark.parametrize("normalise", ["zscore", "softmax"])
@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_blend_matches_the_reference(normalise, weight):
    for seed in range(4):
        text, model = _random_rows(seed)
        cfg = QueryConfig(weight=weight, normalise=normalise, temperature=0.1)
        fast = blend_scores(text, model, cfg).numpy()
        ref = np.array(blend_scores_reference(text.tolist(), model.tolist(), cfg))
        assert np.array_equal(np.isneginf(fast), np.isneginf(ref))
        ok = np.isfinite(ref)
        np.testing.assert_allclose(fast[ok], ref[ok], rtol=1e-5, atol=1e-5)
        assert np.isneginf(fast[0, 5])


def test_blend_weights_reduce_to_either_part():
    text, model = _random_rows(7)
    only_model = blend_scores(text, model, QueryConfig(weight=0.0)).numpy()
    only_text = blend_scores(text, model, QueryConfig(weight=1.0)).numpy()
    for row in range(len(text)):
        ok = np.isfinite(only_model[row])
        assert np.array_equal(np.argsort(-only_model[row][ok], kind="stable"),
                              np.argsort(-model.numpy()[row][ok], kind="stable"))
        assert np.array_equal(np.argsort(-only_text[row][ok], kind="stable"),
                              np.argsort(-np.where(np.isneginf(model.numpy()[row]), -np.inf,
                                                   text.numpy()[row])[ok], kind="stable"))


def test_zscore_puts_both_parts_on_one_scale():
    text, model = _random_rows(3)
    z = blend_scores(text, model * 1000.0, QueryConfig(weight=0.5)).numpy()
    z1 = blend_scores(text, model, QueryConfig(weight=0.5)).numpy()
    np.testing.assert_allclose(z[np.isfinite(z)], z1[np.isfinite(z1)], rtol=1e-4, atol=1e-4)


def test_constant_rows_and_no_model():
    text = torch.tensor([[float("-inf"), 0.5, 0.5, 0.5]])
    model = torch.tensor([[float("-inf"), 2.0, 1.0, 0.0]])
    out = blend_scores(text, model, QueryConfig(weight=0.5)).numpy()[0]
    assert math.isinf(out[0]) and out[1] > out[2] > out[3]
    assert torch.equal(blend_scores(text, None), text)


def test_non_finite_inputs_are_refused():
    text, model = _random_rows(1)
    for bad in (float("nan"), float("inf")):
        broken = model.clone()
        broken[1, 3] = bad
        with pytest.raises(QueryError, match="NaN or \\+inf"):
            blend_scores(text, broken)
        with pytest.raises(QueryError, match="text scores"):
            blend_scores(broken, None)


@pytest.mark.parametrize("kwargs", [{"weight": 1.5}, {"weight": -0.1}, {"weight": float("nan")},
                                    {"weight": True}, {"weight": "0.5"}, {"normalise": "rank"},
                                    {"temperature": 0.0}, {"temperature": float("inf")}])
def test_bad_settings_fail_when_built(kwargs):
    with pytest.raises(ConfigError):
        QueryConfig(**kwargs)


@pytest.mark.parametrize("query", ["", "   ", "?!", None, 3, "x" * 1001])
def test_unusable_queries_are_refused(query):
    with pytest.raises(QueryError):
        check_query(query)
    assert check_query("  tea  ") == "tea"


def test_index_finds_the_matching_title(index):
    assert index.n_items == len(WORDS)
    for i, words in enumerate(WORDS):
        assert index.search(words, k=1)[0][0] == f"p{i}"
    top = [i for i, _ in index.search("nail polish", k=3)]
    assert top[0] == "p1"


def test_similarity_fast_path_matches_reference(index):
    queries = ["lip balm", "hair oil shampoo"]
    fast = index.similarity(queries).numpy()
    ref = np.array(index.similarity_reference(queries))
    assert np.isneginf(fast[:, 0]).all() and np.isneginf(ref[:, 0]).all()
    np.testing.assert_allclose(fast[:, 1:], ref[:, 1:], atol=1e-5)


def test_index_add_appends_and_keeps_rows(index):
    before = index.vectors_.copy()
    got = index.add(pl.DataFrame({"item": ["new"], "title": ["coconut sun cream"]}))
    assert got.tolist() == [len(WORDS) + 1]
    np.testing.assert_array_equal(index.vectors_[: len(before)], before)
    assert index.search("coconut sun cream", k=1)[0][0] == "new"
    with pytest.raises(ValueError, match="already indexed"):
        index.add(pl.DataFrame({"item": ["p0"], "title": ["again"]}))
    with pytest.raises(ValueError, match="positive integer"):
        index.search("tea", k=0)


def test_fit_refuses_repeated_ids(text_cache):
    with pytest.raises(ValueError, match="repeated"):
        TextIndex(HashEncoder(16)).fit(pl.DataFrame({"item": ["a", "a"], "title": ["x", "y"]}))
