"""Event store contract (memory, SQLite, real Redis) and SQLite durability across reopening."""

from __future__ import annotations

import uuid

import pytest

from liverec.errors import ConfigError
from liverec.serve.errors import EventConflict
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


def _ev(user, item, eid, ts=1.0, client_ts=True):
    return Event(user, item, eid, ts, "view", client_ts)


def test_contract_append_idempotent_state_version(store):
    assert store.state("u") == ([], 0) and store.version("u") == 0
    assert store.append([_ev("u", "a", "1"), _ev("u", "b", "2"), _ev("u", "a", "1")]) == \
        [True, True, False]
    assert store.append([_ev("u", "c", "3", 2.5), _ev("u", "b", "2")]) == [True, False]
    store.append([_ev("u", "d", "4", 3.0), _ev("u", "e", "5", 4.0)])
    hist, version = store.state("u")
    assert [i for i, _ in hist] == ["c", "d", "e"]  # capped at 3, newest last
    assert hist[0] == ("c", 2.5)
    assert version == 5 == store.version("u")
    assert store.stats() == {"events": 5, "users": 1}


def test_contract_event_id_with_another_payload_is_a_conflict(store):
    """Same id + same payload = duplicate; same id + another user/item/type/time = conflict,
    and nothing of that call is stored (also within one call)."""
    assert store.append([_ev("carol", "a", "e1", 5.0)]) == [True]
    for other in (_ev("mallory", "a", "e1", 5.0), _ev("carol", "b", "e1", 5.0),
                  _ev("carol", "a", "e1", 6.0), Event("carol", "a", "e1", 5.0, "buy"),
                  _ev("carol", "a", "e1", 5.0, client_ts=False)):
        with pytest.raises(EventConflict, match="'e1'") as info:
            store.append([_ev("mallory", "c", "fresh"), other])
        assert info.value.event_ids == ["e1"]
    with pytest.raises(EventConflict, match="'x'"):
        store.append([_ev("u", "a", "x"), _ev("v", "a", "x")])
    assert store.state("mallory") == ([], 0) and store.version("u") == 0
    assert store.append([_ev("carol", "a", "e1", 5.0)]) == [False]
    # a server-stamped event's retry matches whatever time the first try got
    assert store.append([_ev("dan", "a", "s1", 7.0, client_ts=False)]) == [True]
    assert store.append([_ev("dan", "a", "s1", 9.0, client_ts=False)]) == [False]
    assert [e.event_id for e in store.events()] == ["e1", "s1"]


def test_contract_history_is_ordered_by_event_time(store):
    """A late event is inserted where its time puts it; ties keep arrival order; the cap
    keeps the latest by time (a late event older than a full window is not kept)."""
    store.append([_ev("t", "p1", "1", 1000.0), _ev("t", "p2", "2", 3000.0)])
    store.append([_ev("t", "p3", "3", 2000.0)])
    assert store.state("t")[0] == [("p1", 1000.0), ("p3", 2000.0), ("p2", 3000.0)]
    store.append([_ev("t", "p4", "4", 500.0)])  # older than the whole window of 3
    assert store.state("t") == ([("p1", 1000.0), ("p3", 2000.0), ("p2", 3000.0)], 4)
    store.append([_ev("t", "p5", "5", 2000.0), _ev("t", "p6", "6", 2500.0)])
    assert store.state("t")[0] == [("p5", 2000.0), ("p6", 2500.0), ("p2", 3000.0)]
    assert [e.item_id for e in store.events()] == ["p1", "p2", "p3", "p4", "p5", "p6"]


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
    assert again.append([_ev("u", "0", "e0", 0.0)]) == [False]  # idempotent across restarts
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
    store.append([_ev("u", "a", "1", 1.0), _ev("v", "b", "2", 2.0), _ev("u", "a", "1", 1.0)])
    store.append([_ev("u", str(i), f"x{i}", 3.0 + i) for i in range(5)])
    got = list(store.events())
    assert [e.event_id for e in got] == ["1", "2", "x0", "x1", "x2", "x3", "x4"]
    assert got[0] == Event("u", "a", "1", 1.0, "view") and got[-1].ts == 7.0


def test_sqlite_starts_from_snapshot_plus_log_tail(tmp_path):
    """A restart reads the snapshot (at its log position) and only the events after it; the
    state equals a replay of the whole log (the reference: a memory store fed the log)."""
    import random

    rnd = random.Random(0)
    events = [_ev(f"u{rnd.randrange(30)}", f"i{rnd.randrange(50)}", f"e{n}",
                  float(rnd.randrange(1000))) for n in range(400)]
    path = tmp_path / "ev.db"
    s = SQLiteStore(path, max_history=5, snapshot_every=100)
    for i in range(0, 350, 7):
        s.append(events[i : i + 7])
    snap = s._db.execute("SELECT value FROM meta WHERE key = 'snapshot'").fetchone()[0]
    assert '"seq": 315' in snap  # after 105, 210, 315 events, with its log position
    s.append(events[350:])  # no close: these are only in the log (as after kill -9)
    again = SQLiteStore(path, max_history=5)
    reference = MemoryStore(max_history=5)
    reference.append(events)
    users = {e.user_id for e in events}
    assert {u: again.state(u) for u in users} == {u: reference.state(u) for u in users}
    assert again.stats() == reference.stats() == {"events": 400, "users": len(users)}
    assert again.append([events[3]]) == [False]
    with pytest.raises(EventConflict):
        again.append([_ev("zz", "i1", "e3")])
    again.close()  # snapshots the tail's users
    s.close()
    other = SQLiteStore(path, max_history=4)  # a snapshot of another window: full replay
    short = MemoryStore(max_history=4)
    short.append(events)
    assert {u: other.state(u) for u in users} == {u: short.state(u) for u in users}
    other.close()


def test_sqlite_events_survive_reopening(tmp_path):
    s = SQLiteStore(tmp_path / "ev.db")
    s.append([_ev("u", "a", "1"), _ev("u", "b", "2")])
    s.close()
    again = SQLiteStore(tmp_path / "ev.db")
    assert [e.item_id for e in again.events()] == ["a", "b"]
    again.close()
