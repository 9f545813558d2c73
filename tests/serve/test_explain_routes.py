"""GET /v1/explain and explain=true on recommendations."""

from __future__ import annotations

import pytest


def _post(client, user, *items):
    r = client.post("/v1/events", json=[{"user_id": user, "item_id": i} for i in items])
    assert r.status_code == 200, r.text


def test_explain_route_names_the_driving_history_item(client):
    _post(client, "u1", "3", "5", "6")
    r = client.get("/v1/explain", params={"user_id": "u1", "item_id": "7"})
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["user_id"] == "u1" and e["item_id"] == "7" and e["title"] == "product 7 family1"
    assert e["drivers"][0]["item_id"] == "6"  # the known answer: next = last + 1
    assert [h["item_id"] for h in e["history"]] == ["3", "5", "6"]
    assert e["shared_attributes"][0]["label"] == "family f1"
    assert e["reason"].startswith("Because you viewed product 6 family1")
    assert e["events_seen"] == 3 and e["model_version"].startswith("tiny@")
    rec = client.get("/v1/recommend", params={"user_id": "u1", "k": 1}).json()
    assert e["score"] == pytest.approx(rec["items"][0]["score"], abs=1e-4)


def test_explain_route_optional_views(client):
    _post(client, "u2", "10", "11")
    e = client.get("/v1/explain", params={"user_id": "u2", "item_id": "12", "ig": "true",
                                          "attention": "true"}).json()
    assert e["methods"] == ["deletion", "integrated_gradients", "attention"]
    assert all(h["attention"] is not None for h in e["history"])


def test_explain_unknown_user_and_item(client):
    _post(client, "u3", "1")
    r = client.get("/v1/explain", params={"user_id": "ghost", "item_id": "7"})
    assert r.status_code == 404 and r.json()["detail"] == "unknown user 'ghost': no events stored"
    r = client.get("/v1/explain", params={"user_id": "u3", "item_id": "nope"})
    assert r.status_code == 404 and r.json()["detail"] == "unknown item id 'nope'"
    r = client.get("/v1/explain", params={"user_id": "u3"})
    assert r.status_code == 422 and "item_id" in r.json()["detail"]


def test_explain_history_of_added_items_only_is_a_clear_422(client):
    assert client.post("/v1/items", json={"item_id": "new-1", "title": "brand new"}) \
        .status_code == 200
    _post(client, "u4", "new-1")
    r = client.get("/v1/explain", params={"user_id": "u4", "item_id": "7"})
    assert r.status_code == 422 and "nothing to explain" in r.json()["detail"]


def test_recommend_with_explain_adds_a_reason_per_item(client):
    _post(client, "u5", "20", "21")
    plain = client.get("/v1/recommend", params={"user_id": "u5", "k": 3}).json()
    assert all("reason" not in i for i in plain["items"])
    for _ in range(2):  # computed, then from the answer cache: the same explained answer
        body = client.get("/v1/recommend", params={"user_id": "u5", "k": 3,
                                                   "explain": "true"}).json()
        assert [i["item_id"] for i in body["items"]] == [i["item_id"] for i in plain["items"]]
        assert body["items"][0]["title"] == "product 22 family4"
        assert body["items"][0]["reason"].startswith("Because you viewed product 21 family4")
    assert "reason" not in client.get("/v1/recommend", params={"user_id": "u5", "k": 3}) \
        .json()["items"][0]


def test_popular_fallback_and_post_recommend_explain(client):
    body = client.get("/v1/recommend", params={"user_id": "nobody", "k": 2,
                                               "explain": "true"}).json()
    assert body["fallback"] == "popular"
    assert all(i["reason"].startswith("Popular") for i in body["items"])
    r = client.post("/v1/recommend", json={"history": ["30", "31"], "k": 2, "explain": True})
    assert r.status_code == 200, r.text
    top = r.json()["items"][0]
    assert top["item_id"] == "32" and "product 31 family6" in top["reason"]
    r = client.post("/v1/recommend", json={"history": ["30", "bad"], "explain": True})
    assert r.status_code == 422 and "'bad'" in r.json()["detail"]


def test_explain_an_item_added_after_training(client):
    r = client.post("/v1/items", json={"item_id": "new-7", "title": "new in family 1",
                                       "attributes": ["family:f1"]})
    assert r.status_code == 200 and r.json()["vector_source"] == "attributes"
    _post(client, "u6", "2", "6")
    e = client.get("/v1/explain", params={"user_id": "u6", "item_id": "new-7"}).json()
    assert e["title"] == "new in family 1" and e["shared_attributes"][0]["items"] == ["6"]
    assert [h["item_id"] for h in e["history"]] == ["2", "6"]
