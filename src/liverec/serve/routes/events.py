"""POST /v1/events: one event or a list, acknowledged once durably stored."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from liverec.serve.deps import EngineDep, check_cap
from liverec.serve.engine import EventTimeError
from liverec.serve.problems import Invalid
from liverec.serve.schemas import EventAck, EventIn, EventsOut, problem_responses

router = APIRouter(prefix="/v1", tags=["events"])


@router.post("/events", response_model=EventsOut, responses=problem_responses(
    409, 503, s409="an event_id already stored with another payload (none stored)"))
async def post_events(engine: EngineDep, body: EventIn | list[EventIn]) -> EventsOut:
    """Store events; a repeated ``event_id`` with the same payload is stored once, with another
    payload it is a 409; unknown items are a 422 (none stored in either case).

    A repeated ``event_id`` with the same payload (user, item, type, timestamp if given) is a
    duplicate, stored once; with another payload it is a 409 and nothing is stored. A user's
    history is ordered by ``timestamp`` (a late event is inserted where it belongs); no
    timestamp (or 0) means the server's time, and one more than a day ahead of the server's
    clock is a 422. The answer comes only after the events are in the event log, and the next
    recommendation for each user is computed from a history that includes them.
    """
    events = body if isinstance(body, list) else [body]
    check_cap("events in one request", len(events), engine.settings.max_events, ("body",))
    rows = [e.model_dump() | {"event_id": e.event_id or uuid.uuid4().hex} for e in events]
    try:
        acks = await run_in_threadpool(engine.add_events, rows)
    except EventTimeError as exc:  # depends on the server's clock: not a shape the schema has
        raise Invalid(("body", "timestamp"), str(exc), "timestamp_in_future") from None
    stored = sum(new for _, new in acks)
    return EventsOut(stored=stored, duplicates=len(acks) - stored,
                     events=[EventAck(event_id=i, status="stored" if new else "duplicate")
                             for i, new in acks])
