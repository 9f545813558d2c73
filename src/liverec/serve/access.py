"""Who may call what: :data:`ACCESS` lists the routes that need a key and its scope; a pure
ASGI middleware checks the ``X-API-Key`` header against the service's
:class:`~liverec.serve.keys.KeyRing` *before* the body is read or a cached answer is served (a
request without a key gets 401 whatever its body). An app-wide dependency checks again inside
FastAPI, by the matched route's template, so the two cannot disagree silently. Without keys
the service is open and nothing runs.

| scope | routes |
|---|---|
| none | ``POST /v1/recommend`` (an anonymous history), ``GET /v1/items/{id}``,
  ``GET /v1/items/{id}/similar``, ``GET /v1/model``, health, metrics, docs, ``/ui`` (the page) |
| read | ``GET /v1/recommend?user_id=`` (a person's tastes), ``GET /v1/users/{id}``,
  ``GET /v1/explain``, ``GET /v1/stats`` (recently active users) |
| write | ``POST /v1/events``, ``POST /v1/items``, ``PATCH /v1/items/{id}`` (or ``?item_id=``) |
| admin | ``POST /admin/reload`` |
"""

from __future__ import annotations

import re

from fastapi import HTTPException, Request
from starlette.routing import compile_path

import liverec.serve.routes  # noqa: F401  (registers the anyid path convertor used below)
from liverec.serve.keys import HEADER, KeyRing, Scope
from liverec.serve.problems import send_problem

ACCESS: dict[tuple[str, str], Scope] = {
    ("GET", "/v1/recommend"): Scope.READ,
    ("GET", "/v1/users/{user_id:anyid}"): Scope.READ,
    ("GET", "/v1/explain"): Scope.READ,
    ("GET", "/v1/stats"): Scope.READ,
    ("POST", "/v1/events"): Scope.WRITE,
    ("POST", "/v1/items"): Scope.WRITE,
    ("PATCH", "/v1/items/{item_id}"): Scope.WRITE,
    ("PATCH", "/v1/items"): Scope.WRITE,
    ("POST", "/admin/reload"): Scope.ADMIN,
}


def openapi_path(template: str) -> str:
    """A route template as the OpenAPI document writes it (``{id:anyid}`` -> ``{id}``)."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", template)


GRANTED = "liverec.scope"  # ASGI scope key: what the request's key may do
UNAUTHORIZED = {"WWW-Authenticate": f'ApiKey header="{HEADER}"'}
_HEADER = HEADER.lower().encode()
_MISSING = f"missing or unknown API key (send it as the {HEADER} header)"


def _denied(need: Scope) -> str:
    return f"this key may not do that: the route needs a {need.name.lower()} key"


async def require_access(request: Request) -> None:
    """App-wide dependency: the matched route's scope (by its template) was granted."""
    if getattr(request.app.state, "keys", None) is None:
        return
    route = request.scope.get("route")
    need = ACCESS.get((request.method, getattr(route, "path", "")))
    if need is None:
        return
    granted = request.scope.get(GRANTED)
    if granted is None:
        raise HTTPException(401, _MISSING, headers=UNAUTHORIZED)
    if granted < need:
        raise HTTPException(403, _denied(need))


class _Route:
    """What the metrics label a refused request with (its route template)."""

    def __init__(self, path: str) -> None:
        self.path = path


class AccessMiddleware:
    """401 (no or unknown key) / 403 (key of a lower scope) before the app sees the request.

    Args:
        app: the next ASGI app.
        keys: the service's keys.
        table: ``{(METHOD, path template): scope}`` (default :data:`ACCESS`).
    """

    def __init__(self, app, keys: KeyRing, table: dict | None = None) -> None:
        self.app = app
        self.keys = keys
        table = ACCESS if table is None else table
        self.static = {k: v for k, v in table.items() if "{" not in k[1]}
        self.templated: list[tuple[str, re.Pattern, str, Scope]] = [
            (m, compile_path(p)[0], p, s) for (m, p), s in table.items() if "{" in p]

    def need(self, method: str, path: str) -> tuple[str, Scope] | None:
        """(template, scope) of the route a request goes to, when it needs a key."""
        need = self.static.get((method, path))
        if need is not None:
            return path, need
        for m, regex, template, scope in self.templated:
            if m == method and regex.match(path):
                return template, scope
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):  # behind a proxy prefix: route on the rest
            path = path[len(root):] or "/"
        found = self.need(scope["method"], path)
        if found is not None:
            template, need = found
            presented = None
            for name, value in scope.get("headers", ()):
                if name == _HEADER:
                    presented = value.decode("latin-1")
            self.keys.refresh()
            granted = self.keys.scope_of(presented)
            if granted is None or granted < need:
                scope["route"] = _Route(template)  # the metrics label the refusal
                if granted is None:
                    await send_problem(send, 401, _MISSING, "unauthorized", UNAUTHORIZED)
                else:
                    await send_problem(send, 403, _denied(need), "forbidden")
                return
            scope[GRANTED] = granted
        await self.app(scope, receive, send)
