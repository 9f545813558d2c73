"""GET /v1/explain: why an item is (or would be) recommended to a stored user."""

from __future__ import annotations

import asyncio
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool

from liverec.explain import ExplainError
from liverec.serve.deps import EngineDep
from liverec.serve.problems import Invalid
from liverec.serve.schemas import ExplainOut, problem_responses

router = APIRouter(prefix="/v1", tags=["explain"])
Id = Annotated[str, Query(min_length=1, max_length=256)]


@router.get("/explain", response_model=ExplainOut,
            responses=problem_responses(404, 503, s404="unknown user or item"))
async def explain(engine: EngineDep, user_id: Id, item_id: Id,
                  ig: Annotated[bool, Query(description="add integrated gradients")] = False,
                  attention: Annotated[bool, Query(description="add attention weights (a "
                                                   "secondary view)")] = False) -> ExplainOut:
    """Which history items drove the item's score (leave-one-out deletion, one batched forward
    pass), the attributes and similar items it shares with the history, and a one-line reason.
    422 when the user's history has no item the model knows, or when the item is hidden
    (flagged unsafe or unavailable, or denied): it is never recommended. Hidden history items
    are left out of what the explanation lists and names (their effect stays in the score).
    """
    handle = engine.handle
    item = handle.lookup.get(item_id)
    if item is None:
        raise HTTPException(404, f"unknown item id {item_id!r}")
    view = engine.rerank(handle).current()
    if view.never_shown(np.array([item]))[0]:
        raise Invalid(("query", "item_id"), f"item {item_id!r} is hidden (flagged or denied): "
                      "it is never recommended, so there is nothing to explain", "hidden_item")
    history, version = await run_in_threadpool(engine.store.state, user_id)
    if not version:
        raise HTTPException(404, f"unknown user {user_id!r}: no events stored")
    idx = handle.encode([i for i, _ in history])[0]
    loop = asyncio.get_running_loop()
    try:
        (e,) = await loop.run_in_executor(engine.executor, lambda: engine.explainer(
            handle).explain_indices(idx, np.array([item]), ig=ig, attention=attention))
    except ExplainError as exc:
        raise Invalid(("query", "user_id"), str(exc), "no_known_item") from None
    return ExplainOut(user_id=user_id, model_version=handle.version, events_seen=version,
                      **view.shown_explanation(e))
