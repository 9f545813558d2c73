"""Exceptions the service's stores and engine raise on purpose; the app maps each to a status.

- :class:`StoreUnavailable` -> 503 with ``Retry-After`` (the store does not answer in time).
- :class:`EventConflict` -> 409 (an ``event_id`` already stored with another payload).
"""

from __future__ import annotations

from collections.abc import Sequence


class StoreUnavailable(Exception):
    """The shared store cannot be reached (or did not answer in time); try again later.

    Args:
        message: what failed, for the log and the answer (no host names or paths).
        retry_after_s: the ``Retry-After`` the answer carries (whole seconds, at least 1).
    """

    def __init__(self, message: str = "the event store is not reachable",
                 retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class EventConflict(Exception):
    """Events whose ``event_id`` is already stored with another user, item, time or type.

    Args:
        event_ids: the conflicting ids (nothing of the request was stored).
    """

    def __init__(self, event_ids: Sequence[str], message: str | None = None) -> None:
        self.event_ids = list(event_ids)
        super().__init__(message or f"{len(self.event_ids)} event id(s) already stored with "
                                    f"another payload: {', '.join(self.event_ids[:10])}")
