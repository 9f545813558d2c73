"""Recommender.recommend(query=...): query alone, blended with a history, errors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

import liverec
from liverec.evaluate.protocol import mask_seen
from liverec.model.recommender import Recommender, UnknownItemError
from liverec.text import HashEncoder
from liverec.text.query import QueryConfig, QueryError, blend_scores_reference

COLOURS = ["red", "blue", "green", "amber", "violet", "ivory", "coral", "olive", "teal", "plum"]
ANIMALS = ["fox", "owl", "cat", "eel", "yak"]


@pytest.fixture(scope="module")
def rec(trained_run, tmp_path_factory) -> Recommender:
    """The tiny known-answer model with a titled catalogue (item i: a colour and an animal)."""
    import os

    base = liverec.load(trained_run[0])
    n = base.vocab.n_items
    titles = [f"{COLOURS[i % 10]} {ANIMALS[i // 10]}" for i in range(n)]
    items = base.items.with_columns(pl.Series("title", titles))
    out = Recommender(base.model, base.vocab, items, base.meta)
    old = os.environ.get("LIVEREC_CACHE")
    os.environ["LIVEREC_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        out.text_index(encoder=HashEncoder(256))
    finally:
        if old is None:
            os.environ.pop("LIVEREC_CACHE")
        else:
            os.environ["LIVEREC_CACHE"] = old
    return out


def _title(rec, item_id: str) -> str:
    return rec.items.filter(pl.col("item") == item_id)["title"][0]


def test_query_alone_returns_the_matching_title(rec):
    for item in ["3", "17", "42"]:
        got = rec.recommend(query=_title(rec, item), k=1)
        assert got[0][0] == item
        assert got[0][1] == pytest.approx(1.0, abs=1e-5)  # cosine to its own text
    got = rec.recommend(history=None, query="teal", k=5)
    assert {_title(rec, i).split()[0] for i, _ in got} == {"teal"}


def test_blend_follows_the_reference_path(rec):
    hist, query = ["10", "11", "12"], "green owl"
    cfg = QueryConfig(weight=0.4)
    got = rec.recommend(hist, k=8, query=query, query_config=cfg)
    idx = [rec.encode(hist)]
    model = mask_seen(rec.score_indices(idx), idx)
    text = mask_seen(rec.text_index().similarity([query]), idx)
    ref = np.array(blend_scores_reference(text.tolist(), model.tolist(), cfg)[0])
    order = np.argsort(-ref, kind="stable")[:8]
    assert [i for i, _ in got] == rec.vocab.decode(order)
    np.testing.assert_allclose([s for _, s in got], ref[order], rtol=1e-5, atol=1e-5)


def test_weight_zero_is_the_history_and_one_is_the_query(rec):
    hist = ["20", "21", "22"]
    plain = [i for i, _ in rec.recommend(hist, k=10)]
    zero = [i for i, _ in rec.recommend(hist, k=10, query="plum yak",
                                        query_config=QueryConfig(weight=0.0))]
    assert zero == plain
    one = [i for i, _ in rec.recommend(hist, k=10, query="plum yak",
                                       query_config=QueryConfig(weight=1.0))]
    alone = [i for i, _ in rec.recommend(query="plum yak", k=13) if i not in hist][:10]
    assert one == alone


def test_history_moves_the_blend_toward_the_next_item(rec):
    # the model knows the next item after 29..32 is 33 ("amber eel"); the query "amber"
    # matches 5 items equally; the history picks among them
    hist = ["29", "30", "31", "32"]
    alone = rec.recommend(query="amber", k=5)
    assert len({round(s, 5) for _, s in alone}) == 1  # five ties on text alone
    assert rec.recommend(hist, k=1, query="amber")[0][0] == "33"


def test_seen_items_and_batches(rec):
    hist = ["5", "6"]
    got = [i for i, _ in rec.recommend(hist, k=20, query=_title(rec, "5"))]
    assert "5" not in got and "6" not in got
    kept = [i for i, _ in rec.recommend(hist, k=3, query=_title(rec, "5"), exclude_seen=False)]
    assert kept[0] == "5"
    batch = rec.recommend_batch([hist, []], k=4, queries=["red fox", "violet cat"])
    assert batch[0] == rec.recommend(hist, k=4, query="red fox")
    assert batch[1] == rec.recommend(query="violet cat", k=4)


def test_bad_requests_fail_clearly_and_change_nothing(rec):
    before = rec.recommend(["1", "2"], k=5)
    with pytest.raises(ValueError, match="history, a query or both"):
        rec.recommend(k=3)
    for bad in ("", "  ", "...", 7):
        with pytest.raises(QueryError):
            rec.recommend(["1"], k=3, query=bad)
    with pytest.raises(UnknownItemError):
        rec.recommend(["nope"], k=3, query="red")
    with pytest.raises(ValueError, match="queries for"):
        rec.topk_indices([rec.encode(["1"])], 3, queries=["a", "b"])
    assert rec.recommend(["1", "2"], k=5) == before


def test_non_finite_model_scores_are_refused(rec, monkeypatch):
    from liverec.errors import NonFiniteError

    def broken(histories):
        out = torch.zeros(len(histories), rec.vocab.n_items + 1)
        out[:, 3] = float("nan")
        return out

    monkeypatch.setattr(rec, "score_indices", broken)
    with pytest.raises(NonFiniteError):
        rec.recommend(["1"], k=3, query="red fox")
    assert rec.recommend(query="red fox", k=1)[0][0] == "0"  # no history: no model scores


def test_items_added_to_a_text_model_are_found_by_query(tiny_run_config, text_cache, tmp_path):
    import dataclasses

    from tests.conftest import titled_cyclic_dataset

    from liverec.config import DataConfig
    from liverec.data.prepare import prepare
    from liverec.train.loop import train

    model = dataclasses.replace(tiny_run_config.model, item_repr="text", text_encoder="hash:16",
                                d_model=16, d_ff=32)
    cfg = dataclasses.replace(tiny_run_config, model=model,
                              train=dataclasses.replace(tiny_run_config.train, epochs=2))
    train(cfg, prepare(titled_cyclic_dataset(), DataConfig(source="titled")), tmp_path / "r")
    rec = liverec.load(tmp_path / "r")
    before = rec.recommend(query="zebra lamp", k=3)  # builds the text index
    assert "NEW" not in [i for i, _ in before]
    rec.add_items(pl.DataFrame({"item": ["NEW"], "title": ["zebra lamp"]}))
    assert rec.text_index().n_items == rec.vocab.n_items
    assert rec.recommend(query="zebra lamp", k=1)[0][0] == "NEW"
    assert rec.recommend(["3", "4"], k=1, query="zebra lamp",
                         query_config=QueryConfig(weight=1.0))[0][0] == "NEW"


def test_query_answers_go_through_a_reranker(rec):
    from liverec.rerank import GreedyReranker, HardRules, RerankConfig, catalogue_for

    flagged = Recommender(rec.model, rec.vocab, rec.items.with_columns(
        pl.Series("unsafe", [i == "17" for i in rec.items["item"]])), rec.meta)
    flagged._text_index = rec.text_index()
    rr = GreedyReranker(catalogue_for(flagged), RerankConfig(rules=HardRules(deny={"42"})))
    for history in (None, ["40", "41"]):
        got = [i for i, _ in flagged.recommend(history, k=50, query="product 17 42",
                                               rerank=rr)]
        assert got and "17" not in got and "42" not in got
    assert flagged.recommend(query=_title(rec, "17"), k=1)[0][0] == "17"  # no stage: shown
