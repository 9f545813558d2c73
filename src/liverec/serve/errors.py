"""Errors the service turns into particular HTTP answers (see ``liverec.serve.app``)."""

from __future__ import annotations

from liverec.errors import LiverecError


class StoreUnavailable(LiverecError):
    """The event store cannot answer now (down, frozen, refusing writes): HTTP 503 with
    ``Retry-After``. Nothing was acknowledged; a retry with the same ``event_id`` is safe."""

    retry_after_s = 1


class EventConflict(LiverecError):
    """An ``event_id`` already stored with another payload (HTTP 409)."""
