"""Caches of the service, each bounded in bytes: per-user answers and vectors, filter masks.

An entry of :class:`UserCache` is valid only for the user's store version and the model
generation it was computed for: a new event for the user (version + 1), a hot-swap or a
catalogue change (generation + 1) makes it stale, so a hit is always equal to a fresh
computation (the reference path). Both caches evict the least recently used entries once
their byte budget is reached and count what they evict (``stats()``, exported as Prometheus
metrics by the engine). Byte sizes are estimates: the payload (answer bytes, key bytes, array
bytes) plus a fixed per-entry overhead for the Python objects around it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np

ENTRY_OVERHEAD = 400  # bytes: the entry object, its dicts and the LRU link
ANSWER_OVERHEAD = 150  # bytes: a dict slot, the bytes object's header, the key object


def _key_bytes(key: object) -> int:
    if isinstance(key, bytes | str):
        return len(key)
    return len(repr(key))  # a tuple of request parameters (callers without a query string)


@dataclass
class _Entry:
    version: int
    generation: int
    vector: np.ndarray | None = None
    answers: dict[object, bytes] = field(default_factory=dict)
    answer_bytes: int = 0

    @property
    def vector_bytes(self) -> int:
        return 0 if self.vector is None else int(self.vector.nbytes)


class UserCache:
    """LRU over users; each user holds one vector and answers keyed by request parameters.

    Args:
        max_users: users kept (0 disables the cache).
        max_answers: answers kept per user (different k / filters).
        max_bytes: bytes of answers and vectors kept over all users (0 disables the cache).
    """

    def __init__(self, max_users: int = 100_000, max_answers: int = 8,
                 max_bytes: int = 64 << 20) -> None:
        self.max_users = max_users if max_bytes > 0 else 0
        self.max_answers = max_answers
        self.max_bytes = max_bytes
        self.generation = 0
        self._d: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.answer_bytes = 0  # answers and their keys
        self.vector_bytes = 0
        self.overhead_bytes = 0  # per-entry overhead and user ids
        self.evicted = {"answers": 0, "vectors": 0}

    @property
    def nbytes(self) -> int:
        return self.answer_bytes + self.vector_bytes + self.overhead_bytes

    def _valid(self, user_id: str, version: int) -> _Entry | None:
        e = self._d.get(user_id)
        if e is None or e.version != version or e.generation != self.generation:
            return None
        return e

    def answer(self, user_id: str, version: int, key: object) -> bytes | None:
        """A cached answer for this user version and request key, or None."""
        e = self._valid(user_id, version)
        return None if e is None else e.answers.get(key)

    def vector(self, user_id: str, version: int) -> np.ndarray | None:
        e = self._valid(user_id, version)
        return None if e is None else e.vector

    def _drop(self, user_id: str, evicted: bool) -> None:
        e = self._d.pop(user_id)
        self.answer_bytes -= e.answer_bytes
        self.vector_bytes -= e.vector_bytes
        self.overhead_bytes -= ENTRY_OVERHEAD + len(user_id)
        if evicted:
            self.evicted["answers"] += len(e.answers)
            self.evicted["vectors"] += e.vector is not None

    def _entry(self, user_id: str, version: int, generation: int) -> _Entry | None:
        if generation != self.generation or self.max_users == 0:
            return None  # computed against a model/catalogue that has been replaced
        e = self._d.get(user_id)
        if e is None or e.version != version or e.generation != generation:
            if e is not None:
                self._drop(user_id, evicted=False)  # stale: replaced, not evicted
            e = self._d[user_id] = _Entry(version, generation)
            self.overhead_bytes += ENTRY_OVERHEAD + len(user_id)
        self._d.move_to_end(user_id)
        return e

    def _shrink(self) -> None:
        while self._d and (len(self._d) > self.max_users or self.nbytes > self.max_bytes):
            self._drop(next(iter(self._d)), evicted=True)

    def put_vector(self, user_id: str, version: int, generation: int, vec: np.ndarray) -> None:
        with self._lock:
            e = self._entry(user_id, version, generation)
            if e is not None:
                self.vector_bytes += int(vec.nbytes) - e.vector_bytes
                e.vector = vec
                self._shrink()

    def put_answer(self, user_id: str, version: int, generation: int, key: object,
                   body: bytes) -> None:
        with self._lock:
            e = self._entry(user_id, version, generation)
            if e is None:
                return
            size = len(body) + _key_bytes(key) + ANSWER_OVERHEAD
            if size > self.max_bytes // 4:
                return  # one answer may not flush a quarter of the cache
            if key not in e.answers and len(e.answers) >= self.max_answers:
                old = next(iter(e.answers))
                gone = len(e.answers.pop(old)) + _key_bytes(old) + ANSWER_OVERHEAD
                e.answer_bytes -= gone
                self.answer_bytes -= gone
                self.evicted["answers"] += 1
            if key in e.answers:
                gone = len(e.answers.pop(key)) + _key_bytes(key) + ANSWER_OVERHEAD
                e.answer_bytes -= gone
                self.answer_bytes -= gone
            e.answers[key] = body
            e.answer_bytes += size
            self.answer_bytes += size
            self._shrink()

    def invalidate(self, user_id: str) -> None:
        """Drop a user's entry (their version check would also refuse it)."""
        with self._lock:
            if user_id in self._d:
                self._drop(user_id, evicted=False)

    def clear(self) -> None:
        """Invalidate everything (model swap, catalogue change)."""
        with self._lock:
            self.generation += 1
            self._d.clear()
            self.answer_bytes = self.vector_bytes = self.overhead_bytes = 0

    def stats(self) -> dict[str, dict[str, int]]:
        """``{"answers": {...}, "vectors": {...}}``: bytes, entries and evictions of each."""
        with self._lock:
            n_answers = sum(len(e.answers) for e in self._d.values())
            n_vectors = sum(e.vector is not None for e in self._d.values())
            per_user = self.overhead_bytes
            return {"answers": {"bytes": self.answer_bytes + per_user, "entries": n_answers,
                                "evictions": self.evicted["answers"]},
                    "vectors": {"bytes": self.vector_bytes, "entries": n_vectors,
                                "evictions": self.evicted["vectors"]}}

    def __len__(self) -> int:
        return len(self._d)


class ByteLRU:
    """A thread-safe LRU of arrays (or bytes) bounded by their total size in bytes.

    Args:
        max_bytes: budget; a value larger than a quarter of it is not kept.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.evictions = 0
        self._d: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable):
        with self._lock:
            hit = self._d.get(key)
            if hit is None:
                return None
            self._d.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, value: np.ndarray | bytes) -> None:
        size = (int(value.nbytes) if isinstance(value, np.ndarray) else len(value)) \
            + ANSWER_OVERHEAD + _key_bytes(key)
        if size > self.max_bytes // 4:
            return
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            self._d[key] = (value, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (_, gone) = self._d.popitem(last=False)
                self.nbytes -= gone
                self.evictions += 1

    def clear(self) -> None:
        """Drop everything (not counted as evictions)."""
        with self._lock:
            self._d.clear()
            self.nbytes = 0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"bytes": self.nbytes, "entries": len(self._d), "evictions": self.evictions}

    def __len__(self) -> int:
        return len(self._d)
