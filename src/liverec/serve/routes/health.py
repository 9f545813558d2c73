"""GET /healthz (liveness), GET /readyz (model and store answer), GET /metrics; drain on SIGTERM.

``/healthz`` never touches the store or the model: it answers while Redis is down or frozen.
``/readyz`` is what a load balancer checks: 503 (with ``Retry-After``) while the store does not
answer, while no model is loaded, and while the process drains before exiting.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from liverec.serve.problems import problem_response
from liverec.serve.schemas import Health, Ready, problem_responses

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])
_OK = b'{"status":"ok"}'


def _not_ready(detail: str, kind: str | None = None) -> Response:
    return problem_response(503, detail, kind, headers={"Retry-After": "1"})


@router.get("/healthz", response_model=Health)
async def healthz() -> Response:
    """Liveness: the process answers (does nothing else; never waits on the store)."""
    return Response(_OK, media_type="application/json")


@router.get("/readyz", response_model=Ready,
            responses=problem_responses(503, s503="not ready: no model loaded or the store "
                                                  "does not answer"))
async def readyz(request: Request):
    """Readiness: a model is loaded, the store answers and the process is not draining."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        return _not_ready("model not loaded")
    if getattr(request.app.state, "draining", False):
        return _not_ready("draining: shutting down")
    try:
        await engine.store.aping()
        stats = await run_in_threadpool(engine.store.stats)
    except Exception as exc:  # any store failure means not ready (logged, not answered)
        log.warning("readyz: store not reachable: %s", exc)
        return _not_ready("store not reachable", "store-unavailable")
    return Ready(status="ready", model_version=engine.handle.version, **stats)


@router.get("/metrics", response_class=Response, responses={200: {
    "content": {"text/plain": {"schema": {"type": "string"}}},
    "description": "Prometheus text format"}})
async def metrics(request: Request) -> Response:
    """Prometheus text format (the store's figures read NaN while it is down, never a 500)."""
    data = await run_in_threadpool(generate_latest, request.app.state.metrics.registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)


def install_drain(app: FastAPI, drain_s: float) -> None:
    """On SIGTERM, answer ``/readyz`` 503 for ``drain_s`` seconds (load balancers take the
    process out of rotation while it still serves), then let the server shut down (it stops
    accepting and finishes in-flight requests). No-op when ``drain_s`` is 0 or when not on
    the main thread (e.g. under a test client). Call from the lifespan, inside the server's
    own signal handling."""
    if drain_s <= 0 or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return
    loop = asyncio.get_running_loop()

    def on_term(sig, frame) -> None:
        if getattr(app.state, "draining", False):
            previous(sig, frame)
            return
        app.state.draining = True
        log.info("SIGTERM: draining for %.1f s before shutting down", drain_s)
        loop.call_soon_threadsafe(loop.call_later, drain_s, previous, sig, frame)

    signal.signal(signal.SIGTERM, on_term)
