"""Exceptions the service's stores and engine raise on purpose; the app maps each to a status.

- :class:`StoreUnavailable` -> 503 with ``Retry-After`` (the store does not answer in time).
- :class:`EventConflict` -> 409 (an ``event_id`` already stored with another payload).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from liverec.errors import ArtifactError, LiverecError


class StoreUnavailable(LiverecError):
    """The event store cannot answer now (down, frozen, refusing writes): HTTP 503 with
    ``Retry-After``. Nothing was acknowledged; a retry with the same ``event_id`` is safe.

    Args:
        message: what failed, for the log and the answer (no host names or paths).
        retry_after_s: the ``Retry-After`` the answer carries (whole seconds, at least 1).
    """

    def __init__(self, message: str = "the event store is not reachable",
                 retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, math.ceil(retry_after_s))  # Retry-After: whole seconds


class EventConflict(LiverecError):
    """An ``event_id`` is already stored with another payload (HTTP 409); nothing of the
    request was stored.

    Args:
        message: what conflicts, for the answer.
        event_ids: the conflicting event ids.
    """

    def __init__(self, message: str, event_ids: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.event_ids = list(event_ids or [])


class ReloadRefused(ArtifactError):
    """A coordinated reload was refused (another one holds the lock, or a replica could not
    load the run): nobody switched. The message is meant for the client (paths removed)."""
