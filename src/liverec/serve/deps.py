"""FastAPI dependencies: the engine, the settings and request caps (access: serve/access.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from liverec.serve.engine import Engine
from liverec.serve.problems import Invalid
from liverec.serve.settings import ServeSettings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_settings(request: Request) -> ServeSettings:
    return request.app.state.settings


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[ServeSettings, Depends(get_settings)]

def check_cap(name: str, value: int, limit: int, loc: tuple[str, ...]) -> None:
    """422 naming the limit when ``value`` is above it (``loc``: where, as in the errors)."""
    if value > limit:
        raise Invalid(loc, f"{name} is {value}, above the limit of {limit}", "too_large")


def attribute_filter(category: str | None, attribute: str | None,
                     where: str = "query") -> str | None:
    """``category=X`` is shorthand for ``attribute=category:X``; not both at once."""
    if category is not None and attribute is not None:
        raise Invalid((where, "attribute"), "give category or attribute, not both",
                      "exclusive")
    return f"category:{category}" if category is not None else attribute
