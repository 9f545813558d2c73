"""POST /v1/items (add or update), GET /v1/items/{id}, GET /v1/items/{id}/similar."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool

from liverec.serve.deps import EngineDep, check_cap
from liverec.serve.schemas import (
    ItemAddOut,
    ItemIn,
    ItemOut,
    ScoredItem,
    SimilarOut,
    problem_responses,
)

router = APIRouter(prefix="/v1", tags=["items"])
ItemId = Annotated[str, Path(min_length=1, max_length=256)]
UNKNOWN = problem_responses(404, s404="unknown item id")


@router.post("/items", response_model=ItemAddOut, responses=problem_responses(503))
async def add_item(engine: EngineDep, item: ItemIn) -> ItemAddOut:
    """Add an item (recommendable at once, no retraining) or update a known item's details."""
    idx, source, created = await run_in_threadpool(engine.add_item, item.model_dump())
    return ItemAddOut(item_id=item.item_id, index=idx, created=created, vector_source=source)


def _index(engine, item_id: str) -> int:
    idx = engine.handle.lookup.get(item_id)
    if idx is None:
        raise HTTPException(404, f"unknown item id {item_id!r}")
    return idx


@router.get("/items/{item_id}", response_model=ItemOut, responses=UNKNOWN)
async def get_item(engine: EngineDep, item_id: ItemId) -> ItemOut:
    """An item's details and training popularity."""
    h = engine.handle
    c = h.catalogue[_index(engine, item_id)]
    return ItemOut(item_id=item_id, title=c.get("title", ""), text=c.get("text", ""),
                   attributes=c.get("attributes", []), popularity=c.get("popularity", 0),
                   source="added" if c.get("added") else "model")


@router.get("/items/{item_id}/similar", response_model=SimilarOut, responses=UNKNOWN)
async def similar_items(engine: EngineDep, item_id: ItemId,
                        k: Annotated[int, Query(ge=1)] = 10) -> SimilarOut:
    """Items whose output vectors have the largest inner product with this item's."""
    check_cap("k", k, engine.settings.max_k, ("query", "k"))
    h = engine.handle
    idx = _index(engine, item_id)
    q = h.table[idx : idx + 1]  # (1, D)
    ids, scores = await run_in_threadpool(h.retriever.search, q, k, [[idx]])
    items = [ScoredItem(item_id=h.ids[i], score=float(s))
             for i, s in zip(ids[0].tolist(), scores[0].tolist()) if i >= 0]
    return SimilarOut(item_id=item_id, items=items, model_version=h.version)
