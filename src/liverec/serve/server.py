"""``liverec serve``: run the app under uvicorn (one process, or N workers sharing Redis)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from liverec.errors import ConfigError
from liverec.model.artifact import read_meta

log = logging.getLogger(__name__)


def _env_value(value) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          **settings) -> None:
    """Serve a run directory until interrupted.

    Args:
        run_dir: a run directory written by ``liverec train``.
        host: interface to bind.
        port: TCP port.
        workers: uvicorn worker processes; more than one needs a ``redis://`` store (user
            state must be shared, and an SQLite log is owned by one process).
        **settings: further :class:`ServeSettings` fields (store, api_key_file, ...); the
            keys are best given by ``LIVEREC_SERVE_API_KEY`` or a key file, never in argv.

    Raises:
        ConfigError: a setting is wrong (e.g. a key file that does not exist).
    """
    import uvicorn
    from pydantic import ValidationError

    from liverec.serve.app import create_app
    from liverec.serve.settings import ServeSettings

    read_meta(Path(run_dir))  # a clear error before anything starts
    settings.setdefault("torch_threads", 1)
    try:  # keys come from here, LIVEREC_SERVE_API_KEY or LIVEREC_SERVE_API_KEY_FILE
        cfg = ServeSettings(run_dir=Path(run_dir), **settings)
    except ValidationError as exc:
        raise ConfigError("; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'settings'}: "
                                    f"{e['msg']}" for e in exc.errors())) from None
    opts = {"host": host, "port": port, "log_level": "info", "access_log": False}
    if workers <= 1:
        uvicorn.run(create_app(cfg), **opts)
        return
    if not cfg.store_url().startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"--workers {workers} needs a shared store (--store redis://...); "
                          f"{cfg.store_url()} holds state in one process")
    for name, value in cfg.model_dump(exclude_none=True).items():
        if name == "api_key":
            value = cfg.api_key.get_secret_value()
        os.environ[f"LIVEREC_SERVE_{name.upper()}"] = _env_value(value)
    uvicorn.run("liverec.serve.app:app_from_env", factory=True, workers=workers, **opts)
