"""The Redis event store: state shared by several workers or replicas.

Per event one Lua script (atomic): the event id's key holds the event's identity (a repeat
with the same identity is a duplicate, with another one a conflict: nothing written), insert
into the user's capped history list by event time, bump the user's version, add to the
``events`` stream (the log).

Shared catalogue and model version: ``put_item`` writes the item and, in the same MULTI, an
entry on the ``changes`` stream; ``publish`` adds the reload protocol's entries there (see
:mod:`liverec.serve.shared`). Every replica tails that stream (``read_changes``, a blocking
XREAD on its own connection), so a change reaches every replica in milliseconds.

Never stall: every call has a short socket timeout (``timeout_s``, default 0.1 s), no client
retries, and a :class:`~liverec.serve.stores.Breaker`; a call that cannot reach Redis raises
:class:`~liverec.serve.errors.StoreUnavailable`. The request-path reads (``astate``,
``aversion``, ``aping``) use ``redis.asyncio`` on the running event loop; the rest are
blocking calls for worker threads.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from liverec.errors import ConfigError
from liverec.serve.errors import EventConflict, StoreUnavailable
from liverec.serve.stores import Breaker, Event, History, check_identity

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
CHANGES_MAXLEN = 10_000  # approximate cap of the changes stream (items are also in a hash)
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError, asyncio.TimeoutError)


class RedisStore:
    """Event log, user state, shared catalogue and model version in Redis.

    Args:
        url: ``redis://host:port/db``.
        max_history: events kept per user.
        prefix: key prefix (several services can share one Redis).
        timeout_s: socket (and connect) timeout of each call, seconds.
        retry_s: while Redis is down, one call per ``retry_s`` probes it; the others fail fast.

    Raises:
        ConfigError: Redis does not answer at start.
    """

    shared = True

    def __init__(self, url: str, max_history: int = 200, prefix: str = "liverec:",
                 timeout_s: float = 0.1, retry_s: float = 0.5) -> None:
        if not timeout_s > 0:
            raise ConfigError(f"store timeout must be > 0 s, got {timeout_s}")
        self.url = url
        self.max_history = max_history
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.breaker = Breaker(retry_s, "Redis")
        self._r = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                       socket_connect_timeout=timeout_s,
                                       retry=Retry(NoBackoff(), 0))
        try:
            self._r.ping()
        except redis.RedisError as exc:
            raise ConfigError(f"cannot reach Redis at {url}: {exc}") from None
        self._append = self._r.register_script(APPEND)
        self._async: dict[int, Any] = {}  # id(event loop) -> (loop, client)
        self._listen: dict[int, Any] = {}  # id(event loop) -> (loop, client for blocking reads)

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # --- calls with timeouts and the breaker ----------------------------------------------

    def _call(self, fn: Callable, *args, **kwargs):
        self.breaker.check()
        try:
            out = fn(*args, **kwargs)
        except _UNREACHABLE as exc:
            raise self.breaker.fail(exc) from None
        except redis.RedisError as exc:  # reachable but refusing (MISCONF, OOM, READONLY...)
            raise StoreUnavailable(f"Redis refused the call: {exc}") from None
        self.breaker.ok()
        return out

    def _client(self, table: dict, socket_timeout: float):
        loop = asyncio.get_running_loop()
        entry = table.get(id(loop))
        if entry is None or entry[0] is not loop:
            client = aredis.Redis.from_url(self.url, socket_timeout=socket_timeout,
                                           socket_connect_timeout=self.timeout_s,
                                           retry=AsyncRetry(NoBackoff(), 0))
            entry = table[id(loop)] = (loop, client)
        return entry[1]

    @property
    def _a(self):
        """The redis.asyncio client of the running loop (one per loop, made on first use)."""
        return self._client(self._async, self.timeout_s)

    async def _acall(self, make: Callable):
        self.breaker.check()
        try:
            async with asyncio.timeout(2 * self.timeout_s + 0.05):  # a guard beyond the socket
                out = await make(self._a)
        except _UNREACHABLE as exc:
            raise self.breaker.fail(exc) from None
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis refused the call: {exc}") from None
        self.breaker.ok()
        return out

    # --- events and user state ------------------------------------------------------------

    def _stored(self, event_ids: list[str]) -> dict[str, str]:
        if not event_ids:
            return {}
        values = self._call(self._r.mget, [self._k("eid", i) for i in event_ids])
        return {i: v.decode() for i, v in zip(event_ids, values) if v not in (None, b"1")}

    def append(self, events: Sequence[Event]) -> list[bool]:
        # conflicts are refused before anything is written; the script checks again (races)
        fresh = [i for i, new in enumerate(check_identity(events, self._stored)) if new]

        def run() -> list:
            pipe = self._r.pipeline(transaction=False)
            for e in (events[i] for i in fresh):
                entry = json.dumps([e.item_id, e.ts])
                log = json.dumps([e.event_id, e.user_id, e.item_id, e.ts, e.type, e.client_ts])
                self._append(keys=[self._k("eid", e.event_id), self._k("hist", e.user_id),
                                   self._k("ver", e.user_id), self._k("events"),
                                   self._k("users")],
                             args=[entry, self.max_history, log, e.user_id, e.identity(), e.ts],
                             client=pipe)
            return pipe.execute()

        done = dict(zip(fresh, self._call(run)))
        lost = [events[i].event_id for i, r in done.items() if r == -1]
        if lost:
            raise EventConflict(f"event_id written concurrently by another event: {lost[:5]}; "
                                "the other events of this call were stored", lost)
        return [done.get(i, 0) == 1 for i in range(len(events))]

    def _state_pipe(self, client, user_id: str):
        pipe = client.pipeline(transaction=True)
        pipe.lrange(self._k("hist", user_id), 0, -1)
        pipe.get(self._k("ver", user_id))
        return pipe

    @staticmethod
    def _parse_state(raw: list, ver) -> tuple[History, int]:
        return [tuple(json.loads(x)) for x in raw], int(ver or 0)

    def state(self, user_id: str) -> tuple[History, int]:
        return self._parse_state(*self._call(self._state_pipe(self._r, user_id).execute))

    async def astate(self, user_id: str) -> tuple[History, int]:
        raw, ver = await self._acall(lambda a: self._state_pipe(a, user_id).execute())
        return self._parse_state(raw, ver)

    def version(self, user_id: str) -> int:
        return int(self._call(self._r.get, self._k("ver", user_id)) or 0)

    async def aversion(self, user_id: str) -> int:
        return int(await self._acall(lambda a: a.get(self._k("ver", user_id))) or 0)

    async def aping(self) -> None:
        await self._acall(lambda a: a.ping())

    def events(self, chunk: int = 10_000) -> Iterator[Event]:
        """The ``events`` stream in order, read in chunks of ``chunk`` entries."""
        start = "-"
        while True:
            batch = self._call(self._r.xrange, self._k("events"), min=start, count=chunk)
            for _entry_id, fields in batch:
                event_id, user_id, item_id, ts, type_, *sent = json.loads(fields[b"e"])
                yield Event(user_id, item_id, event_id, float(ts), type_,
                            bool(sent[0]) if sent else True)
            if len(batch) < chunk:
                return
            start = "(" + batch[-1][0].decode()

    def stats(self) -> dict[str, int]:
        def run():
            pipe = self._r.pipeline(transaction=False)
            pipe.xlen(self._k("events"))
            pipe.scard(self._k("users"))
            return pipe.execute()

        events, users = self._call(run)
        return {"events": int(events), "users": int(users)}

    # --- shared catalogue -----------------------------------------------------------------

    def put_item(self, item: dict) -> None:
        body = json.dumps(item)

        def run():
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(self._k("items"), item["item_id"], body)
            pipe.rpush(self._k("item_order"), item["item_id"])
            pipe.xadd(self._k("changes"), {"k": "item", "v": body}, maxlen=CHANGES_MAXLEN,
                      approximate=True)
            return pipe.execute()

        self._call(run)

    def items(self) -> list[dict]:
        def run():
            pipe = self._r.pipeline(transaction=True)
            pipe.hgetall(self._k("items"))
            pipe.lrange(self._k("item_order"), 0, -1)
            return pipe.execute()

        bodies, order = self._call(run)
        order = dict.fromkeys(order)
        return [json.loads(bodies[i]) for i in order if i in bodies]

    def get_meta(self, key: str) -> str | None:
        value = self._call(self._r.hget, self._k("meta"), key)
        return None if value is None else value.decode()

    def put_meta(self, key: str, value: str) -> None:
        self._call(self._r.hset, self._k("meta"), key, value)

    def get_items(self, item_ids: Sequence[str]) -> list[dict]:
        """The shared catalogue's entries for these ids (those it has)."""
        if not item_ids:
            return []
        bodies = self._call(self._r.hmget, self._k("items"), list(item_ids))
        return [json.loads(b) for b in bodies if b is not None]

    # --- change stream, model record, replicas (see liverec.serve.shared) -----------------

    def publish(self, kind: str, payload: dict) -> str:
        """Add a change (``item``, ``prepare``, ``commit``, ``abort``); returns its stream id."""
        out = self._call(self._r.xadd, self._k("changes"),
                         {"k": kind, "v": json.dumps(payload)}, maxlen=CHANGES_MAXLEN,
                         approximate=True)
        return out.decode()

    def last_change(self) -> str:
        """The id of the newest change (``0-0`` if none): tail the stream from there."""
        last = self._call(self._r.xrevrange, self._k("changes"), count=1)
        return last[0][0].decode() if last else "0-0"

    async def read_changes(self, after: str, block_ms: int = 1000,
                           count: int = 100) -> list[tuple[str, str, dict]]:
        """Changes after stream id ``after``, waiting up to ``block_ms`` for one:
        ``[(id, kind, payload)]`` oldest first (empty when none came). Uses its own connection
        (a blocking read); raises StoreUnavailable when Redis does not answer."""
        client = self._client(self._listen, block_ms / 1000 + 1.0)
        try:
            out = await client.xread({self._k("changes"): after}, count=count, block=block_ms)
        except _UNREACHABLE as exc:
            raise StoreUnavailable(f"Redis change stream: {type(exc).__name__}: {exc}") \
                from None
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis change stream: {exc}") from None
        rows = []
        for _stream, entries in out or ():
            for entry_id, fields in entries:
                rows.append((entry_id.decode(), fields[b"k"].decode(), json.loads(fields[b"v"])))
        return rows

    def get_model(self) -> dict | None:
        """The served model record ``{run_dir, version, tx}`` every replica follows, or None."""
        raw = self._call(self._r.get, self._k("model"))
        return json.loads(raw) if raw else None

    def set_model(self, record: dict) -> None:
        self._call(self._r.set, self._k("model"), json.dumps(record))

    def heartbeat(self, replica: str, info: dict) -> None:
        """Say that ``replica`` is alive now (with what it serves)."""
        self._call(self._r.hset, self._k("replicas"), replica,
                   json.dumps({**info, "t": time.time()}))

    def forget_replica(self, replica: str) -> None:
        self._call(self._r.hdel, self._k("replicas"), replica)

    def replicas(self, max_age_s: float = 3.0) -> dict[str, dict]:
        """Replicas whose last heartbeat is at most ``max_age_s`` old: {id: info}."""
        now = time.time()
        raw = self._call(self._r.hgetall, self._k("replicas"))
        out = {}
        for key, body in raw.items():
            info = json.loads(body)
            if now - info.get("t", 0) <= max_age_s:
                out[key.decode()] = info
        return out

    def vote(self, tx: str, replica: str, ok: bool, message: str = "") -> None:
        """A replica's answer to a prepared reload (kept one hour)."""
        key = self._k("reload", tx)

        def run():
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(key, replica, json.dumps({"ok": ok, "message": message}))
            pipe.expire(key, 3600)
            return pipe.execute()

        self._call(run)

    def lock(self, name: str, token: str, ttl_s: float) -> str | None:
        """Take the lock ``name`` for ``ttl_s`` seconds: None if taken, else the holder's
        token (when another holds it)."""
        key = self._k("lock", name)
        if self._call(self._r.set, key, token, nx=True, px=int(ttl_s * 1000)):
            return None
        holder = self._call(self._r.get, key)
        return holder.decode() if holder else "?"

    def unlock(self, name: str, token: str) -> None:
        """Release ``name`` if ``token`` still holds it."""
        self._call(self._r.eval, "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                   "return redis.call('DEL', KEYS[1]) end return 0", 1, self._k("lock", name),
                   token)

    def votes(self, tx: str) -> dict[str, dict]:
        raw = self._call(self._r.hgetall, self._k("reload", tx))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def aclose(self) -> None:
        """Close the asyncio clients of the running loop (call before the loop ends)."""
        loop = asyncio.get_running_loop()
        for table in (self._async, self._listen):
            entry = table.pop(id(loop), None)
            if entry is not None and entry[0] is loop:
                client = entry[1]  # redis-py 5.0.0 has close(); aclose() came in 5.0.1
                await (client.aclose() if hasattr(client, "aclose") else client.close())

    def close(self) -> None:
        self._r.close()
        self._async.clear()
        self._listen.clear()
