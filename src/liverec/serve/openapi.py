"""The OpenAPI document, made to agree with the answers.

FastAPI's own document is completed here, once per app:

- every error answer is declared ``application/problem+json`` (liverec.serve.problems);
- optional query parameters are declared without ``null`` (a query string has none);
- 422 (any route with parameters or a body), 400 and 413 (any route with a body) are declared;
- caps that come from the settings (``max_k``, ``max_history``, ...) become ``maximum`` /
  ``maxItems`` of the parameters they bound, so a value the schema allows is one the service
  takes;
- with keys, every route that needs one lists the ``ApiKey`` security scheme, its scope, 401
  (with ``WWW-Authenticate``) and 403.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from liverec.serve.access import ACCESS, openapi_path
from liverec.serve.keys import HEADER
from liverec.serve.problems import PROBLEM_JSON
from liverec.serve.schemas import ConflictProblem, Problem, ValidationProblem
from liverec.serve.settings import ServeSettings

REF = "#/components/schemas/"

# (path, method, where, name, JSON-schema keyword, settings field)
CAPS = [
    ("/v1/recommend", "get", "query", "k", "maximum", "max_k"),
    ("/v1/recommend", "get", "query", "exclude", "maxItems", "max_exclude"),
    ("/v1/items/{item_id}/similar", "get", "query", "k", "maximum", "max_k"),
    ("/v1/similar", "get", "query", "k", "maximum", "max_k"),
    ("HistoryRecommendIn", None, "schema", "k", "maximum", "max_k"),
    ("HistoryRecommendIn", None, "schema", "history", "maxItems", "max_history"),
    ("HistoryRecommendIn", None, "schema", "exclude", "maxItems", "max_exclude"),
    ("/v1/events", "post", "body-array", None, "maxItems", "max_events"),
]


def _no_null_in_query(op: dict) -> None:
    """``X | None`` query parameters are declared as ``X``: a query string cannot carry a null
    (absent is how one leaves it out), and an ``anyOf`` hides that a value is an array."""
    for p in op.get("parameters", ()):
        alts = p["schema"].get("anyOf")
        if p["in"] != "query" or not alts:
            continue
        rest = [a for a in alts if a.get("type") != "null"]
        if len(rest) == 1 and len(rest) < len(alts):
            schema = {k: v for k, v in p["schema"].items() if k != "anyOf"}
            p["schema"] = {**rest[0], **schema}


def _problem_content(op: dict) -> None:
    has_input = bool(op.get("parameters")) or "requestBody" in op
    responses = op["responses"]
    if has_input:
        responses["422"] = {"description": "invalid request values (each listed in errors)",
                            "content": {"application/json": {
                                "schema": {"$ref": REF + "ValidationProblem"}}}}
    if "requestBody" in op:
        responses.setdefault("400", {"description": "the body could not be parsed", "content": {
            "application/json": {"schema": {"$ref": REF + "Problem"}}}})
        responses.setdefault("413", {"description": "request body too large", "content": {
            "application/json": {"schema": {"$ref": REF + "Problem"}}}})
    for code, resp in responses.items():
        content = resp.get("content") or {}
        if int(code) >= 400 and "application/json" in content:
            resp["content"] = {PROBLEM_JSON: content["application/json"]}
    if "503" in responses:
        responses["503"].setdefault("headers", {})["Retry-After"] = {
            "description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}


def _ensure_models(schemas: dict) -> None:
    for model in (Problem, ValidationProblem, ConflictProblem):
        if model.__name__ not in schemas:
            schema = model.model_json_schema(ref_template=REF + "{model}", mode="serialization")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema


def _caps(spec: dict, settings: ServeSettings) -> None:
    schemas = spec["components"]["schemas"]
    for where, method, kind, name, keyword, field in CAPS:
        value = getattr(settings, field)
        if kind == "schema":
            schemas[where]["properties"][name][keyword] = value
        elif kind == "query":
            for p in spec["paths"][where][method].get("parameters", ()):
                if p["name"] == name:
                    p["schema"][keyword] = value
        else:  # a body that is one object or an array of them: cap the array
            body = spec["paths"][where][method]["requestBody"]["content"]["application/json"]
            for alt in body["schema"].get("anyOf", ()):
                if alt.get("type") == "array":
                    alt[keyword] = value


def _security(spec: dict) -> None:
    spec["components"].setdefault("securitySchemes", {})["ApiKey"] = {
        "type": "apiKey", "in": "header", "name": HEADER,
        "description": "keys have a scope: read (a person's data) < write (events, items) < "
                       "admin (reload); see the README's HTTP service section"}
    problem = {PROBLEM_JSON: {"schema": {"$ref": REF + "Problem"}}}
    for (method, path), scope in ACCESS.items():
        op = spec["paths"].get(openapi_path(path), {}).get(method.lower())
        if op is not None:
            op["security"] = [{"ApiKey": []}]
            op["description"] = (op.get("description", "") +
                                 f"\n\nNeeds a {scope.name.lower()} key when the service "
                                 f"has keys.").lstrip()
            op["responses"]["401"] = {
                "description": "no API key, or one the service does not know",
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                "content": problem}
            op["responses"].setdefault("403", {"description": f"the key's scope is below "
                                                              f"{scope.name.lower()}",
                                               "content": problem})


def install_openapi(app: FastAPI, settings: ServeSettings) -> None:
    """Replace ``app.openapi`` with the completed document (built on first use)."""

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, description=app.description,
                           routes=app.routes)
        for ops in spec["paths"].values():
            for op in ops.values():
                _no_null_in_query(op)
                _problem_content(op)
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        _ensure_models(schemas)
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        _caps(spec, settings)
        if settings.keys_enabled():
            _security(spec)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi
