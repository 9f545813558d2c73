"""Hot-swap (good and broken run directories) and bad input: caps, malformed bodies."""

from __future__ import annotations

import shutil
import threading

import pytest


def test_hot_swap_changes_version_without_failed_requests(make_client, serve_run_v2):
    client = make_client()
    client.post("/v1/events", json=[{"user_id": "u", "item_id": "3"}])
    before = client.get("/v1/recommend", params={"user_id": "u"}).json()
    statuses, stop = [], threading.Event()

    def hammer():
        while not stop.is_set():
            statuses.append(client.get("/v1/recommend", params={"user_id": "u"}).status_code)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    r = client.post("/admin/reload", json={"run_dir": str(serve_run_v2)})
    stop.set()
    for t in threads:
        t.join()
    assert r.status_code == 200, r.text
    assert r.json()["previous_version"] == before["model_version"]
    assert r.json()["model_version"].startswith("tiny-v2@")
    after = client.get("/v1/recommend", params={"user_id": "u"}).json()
    assert after["model_version"] == r.json()["model_version"]  # cache does not serve old
    ids = [[i["item_id"] for i in b["items"]] for b in (after, before)]
    assert ids[0] == ids[1]  # same weights, other version
    assert statuses and set(statuses) == {200}


@pytest.mark.parametrize("breakage", ["missing", "no_weights", "bad_weights", "bad_config"])
def test_broken_run_dir_is_refused_and_old_model_keeps_serving(make_client, serve_run,
                                                               tmp_path, breakage):
    client = make_client()
    version = client.get("/readyz").json()["model_version"]
    bad = tmp_path / "broken"
    if breakage != "missing":
        shutil.copytree(serve_run, bad)
    if breakage == "no_weights":
        (bad / "model.safetensors").unlink()
    elif breakage == "bad_weights":
        (bad / "model.safetensors").write_bytes(b"not safetensors")
    elif breakage == "bad_config":
        (bad / "config.json").write_text("{")
    r = client.post("/admin/reload", json={"run_dir": str(bad)})
    assert r.status_code == 409
    assert "reload refused" in r.json()["detail"] and version in r.json()["detail"]
    rec = client.get("/v1/recommend", params={"user_id": "u"})
    assert rec.status_code == 200 and rec.json()["model_version"] == version


@pytest.mark.parametrize("params, needle", [
    ({"user_id": "u", "k": 10**6}, "k is 1000000"),
    ({"user_id": "u", "k": 0}, "k"),
    ({"user_id": "u", "k": "ten"}, "k"),
    ({"user_id": ""}, "user_id"),
    ({"user_id": "u" * 300}, "user_id"),
    ({}, "user_id"),
    ({"user_id": "u", "exclude": [str(i) for i in range(1001)]}, "exclude is 1001"),
    ({"user_id": "u", "exclude_seen": "maybe"}, "exclude_seen"),
])
def test_recommend_bad_query_is_4xx_with_message(client, params, needle):
    r = client.get("/v1/recommend", params=params)
    assert 400 <= r.status_code < 500 and needle in r.json()["detail"]


@pytest.mark.parametrize("body, needle", [
    (b"{not json", "JSON"),
    (b"", "body"),
    (b"[]", ""),
    (b'{"user_id": 5, "item_id": "3"}', "user_id"),
    (b'{"user_id": "u", "item_id": "3", "extra": 1}', "extra"),
    (b'{"user_id": "u", "item_id": "3", "timestamp": "yesterday"}', "timestamp"),
    (b'{"user_id": "u", "item_id": "3", "timestamp": 1e300}', "timestamp"),
    (b'[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]', ""),
    (b'"just a string"', ""),
])
def test_events_malformed_is_422_never_500(client, body, needle):
    r = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
    if body == b"[]":
        assert r.status_code == 200 and r.json()["stored"] == 0
        return
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]


def test_caps_on_batch_history_and_body(make_client):
    client = make_client(max_events=5, max_history=4, max_body_bytes=2048)
    evs = [{"user_id": "u", "item_id": "1"}] * 6
    r = client.post("/v1/events", json=evs)
    assert r.status_code == 422 and "limit of 5" in r.json()["detail"]
    r = client.post("/v1/recommend", json={"history": ["1"] * 5})
    assert r.status_code == 422 and "history length is 5" in r.json()["detail"]
    r = client.post("/v1/events", content=b"[" + b" " * 5000 + b"]",
                    headers={"content-type": "application/json"})
    assert r.status_code == 413 and "2048 bytes" in r.json()["detail"]

    def chunks():
        for _ in range(10):
            yield b" " * 1000

    r = client.post("/v1/events", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_wrong_types_on_items_and_reload(client):
    r = client.post("/v1/items", json={"item_id": "x", "attributes": "not-a-list"})
    assert r.status_code == 422 and "attributes" in r.json()["detail"]
    r = client.post("/admin/reload", json={"run_dir": 7})
    assert r.status_code == 422
    r = client.get("/v1/items/3/similar", params={"k": -1})
    assert r.status_code == 422
