"""POST /admin/reload: hot-swap the model (a new run directory, or the current one again)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Body, HTTPException

from liverec.serve.deps import EngineDep, WriteAccess
from liverec.serve.schemas import ReloadIn, ReloadOut

log = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=WriteAccess)


@router.post("/reload", response_model=ReloadOut,
             responses={409: {"description": "refused: the old model keeps serving"}})
async def reload(engine: EngineDep, req: ReloadIn | None = Body(None)) -> ReloadOut:
    """Load the new model beside the old one and swap atomically; in-flight requests finish
    on the old one. A broken or incompatible run directory is refused (409) and nothing
    changes."""
    try:
        old, new = await engine.reload(req.run_dir if req else None,
                                       req.allow_catalogue_change if req else False)
    except Exception as exc:  # any failure to load (e.g. safetensors' own error) refuses it
        log.warning("reload refused: %s", exc)
        raise HTTPException(409, f"reload refused, still serving "
                                 f"{engine.handle.version}: {exc}") from None
    return ReloadOut(previous_version=old, model_version=new)
