"""Schema-driven fuzzing: requests generated from the app's OpenAPI spec (valid-shaped and
hostile values mixed) must never get a 5xx. Bounded examples per operation (a few seconds)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
HOSTILE_TEXT = st.text(max_size=40) | st.sampled_from(
    ["", "/", "..", "%00", "\x00", "a" * 300, "-1", "1e999", "NaN", "null", "3", "family:f1"])


def _resolve(schema: dict, spec: dict) -> dict:
    while "$ref" in schema:
        node = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def from_schema(schema: dict, spec: dict, depth: int = 0) -> st.SearchStrategy:
    """A hypothesis strategy for (roughly) the values a JSON schema describes."""
    schema = _resolve(schema, spec)
    if depth > 4:
        return JSON
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(s, spec, depth + 1) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 30))
    if kind == "integer":
        return st.integers(schema.get("minimum", -(10**6)), schema.get("maximum", 10**6))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False,
                         allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), spec, depth + 1), max_size=5)
    if kind == "object" or "properties" in schema:
        props = {k: from_schema(v, spec, depth + 1) for k, v in schema["properties"].items()}
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries({k: v for k, v in props.items() if k in required},
                                     optional={k: v for k, v in props.items()
                                               if k not in required})
    return JSON


def _operations(app) -> list[tuple[str, str, dict]]:
    spec = app.openapi()
    return [(path, method, op) for path, ops in spec["paths"].items()
            for method, op in ops.items()]


def _request_strategy(op: dict, spec: dict):
    params = {p["name"]: p for p in op.get("parameters", ())}
    values = {name: st.one_of(from_schema(p.get("schema", {}), spec), HOSTILE_TEXT)
              for name, p in params.items()}
    body = st.none()
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if content:
        body = st.one_of(from_schema(content["schema"], spec), JSON)
    return st.fixed_dictionaries({}, optional=values), body


@pytest.fixture(scope="module")
def fuzz_client(serve_run):
    from fastapi.testclient import TestClient

    from liverec.serve.app import create_app

    with TestClient(create_app(run_dir=serve_run, store="memory://"),
                    raise_server_exceptions=False) as c:
        c.post("/v1/events", json=[{"user_id": "u", "item_id": str(i)} for i in range(5)])
        yield c


def _fuzz_operation(client, spec, path: str, method: str, op: dict):
    params, body = _request_strategy(op, spec)
    names = [p["name"] for p in op.get("parameters", ()) if p["in"] == "path"]

    @settings(max_examples=40, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(values=params, payload=body, raw=st.booleans())
    def check(values, payload, raw):
        url = path
        for name in names:
            value = str(values.pop(name, "x")) or "x"
            url = url.replace("{" + name + "}", quote(value, safe=""))
        kwargs = {"params": {k: v if isinstance(v, list) else str(v) for k, v in values.items()}}
        if method == "post":
            if raw and payload is not None:
                kwargs["content"] = str(payload).encode()  # often not JSON at all
                kwargs["headers"] = {"content-type": "application/json"}
            else:
                kwargs["json"] = payload
        r = client.request(method.upper(), url, **kwargs)
        assert r.status_code < 500, (method, url, kwargs, r.status_code, r.text)
        assert r.status_code < 400 or "detail" in r.json()

    check()


def test_openapi_fuzz_finds_no_5xx(fuzz_client):
    spec = fuzz_client.app.openapi()
    ops = _operations(fuzz_client.app)
    assert {p for p, _, _ in ops} >= {"/v1/recommend", "/v1/events", "/v1/items",
                                       "/admin/reload", "/healthz", "/readyz"}
    for path, method, op in ops:
        _fuzz_operation(fuzz_client, spec, path, method, op)
