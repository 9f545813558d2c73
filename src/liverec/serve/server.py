"""``liverec serve``: run the app under uvicorn (one process, or N workers sharing Redis).

With several workers the listening socket is bound here, as a TCP socket (``IPPROTO_TCP``)
with ``TCP_NODELAY``: uvicorn's own ``bind_socket`` makes it with protocol 0, for which asyncio
does not set ``TCP_NODELAY`` on accepted connections, so each keep-alive response (written as
headers, then body) waited ~40 ms for the client's delayed ACK (Nagle). Accepted sockets
inherit ``TCP_NODELAY`` from the listener on Linux; the protocol number makes asyncio set it
anyway.
"""

from __future__ import annotations

import logging
import os
import socket
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


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket shared by the workers: protocol TCP, ``TCP_NODELAY`` set."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          graceful_s: int = 10, **settings) -> None:
    """Serve a run directory until interrupted.

    Args:
        run_dir: a run directory written by ``liverec train``.
        host: interface to bind.
        port: TCP port.
        workers: uvicorn worker processes; more than one needs a ``redis://`` store (user
            state must be shared, and an SQLite log is owned by one process).
        graceful_s: on shutdown, in-flight requests get this long to finish.
        **settings: further :class:`ServeSettings` fields (store, api_key, drain_s, ...).
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from liverec.serve.app import create_app
    from liverec.serve.settings import ServeSettings

    read_meta(Path(run_dir))  # a clear error before anything starts
    settings.setdefault("torch_threads", 1)
    cfg = ServeSettings(run_dir=Path(run_dir), **settings)
    opts = {"host": host, "port": port, "log_level": "info", "access_log": False,
            "timeout_graceful_shutdown": graceful_s}
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
    config = uvicorn.Config("liverec.serve.app:app_from_env", factory=True, workers=workers,
                            **opts)
    sock = bind_socket(host, port)
    log.info("listening on %s:%d with %d workers", host, port, workers)
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
