"""The dashboard: static page at /ui, live figures (GET /v1/stats), model card (GET /v1/model),
the re-ranking rules in effect (GET /v1/rerank); the web bundle for its "on this device" mode
(routes/edge.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from liverec.serve.deps import EngineDep
from liverec.serve.routes import edge
from liverec.serve.schemas import ModelCardOut, RerankRulesOut, StatsOut, problem_responses
from liverec.serve.stats import StatsWindow

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["dashboard"])
WEB = Path(__file__).resolve().parent.parent / "web"
CURVE = "training_curve.png"
RECENT_USERS = 12
MODEL_FIELDS = ("name", "item_repr", "n_items", "d_model", "n_layers", "n_heads", "max_len",
                "loss")
VARIANT_FIELDS = ("ndcg@20", "ndcg@20_rel", "hr@20", "weight_bytes", "smaller_x", "p50_ms",
                  "speedup_p50_x")


def add_dashboard(app: FastAPI) -> None:
    """Mount the page at /ui and add the routes it reads."""
    app.state.stats = StatsWindow(app.state.metrics.registry)
    app.include_router(router)
    app.include_router(edge.router)
    app.include_router(edge.files)  # /edge/...: the served run's web bundle
    app.mount("/ui", StaticFiles(directory=WEB, html=True), name="ui")


@router.get("/stats", response_model=StatsOut, responses=problem_responses(503))
async def stats(request: Request, engine: EngineDep) -> dict:
    """Requests/s, latency p50/p99 (all API routes; recommend) and the cache hit rate over the
    last ~10 s (``window``) and since the start (``total``), from the service's own metrics;
    the users of this process's latest events, newest first (who was active: with keys, a
    read key)."""
    out = await run_in_threadpool(request.app.state.stats.read)
    store = await run_in_threadpool(engine.store.stats)
    recent = list(dict.fromkeys(reversed(engine.recent_users)))[:RECENT_USERS]
    return {**out, "model_version": engine.handle.version, **store, "recent_users": recent}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("model card: cannot read %s: %s", path, exc)
        return None


def compression_rows(run_dir: Path) -> dict | None:
    """The trade-off rows of a ``liverec compress`` report made from ``run_dir``, if any
    (looked for in the run directory, its sub-folders and its sibling folders)."""
    run_dir = run_dir.resolve()
    candidates = [run_dir / "compression.json", *sorted(run_dir.glob("*/compression.json")),
                  *sorted(run_dir.parent.glob("*/compression.json"))]
    for path in candidates:
        report = _read_json(path) if path.is_file() else None
        rows = (report or {}).get("variants") or {}
        if any(Path(r.get("run_dir", "")).resolve() == run_dir for r in rows.values()):
            return {n: {k: r.get(k) for k in VARIANT_FIELDS} for n, r in rows.items()}
    return None


def model_card(run_dir: Path) -> dict:
    """What the dashboard shows about the served run: settings, metrics, variants, curve."""
    config = _read_json(run_dir / "config.json") or {}
    metrics = _read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() \
        else None
    card = {"run": run_dir.name,
            "model": {k: v for k, v in (config.get("model") or {}).items() if k in MODEL_FIELDS},
            "data": (config.get("data") or {}).get("source"),
            "metrics": None, "variants": compression_rows(run_dir),
            "training_curve": f"/v1/model/{CURVE}" if (run_dir / CURVE).is_file() else None}
    if metrics:
        card["metrics"] = {"protocol": metrics.get("protocol"), "data": metrics.get("data"),
                           "test": (metrics.get("model") or {}).get("test"),
                           "baselines": metrics.get("baselines") or {},
                           "training": metrics.get("training")}
    return card


@router.get("/rerank", response_model=RerankRulesOut)
async def rerank_rules(engine: EngineDep) -> dict:
    """The deployment's re-ranking rules: which are on, which a request may switch off
    (``rules_off`` on /v1/recommend), their settings in words, and how many items are hidden
    (flagged or denied) now."""
    view = await run_in_threadpool(engine.rerank(engine.handle).current)
    return await run_in_threadpool(view.describe)


@router.get("/model", response_model=ModelCardOut)
async def model(engine: EngineDep) -> dict:
    """The served model's card (from its run directory)."""
    handle = engine.handle
    card = await run_in_threadpool(model_card, handle.run_dir)
    return {"model_version": handle.version, **card}


@router.get(f"/model/{CURVE}", response_class=FileResponse, responses={
    200: {"content": {"image/png": {}}, "description": "the training curve (PNG)"},
    **problem_responses(404, s404="this run has no training curve")})
async def training_curve(engine: EngineDep) -> FileResponse:
    """The training curve image of the served run."""
    path = engine.handle.run_dir / CURVE
    if not path.is_file():
        raise HTTPException(404, f"this run has no {CURVE}")
    return FileResponse(path, media_type="image/png")
