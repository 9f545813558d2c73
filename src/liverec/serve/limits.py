"""Body-size cap as pure ASGI middleware: 413 (problem details), before any parsing."""

from __future__ import annotations

from starlette.exceptions import HTTPException

from liverec.serve.problems import send_problem


class _TooLarge(HTTPException):
    """Raised from ``receive``: FastAPI passes HTTPExceptions through to the 413 handler."""


async def _send_413(send, limit: int) -> None:
    await send_problem(send, 413, f"request body larger than {limit} bytes")


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes (by Content-Length, or while streaming)."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await _send_413(send, self.limit)
                    return
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge(413, f"request body larger than {self.limit} bytes")
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_413(send, self.limit)
