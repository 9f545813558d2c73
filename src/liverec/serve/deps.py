"""FastAPI dependencies: the engine, the settings and the API-key check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader

from liverec.serve.engine import Engine
from liverec.serve.settings import ServeSettings

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="needed on write and admin routes when the service has one")


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_settings(request: Request) -> ServeSettings:
    return request.app.state.settings


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[ServeSettings, Depends(get_settings)]


def require_api_key(settings: SettingsDep,
                    key: Annotated[str | None, Depends(_api_key)] = None) -> None:
    """401 unless the service has no API key or the request's X-API-Key matches it."""
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value()
    if key is None or not secrets.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong API key (send it as the X-API-Key header)",
                            headers={"WWW-Authenticate": "ApiKey"})


WriteAccess = [Depends(require_api_key)]


def check_cap(name: str, value: int, limit: int) -> None:
    """422 naming the limit when ``value`` is above it."""
    if value > limit:
        raise HTTPException(422, f"{name} is {value}, above the limit of {limit}")


def attribute_filter(category: str | None, attribute: str | None) -> str | None:
    """``category=X`` is shorthand for ``attribute=category:X``; not both at once."""
    if category is not None and attribute is not None:
        raise HTTPException(422, "give category or attribute, not both")
    return f"category:{category}" if category is not None else attribute
