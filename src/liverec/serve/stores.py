"""Event stores: the durable event log and the per-user recent history built from it.

An event is acknowledged only after ``append`` returns, and ``append`` returns only once the
event is durable for that store: in memory (memory://, for tests), fsynced to the SQLite WAL
(sqlite:///path.db, ``synchronous=FULL``) or applied by Redis (redis://host:port/db; durable
as configured there: run it with ``appendonly yes`` and ``appendfsync always`` for the same
guarantee).

A user's history is ordered by event time (oldest first, newest last): an event that arrives
late with an earlier timestamp is inserted where it belongs, equal times keep arrival order
(the order ``liverec train`` builds sequences in), and the ``max_history`` latest *by time*
are kept. Its *version* counts every event the user ever had, so cached answers can be
checked against it. The log itself (``events()``) stays in arrival order.

Event ids are one namespace per store: the same id with the same payload (user, item, type
and the timestamp if the client gave one) is a duplicate, stored once; the same id with
another payload is refused with :class:`~liverec.serve.errors.EventConflict` and nothing of
that call is stored.

Never stall: the reads of the request path have ``async`` forms (``astate``, ``aversion``,
``aping``) that never block the event loop; the blocking calls (``append``, ``put_item``,
``stats``...) are made from worker threads. A store that cannot answer raises
:class:`~liverec.serve.errors.StoreUnavailable` (HTTP 503) quickly: a shared store uses short
socket timeouts and a :class:`Breaker` that fails fast while it is down and lets one probe per
``retry_s`` through, so service resumes by itself once the store is back.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson

from liverec.errors import ConfigError
from liverec.serve.errors import EventConflict, StoreUnavailable

log = logging.getLogger(__name__)

History = list[tuple[str, float]]  # (item id, timestamp), oldest first


@dataclass(frozen=True)
class Event:
    """One interaction as stored.

    ``client_ts`` is False when the service stamped the event with its own clock (the client
    sent no timestamp): a retry of it then matches whatever time the first try got.
    """

    user_id: str
    item_id: str
    event_id: str
    ts: float
    type: str = "view"
    client_ts: bool = True

    def identity(self) -> str:
        """What two events with one ``event_id`` must share to be the same event."""
        return json.dumps([self.user_id, self.item_id, self.type,
                           float(self.ts) if self.client_ts else None])


def check_identity(events: Sequence[Event],
                   stored: Callable[[list[str]], dict[str, str]]) -> list[bool]:
    """Per event True = new, False = duplicate of a stored (or earlier listed) event.

    Args:
        events: the events of one append call.
        stored: event ids -> identity of those already stored.

    Raises:
        EventConflict: an event id is stored (or listed earlier) with another payload.
    """
    known = stored(list(dict.fromkeys(e.event_id for e in events)))
    out, conflicts = [], []
    for e in events:
        prev = known.get(e.event_id)
        if prev is None:
            known[e.event_id] = e.identity()
            out.append(True)
        elif prev == e.identity():
            out.append(False)
        else:
            conflicts.append(e.event_id)
    if conflicts:
        raise EventConflict(
            f"event_id already used by another event (other user, item, type or timestamp): "
            f"{', '.join(repr(c) for c in dict.fromkeys(conflicts[:5]))}"
            f"{f' and {len(conflicts) - 5} more' if len(conflicts) > 5 else ''}; nothing "
            f"stored. Send a new event_id, or resend the first event unchanged", conflicts)
    return out


def insert_by_time(history: list, item_id: str, ts: float, cap: int) -> None:
    """Insert (item_id, ts) after every entry with a time <= ts; keep the ``cap`` latest."""
    if not history or history[-1][1] <= ts:
        history.append((item_id, ts))
    else:
        history.insert(bisect_right(history, ts, key=lambda x: x[1]), (item_id, ts))
    if len(history) > cap:
        del history[: len(history) - cap]


class EventStore(Protocol):
    """Durable event log + per-user recent history (swappable: memory, SQLite, Redis)."""

    shared: bool  # state shared by processes: cached answers are checked against it per hit

    def append(self, events: Sequence[Event]) -> list[bool]:
        """Store events durably; per event True = stored, False = duplicate event_id.

        Raises:
            EventConflict: an event_id is already used with another payload (none stored).
        """
        ...

    def state(self, user_id: str) -> tuple[History, int]:
        """(recent history by event time, version) of a user; ([], 0) for an unknown user."""
        ...

    def events(self) -> Iterator[Event]:
        """Every stored event in log (arrival) order, e.g. for ``liverec retrain``."""
        ...

    def version(self, user_id: str) -> int:
        """Number of events the user ever had (0 = unknown user)."""
        ...

    def put_item(self, item: dict) -> None:
        """Keep an item added through the API (JSON-able dict with ``item_id``)."""
        ...

    def items(self) -> list[dict]:
        """Items added through the API, in the order first added."""
        ...

    def get_meta(self, key: str) -> str | None:
        """A small service record (e.g. the served catalogue's fingerprint), or None."""
        ...

    def put_meta(self, key: str, value: str) -> None: ...

    def stats(self) -> dict[str, int]:
        """``events`` and ``users`` counts."""
        ...

    async def astate(self, user_id: str) -> tuple[History, int]:
        """``state`` without blocking the event loop (StoreUnavailable when it cannot answer)."""
        ...

    async def aversion(self, user_id: str) -> int:
        """``version`` without blocking the event loop."""
        ...

    async def aping(self) -> None:
        """Raise StoreUnavailable unless the store answers now (readiness)."""
        ...

    def close(self) -> None: ...


class Breaker:
    """Fail fast while a store is down; one probe call per ``retry_s`` finds it back.

    ``check()`` before a call (raises StoreUnavailable while down, except for the probe),
    ``ok()`` after a call that worked, ``fail(exc)`` after one that could not reach the store.

    Args:
        retry_s: seconds between probes while down.
        name: what the messages call the store.
    """

    def __init__(self, retry_s: float = 0.5, name: str = "store") -> None:
        self.retry_s = retry_s
        self.name = name
        self.down_since: float | None = None
        self.reason = ""
        self._next_probe = 0.0
        self._lock = threading.Lock()

    @property
    def up(self) -> bool:
        return self.down_since is None

    def check(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            now = time.monotonic()
            if now >= self._next_probe:
                self._next_probe = now + self.retry_s  # this call is the probe
                return
        raise StoreUnavailable(f"{self.name} unavailable for {now - self.down_since:.1f} s "
                               f"({self.reason}); retry shortly")

    def ok(self) -> None:
        if self.down_since is not None:
            with self._lock:
                if self.down_since is not None:
                    log.warning("%s reachable again after %.1f s", self.name,
                                time.monotonic() - self.down_since)
                    self.down_since = None

    def fail(self, exc: BaseException) -> StoreUnavailable:
        """Record the failure; returns the StoreUnavailable to raise."""
        with self._lock:
            now = time.monotonic()
            self.reason = f"{type(exc).__name__}: {exc}"[:200]
            if self.down_since is None:
                log.warning("%s unavailable: %s", self.name, self.reason)
                self.down_since = now
            self._next_probe = now + self.retry_s
        return StoreUnavailable(f"{self.name} unavailable ({self.reason}); retry shortly")


class MemoryStore:
    """State in this process only (tests, benchmarks); nothing survives a restart.

    Args:
        max_history: events kept per user (the latest by event time).
    """

    shared = False

    def __init__(self, max_history: int = 200) -> None:
        self.max_history = max_history
        self._lock = threading.Lock()
        self._hist: dict[str, list[tuple[str, float]]] = {}
        self._ver: dict[str, int] = {}
        self._ids: dict[str, str] = {}  # event id -> identity
        self._items: dict[str, dict] = {}
        self._meta: dict[str, str] = {}
        self._events = 0
        self._log: list[Event] = []  # the log itself (this store keeps nothing else)

    def _apply(self, e: Event) -> None:
        h = self._hist.get(e.user_id)
        if h is None:
            h = self._hist[e.user_id] = []
        insert_by_time(h, e.item_id, e.ts, self.max_history)
        self._ver[e.user_id] = self._ver.get(e.user_id, 0) + 1
        self._events += 1

    def _stored(self, event_ids: list[str]) -> dict[str, str]:
        return {i: self._ids[i] for i in event_ids if i in self._ids}

    def append(self, events: Sequence[Event]) -> list[bool]:
        with self._lock:
            out = check_identity(events, self._stored)
            for e, new in zip(events, out):
                if new:
                    self._ids[e.event_id] = e.identity()
                    self._apply(e)
                    self._log.append(e)
        return out

    def events(self) -> Iterator[Event]:
        with self._lock:
            return iter(list(self._log))

    def state(self, user_id: str) -> tuple[History, int]:
        with self._lock:
            h = self._hist.get(user_id)
            return (list(h) if h else []), self._ver.get(user_id, 0)

    def version(self, user_id: str) -> int:
        return self._ver.get(user_id, 0)

    def put_item(self, item: dict) -> None:
        with self._lock:
            self._items[item["item_id"]] = dict(item)

    def items(self) -> list[dict]:
        with self._lock:
            return list(self._items.values())

    def get_meta(self, key: str) -> str | None:
        return self._meta.get(key)

    def put_meta(self, key: str, value: str) -> None:
        self._meta[key] = value

    def stats(self) -> dict[str, int]:
        return {"events": self._events, "users": len(self._hist)}

    # state lives in this process: the async forms answer at once (a dict lookup)
    async def astate(self, user_id: str) -> tuple[History, int]:
        return self.state(user_id)

    async def aversion(self, user_id: str) -> int:
        return self.version(user_id)

    async def aping(self) -> None:
        return None

    def close(self) -> None:
        return None


SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    ts REAL NOT NULL,
    type TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_users (
    user_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    history TEXT NOT NULL
);
"""
COLUMNS = "user_id, item_id, event_id, ts, type, client_ts"


class SQLiteStore(MemoryStore):
    """The embedded default: an append-only SQLite log (WAL, fsync per commit) + state in memory.

    At start the per-user state is the last snapshot (user -> version and recent history, at
    a log position ``seq``) plus the events of the log after that position, not a replay of
    the whole log. The snapshot is updated, in one transaction with its position, for the
    users changed since the last one: every ``snapshot_every`` stored events and at
    ``close()``. A snapshot taken with another ``max_history`` is ignored (full replay).
    Event ids are UNIQUE in the log table, so an event id is stored once even across restarts.

    Args:
        path: database file (created with its folder).
        max_history: events kept per user in memory.
        snapshot_every: stored events between two snapshot updates.
    """

    def __init__(self, path: str | Path, max_history: int = 200,
                 snapshot_every: int = 20_000) -> None:
        super().__init__(max_history)
        self.path = Path(path)
        self.snapshot_every = snapshot_every
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit
        self._db.executescript(SCHEMA)
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(events)")}
        if "client_ts" not in cols:  # a log written before event identity was checked
            self._db.execute("ALTER TABLE events ADD COLUMN client_ts INTEGER NOT NULL "
                             "DEFAULT 1")
        self._seq = 0  # log position the in-memory state includes
        self._dirty: set[str] = set()  # users changed since the snapshot
        self._unsnapped = 0  # events stored since the snapshot
        self._load()

    def _apply(self, e: Event) -> None:
        super()._apply(e)
        self._dirty.add(e.user_id)

    def _load(self) -> None:
        snap = json.loads(self.get_meta("snapshot") or "null")
        if snap is not None and snap.get("max_history") != self.max_history:
            log.info("snapshot taken with max_history %s, not %s: replaying the whole log",
                     snap.get("max_history"), self.max_history)
            snap = None
        if snap is not None:
            for user, version, hist in self._db.execute(
                    "SELECT user_id, version, history FROM snapshot_users"):
                self._hist[user] = list(map(tuple, orjson.loads(hist)))
                self._ver[user] = version
            self._seq, self._events = int(snap["seq"]), int(snap["events"])
        # the log tail in bulk: per user, the kept history + its new events sorted by time
        # (stable: ties keep arrival order), then the latest max_history; the same state as
        # applying them one by one (the tests compare it with a memory store fed the log)
        tail: dict[str, list[tuple[str, float]]] = {}
        for seq, user, item, ts in self._db.execute(
                "SELECT seq, user_id, item_id, ts FROM events WHERE seq > ? ORDER BY seq",
                (self._seq,)):
            tail.setdefault(user, []).append((item, ts))
            self._seq, self._unsnapped = seq, self._unsnapped + 1
        for user, new in tail.items():
            hist = self._hist.get(user, []) + new
            hist.sort(key=lambda x: x[1])
            self._hist[user] = hist[-self.max_history :]
            self._ver[user] = self._ver.get(user, 0) + len(new)
        self._events += self._unsnapped
        self._dirty.update(tail)
        for (body,) in self._db.execute("SELECT body FROM items ORDER BY seq"):
            item = json.loads(body)
            self._items[item["item_id"]] = item
        log.info("state of %d users from %s + %d events of the log", len(self._hist),
                 "a snapshot" if snap else "nothing", self._unsnapped)

    def _stored(self, event_ids: list[str]) -> dict[str, str]:
        out = {}
        for i in range(0, len(event_ids), 500):
            chunk = event_ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(f"SELECT {COLUMNS} FROM events WHERE event_id IN "
                                        f"({marks})", chunk):
                e = _event(row)
                out[e.event_id] = e.identity()
        return out

    def append(self, events: Sequence[Event]) -> list[bool]:
        with self._lock:
            out = check_identity(events, self._stored)
            new = [e for e, n in zip(events, out) if n]
            seq = self._seq
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for e in new:
                    seq = self._db.execute(
                        f"INSERT INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                        (e.user_id, e.item_id, e.event_id, e.ts, e.type, int(e.client_ts)),
                    ).lastrowid
                self._db.execute("COMMIT")  # durable here (WAL fsync), before state changes
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._seq = seq
            for e in new:
                self._apply(e)
            self._unsnapped += len(new)
            if self._unsnapped >= self.snapshot_every:
                self._snapshot()
        return out

    def _snapshot(self) -> None:
        """Write the changed users' state and the log position (lock held)."""
        rows = [(u, self._ver[u], orjson.dumps(self._hist[u])) for u in self._dirty]
        meta = json.dumps({"seq": self._seq, "events": self._events,
                           "max_history": self.max_history})
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR REPLACE INTO snapshot_users VALUES (?, ?, ?)", rows)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('snapshot', ?)", (meta,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._dirty.clear()
        self._unsnapped = 0

    def snapshot(self) -> None:
        """Update the snapshot now (also done every ``snapshot_every`` events and at close)."""
        with self._lock:
            self._snapshot()

    def events(self) -> Iterator[Event]:
        # a separate read connection: a consistent snapshot, no lock held while iterating
        db = sqlite3.connect(str(self.path))
        try:
            cur = db.execute(f"SELECT {COLUMNS} FROM events ORDER BY seq")
            yield from (_event(row) for row in cur)
        finally:
            db.close()

    def put_item(self, item: dict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO items (item_id, body) VALUES (?, ?) "
                "ON CONFLICT(item_id) DO UPDATE SET body = excluded.body",
                (item["item_id"], json.dumps(item)))
            self._items[item["item_id"]] = dict(item)

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def close(self) -> None:
        with self._lock:
            if self._dirty:
                self._snapshot()
            self._db.close()


def _event(row: Sequence) -> Event:
    user, item, event_id, ts, type_, client_ts = row
    return Event(user, item, event_id, float(ts), type_, bool(client_ts))


def open_store(url: str, max_history: int = 200, timeout_s: float = 0.1) -> EventStore:
    """A store from its URL: ``memory://``, ``sqlite:///path.db``, ``redis://host:port/db``.

    ``timeout_s``: socket timeout of a networked store (Redis) per call.
    """
    if url.startswith("memory://"):
        return MemoryStore(max_history)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path:
            raise ConfigError("sqlite store URL needs a path: sqlite:///path/to/events.db")
        return SQLiteStore(path, max_history)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from liverec.serve.redis_store import RedisStore

        return RedisStore(url, max_history, timeout_s=timeout_s)
    raise ConfigError(f"unknown store URL {url!r}: use memory://, sqlite:///path.db or "
                      "redis://host:port/db")
