"""Request and response models of the HTTP API (separate from the engine's internal types).

Requests forbid unknown fields; caps that depend on settings (k, history, batch size) are
checked in the routes with a message naming the limit.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from liverec.serve.rerank_config import RuleName, SwitchableRule

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
# JSON Schema's integer: 3 and 3.0, never "3" or true (request bodies are strict)
JsonInt = Annotated[int, BeforeValidator(
    lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)]


class _In(BaseModel):
    """Request bodies: unknown fields and values of another JSON type (``true`` for a number,
    ``"5"`` for an integer) are refused, as the published schema says."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ScoredItem(BaseModel):
    item_id: str
    score: float


class RecommendedItem(ScoredItem):
    title: str | None = Field(None, description="with explain=true")
    reason: str | None = Field(None, description="with explain=true: why, in one line")


class RerankApplied(BaseModel):
    """The re-ranking rules that made this answer (the deployment's: ``GET /v1/rerank``)."""

    applied: list[RuleName] = Field(description="rules in effect, in the stage's order "
                                                "(flags always)")
    switched_off: list[RuleName] = Field(description="the deployment's rules this request "
                                                     "switched off")
    candidates: int = Field(ge=0, description="top-scored items the stage re-ranked (0: no "
                                              "stage; flags and the deny list apply at "
                                              "retrieval)")
    mmr_lambda: float | None = None
    calibration_lambda: float | None = None
    exposure_penalty: float | None = None
    max_head_share: float | None = None
    max_per_category: int | None = None


class RecommendOut(BaseModel):
    """Top-k items; ``fallback`` is "popular" when the user has no usable history."""

    user_id: str | None
    items: list[RecommendedItem]
    model_version: str
    fallback: Literal["popular"] | None = None
    events_seen: int = Field(description="events of the user (or history length) the answer "
                                         "was computed from")
    rerank: RerankApplied | None = None


_Weight = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
# the bounds first: after JsonInt's validator pydantic would publish them as ge/le, not
# minimum/maximum, inside the nullable union
PerCategory = Annotated[int, Field(ge=1, le=10_000), JsonInt.__metadata__[0]]


class RerankIn(_In):
    """A request's overrides of the deployment's re-ranking rules (the same names as query
    parameters of ``GET /v1/recommend``). Flagged and denied items are never shown."""

    rerank: bool = Field(True, description="false: switch off every rule a request may "
                                           "(all but flags, deny and the locked ones)")
    rules_off: list[SwitchableRule] = Field(default_factory=list, max_length=16,
                                            description="rules to switch off")
    mmr_lambda: _Weight | None = Field(None, description="diversity weight; switches MMR on "
                                                         "(0: off)")
    calibration_lambda: _Weight | None = Field(None, description="calibration weight (0: off)")
    exposure_penalty: _Weight | None = Field(None, description="log-popularity penalty")
    max_head_share: _Weight | None = Field(None, description="at most this share of a list "
                                                             "from the head items")
    max_per_category: PerCategory | None = Field(None, description="at most this many items "
                                                                   "per category")


class HistoryRecommendIn(RerankIn):
    """An anonymous session: item ids, oldest first."""

    history: list[Id] = Field(default_factory=list, description="item ids, oldest first")
    k: JsonInt = Field(10, ge=1)
    exclude: list[Id] = Field(default_factory=list)
    exclude_seen: bool | None = Field(
        None, description="leave the history's items out; default: as the served run's "
                          "protocol (out, unless the run is in the repeat-aware mode)")
    category: Annotated[str, StringConstraints(max_length=256)] | None = None
    attribute: Annotated[str, StringConstraints(max_length=256)] | None = None
    unknown: Literal["error", "ignore"] = Field(
        "error", description="unknown item ids: 422 naming them, or drop them")
    explain: bool = Field(False, description="add each item's title and a one-line reason")
    query: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = Field(
        None, description="free text: items are scored by text similarity to it, blended with "
                          "the history's scores when a history is given (z-scores, 0.7 on the "
                          "query)")


class EventIn(_In):
    user_id: Id
    item_id: Id
    event_id: Id | None = Field(None, description="idempotency key; generated when absent")
    timestamp: float | None = Field(None, ge=0, le=1e11, allow_inf_nan=False,
                                    description="seconds since the epoch; now when absent")
    type: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = "view"


class EventAck(BaseModel):
    event_id: str
    status: Literal["stored", "duplicate"]


class EventsOut(BaseModel):
    """Every listed event is durably stored (or was already)."""

    stored: int
    duplicates: int
    events: list[EventAck]


class HistoryEvent(BaseModel):
    item_id: str
    timestamp: float


class UserOut(BaseModel):
    user_id: str
    history: list[HistoryEvent] = Field(description="recent events, newest last")
    events_total: int


class ItemIn(_In):
    item_id: Id
    title: Annotated[str, StringConstraints(max_length=1000)] = ""
    text: Annotated[str, StringConstraints(max_length=20_000)] = ""
    attributes: list[Annotated[str, StringConstraints(max_length=256)]] = Field(
        default_factory=list, max_length=100)
    unsafe: bool | None = Field(None, description="true: never shown (absent: false for a "
                                                  "new item, unchanged for a known one)")
    available: bool | None = Field(None, description="false: never shown (absent: true for "
                                                     "a new item, unchanged for a known one)")


class ItemPatch(_In):
    """The fields to change; fields left out keep their values."""

    title: Annotated[str, StringConstraints(max_length=1000)] | None = None
    text: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    attributes: list[Annotated[str, StringConstraints(max_length=256)]] | None = Field(
        None, max_length=100)
    unsafe: bool | None = Field(None, description="true: never shown")
    available: bool | None = Field(None, description="false: never shown")


class ItemOut(BaseModel):
    item_id: str
    title: str = ""
    text: str = ""
    attributes: list[str] = []
    popularity: int = 0
    source: Literal["model", "added"]
    unsafe: bool = False
    available: bool = True
    hidden: bool = Field(False, description="no answer shows it (flagged unsafe or "
                                            "unavailable, or on the deployment's deny list)")


class ItemAddOut(BaseModel):
    item_id: str
    index: int
    created: bool
    vector_source: str = Field(description="model (known item), hook, attributes or "
                                           "catalogue-mean")


class SimilarOut(BaseModel):
    item_id: str
    items: list[ScoredItem]
    model_version: str


class ReloadIn(_In):
    run_dir: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        None, description="run directory to load; absent = reload the current one")
    allow_catalogue_change: bool = Field(
        False, description="swap even if item ids the stored histories use are missing from "
                           "the new run's catalogue or describe other items there")


class ReloadOut(BaseModel):
    previous_version: str
    model_version: str


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    model_version: str
    events: int
    users: int


class HistoryEffectOut(BaseModel):
    item_id: str
    title: str
    position: int = Field(description="index in the history window, oldest = 0")
    drop: float = Field(description="score with the full history minus the score without "
                                    "this item (positive: it raised the score)")
    similarity: float = Field(description="cosine of the two items' vectors")
    integrated_gradient: float | None = None
    attention: float | None = Field(None, description="last position's attention (a view, "
                                                      "not an attribution)")


class SharedAttributeOut(BaseModel):
    attribute: str
    label: str
    items: list[str] = Field(description="history items having it, most recent first")
    catalogue_share: float


class ExplainOut(BaseModel):
    """Why ``item_id`` scores as it does for the user's current history."""

    user_id: str
    item_id: str
    title: str
    score: float
    reason: str
    history: list[HistoryEffectOut]
    drivers: list[HistoryEffectOut]
    similar: list[HistoryEffectOut]
    shared_attributes: list[SharedAttributeOut]
    methods: list[str]
    model_version: str
    events_seen: int


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``); see liverec.serve.problems."""

    type: str = Field(description="about:blank, or urn:liverec:problem:<kind>")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="what went wrong, in one line")


class FieldError(BaseModel):
    loc: list[str] = Field(description="where: query/path/body, then the field")
    msg: str
    type: str


class ValidationProblem(Problem):
    """422: the request's values; ``errors`` lists each (unknown item ids also in
    ``unknown``)."""

    errors: list[FieldError] = Field(min_length=1)
    unknown: list[str] | None = Field(None, description="unknown item ids (at most 100)")


class ConflictProblem(Problem):
    event_ids: list[str] | None = Field(None, description="events already stored with "
                                                          "another payload")


_PROBLEMS = {
    400: (Problem, "a value the service cannot use"),
    401: (Problem, "no API key, or one the service does not know (the service has keys)"),
    403: (Problem, "the API key's scope is too low, or the run is outside the models root"),
    404: (Problem, "not found"),
    409: (ConflictProblem, "conflict: nothing changed"),
    413: (Problem, "request body too large"),
    422: (ValidationProblem, "invalid request values (each listed in errors)"),
    503: (Problem, "the event store is unavailable: retry after Retry-After seconds"),
}


def problem_responses(*codes: int, **descriptions: str) -> dict[int | str, dict]:
    """``responses=`` for a route: each code's problem model and description (override one
    with ``s404="unknown user"``)."""
    out: dict[int | str, dict] = {}
    for code in codes:
        model, text = _PROBLEMS[code]
        out[code] = {"model": model, "description": descriptions.get(f"s{code}", text)}
    return out


class WindowFigures(BaseModel):
    requests: int
    requests_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None


class StatsFigures(BaseModel):
    window_s: float | None = Field(description="span of the figures (None: since the start)")
    api: WindowFigures
    recommend: WindowFigures
    cache_lookups: int
    cache_hit_rate: float | None


class StatsOut(BaseModel):
    """The dashboard's live figures; ``recent_users`` are the users of this process's latest
    events, newest first (personal data: a read key when the service has keys)."""

    model_config = ConfigDict(extra="allow")  # the store's own counts pass through

    window: StatsFigures
    total: StatsFigures
    model_version: str
    events: int
    users: int
    recent_users: list[str]


class RuleOut(BaseModel):
    name: RuleName
    on: bool = Field(description="set by the deployment")
    locked: bool = Field(description="a request cannot switch it off")
    detail: str = Field(description="its settings, in words (lists as counts)")


class RerankRulesOut(BaseModel):
    """The deployment's re-ranking rules (requests override them on /v1/recommend)."""

    rules: list[RuleOut]
    candidates: int = Field(description="top-scored items the stage re-ranks to k")
    max_candidates: int = Field(description="a list the rules leave short re-ranks a wider "
                                            "pool, up to this many")
    hidden_items: int = Field(description="items no request can show now (flagged, denied, "
                                          "locked rules)")
    relevance: Literal["minmax", "probability"] = Field(
        description="how scores become relevance: min-max scaled, or the softmax over the "
                    "candidates")
    order: Literal["greedy", "score"] = Field(
        description="the final list's order: as the stage picked the items, or by score")


class ModelCardOut(BaseModel):
    """What the dashboard shows about the served run."""

    model_version: str
    run: str
    model: dict[str, Any]
    data: str | None
    metrics: dict[str, Any] | None
    variants: dict[str, dict[str, Any]] | None
    training_curve: str | None


class EdgeItem(BaseModel):
    index: int = Field(description="the item's row (past the model's items)")
    item_id: str
    title: str
    vector: list[float] = Field(description="the item's vector in the model's scoring space")


class EdgeItemsOut(BaseModel):
    """Items added after training, for a browser that holds this model version's bundle."""

    model_version: str
    n_model: int = Field(description="the model's own items (rows 1..n_model)")
    n_rows: int = Field(description="rows now, padding row 0 included")
    items: list[EdgeItem]


class EdgeHiddenOut(BaseModel):
    """Item ids no answer may hold (flagged ``unsafe``, not ``available``, or on the
    deployment's deny list), for a browser recommending on the device: it masks them like
    seen items. The same body as long as ``version`` (also the ETag) is the same."""

    model_version: str
    version: str = Field(description="sha1 of the sorted ids (16 hex digits); the ETag")
    n_hidden: int
    item_ids: list[str] = Field(description="sorted; denied ids the catalogue lacks included")
