"""Events (idempotency, unknown items), user history, items (add, get, similar), API key."""

from __future__ import annotations


def test_idempotent_event_id(client):
    ev = {"user_id": "u", "item_id": "3", "event_id": "e-1", "timestamp": 100.0}
    first = client.post("/v1/events", json=ev).json()
    again = client.post("/v1/events", json=[ev, ev]).json()
    assert first["stored"] == 1 and first["events"][0] == {"event_id": "e-1", "status": "stored"}
    assert again["stored"] == 0 and again["duplicates"] == 2
    user = client.get("/v1/users/u").json()
    assert user["events_total"] == 1
    assert user["history"] == [{"item_id": "3", "timestamp": 100.0}]


def test_unknown_item_is_422_naming_it_and_nothing_is_stored(client):
    r = client.post("/v1/events", json=[{"user_id": "u", "item_id": "3"},
                                        {"user_id": "u", "item_id": "no-such-item"}])
    assert r.status_code == 422
    assert "no-such-item" in r.json()["detail"]
    assert client.get("/v1/users/u").status_code == 404


def test_user_history_newest_last(client):
    client.post("/v1/events", json=[{"user_id": "h", "item_id": str(i)} for i in (5, 9, 2)])
    hist = client.get("/v1/users/h").json()["history"]
    assert [e["item_id"] for e in hist] == ["5", "9", "2"]
    r = client.get("/v1/users/nobody")
    assert r.status_code == 404 and "nobody" in r.json()["detail"]


def test_items_add_get_similar_and_recommendable(client):
    r = client.post("/v1/items", json={"item_id": "new", "title": "A new thing",
                                       "attributes": ["family:f1"]})
    assert r.status_code == 200
    assert r.json() | {"index": 0} == {"item_id": "new", "index": 0, "created": True,
                                       "vector_source": "attributes"}
    item = client.get("/v1/items/new").json()
    assert item["source"] == "added" and item["attributes"] == ["family:f1"]
    sim = client.get("/v1/items/new/similar", params={"k": 5}).json()
    assert len(sim["items"]) == 5 and "new" not in [i["item_id"] for i in sim["items"]]
    assert client.post("/v1/events", json={"user_id": "n", "item_id": "new"}).status_code == 200
    body = client.get("/v1/recommend", params={"user_id": "n", "k": 50}).json()
    assert "new" not in [i["item_id"] for i in body["items"]]  # seen
    other = client.get("/v1/recommend", params={"user_id": "x", "k": 41}).json()
    assert other["fallback"] == "popular"
    upd = client.post("/v1/items", json={"item_id": "3", "title": "renamed"}).json()
    assert upd["created"] is False and client.get("/v1/items/3").json()["title"] == "renamed"
    assert client.get("/v1/items/zzz").status_code == 404


def test_item_vector_hook(client):
    engine = client.app.state.engine
    engine.item_vector_for = lambda item: engine.handle.table[7]
    r = client.post("/v1/items", json={"item_id": "twin7", "attributes": []}).json()
    assert r["vector_source"] == "hook"
    sim = client.get("/v1/items/7/similar", params={"k": 1}).json()
    assert sim["items"][0]["item_id"] == "twin7"


def test_api_key_guards_write_and_admin_routes(make_client):
    client = make_client(api_key="s3cret")
    ev = {"user_id": "u", "item_id": "3"}
    for path, body in (("/v1/events", ev), ("/v1/items", {"item_id": "q"}),
                       ("/admin/reload", {})):
        r = client.post(path, json=body)
        assert r.status_code == 401 and "API key" in r.json()["detail"]
        r = client.post(path, json=body, headers={"X-API-Key": "wrong"})
        assert r.status_code == 401
    assert client.post("/v1/events", json=ev, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.get("/v1/recommend", params={"user_id": "u"}).status_code == 401  # tastes
    assert client.post("/v1/recommend", json={"history": ["3"]}).status_code == 200  # anonymous


def test_health_ready_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model_version"].startswith("tiny@")
    client.post("/v1/events", json={"user_id": "m", "item_id": "3"})
    client.get("/v1/recommend", params={"user_id": "m"})
    client.get("/v1/recommend", params={"user_id": "m"})
    text = client.get("/metrics").text
    assert 'liverec_request_seconds_count{method="GET",route="/v1/recommend"} 2.0' in text
    assert 'liverec_cache_lookups_total{result="hit"} 1.0' in text
    assert "liverec_events_in_store" in text
