"""The FastAPI application: ``create_app(settings)``; the lifespan loads model, index and store.

Run it with ``liverec serve RUN_DIR`` (uvicorn), or in tests with ``TestClient(create_app(...))``.
"""

from __future__ import annotations

import logging
import math
import signal
from contextlib import asynccontextmanager

import torch
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import compile_path

from liverec.errors import LiverecError
from liverec.model.recommender import UnknownItemError
from liverec.serve.access import AccessMiddleware, require_access
from liverec.serve.deps import single_query_values
from liverec.serve.errors import EventConflict, StoreUnavailable
from liverec.serve.fastpath import CachedAnswerMiddleware
from liverec.serve.keys import KeyRing
from liverec.serve.limits import BodyLimitMiddleware
from liverec.serve.metrics import Metrics, MetricsMiddleware
from liverec.serve.openapi import install_openapi
from liverec.serve.problems import Invalid, problem_response, scrub_paths
from liverec.serve.routes import admin, events, explain, health, items, recommend, users
from liverec.serve.routes.dashboard import add_dashboard
from liverec.serve.settings import ServeSettings

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI):
    from liverec.serve.engine import Engine
    from liverec.serve.stores import open_store

    settings: ServeSettings = app.state.settings
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    store = open_store(settings.store_url(), settings.max_history,
                       timeout_s=settings.store_timeout_s)
    try:
        engine = Engine(settings, store, app.state.metrics)
    except BaseException:
        store.close()
        raise
    app.state.engine = engine
    app.state.metrics.track_store(engine.store)
    if store.shared:
        from liverec.serve.shared import SharedState

        engine.shared = SharedState(engine)
        await engine.shared.start()
    health.install_drain(app, settings.drain_s)
    log.info("serving %s (store %s, retriever %s)", engine.handle.version,
             settings.store_url(), settings.retriever)
    hup = _reload_keys_on_sighup(app.state.keys)
    try:
        yield
    finally:
        if hup is not None:
            hup.remove_signal_handler(signal.SIGHUP)
        if engine.shared is not None:
            await engine.shared.stop()
        if hasattr(store, "aclose"):
            await store.aclose()
        engine.close()


def _reload_keys_on_sighup(keys: KeyRing | None):
    """``kill -HUP`` re-reads the key file (only where the loop may own signals: the main
    thread of a Unix process); the loop, or None when not installed."""
    import asyncio

    if keys is None or keys.path is None or not hasattr(signal, "SIGHUP"):
        return None
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, keys.reload)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        return None
    return loop


def _validation_message(errors: list[dict]) -> str:
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists for the path a request names."""
    table = getattr(app.state, "allowed", None)
    if table is None:
        table = app.state.allowed = [
            (compile_path(template)[0], sorted(m.upper() for m in ops))
            for template, ops in app.openapi()["paths"].items()]
    return sorted({m for regex, methods in table if regex.match(path) for m in methods})


def add_error_handlers(app: FastAPI) -> None:
    """Every error is problem details (liverec.serve.problems); bad input is a 4xx, never a
    500; no answer names a file or directory of the server."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        return problem_response(422, _validation_message(errors), "invalid-request",
                                errors=errors or [{"loc": ["body"], "msg": "invalid",
                                                   "type": "value_error"}])

    @app.exception_handler(Invalid)
    async def _invalid_value(request: Request, exc: Invalid) -> Response:
        return problem_response(422, exc.msg, "invalid-request",
                                errors=[{"loc": exc.loc, "msg": exc.msg, "type": exc.kind}])

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        kind = {401: "unauthorized", 403: "forbidden"}.get(exc.status_code)
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method of the path, not the first route's only
            headers["Allow"] = ", ".join(allowed_methods(app, request.url.path)
                                         or [headers.get("Allow", "")])
        return problem_response(exc.status_code, str(exc.detail), kind, headers=headers)

    @app.exception_handler(UnknownItemError)
    async def _unknown(request: Request, exc: UnknownItemError) -> Response:
        unknown = [str(i) for i in exc.unknown[:100]]
        errors = [{"loc": ["body", "item_id"], "msg": f"unknown item id {i!r}",
                   "type": "unknown_item"} for i in unknown]
        return problem_response(422, str(exc), "unknown-item", errors=errors, unknown=unknown)

    @app.exception_handler(EventConflict)
    async def _conflict(request: Request, exc: EventConflict) -> Response:
        return problem_response(409, str(exc), "event-conflict", event_ids=exc.event_ids[:100])

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(request: Request, exc: StoreUnavailable) -> Response:
        retry = str(max(1, math.ceil(exc.retry_after_s)))
        return problem_response(503, scrub_paths(str(exc)), "store-unavailable",
                                headers={"Retry-After": retry})

    @app.exception_handler(LiverecError)
    async def _liverec(request: Request, exc: LiverecError) -> Response:
        return problem_response(400, scrub_paths(str(exc)))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal error (logged)")


def create_app(settings: ServeSettings | None = None, **overrides) -> FastAPI:
    """The liverec service.

    Args:
        settings: service settings; None = from ``LIVEREC_SERVE_*`` environment variables.
        **overrides: settings fields to set (e.g. ``run_dir=...``, ``store="memory://"``).

    Returns:
        A FastAPI app whose lifespan loads the model and opens the store.
    """
    if settings is None:
        settings = ServeSettings(**overrides)
    elif overrides:
        settings = settings.model_copy(update=overrides)
    app = FastAPI(title="liverec", version="1", lifespan=lifespan,
                  dependencies=[Depends(require_access), Depends(single_query_values)],
                  description="Real-time sequential recommendations: fresh per-user state, "
                              "durable events, cached and micro-batched inference, hot-swap.")
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.keys = KeyRing(settings.api_key and settings.api_key.get_secret_value(),
                             settings.api_key_file) if settings.keys_enabled() else None
    for module in (health, recommend, events, users, items, explain, admin):
        app.include_router(module.router)
    add_dashboard(app)
    add_error_handlers(app)
    install_openapi(app, settings)
    # the last added runs first: metrics -> CORS -> keys -> cached answers -> body cap -> app
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    if settings.cache and not settings.naive:
        app.add_middleware(CachedAnswerMiddleware, state=app.state)
    if app.state.keys is not None:  # before any body is read or cached answer served
        app.add_middleware(AccessMiddleware, keys=app.state.keys)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory (``--factory``): settings from ``LIVEREC_SERVE_*`` in each worker."""
    return create_app()
