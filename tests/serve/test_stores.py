"""Event store contract (memory, SQLite, real Redis) and SQLite durability across reopening."""

from __future__ import annotations

import uuid

import pytest

from liverec.errors import ConfigError
from liverec.serve.stores import Event, MemoryStore, SQLiteStore, open_store


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "memory":
        s = MemoryStore(max_history=3)
    elif request.param == "sqlite":
        s = SQLiteStore(tmp_path / "ev.db", max_history=3)
    else:
        from liverec.serve.redis_store import RedisStore

        url = request.getfixturevalue("redis_url")
        s = RedisStore(url, max_history=3, prefix=f"test-{uuid.uuid4().hex}:")
    yield s
    s.close()


def _ev(user, item, eid, ts=1.0):
    return Event(user, item, eid, ts, "view")


def test_contract_append_idempotent_state_version(store):
    assert store.state("u") == ([], 0) and store.version("u") == 0
    assert store.append([_ev("u", "a", "1"), _ev("u", "b", "2"), _ev("u", "a", "1")]) == \
        [True, True, False]
    assert store.append([_ev("u", "c", "3", 2.5), _ev("v", "a", "2")]) == [True, False]
    store.append([_ev("u", "d", "4"), _ev("u", "e", "5")])
    hist, version = store.state("u")
    assert [i for i, _ in hist] == ["c", "d", "e"]  # capped at 3, newest last
    assert hist[0] == ("c", 2.5)
    assert version == 5 == store.version("u")
    assert store.stats() == {"events": 5, "users": 1}


def test_contract_items(store):
    store.put_item({"item_id": "x", "title": "one"})
    store.put_item({"item_id": "y", "title": "two"})
    store.put_item({"item_id": "x", "title": "one again"})
    assert [(i["item_id"], i["title"]) for i in store.items()] == [("x", "one again"),
                                                                  ("y", "two")]


def test_sqlite_events_survive_reopening_and_state_is_rebuilt(tmp_path):
    path = tmp_path / "sub" / "events.db"
    s = SQLiteStore(path, max_history=10)
    s.append([_ev("u", str(i), f"e{i}", float(i)) for i in range(5)])
    s.put_item({"item_id": "new", "attributes": ["a"]})
    s.close()
    again = SQLiteStore(path, max_history=10)
    assert again.state("u") == ([(str(i), float(i)) for i in range(5)], 5)
    assert again.append([_ev("u", "0", "e0")]) == [False]  # idempotent across restarts
    assert again.items() == [{"item_id": "new", "attributes": ["a"]}]
    mode = again._db.execute("PRAGMA journal_mode").fetchone()[0]
    sync = again._db.execute("PRAGMA synchronous").fetchone()[0]
    assert (mode, sync) == ("wal", 2)  # WAL, FULL
    again.close()


def test_store_urls(tmp_path):
    assert isinstance(open_store("memory://"), MemoryStore)
    s = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    assert isinstance(s, SQLiteStore)
    s.close()
    with pytest.raises(ConfigError, match="unknown store URL"):
        open_store("postgres://x")
    with pytest.raises(ConfigError, match="needs a path"):
        open_store("sqlite:///")


def test_service_state_survives_restart_with_sqlite(make_client, tmp_path):
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    c1 = make_client(store=url)
    c1.post("/v1/events", json=[{"user_id": "d", "item_id": "3", "event_id": "x1"},
                                {"user_id": "d", "item_id": "4", "event_id": "x2"}])
    c1.post("/v1/items", json={"item_id": "fresh", "attributes": ["family:f0"]})
    c1.__exit__(None, None, None)
    c2 = make_client(store=url)
    assert [e["item_id"] for e in c2.get("/v1/users/d").json()["history"]] == ["3", "4"]
    assert c2.get("/v1/items/fresh").json()["source"] == "added"
    assert c2.get("/v1/recommend", params={"user_id": "d"}).json()["events_seen"] == 2


def test_service_on_redis(make_client, redis_url):
    c1, c2 = make_client(store=redis_url), make_client(store=redis_url)  # two "replicas"
    user = f"r-{uuid.uuid4().hex}"
    c1.post("/v1/events", json={"user_id": user, "item_id": "3"})
    first = c2.get("/v1/recommend", params={"user_id": user}).json()
    c1.post("/v1/events", json={"user_id": user, "item_id": "4"})
    second = c2.get("/v1/recommend", params={"user_id": user}).json()  # c2's cache is stale
    assert (first["events_seen"], second["events_seen"]) == (1, 2)
    assert second["items"][0]["item_id"] == "5"


def test_contract_events_is_the_whole_log_in_order(store):
    """The log keeps every stored event (beyond max_history), duplicates once, arrival order."""
    store.append([_ev("u", "a", "1", 1.0), _ev("v", "b", "2", 2.0), _ev("u", "a", "1", 9.0)])
    store.append([_ev("u", str(i), f"x{i}", 3.0 + i) for i in range(5)])
    got = list(store.events())
    assert [e.event_id for e in got] == ["1", "2", "x0", "x1", "x2", "x3", "x4"]
    assert got[0] == Event("u", "a", "1", 1.0, "view") and got[-1].ts == 7.0


def test_sqlite_events_survive_reopening(tmp_path):
    s = SQLiteStore(tmp_path / "ev.db")
    s.append([_ev("u", "a", "1"), _ev("u", "b", "2")])
    s.close()
    again = SQLiteStore(tmp_path / "ev.db")
    assert [e.item_id for e in again.events()] == ["a", "b"]
    again.close()
