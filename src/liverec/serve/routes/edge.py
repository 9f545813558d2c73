"""The web bundle of the served run (GET /edge/...) and the catalogue's additions since it was
built (GET /v1/edge/items), for the browser client in ``clients/js`` and the dashboard's
"on this device" mode.

The bundle is the folder ``RUN_DIR/web`` that ``liverec export-web RUN_DIR`` writes; its files
go out as they are, gzip-encoded (the bundle's ``.gz`` copies) when the browser accepts it.
Neither route reads anything personal: they are open like the page itself.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse

from liverec.serve.deps import EngineDep
from liverec.serve.schemas import EdgeItemsOut, problem_responses

BUNDLE_DIR = "web"  # RUN_DIR/web, export-web's default --out
MAX_ADDED = 1000
MEDIA = {".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript",
         ".json": "application/json", ".onnx": "application/octet-stream"}

router = APIRouter(prefix="/v1", tags=["edge"])
files = APIRouter()


def bundle_path(run_dir: Path, path: str) -> Path:
    """The bundle file ``path`` names (404 outside the bundle, for a .gz name or a folder)."""
    root = (Path(run_dir) / BUNDLE_DIR).resolve()
    if not (root / "manifest.json").is_file():
        raise HTTPException(404, f"the served run {Path(run_dir).name} has no web bundle "
                                 f"(liverec export-web RUN_DIR writes RUN_DIR/{BUNDLE_DIR})")
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file() or target.suffix == ".gz":
        raise HTTPException(404, f"no file {path!r} in the web bundle")
    return target


@files.get("/edge/{path:path}", include_in_schema=False)
async def bundle_file(request: Request, engine: EngineDep, path: str) -> FileResponse:
    """A file of the served run's web bundle (the manifest at ``/edge/manifest.json``)."""
    target = bundle_path(engine.handle.run_dir, path)
    media = MEDIA.get(target.suffix) or mimetypes.guess_type(target.name)[0] \
        or "application/octet-stream"
    headers = {"Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    packed = target.with_name(target.name + ".gz")
    if "gzip" in request.headers.get("accept-encoding", "") and packed.is_file():
        return FileResponse(packed, media_type=media,
                            headers={**headers, "Content-Encoding": "gzip"})
    return FileResponse(target, media_type=media, headers=headers)


@router.get("/edge/items", response_model=EdgeItemsOut, responses=problem_responses(503))
async def added_items(engine: EngineDep, since: Annotated[int, Query(ge=0)] = 0,
                      limit: Annotated[int, Query(ge=1, le=MAX_ADDED)] = 500) -> dict:
    """Items added to the catalogue after training (rows past the model's items) from row
    ``since`` on, with their vectors in the model's scoring space: a browser holding a bundle
    of this model version appends them instead of downloading the bundle again."""
    h = engine.handle
    table = h.table  # a snapshot: an upsert swaps in a longer view, never changes these rows
    n = min(len(table), len(h.ids), len(h.catalogue))
    start = max(since, h.n_model + 1)
    items = [{"index": i, "item_id": h.ids[i], "title": h.catalogue[i].get("title", ""),
              "vector": table[i].tolist()} for i in range(start, min(n, start + limit))]
    return {"model_version": h.version, "n_model": h.n_model, "n_rows": n, "items": items}
