"""The Redis event store: state shared by several workers or replicas.

Per event one Lua script (atomic): the event id's key holds the event's identity (a repeat
with the same identity is a duplicate, with another one a conflict: nothing written), insert
into the user's capped history list by event time, bump the user's version, add to the
``events`` stream (the log).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import redis

from liverec.errors import ConfigError
from liverec.serve.errors import EventConflict
from liverec.serve.stores import Event, History, check_identity

APPEND = """
local prev = redis.call('GET', KEYS[1])
if prev then
  if prev == ARGV[5] or prev == '1' then return 0 end
  return -1
end
redis.call('SET', KEYS[1], ARGV[5])
local ts = tonumber(ARGV[6])
local last = redis.call('LINDEX', KEYS[2], -1)
if (not last) or tonumber(cjson.decode(last)[2]) <= ts then
  redis.call('RPUSH', KEYS[2], ARGV[1])
else
  local all = redis.call('LRANGE', KEYS[2], 0, -1)
  local i = #all
  while i >= 1 and tonumber(cjson.decode(all[i])[2]) > ts do i = i - 1 end
  if i == 0 then redis.call('DEL', KEYS[2]) else redis.call('LTRIM', KEYS[2], 0, i - 1) end
  redis.call('RPUSH', KEYS[2], ARGV[1])
  for j = i + 1, #all do redis.call('RPUSH', KEYS[2], all[j]) end
end
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

    def _stored(self, event_ids: list[str]) -> dict[str, str]:
        values = self._r.mget([self._k("eid", i) for i in event_ids]) if event_ids else []
        return {i: v.decode() for i, v in zip(event_ids, values) if v not in (None, b"1")}

    def append(self, events: Sequence[Event]) -> list[bool]:
        # conflicts are refused before anything is written; the script checks again (races)
        fresh = [i for i, new in enumerate(check_identity(events, self._stored)) if new]
        pipe = self._r.pipeline(transaction=False)
        for e in (events[i] for i in fresh):
            entry = json.dumps([e.item_id, e.ts])
            log = json.dumps([e.event_id, e.user_id, e.item_id, e.ts, e.type, e.client_ts])
            self._append(keys=[self._k("eid", e.event_id), self._k("hist", e.user_id),
                               self._k("ver", e.user_id), self._k("events"), self._k("users")],
                         args=[entry, self.max_history, log, e.user_id, e.identity(), e.ts],
                         client=pipe)
        done = dict(zip(fresh, pipe.execute()))
        lost = [events[i].event_id for i, r in done.items() if r == -1]
        if lost:
            raise EventConflict(f"event_id written concurrently by another event: {lost[:5]}; "
                                "the other events of this call were stored", lost)
        return [done.get(i, 0) == 1 for i in range(len(events))]

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
                event_id, user_id, item_id, ts, type_, *sent = json.loads(fields[b"e"])
                yield Event(user_id, item_id, event_id, float(ts), type_,
                            bool(sent[0]) if sent else True)
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

    def get_meta(self, key: str) -> str | None:
        value = self._r.hget(self._k("meta"), key)
        return None if value is None else value.decode()

    def put_meta(self, key: str, value: str) -> None:
        self._r.hset(self._k("meta"), key, value)

    def stats(self) -> dict[str, int]:
        return {"events": int(self._r.xlen(self._k("events"))),
                "users": int(self._r.scard(self._k("users")))}

    def close(self) -> None:
        self._r.close()
