"""Event stores: the durable event log and the per-user recent history built from it.

An event is acknowledged only after ``append`` returns, and ``append`` returns only once the
event is durable for that store: in memory (memory://, for tests), fsynced to the SQLite WAL
(sqlite:///path.db, ``synchronous=FULL``) or applied by Redis (redis://host:port/db; durable
as configured there: run it with ``appendonly yes`` and ``appendfsync always`` for the same
guarantee). A user's history is in arrival order (newest last); its *version* counts every
event the user ever had, so cached answers can be checked against it.

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
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from liverec.errors import ConfigError
from liverec.serve.errors import StoreUnavailable

log = logging.getLogger(__name__)

History = list[tuple[str, float]]  # (item id, timestamp), oldest first


@dataclass(frozen=True)
class Event:
    """One interaction as stored."""

    user_id: str
    item_id: str
    event_id: str
    ts: float
    type: str = "view"


class EventStore(Protocol):
    """Durable event log + per-user recent history (swappable: memory, SQLite, Redis)."""

    shared: bool  # state shared by processes: cached answers are checked against it per hit

    def append(self, events: Sequence[Event]) -> list[bool]:
        """Store events durably; per event True = stored, False = duplicate event_id."""
        ...

    def state(self, user_id: str) -> tuple[History, int]:
        """(recent history, version) of a user; ([], 0) for an unknown user."""
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
        max_history: events kept per user.
    """

    shared = False

    def __init__(self, max_history: int = 200) -> None:
        self.max_history = max_history
        self._lock = threading.Lock()
        self._hist: dict[str, deque] = {}
        self._ver: dict[str, int] = {}
        self._ids: set[str] = set()
        self._items: dict[str, dict] = {}
        self._events = 0
        self._log: list[Event] = []  # the log itself (this store keeps nothing else)

    def _apply(self, e: Event) -> None:
        h = self._hist.get(e.user_id)
        if h is None:
            h = self._hist[e.user_id] = deque(maxlen=self.max_history)
        h.append((e.item_id, e.ts))
        self._ver[e.user_id] = self._ver.get(e.user_id, 0) + 1
        self._ids.add(e.event_id)
        self._events += 1

    def append(self, events: Sequence[Event]) -> list[bool]:
        out = []
        with self._lock:
            for e in events:
                new = e.event_id not in self._ids
                if new:
                    self._apply(e)
                    self._log.append(e)
                out.append(new)
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
"""


class SQLiteStore(MemoryStore):
    """The embedded default: an append-only SQLite log (WAL, fsync per commit) + state in memory.

    At start the per-user state is rebuilt by replaying the log; event ids are UNIQUE in the
    table, so a repeated event id is stored once even across restarts.

    Args:
        path: database file (created with its folder).
        max_history: events kept per user in memory.
    """

    def __init__(self, path: str | Path, max_history: int = 200) -> None:
        super().__init__(max_history)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit
        self._db.executescript(SCHEMA)
        self._replay()

    def _replay(self) -> None:
        cur = self._db.execute("SELECT user_id, item_id, event_id, ts, type FROM events "
                               "ORDER BY seq")
        for row in cur:
            self._apply(Event(*row))
        for (body,) in self._db.execute("SELECT body FROM items ORDER BY seq"):
            item = json.loads(body)
            self._items[item["item_id"]] = item

    def append(self, events: Sequence[Event]) -> list[bool]:
        out = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for e in events:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO events (event_id, user_id, item_id, ts, type) "
                        "VALUES (?, ?, ?, ?, ?)", (e.event_id, e.user_id, e.item_id, e.ts, e.type))
                    out.append(cur.rowcount == 1)
                self._db.execute("COMMIT")  # durable here (WAL fsync), before state changes
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            for e, new in zip(events, out):
                if new:
                    self._apply(e)
        return out

    def events(self) -> Iterator[Event]:
        # a separate read connection: a consistent snapshot, no lock held while iterating
        db = sqlite3.connect(str(self.path))
        try:
            cur = db.execute("SELECT user_id, item_id, event_id, ts, type FROM events "
                             "ORDER BY seq")
            yield from (Event(*row) for row in cur)
        finally:
            db.close()

    def put_item(self, item: dict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO items (item_id, body) VALUES (?, ?) "
                "ON CONFLICT(item_id) DO UPDATE SET body = excluded.body",
                (item["item_id"], json.dumps(item)))
            self._items[item["item_id"]] = dict(item)

    def close(self) -> None:
        with self._lock:
            self._db.close()


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
