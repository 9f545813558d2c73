"""POST /admin/reload: hot-swap the model (a run directory inside the models root, or the
current one again)."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, Body
from starlette.responses import Response

from liverec.errors import UnservableModelError
from liverec.serve.deps import EngineDep, SettingsDep
from liverec.serve.errors import ReloadRefused, StoreUnavailable
from liverec.serve.problems import problem_response, scrub_paths
from liverec.serve.schemas import ReloadIn, ReloadOut, problem_responses

log = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", tags=["admin"])


class OutsideRoot(Exception):
    """The requested run directory resolves outside the models root."""


def resolve_run(requested: str, root: Path) -> Path:
    """The run directory ``requested`` names, resolved (symlinks followed) inside ``root``.

    A relative path is taken from ``root``; an absolute one must lie inside it.

    Raises:
        OutsideRoot: it resolves outside ``root`` (``..``, another absolute path, a symlink).
        ValueError: it cannot be a path (e.g. a NUL byte) or cannot be resolved.
    """
    try:
        p = Path(requested)
        target = (p if p.is_absolute() else root / p).resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops, unreadable components
        raise ValueError(str(exc)) from None
    if not target.is_relative_to(root):
        raise OutsideRoot(requested)
    return target


def _shown(requested: str | None) -> str:
    if requested is None:
        return "the current run"
    return repr(requested if len(requested) <= 200 else requested[:200] + "...")


@router.post("/reload", response_model=ReloadOut, responses=problem_responses(
    403, 409, 503, s403="the run directory is outside the models root (or the key's scope "
                        "is too low)",
    s409="refused: the run is not found or not a valid, compatible run; the old model keeps "
         "serving"))
async def reload(engine: EngineDep, settings: SettingsDep,
                 req: ReloadIn | None = Body(None)) -> ReloadOut | Response:
    """Load the new model beside the old one and swap atomically; in-flight requests finish
    on the old one. ``run_dir`` is relative to the models root (``--models-root``; default the
    served run's parent directory), or absolute inside it; anything resolving outside it is
    refused (403). A missing, broken or incompatible run is refused (409) and nothing changes.
    Answers never name the server's directories."""
    requested = req.run_dir if req else None
    current = engine.handle.version
    target = None
    try:
        if requested is not None:
            target = resolve_run(requested, settings.reload_root())
        old, new = await engine.reload(target, req.allow_catalogue_change if req else False)
    except OutsideRoot:
        return problem_response(403, f"run {_shown(requested)} is outside the models root: "
                                     f"reload takes runs inside it only; still serving "
                                     f"{current}", "outside-models-root")
    except StoreUnavailable:
        raise
    except Exception as exc:  # any failure to load (e.g. safetensors' own error) refuses it
        log.warning("reload of %.300s refused: %.300s", target or requested, exc)
        # the service's own refusals are worded for clients; other failures may name files
        why = (f" ({scrub_paths(str(exc))})"
               if isinstance(exc, (UnservableModelError, ReloadRefused)) else "")
        return problem_response(409, f"reload refused: run {_shown(requested)} not found or "
                                     f"invalid{why}; still serving {current}",
                                "reload-refused")
    return ReloadOut(previous_version=old, model_version=new)
