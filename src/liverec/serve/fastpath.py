"""Cache hits of ``GET /v1/recommend`` answered before routing (pure ASGI).

An answer is cached under the exact query string of a request the route validated and
computed, for the user's store version and the model generation; a hit here is therefore the
same answer the route would give, at the cost of a query-string parse and two dict lookups.
Everything else (misses, other routes) goes on to FastAPI unchanged.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from liverec.serve.errors import StoreUnavailable

PATH = "/v1/recommend"


class _RouteLabel:
    path = PATH  # what MetricsMiddleware reads from scope["route"]


def user_of(query_string: bytes) -> str | None:
    """The ``user_id`` a query string names (last one wins, as in FastAPI), or None."""
    user = None
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key == "user_id":
            user = value
    return user


class CachedAnswerMiddleware:
    """Serve cached recommendation answers without entering the router."""

    def __init__(self, app, state) -> None:
        self.app = app
        self.state = state  # app.state: the engine appears there once the lifespan ran

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "GET":
            engine = getattr(self.state, "engine", None)
            qs = scope.get("query_string", b"")
            user = user_of(qs) if engine is not None else None
            try:
                body = None if user is None else await engine.cached_answer(user, qs)
            except StoreUnavailable:
                body = None  # the route asks again (the breaker answers at once): a 503
            if body is not None:
                scope["route"] = _RouteLabel
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
