"""The Redis event store: state shared by several workers or replicas.

Per event one Lua script (atomic): ``SET NX`` on the event id (idempotency), append to the
user's capped history list, bump the user's version, add to the ``events`` stream (the log).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import redis

from liverec.errors import ConfigError
from liverec.serve.stores import Event, History

APPEND = """
if redis.call('SET', KEYS[1], '1', 'NX') == false then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[4], '*', 'e', ARGV[3])
redis.call('SADD', KEYS[5], ARGV[4])
return 1
"""


class RedisStore:
    """Event log and user state in Redis.

    Args:
        url: ``redis://host:port/db``.
        max_history: events kept per user.
        prefix: key prefix (several services can share one Redis).
    """

    shared = True

    def __init__(self, url: str, max_history: int = 200, prefix: str = "liverec:") -> None:
        self.max_history = max_history
        self.prefix = prefix
        self._r = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            self._r.ping()
        except redis.RedisError as exc:
            raise ConfigError(f"cannot reach Redis at {url}: {exc}") from None
        self._append = self._r.register_script(APPEND)

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def append(self, events: Sequence[Event]) -> list[bool]:
        pipe = self._r.pipeline(transaction=False)
        for e in events:
            entry = json.dumps([e.item_id, e.ts])
            log = json.dumps([e.event_id, e.user_id, e.item_id, e.ts, e.type])
            self._append(keys=[self._k("eid", e.event_id), self._k("hist", e.user_id),
                               self._k("ver", e.user_id), self._k("events"), self._k("users")],
                         args=[entry, self.max_history, log, e.user_id], client=pipe)
        return [bool(x) for x in pipe.execute()]

    def state(self, user_id: str) -> tuple[History, int]:
        pipe = self._r.pipeline(transaction=True)
        pipe.lrange(self._k("hist", user_id), 0, -1)
        pipe.get(self._k("ver", user_id))
        raw, ver = pipe.execute()
        return [tuple(json.loads(x)) for x in raw], int(ver or 0)

    def version(self, user_id: str) -> int:
        return int(self._r.get(self._k("ver", user_id)) or 0)

    def events(self, chunk: int = 10_000) -> Iterator[Event]:
        """The ``events`` stream in order, read in chunks of ``chunk`` entries."""
        start = "-"
        while True:
            batch = self._r.xrange(self._k("events"), min=start, count=chunk)
            for _entry_id, fields in batch:
                event_id, user_id, item_id, ts, type_ = json.loads(fields[b"e"])
                yield Event(user_id, item_id, event_id, float(ts), type_)
            if len(batch) < chunk:
                return
            start = "(" + batch[-1][0].decode()

    def put_item(self, item: dict) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(self._k("items"), item["item_id"], json.dumps(item))
        pipe.rpush(self._k("item_order"), item["item_id"])
        pipe.execute()

    def items(self) -> list[dict]:
        bodies = self._r.hgetall(self._k("items"))
        order = dict.fromkeys(x.decode() for x in self._r.lrange(self._k("item_order"), 0, -1))
        return [json.loads(bodies[i.encode()]) for i in order if i.encode() in bodies]

    def stats(self) -> dict[str, int]:
        return {"events": int(self._r.xlen(self._k("events"))),
                "users": int(self._r.scard(self._k("users")))}

    def close(self) -> None:
        self._r.close()
