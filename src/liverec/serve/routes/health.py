"""GET /healthz (liveness), GET /readyz (model and store answer), GET /metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from liverec.serve.problems import problem_response
from liverec.serve.schemas import Health, Ready, problem_responses

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])
_OK = b'{"status":"ok"}'


@router.get("/healthz", response_model=Health)
async def healthz() -> Response:
    """Liveness: the process answers (does nothing else)."""
    return Response(_OK, media_type="application/json")


@router.get("/readyz", response_model=Ready,
            responses=problem_responses(503, s503="not ready: no model loaded or the store "
                                                  "does not answer"))
async def readyz(request: Request):
    """Readiness: a model is loaded and the store answers."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        return problem_response(503, "model not loaded", headers={"Retry-After": "1"})
    try:
        stats = await run_in_threadpool(engine.store.stats)
    except Exception as exc:  # any store failure means not ready (the reason is logged)
        log.warning("readyz: store not reachable: %s", exc)
        return problem_response(503, "store not reachable", "store-unavailable",
                                headers={"Retry-After": "1"})
    return Ready(status="ready", model_version=engine.handle.version, **stats)


@router.get("/metrics", response_class=Response, responses={200: {
    "content": {"text/plain": {"schema": {"type": "string"}}},
    "description": "Prometheus text format"}})
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    data = await run_in_threadpool(generate_latest, request.app.state.metrics.registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
