"""GET /v1/users/{user_id}: the stored recent history."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Path
from fastapi.concurrency import run_in_threadpool

from liverec.serve.deps import EngineDep
from liverec.serve.schemas import HistoryEvent, UserOut, problem_responses

router = APIRouter(prefix="/v1", tags=["users"])


@router.get("/users/{user_id:anyid}", response_model=UserOut,
            responses=problem_responses(404, 503, s404="no events stored for this user"))
async def get_user(engine: EngineDep,
                   user_id: str = Path(min_length=1, max_length=256)) -> UserOut:
    """The user's recent events (item ids and timestamps, ordered by time, newest last).

    Any user id works in the path, '/' included (percent-encode it or not)."""
    history, version = await run_in_threadpool(engine.store.state, user_id)
    if not version:
        raise HTTPException(404, f"unknown user {user_id!r}: no events stored")
    return UserOut(user_id=user_id, events_total=version,
                   history=[HistoryEvent(item_id=i, timestamp=t) for i, t in history])
