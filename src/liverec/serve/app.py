"""The FastAPI application: ``create_app(settings)``; the lifespan loads model, index and store.

Run it with ``liverec serve RUN_DIR`` (uvicorn), or in tests with ``TestClient(create_app(...))``.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from liverec.errors import LiverecError
from liverec.model.recommender import UnknownItemError
from liverec.serve.errors import StoreUnavailable
from liverec.serve.fastpath import CachedAnswerMiddleware
from liverec.serve.limits import BodyLimitMiddleware
from liverec.serve.metrics import Metrics, MetricsMiddleware
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
    try:
        yield
    finally:
        if engine.shared is not None:
            await engine.shared.stop()
        if hasattr(store, "aclose"):
            await store.aclose()
        engine.close()


def _validation_message(errors: list[dict]) -> str:
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


def add_error_handlers(app: FastAPI) -> None:
    """Every error is JSON ``{"detail": message}``; bad input is a 4xx, never a 500."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        return JSONResponse({"detail": _validation_message(errors), "errors": errors},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(UnknownItemError)
    async def _unknown(request: Request, exc: UnknownItemError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "unknown": exc.unknown[:100]}, status_code=422)

    @app.exception_handler(StoreUnavailable)
    async def _store_down(request: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"type": "about:blank", "title": "Service Unavailable",
                             "status": 503, "detail": str(exc)}, status_code=503,
                            headers={"Retry-After": str(exc.retry_after_s)},
                            media_type="application/problem+json")

    @app.exception_handler(LiverecError)
    async def _liverec(request: Request, exc: LiverecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (logged)"}, status_code=500)


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
                  description="Real-time sequential recommendations: fresh per-user state, "
                              "durable events, cached and micro-batched inference, hot-swap.")
    app.state.settings = settings
    app.state.metrics = Metrics()
    for module in (health, recommend, events, users, items, explain, admin):
        app.include_router(module.router)
    add_dashboard(app)
    add_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    if settings.cache and not settings.naive:
        app.add_middleware(CachedAnswerMiddleware, state=app.state)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory (``--factory``): settings from ``LIVEREC_SERVE_*`` in each worker."""
    return create_app()
