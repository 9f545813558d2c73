"""Events through the API: history in event-time order (cases serve-history-arrival-order),
event_id identity (duplicate-event-id-other-payload), timestamps in the future or at 0, and
ids with '/', spaces or non-ASCII read back on every route; item updates never erase."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

ARRIVAL = [("1", 1000.0), ("2", 3000.0), ("3", 2000.0), ("4", 500.0)]  # the case's events


def _ids(body):
    return [i["item_id"] for i in body["items"]]


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_late_event_is_inserted_by_time_and_drives_the_answer(make_client, tmp_path, store):
    url = "memory://" if store == "memory" else f"sqlite:///{tmp_path / 'ev.db'}"
    client = make_client(store=url)
    r = client.post("/v1/events", json=[{"user_id": "t1", "item_id": i, "timestamp": ts}
                                        for i, ts in ARRIVAL])
    assert r.status_code == 200
    time_order = ["4", "1", "3", "2"]
    user = client.get("/v1/users/t1").json()
    assert [e["item_id"] for e in user["history"]] == time_order  # newest last by time
    assert [e["timestamp"] for e in user["history"]] == [500.0, 1000.0, 2000.0, 3000.0]
    got = client.get("/v1/recommend", params={"user_id": "t1", "k": 3}).json()
    by_time = client.post("/v1/recommend", json={"history": time_order, "k": 3}).json()
    by_arrival = client.post("/v1/recommend", json={"history": ["1", "2", "3", "4"],
                                                    "k": 3}).json()
    assert _ids(got) == _ids(by_time) and _ids(got) != _ids(by_arrival)
    # the answer cache follows a late insertion too (a new version of the user)
    client.post("/v1/events", json={"user_id": "t1", "item_id": "9", "timestamp": 2500.0})
    again = client.get("/v1/recommend", params={"user_id": "t1", "k": 3}).json()
    assert again["events_seen"] == 5 and _ids(again) == _ids(
        client.post("/v1/recommend", json={"history": ["4", "1", "3", "9", "2"], "k": 3}).json())
    if store == "sqlite":  # the state rebuilt at start is time-ordered as well
        client.__exit__(None, None, None)
        restarted = make_client(store=url)
        hist = restarted.get("/v1/users/t1").json()["history"]
        assert [e["item_id"] for e in hist] == ["4", "1", "3", "9", "2"]


def test_future_timestamps_are_refused_and_missing_or_zero_mean_now(client):
    now = time.time()
    r = client.post("/v1/events", json=[{"user_id": "f", "item_id": "3"},
                                        {"user_id": "f", "item_id": "4",
                                         "timestamp": now + 2 * 86400}])
    assert r.status_code == 422 and "more than a day" in r.json()["detail"]
    assert client.get("/v1/users/f").status_code == 404  # nothing stored
    ok = client.post("/v1/events", json=[{"user_id": "f", "item_id": "3", "timestamp": 0},
                                         {"user_id": "f", "item_id": "4"},
                                         {"user_id": "f", "item_id": "5",
                                          "timestamp": now + 3600}])
    assert ok.status_code == 200
    hist = client.get("/v1/users/f").json()["history"]
    assert [e["item_id"] for e in hist] == ["3", "4", "5"]
    assert all(abs(e["timestamp"] - now) < 60 for e in hist[:2])


def test_reused_event_id_with_another_payload_is_409_and_not_stored(client):
    first = {"user_id": "carol-x", "item_id": "4", "event_id": "dup-1"}
    assert client.post("/v1/events", json=first).json()["stored"] == 1
    r = client.post("/v1/events", json={"user_id": "mallory-x", "item_id": "5",
                                        "event_id": "dup-1"})
    assert r.status_code == 409 and "dup-1" in r.json()["detail"]
    assert client.get("/v1/users/mallory-x").status_code == 404
    batch = client.post("/v1/events", json=[{"user_id": "mallory-x", "item_id": "6"},
                                            {**first, "item_id": "7"}])
    assert batch.status_code == 409
    assert client.get("/v1/users/mallory-x").status_code == 404  # none of the call stored
    retry = client.post("/v1/events", json=first).json()  # same payload: a duplicate
    assert retry["events"] == [{"event_id": "dup-1", "status": "duplicate"}]
    assert client.get("/v1/users/carol-x").json()["events_total"] == 1


def test_reused_event_id_is_409_on_redis(make_client, redis_url):
    import uuid

    client = make_client(store=redis_url)
    eid, user = uuid.uuid4().hex, f"r-{uuid.uuid4().hex}"
    ev = {"user_id": user, "item_id": "4", "event_id": eid, "timestamp": 10.0}
    assert client.post("/v1/events", json=ev).json()["stored"] == 1
    assert client.post("/v1/events", json=ev).json()["duplicates"] == 1
    r = client.post("/v1/events", json={**ev, "user_id": user + "-m"})
    assert r.status_code == 409 and client.get(f"/v1/users/{user}-m").status_code == 404
    client.post("/v1/events", json={"user_id": user, "item_id": "9", "timestamp": 5.0})
    hist = client.get(f"/v1/users/{user}").json()["history"]
    assert [e["item_id"] for e in hist] == ["9", "4"]


ODD_IDS = ["a/b", "with space", "ünï/cödé ✓", "x/similar", "..", "%2F"]


def test_any_id_accepted_on_write_reads_back_on_every_route(client):
    for n, odd in enumerate(ODD_IDS):
        r = client.post("/v1/items", json={"item_id": odd, "title": f"odd {n}",
                                           "attributes": ["family:f1"]})
        assert r.status_code == 200, r.text
        user = f"user {odd}"
        assert client.post("/v1/events", json=[{"user_id": user, "item_id": "3"},
                                                {"user_id": user, "item_id": odd}]
                           ).status_code == 200
        enc = quote(odd, safe="").replace(".", "%2E")  # clients drop raw "." path segments
        for path in (f"/v1/items/{enc}", f"/v1/items/{quote(odd)}" if odd != ".." else ""):
            if odd.endswith("/similar") or "%" in odd or not path:
                # "x/similar": the path is decoded before routing, so this is item "x"'s
                # similar (use the query form); "%": TestClient decodes paths twice (uvicorn
                # once), checked on a real server in the report's commands
                continue
            got = client.get(path)
            assert got.status_code == 200 and got.json()["title"] == f"odd {n}", (odd, path)
        # the query encoded here: httpx 0.27 (the declared floor) leaves '%' unescaped in params
        by_query = client.get(f"/v1/items?item_id={quote(odd, safe='')}")
        assert by_query.json()["title"] == f"odd {n}"
        if "%" not in odd:
            sim = client.get(f"/v1/items/{enc}/similar", params={"k": 2})
            assert sim.status_code == 200 and sim.json()["item_id"] == odd
        assert client.get(f"/v1/similar?item_id={quote(odd, safe='')}&k=2"
                          ).json()["item_id"] == odd
        if "%" not in odd:
            hist = client.get(f"/v1/users/{quote(user, safe='').replace('.', '%2E')}"
                              ).json()["history"]
            assert [e["item_id"] for e in hist] == ["3", odd]
        rec = client.get(f"/v1/recommend?user_id={quote(user, safe='')}&k=3").json()
        assert rec["user_id"] == user and rec["events_seen"] == 2
        exp = client.get(f"/v1/explain?user_id={quote(user, safe='')}"
                         f"&item_id={quote(odd, safe='')}")
        assert exp.status_code == 200 and exp.json()["user_id"] == user


def test_partial_item_update_keeps_the_fields_it_does_not_name(client):
    full = {"item_id": "p/1", "title": "Lamp", "text": "a brass lamp",
            "attributes": ["family:f2", "brass"]}
    assert client.post("/v1/items", json=full).json()["created"] is True
    assert client.post("/v1/items", json={"item_id": "p/1", "title": "Desk lamp"}
                       ).json()["created"] is False
    got = client.get("/v1/items/p/1").json()
    assert (got["title"], got["text"], got["attributes"]) == \
        ("Desk lamp", "a brass lamp", ["family:f2", "brass"])
    r = client.patch("/v1/items", params={"item_id": "p/1"}, json={"attributes": ["family:f3"]})
    assert r.status_code == 200
    assert (r.json()["title"], r.json()["text"], r.json()["attributes"]) == \
        ("Desk lamp", "a brass lamp", ["family:f3"])
    model = client.get("/v1/items/3").json()
    patched = client.patch("/v1/items/3", json={"text": "now with text"}).json()
    assert patched["title"] == model["title"] and patched["attributes"] == model["attributes"]
    assert patched["text"] == "now with text" and patched["source"] == "model"
    assert client.patch("/v1/items/nope", json={"title": "x"}).status_code == 404
    assert client.patch("/v1/items/3", json={"price": 3}).status_code == 422
    filt = client.post("/v1/recommend", json={"history": ["1"], "k": 40,
                                              "attribute": "family:f3"}).json()
    assert "p/1" in _ids(filt) and all(i in {"p/1", "15", "16", "17", "18", "19"}
                                       for i in _ids(filt))


def test_partial_update_survives_restart(make_client, tmp_path):
    url = f"sqlite:///{tmp_path / 'items.db'}"
    c1 = make_client(store=url)
    c1.post("/v1/items", json={"item_id": "q", "title": "Q", "text": "qq", "attributes": ["a"]})
    c1.patch("/v1/items/q", json={"title": "Q2"})
    c1.__exit__(None, None, None)
    got = make_client(store=url).get("/v1/items/q").json()
    assert (got["title"], got["text"], got["attributes"]) == ("Q2", "qq", ["a"])
