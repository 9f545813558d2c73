"""The real-time service: FastAPI app, engine (state, cache, micro-batching, hot-swap), stores."""

from __future__ import annotations

__all__ = ["create_app"]


def create_app(settings=None, **overrides):
    """See :func:`liverec.serve.app.create_app` (imported lazily: fastapi is the serve extra)."""
    from liverec.serve.app import create_app as _create_app

    return _create_app(settings, **overrides)
