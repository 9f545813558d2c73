"""Errors of the service that routes turn into specific HTTP statuses."""

from __future__ import annotations

from liverec.errors import LiverecError


class EventConflict(LiverecError):
    """An ``event_id`` is already stored with another payload (HTTP 409); nothing was stored.

    Attributes:
        event_ids: the conflicting event ids.
    """

    def __init__(self, message: str, event_ids: list[str] | None = None) -> None:
        super().__init__(message)
        self.event_ids = list(event_ids or [])
