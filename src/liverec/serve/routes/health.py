"""GET /healthz (liveness), GET /readyz (model and store answer), GET /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from liverec.serve.schemas import Health, Ready

router = APIRouter(tags=["health"])
_OK = b'{"status":"ok"}'


@router.get("/healthz", response_model=Health)
async def healthz() -> Response:
    """Liveness: the process answers (does nothing else)."""
    return Response(_OK, media_type="application/json")


@router.get("/readyz", response_model=Ready, responses={503: {"description": "not ready"}})
async def readyz(request: Request):
    """Readiness: a model is loaded and the store answers."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        return JSONResponse({"detail": "model not loaded"}, status_code=503)
    try:
        stats = await run_in_threadpool(engine.store.stats)
    except Exception as exc:  # any store failure means not ready, with the reason
        return JSONResponse({"detail": f"store not reachable: {exc}"}, status_code=503)
    return Ready(status="ready", model_version=engine.handle.version, **stats)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    data = await run_in_threadpool(generate_latest, request.app.state.metrics.registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
