"""Items: add or update (POST), change some fields (PATCH), details, similar items.

Any item id accepted on write can be read back: in the path (``/v1/items/{item_id}``, '/',
spaces and non-ASCII included, percent-encoded or not) or, unambiguous for ids that end in
``/similar``, as a query parameter (``GET /v1/items?item_id=...``,
``GET /v1/similar?item_id=...``).

Flags: ``unsafe: true`` or ``available: false`` (POST or PATCH) hide an item from every answer
at once (recommendations, cached ones included, similar items, explanations); the item's own
details stay readable here, with ``hidden``. Similar items also follow the deployment's deny
and allow lists and attribute filters.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool

from liverec.serve.deps import EngineDep, check_cap
from liverec.serve.schemas import (
    ItemAddOut,
    ItemIn,
    ItemOut,
    ItemPatch,
    ScoredItem,
    SimilarOut,
    problem_responses,
)

router = APIRouter(prefix="/v1", tags=["items"])
ItemId = Annotated[str, Path(min_length=1, max_length=256)]
ItemIdQuery = Annotated[str, Query(min_length=1, max_length=256)]
UNKNOWN = problem_responses(404, s404="unknown item id")


@router.post("/items", response_model=ItemAddOut, responses=problem_responses(503))
async def add_item(engine: EngineDep, item: ItemIn) -> ItemAddOut:
    """Add an item (recommendable at once, no retraining) or update a known item's details.

    For a known item only the fields the body names change (title, text, attributes); the
    others keep their values, as with PATCH.
    """
    fields = item.model_dump(exclude_unset=True) | {"item_id": item.item_id}
    idx, source, created = await run_in_threadpool(engine.add_item, fields)
    return ItemAddOut(item_id=item.item_id, index=idx, created=created, vector_source=source)


@router.patch("/items/{item_id}", response_model=ItemOut,
              responses=problem_responses(404, 503, s404="unknown item id"))
async def patch_item(engine: EngineDep, item_id: ItemId, patch: ItemPatch) -> ItemOut:
    """Change the named fields of a known item; the others keep their values. An id with a
    '/' is changed through ``PATCH /v1/items?item_id=...``."""
    return await _patch(engine, item_id, patch)


@router.patch("/items", response_model=ItemOut,
              responses=problem_responses(404, 503, s404="unknown item id"))
async def patch_item_by_query(engine: EngineDep, item_id: ItemIdQuery,
                              patch: ItemPatch) -> ItemOut:
    """Change the named fields of a known item (the id as a query parameter, for any id)."""
    return await _patch(engine, item_id, patch)


async def _patch(engine, item_id: str, patch: ItemPatch) -> ItemOut:
    _index(engine, item_id)
    fields = {k: v for k, v in patch.model_dump(exclude_unset=True).items() if v is not None}
    await run_in_threadpool(engine.add_item, fields | {"item_id": item_id})
    return _item(engine, item_id)


def _index(engine, item_id: str) -> int:
    idx = engine.handle.lookup.get(item_id)
    if idx is None:
        raise HTTPException(404, f"unknown item id {item_id!r}")
    return idx


def _item(engine, item_id: str) -> ItemOut:
    idx = _index(engine, item_id)
    c = engine.handle.catalogue[idx]
    hidden = not engine.rerank(engine.handle).current().visible(np.array([idx]))[0]
    return ItemOut(item_id=item_id, title=c.get("title", ""), text=c.get("text", ""),
                   attributes=c.get("attributes", []), popularity=c.get("popularity", 0),
                   source="added" if c.get("added") else "model",
                   unsafe=bool(c.get("unsafe")), available=c.get("available") is not False,
                   hidden=bool(hidden))


def _similar_rows(h, view, idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    q = h.table[idx : idx + 1]  # (1, D)
    ex = np.concatenate([[idx], view.default_hidden()])  # the deployment's hard rules
    ids, scores = h.retriever.search(q, k, [ex])
    ids, scores = ids[0], scores[0]
    keep = ids >= 0
    keep[keep] = view.visible(ids[keep])  # flags read again: one set meanwhile
    return ids[keep], scores[keep]


async def _similar(engine, item_id: str, k: int) -> SimilarOut:
    check_cap("k", k, engine.settings.max_k, ("query", "k"))
    h = engine.handle
    idx = _index(engine, item_id)
    view = engine.rerank(h).current()
    ids, scores = await run_in_threadpool(_similar_rows, h, view, idx, k)
    items = [ScoredItem(item_id=h.ids[i], score=float(s))
             for i, s in zip(ids.tolist(), scores.tolist())]
    return SimilarOut(item_id=item_id, items=items, model_version=h.version)


@router.get("/items", response_model=ItemOut, responses=UNKNOWN)
async def get_item_by_query(engine: EngineDep, item_id: ItemIdQuery) -> ItemOut:
    """An item's details (the id as a query parameter)."""
    return _item(engine, item_id)


@router.get("/similar", response_model=SimilarOut, responses=UNKNOWN)
async def similar_by_query(engine: EngineDep, item_id: ItemIdQuery,
                           k: Annotated[int, Query(ge=1)] = 10) -> SimilarOut:
    """Items most similar to one (the id as a query parameter)."""
    return await _similar(engine, item_id, k)


@router.get("/items/{item_id:anyid}/similar", response_model=SimilarOut, responses=UNKNOWN)
async def similar_items(engine: EngineDep, item_id: ItemId,
                        k: Annotated[int, Query(ge=1)] = 10) -> SimilarOut:
    """Items whose output vectors have the largest inner product with this item's."""
    return await _similar(engine, item_id, k)


@router.get("/items/{item_id:anyid}", response_model=ItemOut, responses=UNKNOWN)
async def get_item(engine: EngineDep, item_id: ItemId) -> ItemOut:
    """An item's details and training popularity."""
    return _item(engine, item_id)
