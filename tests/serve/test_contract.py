"""The OpenAPI contract agrees with the answers (case openapi-contract): real response models,
one error shape (RFC 9457 problem details), every status documented."""

from __future__ import annotations

import pytest

from liverec.serve.errors import EventConflict, StoreUnavailable
from liverec.serve.problems import scrub_paths as _scrub
from liverec.serve.schemas import Problem, ValidationProblem

KEY = "contract-key-0123456789"
PROBLEM_JSON = "application/problem+json"


@pytest.fixture
def keyed(make_client):
    return make_client(api_key=KEY)


@pytest.fixture
def spec(keyed):
    return keyed.get("/openapi.json").json()


def test_recommend_200_is_its_real_object(spec):
    for method in ("get", "post"):
        ok = spec["paths"]["/v1/recommend"][method]["responses"]["200"]["content"]
        assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/RecommendOut"}
    props = spec["components"]["schemas"]["ValidationProblem"]["properties"]
    assert props["detail"]["type"] == "string" and props["errors"]["type"] == "array"
    assert "HTTPValidationError" not in spec["components"]["schemas"]


@pytest.mark.parametrize("method, path, codes", [
    ("post", "/v1/events", {200, 400, 401, 403, 409, 413, 422, 503}),
    ("post", "/v1/items", {200, 400, 401, 403, 413, 422, 503}),
    ("post", "/admin/reload", {200, 400, 401, 403, 409, 413, 422, 503}),
    ("get", "/v1/users/{user_id}", {200, 401, 403, 404, 422, 503}),
    ("get", "/v1/explain", {200, 401, 403, 404, 422, 503}),
    ("get", "/v1/stats", {200, 401, 403, 503}),
    ("get", "/v1/recommend", {200, 401, 403, 422, 503}),
    ("post", "/v1/recommend", {200, 400, 413, 422}),
    ("get", "/v1/items/{item_id}", {200, 404, 422}),
    ("get", "/readyz", {200, 503}),
])
def test_every_status_is_documented(spec, method, path, codes):
    assert {int(c) for c in spec["paths"][path][method]["responses"]} == codes


def test_every_error_is_declared_problem_json(spec):
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert "responses" in op and "200" in op["responses"], (method, path)
            for code, resp in op["responses"].items():
                if int(code) >= 400:
                    assert list(resp["content"]) == [PROBLEM_JSON], (method, path, code)


def _problem(r, status: int, model=Problem):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    return model.model_validate(r.json())


@pytest.mark.parametrize("params, loc, kind", [
    ({"user_id": "x", "k": 0}, ["query", "k"], "greater_than_equal"),
    ({"user_id": "x", "k": 201}, ["query", "k"], "too_large"),
    ({"user_id": "x", "k": "ten"}, ["query", "k"], "int_parsing"),
    ({"user_id": "x", "category": "a", "attribute": "b"}, ["query", "attribute"], "exclusive"),
    ([("user_id", "x"), ("user_id", "y")], ["query", "user_id"], "repeated"),
    ({}, ["query", "user_id"], "missing"),
])
def test_invalid_query_is_a_validation_problem(keyed, params, loc, kind):
    r = keyed.get("/v1/recommend", params=params, headers={"X-API-Key": KEY})
    p = _problem(r, 422, ValidationProblem)
    assert p.type == "urn:liverec:problem:invalid-request" and p.status == 422
    assert [(e.loc, e.type) for e in p.errors] == [(loc, kind)] and isinstance(p.detail, str)


@pytest.mark.parametrize("body, loc", [
    ({"user_id": "u", "item_id": "3", "timestamp": False}, ["body", "EventIn", "timestamp"]),
    ({"user_id": 5, "item_id": "3"}, ["body", "EventIn", "user_id"]),
    ({"user_id": "u", "item_id": "3", "extra": 1}, ["body", "EventIn", "extra"]),
])
def test_body_values_of_another_json_type_are_refused(keyed, body, loc):
    r = keyed.post("/v1/events", json=body, headers={"X-API-Key": KEY})
    p = _problem(r, 422, ValidationProblem)
    assert loc in [e.loc for e in p.errors]


def test_integer_as_json_number_and_unknown_items(keyed):
    r = keyed.post("/v1/recommend", json={"history": ["3"], "k": 2.0})
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    _problem(keyed.post("/v1/recommend", json={"history": ["3"], "k": "2"}), 422,
             ValidationProblem)
    r = keyed.post("/v1/recommend", json={"history": ["3", "nope", "nada"]})
    p = _problem(r, 422, ValidationProblem)
    assert p.unknown == ["nope", "nada"] and {e.type for e in p.errors} == {"unknown_item"}


def test_not_found_and_method_not_allowed(keyed):
    p = _problem(keyed.get("/v1/items/nope"), 404)
    assert p.type == "about:blank" and p.title == "Not Found" and "nope" in p.detail
    r = keyed.delete("/v1/recommend")
    _problem(r, 405)
    assert r.headers["allow"] == "GET, POST"
    _problem(keyed.post("/v1/events", content=b"[" + b" " * 2_000_000 + b"]",
                        headers={"content-type": "application/json", "X-API-Key": KEY}), 413)


def test_store_outage_and_event_conflict_map_to_503_and_409(keyed, monkeypatch):
    engine = keyed.app.state.engine
    h = {"X-API-Key": KEY}
    ev = {"user_id": "u", "item_id": "3", "event_id": "e1"}

    def conflict(rows):
        raise EventConflict("event_id e1 is stored with another payload", ["e1"])

    monkeypatch.setattr(engine, "add_events", conflict)
    r = keyed.post("/v1/events", json=ev, headers=h)
    assert _problem(r, 409).type == "urn:liverec:problem:event-conflict"
    assert r.json()["event_ids"] == ["e1"]

    def down(rows):
        raise StoreUnavailable("redis timed out", retry_after_s=2.5)

    monkeypatch.setattr(engine, "add_events", down)
    r = keyed.post("/v1/events", json=ev, headers=h)
    assert _problem(r, 503).type == "urn:liverec:problem:store-unavailable"
    assert r.headers["retry-after"] == "3"


def test_messages_from_elsewhere_lose_absolute_paths():
    assert _scrub("cannot read /srv/models/v2/config.json: bad") == "cannot read <path>: bad"
    assert _scrub("unknown item id 'a/b'") == "unknown item id 'a/b'"
