"""GET /v1/recommend (a stored user) and POST /v1/recommend (an anonymous history).

Both take the request's re-ranking overrides (``rerank``, ``rules_off``, ``mmr_lambda``, ...;
liverec.serve.rerank_config) and answer which rules were applied (``rerank``); both take a
free-text ``query`` too (liverec.serve.query: text similarity, blended with the history's
scores, then the same re-ranking).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from liverec.serve.deps import EngineDep, attribute_filter, check_cap
from liverec.serve.problems import Invalid
from liverec.serve.rerank_config import RerankRequest, SwitchableRule
from liverec.serve.schemas import HistoryRecommendIn, RecommendOut, RerankIn, problem_responses
from liverec.text.query import QueryError, check_query

router = APIRouter(prefix="/v1", tags=["recommend"])
_FIELDS = RerankIn.model_fields


def _weight(name: str):
    return Query(ge=0, le=1, allow_inf_nan=False, description=_FIELDS[name].description)



class JSONBytes(JSONResponse):
    """A JSON answer the engine already serialised (bytes pass through unchanged)."""

    def render(self, content) -> bytes:
        return content if isinstance(content, bytes) else super().render(content)


@router.get("/recommend", response_model=RecommendOut, response_class=JSONBytes,
            responses=problem_responses(503))
async def recommend_user(
    engine: EngineDep,
    request: Request,
    user_id: Annotated[str, Query(min_length=1, max_length=256)],
    k: Annotated[int, Query(ge=1)] = 10,
    exclude: Annotated[list[str] | None, Query(description="item ids never returned")] = None,
    exclude_seen: Annotated[bool | None, Query(description=(
        "leave the user's history items out; default: as the served run's protocol (out, "
        "unless the run is in the repeat-aware mode)"))] = None,
    category: Annotated[str | None, Query(max_length=256)] = None,
    attribute: Annotated[str | None, Query(max_length=256)] = None,
    explain: Annotated[bool, Query(description="add each item's title and reason")] = False,
    rerank: Annotated[bool, Query(description=_FIELDS["rerank"].description)] = True,
    rules_off: Annotated[list[SwitchableRule] | None, Query(
        max_length=16, description=_FIELDS["rules_off"].description)] = None,
    mmr_lambda: Annotated[float | None, _weight("mmr_lambda")] = None,
    calibration_lambda: Annotated[float | None, _weight("calibration_lambda")] = None,
    exposure_penalty: Annotated[float | None, _weight("exposure_penalty")] = None,
    max_head_share: Annotated[float | None, _weight("max_head_share")] = None,
    max_per_category: Annotated[int | None, Query(
        ge=1, le=10_000, description=_FIELDS["max_per_category"].description)] = None,
    query: Annotated[str | None, Query(min_length=1, max_length=1000, description=(
        "free text: items scored by text similarity, blended with the user's history"))] = None,
) -> Response:
    """Top-k for a user from their stored events (popular items for an unknown user), after
    the deployment's re-ranking rules (overridden by this request's).

    The answer reveals the user's tastes: with keys, it needs a read key."""
    s = engine.settings
    check_cap("k", k, s.max_k, ("query", "k"))
    if exclude:
        check_cap("exclude", len(exclude), s.max_exclude, ("query", "exclude"))
    overrides = RerankRequest.of(
        {"rerank": rerank, "rules_off": rules_off, "mmr_lambda": mmr_lambda,
         "calibration_lambda": calibration_lambda, "exposure_penalty": exposure_penalty,
         "max_head_share": max_head_share, "max_per_category": max_per_category}, "query")
    if query is not None:  # not cached: computed for each request (serve/query.py)
        return JSONBytes(await engine.query_scorer.recommend(
            engine, _query(query, "query"), None, user_id, k, exclude or (), exclude_seen,
            attribute_filter(category, attribute), False, explain, overrides))
    body = await engine.recommend_user(user_id, k, exclude or (), exclude_seen,
                                       attribute_filter(category, attribute),
                                       key=request.scope.get("query_string", b""),
                                       explain=explain, rerank=overrides)
    return JSONBytes(body)


@router.post("/recommend", response_model=RecommendOut, response_class=JSONBytes,
             responses=problem_responses(400))
async def recommend_history(engine: EngineDep, req: HistoryRecommendIn) -> Response:
    """Top-k for an anonymous session's history and/or a free-text ``query`` (open: it reveals
    nothing stored); unknown item ids are a 422 naming them."""
    s = engine.settings
    check_cap("k", req.k, s.max_k, ("body", "k"))
    check_cap("history length", len(req.history), s.max_history, ("body", "history"))
    check_cap("exclude", len(req.exclude), s.max_exclude, ("body", "exclude"))
    overrides = RerankRequest.of(req.model_dump(), "body")
    if req.query is not None:
        return JSONBytes(await engine.query_scorer.recommend(
            engine, _query(req.query, "body"), req.history, None, req.k, req.exclude,
            req.exclude_seen, attribute_filter(req.category, req.attribute, "body"),
            req.unknown == "ignore", req.explain, overrides))
    body = await engine.recommend_history(req.history, req.k, req.exclude, req.exclude_seen,
                                          attribute_filter(req.category, req.attribute,
                                                           "body"),
                                          req.unknown == "ignore", req.explain, overrides)
    return JSONBytes(body)


def _query(text: str, where: str) -> str:
    """The checked query, or a 422 naming it (the schema already bounds its length, so what
    is left is a query without a letter or digit: a judgement no schema pattern expresses the
    same way in every regex dialect)."""
    try:
        return check_query(text)
    except QueryError as exc:
        raise Invalid((where, "query"), str(exc), "no_query_word") from None
