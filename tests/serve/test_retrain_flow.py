"""The whole loop: a product added through the API, clicked by users, learnt by
``retrain`` from the service's own SQLite log, hot-swapped, then recommended with a learnt row."""

from __future__ import annotations

from liverec.retrain import RetrainConfig, events_frame, retrain
from liverec.serve.stores import open_store


def test_new_products_are_learnt_from_served_events_and_hot_swapped(make_client, serve_run,
                                                                    tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    client = make_client(store=url)
    before = client.get("/readyz").json()["model_version"]
    new = [f"x{i}" for i in range(10)]  # a cycle longer than a history: targets unseen
    for i in new:
        r = client.post("/v1/items", json={"item_id": i, "title": f"new product {i}",
                                           "attributes": ["family:new"]})
        assert r.status_code == 200, r.text
    events = [{"user_id": f"nu{u}", "item_id": new[(u + t) % 10], "event_id": f"e{u}-{t}",
               "timestamp": 1e9 + t} for u in range(120) for t in range(8)]
    for i in range(0, len(events), 500):
        assert client.post("/v1/events", json=events[i : i + 500]).status_code == 200
    store = open_store(url)
    try:
        frame = events_frame(store.events())
    finally:
        store.close()
    assert frame.height == 960
    rc = RetrainConfig(epochs=6, lr=1e-2, holdout=0.3, min_cases=5, replay=False)
    report = retrain(serve_run, frame, tmp_path / "v2", rc)
    assert report["data"]["new_items"] == 10 and report["published"]
    r = client.post("/admin/reload", json={"run_dir": str(tmp_path / "v2")})
    assert r.status_code == 200 and r.json()["model_version"] != before
    assert client.get("/v1/items/x3").json()["title"] == "new product x3"  # kept from the store
    top = client.post("/v1/recommend", json={"history": ["x0", "x1"], "k": 3}).json()["items"]
    assert {t["item_id"] for t in top} <= set(new)
    assert client.get("/v1/recommend", params={"user_id": "nu3"}).status_code == 200
