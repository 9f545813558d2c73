"""Per-user cache of user vectors and finished answers (serialized JSON), bounded LRU.

An entry is valid only for the user's store version and the model generation it was computed
for: a new event for the user (version + 1), a hot-swap or a catalogue change (generation + 1)
makes it stale, so a hit is always equal to a fresh computation (the reference path).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Entry:
    version: int
    generation: int
    vector: np.ndarray | None = None
    answers: dict[tuple, bytes] = field(default_factory=dict)


class UserCache:
    """LRU over users; each user holds one vector and answers keyed by request parameters.

    Args:
        max_users: users kept (0 disables the cache).
        max_answers: answers kept per user (different k / filters).
    """

    def __init__(self, max_users: int = 100_000, max_answers: int = 8) -> None:
        self.max_users = max_users
        self.max_answers = max_answers
        self.generation = 0
        self._d: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def _valid(self, user_id: str, version: int) -> _Entry | None:
        e = self._d.get(user_id)
        if e is None or e.version != version or e.generation != self.generation:
            return None
        return e

    def answer(self, user_id: str, version: int, key: tuple) -> bytes | None:
        """A cached answer for this user version and request key, or None."""
        e = self._valid(user_id, version)
        return None if e is None else e.answers.get(key)

    def vector(self, user_id: str, version: int) -> np.ndarray | None:
        e = self._valid(user_id, version)
        return None if e is None else e.vector

    def _entry(self, user_id: str, version: int, generation: int) -> _Entry | None:
        if generation != self.generation or self.max_users == 0:
            return None  # computed against a model/catalogue that has been replaced
        e = self._d.get(user_id)
        if e is None or e.version != version or e.generation != generation:
            e = self._d[user_id] = _Entry(version, generation)
        self._d.move_to_end(user_id)
        while len(self._d) > self.max_users:
            self._d.popitem(last=False)
        return e

    def put_vector(self, user_id: str, version: int, generation: int, vec: np.ndarray) -> None:
        with self._lock:
            e = self._entry(user_id, version, generation)
            if e is not None:
                e.vector = vec

    def put_answer(self, user_id: str, version: int, generation: int, key: tuple,
                   body: bytes) -> None:
        with self._lock:
            e = self._entry(user_id, version, generation)
            if e is not None:
                if len(e.answers) >= self.max_answers:
                    e.answers.pop(next(iter(e.answers)))
                e.answers[key] = body

    def invalidate(self, user_id: str) -> None:
        """Drop a user's entry (their version check would also refuse it)."""
        with self._lock:
            self._d.pop(user_id, None)

    def clear(self) -> None:
        """Invalidate everything (model swap, catalogue change)."""
        with self._lock:
            self.generation += 1
            self._d.clear()

    def __len__(self) -> int:
        return len(self._d)
