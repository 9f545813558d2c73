"""One error shape: RFC 9457 problem details (``application/problem+json``).

Every error answer is ``{"type", "title", "status", "detail"}`` plus, where useful, an
extension member: ``errors`` (422: each invalid field, ``loc``/``msg``/``type``), ``unknown``
(422: unknown item ids), ``event_ids`` (409: conflicting events). ``type`` is ``about:blank``
for plain HTTP errors (``title`` is then the status phrase) and a ``urn:liverec:problem:*``
name for the service's own kinds (:data:`TYPES`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus

import orjson
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"

TYPES = {  # type -> title
    "invalid-request": "Invalid request",
    "unknown-item": "Unknown item id",
    "unauthorized": "API key missing or not known",
    "forbidden": "API key lacks the scope",
    "outside-models-root": "Run directory outside the models root",
    "reload-refused": "Reload refused",
    "event-conflict": "Event id already stored with another payload",
    "store-unavailable": "Event store unavailable",
}


class Invalid(Exception):
    """A request value the schema cannot rule out (a cap from the settings, two exclusive
    parameters, an unknown reference): a 422 listing ``loc``, like a validation error.

    Args:
        loc: where, e.g. ``("query", "k")`` or ``("body", "history")``.
        msg: what is wrong, naming the limit.
        kind: the error's ``type`` in the answer's ``errors`` list.
    """

    def __init__(self, loc: Sequence[str], msg: str, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.loc = [str(x) for x in loc]
        self.msg = msg
        self.kind = kind


def problem(status: int, detail: str, kind: str | None = None, **extensions) -> dict:
    """The problem-details object (``kind``: a key of :data:`TYPES`, None = about:blank)."""
    if kind is None:
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
        head = {"type": "about:blank", "title": title}
    else:
        head = {"type": f"urn:liverec:problem:{kind}", "title": TYPES[kind]}
    return {**head, "status": status, "detail": detail, **extensions}


def problem_response(status: int, detail: str, kind: str | None = None,
                     headers: dict[str, str] | None = None, **extensions) -> Response:
    """A Starlette response carrying :func:`problem`."""
    return Response(orjson.dumps(problem(status, detail, kind, **extensions)),
                    status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def send_problem(send, status: int, detail: str, kind: str | None = None,
                       headers: dict[str, str] | None = None) -> None:
    """Send :func:`problem` from pure ASGI middleware (before any routing)."""
    body = orjson.dumps(problem(status, detail, kind))
    raw = [(b"content-type", PROBLEM_JSON.encode()),
           (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# absolute paths in messages of errors the service did not word itself (never shown)
_PATH = re.compile(r"(?<![\w.])/[^\s'\"]+(?:/[^\s'\"]*)+")


def scrub_paths(message: str) -> str:
    """``message`` with every absolute path replaced by ``<path>`` (answers never name the
    server's files or directories)."""

    def hide(m: re.Match) -> str:
        path = m.group(0)
        kept = path.rstrip(":,.;)")
        return "<path>" + path[len(kept):]

    return _PATH.sub(hide, message)
