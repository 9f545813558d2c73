"""``query`` on /v1/recommend: alone, with a history, with a stored user; the same answer as the
Python API; filters, new and changed items; bad queries are a 422."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import liverec
from liverec.serve.query import QUERY_REASON


@pytest.fixture(scope="module")
def query_run(serve_run, tmp_path_factory):
    """The service's tiny run with the hash text encoder (no language model to load)."""
    out = tmp_path_factory.mktemp("query") / "tiny-query"
    shutil.copytree(serve_run, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg["model"]["text_encoder"] = "hash:128"
    (out / "config.json").write_text(json.dumps(cfg))
    return out


@pytest.fixture
def qclient(make_client, query_run, text_cache):
    return make_client(run_dir=query_run)


def _post(client, **body):
    r = client.post("/v1/recommend", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _ids(body) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def test_query_alone_is_anonymous_text_search(qclient):
    body = _post(qclient, query="product 17 family3", k=3)
    assert _ids(body)[0] == "17" and body["user_id"] is None and body["fallback"] is None
    assert body["events_seen"] == 0 and len(body["items"]) == 3
    explained = _post(qclient, query="product 17 family3", k=1, explain=True)["items"][0]
    assert explained["title"] == "product 17 family3"
    assert explained["reason"] == QUERY_REASON.format(explained["score"])


def test_blend_with_a_history_matches_the_python_api(qclient, query_run):
    rec = liverec.load(query_run)
    for hist, query in ((["3", "4"], "family1"), (["20", "21", "22"], "product 30"),
                        (["7"], "family0 product")):
        body = _post(qclient, history=hist, query=query, k=6)
        ref = rec.recommend(hist, k=6, query=query)
        assert _ids(body) == [i for i, _ in ref]
        np.testing.assert_allclose([i["score"] for i in body["items"]], [s for _, s in ref],
                                   atol=1e-5)
    assert _ids(_post(qclient, history=["3", "4"], query="family1", k=1)) == ["5"]


def test_stored_user_with_a_query_is_fresh(qclient):
    r = qclient.post("/v1/events", json=[{"user_id": "u", "item_id": "10"},
                                         {"user_id": "u", "item_id": "11"}])
    assert r.status_code == 200
    params = {"user_id": "u", "query": "family2", "k": 3}
    first = qclient.get("/v1/recommend", params=params).json()
    assert first["user_id"] == "u" and first["events_seen"] == 2 and _ids(first)[0] == "12"
    qclient.post("/v1/events", json={"user_id": "u", "item_id": "12"})
    after = qclient.get("/v1/recommend", params=params).json()
    assert after["events_seen"] == 3 and _ids(after)[0] == "13" and "12" not in _ids(after)
    nobody = qclient.get("/v1/recommend", params={"user_id": "new", "query": "product 4 family0"})
    assert nobody.json()["fallback"] is None and _ids(nobody.json())[0] == "4"


def test_filters_and_seen_items_hold_with_a_query(qclient):
    body = _post(qclient, history=["5"], query="product 5 family1", k=40,
                 exclude=["6", "7"], attribute="family:f1")
    got = _ids(body)
    assert got and set(got) <= {"8", "9"}  # family1 = 5..9; 5 seen, 6 and 7 excluded
    kept = _post(qclient, history=["5"], query="product 5 family1", k=1, exclude_seen=False)
    assert _ids(kept) == ["5"]


def test_new_and_changed_items_are_searchable(qclient):
    assert _ids(_post(qclient, query="zebra lamp", k=1)) != ["new1"]
    r = qclient.post("/v1/items", json={"item_id": "new1", "title": "zebra lamp"})
    assert r.status_code == 200
    assert _ids(_post(qclient, query="zebra lamp", k=1)) == ["new1"]
    r = qclient.patch("/v1/items/new1", json={"title": "walnut desk"})
    assert r.status_code == 200
    assert _ids(_post(qclient, query="walnut desk", k=1)) == ["new1"]
    assert _ids(_post(qclient, query="zebra lamp", k=1)) != ["new1"]


@pytest.mark.parametrize("body, where", [
    ({"query": "   "}, ["body", "query"]),
    ({"query": "?!"}, ["body", "query"]),
    ({"query": ""}, ["body", "query"]),
    ({"query": "x" * 1001}, ["body", "query"]),
    ({"query": 5}, ["body", "query"]),
    ({"query": "tea", "history": ["no-such"]}, None),
])
def test_bad_queries_are_422_and_change_nothing(qclient, body, where):
    before = _post(qclient, query="product 3", k=3)
    r = qclient.post("/v1/recommend", json=body)
    assert r.status_code == 422, r.text
    if where:
        assert any(e["loc"] == where for e in r.json()["errors"])
    r = qclient.get("/v1/recommend", params={"user_id": "u", "query": " "})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "query"]
    assert _post(qclient, query="product 3", k=3) == before


def test_requests_without_a_query_are_unchanged(qclient, client):
    assert qclient.post("/v1/recommend", json={"history": ["3"]}).json()["items"]
    assert client.post("/v1/recommend", json={}).json()["fallback"] == "popular"


# ---- with the deployment's re-ranking rules ---------------------------------------------------


@pytest.fixture
def ruled_client(make_client, query_run, text_cache, tmp_path):
    """The query run with item 3 flagged unsafe (catalogue column), item 12 denied and MMR on."""
    import polars as pl

    run = tmp_path / "ruled"
    shutil.copytree(query_run, run)
    items = pl.read_parquet(run / "items.parquet")
    items = items.with_columns(pl.Series("unsafe", [i == "3" for i in items["item"]]))
    items.write_parquet(run / "items.parquet")
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": {"deny": ["12"]}, "mmr": {"lambda": 0.2}}))
    return make_client(run_dir=run, rerank=str(rules))


def test_hidden_items_never_appear_in_query_answers(ruled_client):
    for body in ({"query": "product 3 family0", "k": 40},
                 {"query": "product 12 family2", "k": 40, "history": ["10", "11"]},
                 {"query": "product 3", "k": 40, "rerank": False},
                 {"query": "product 12", "k": 40, "exclude_seen": False, "history": ["12"]}):
        got = _ids(_post(ruled_client, **body))
        assert got and "3" not in got and "12" not in got, body
    r = ruled_client.patch("/v1/items/17", json={"unsafe": True})
    assert r.status_code == 200
    assert "17" not in _ids(_post(ruled_client, query="product 17 family3", k=40))
    user = ruled_client.get("/v1/recommend", params={"user_id": "x", "query": "product 3",
                                                     "k": 40}).json()
    assert "3" not in _ids(user) and "17" not in _ids(user)


def test_query_answers_go_through_the_stage_and_say_so(ruled_client):
    body = _post(ruled_client, query="family1", history=["3", "4"], k=5)
    assert "mmr" in body["rerank"]["applied"] and body["rerank"]["mmr_lambda"] == 0.2
    off = _post(ruled_client, query="family1", history=["3", "4"], k=5, rules_off=["mmr"])
    assert "mmr" in off["rerank"]["switched_off"]
    bad = ruled_client.post("/v1/recommend", json={"query": "family1", "mmr_lambda": 0.9,
                                                   "exposure_penalty": 0.5})
    assert bad.status_code == 422
