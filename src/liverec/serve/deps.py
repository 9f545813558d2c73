"""FastAPI dependencies: the engine, the settings and request caps (access: serve/access.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from liverec.serve.engine import Engine
from liverec.serve.problems import Invalid
from liverec.serve.settings import ServeSettings


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


async def get_settings(request: Request) -> ServeSettings:
    return request.app.state.settings


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[ServeSettings, Depends(get_settings)]

def _list_params(app) -> frozenset[str]:
    names = getattr(app.state, "list_params", None)
    if names is None:
        names = app.state.list_params = frozenset(
            p["name"] for ops in app.openapi()["paths"].values() for op in ops.values()
            for p in op.get("parameters", ()) if p["in"] == "query"
            and "array" in {s.get("type") for s in [p["schema"], *p["schema"].get("anyOf", ())]})
    return names


async def single_query_values(request: Request) -> None:
    """App-wide: a query parameter that takes one value is given at most once (FastAPI would
    silently keep the last one)."""
    params = request.query_params
    if len(params.multi_items()) == len(params):  # each name once (the usual case)
        return
    lists = _list_params(request.app)
    for name in params:
        if name not in lists and len(params.getlist(name)) > 1:
            raise Invalid(("query", name), f"{name} is given more than once", "repeated")


def check_cap(name: str, value: int, limit: int, loc: tuple[str, ...] | None = None) -> None:
    """422 naming the limit when ``value`` is above it (``loc``: where, as in the errors;
    default ``(name,)``)."""
    if value > limit:
        raise Invalid(loc or (name,), f"{name} is {value}, above the limit of {limit}",
                      "too_large")


def attribute_filter(category: str | None, attribute: str | None,
                     where: str = "query") -> str | None:
    """``category=X`` is shorthand for ``attribute=category:X``; not both at once."""
    if category is not None and attribute is not None:
        raise Invalid((where, "attribute"), "give category or attribute, not both",
                      "exclusive")
    return f"category:{category}" if category is not None else attribute
