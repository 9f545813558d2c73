"""``liverec serve``: run the app under uvicorn (one process, or N workers sharing Redis).

With several workers the listening sockets are bound here, not by uvicorn, for two reasons
measured on ``--workers 2``:

- TCP_NODELAY: uvicorn's ``bind_socket`` makes a socket with protocol 0, for which asyncio does
  not set ``TCP_NODELAY`` on accepted connections, so each keep-alive response (written as
  headers, then body) waited ~40 ms for the client's delayed ACK (Nagle). These sockets are
  ``IPPROTO_TCP`` with ``TCP_NODELAY`` (accepted sockets inherit it on Linux).
- Balance: with one shared listening socket, the worker that wakes first accepts every queued
  connection (one worker took 32 of 32 keep-alive connections), so two workers served like
  one. Each worker gets its own ``SO_REUSEPORT`` socket on the port, and the kernel spreads
  new connections over them.

A small supervisor (:func:`run_workers`) starts the workers, restarts one that dies, and on
SIGTERM/SIGINT passes SIGTERM on (each worker drains, see ``drain_s``) and waits for them.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
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


def bind_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket for a worker: protocol TCP, ``TCP_NODELAY`` set, and
    ``SO_REUSEPORT`` when ``reuse_port`` (several sockets on one port, one per worker)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def run_workers(config, sockets: list[socket.socket]) -> None:
    """One uvicorn worker process per socket, kept alive until SIGTERM/SIGINT.

    A worker that dies is restarted on its socket; one that fails at startup (uvicorn's exit
    code 3) stops them all.
    """
    from uvicorn._subprocess import get_subprocess
    from uvicorn.server import STARTUP_FAILURE, Server

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def start(i: int):
        proc = get_subprocess(config, target=Server(config).run, sockets=[sockets[i]])
        proc.start()
        return proc

    procs = [start(i) for i in range(len(sockets))]
    log.info("started %d workers: %s", len(procs), [p.pid for p in procs])
    while not stop.wait(0.5):
        for i, proc in enumerate(procs):
            if proc.is_alive():
                continue
            if proc.exitcode == STARTUP_FAILURE:
                log.error("worker %d failed to start; stopping", proc.pid)
                stop.set()
                break
            log.warning("worker %d exited with %s; starting another", proc.pid, proc.exitcode)
            procs[i] = start(i)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()  # SIGTERM: the worker drains, then exits
    for proc in procs:
        proc.join()
    log.info("all workers stopped")


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
        **settings: further :class:`ServeSettings` fields (store, api_key_file, drain_s, ...);
            the keys are best given by ``LIVEREC_SERVE_API_KEY`` or a key file, never in argv.

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
    reuse = hasattr(socket, "SO_REUSEPORT")
    sockets = [bind_socket(host, port, reuse_port=reuse) for _ in range(workers if reuse else 1)]
    log.info("listening on %s:%d with %d workers", host, port, workers)
    try:
        run_workers(config, sockets * (1 if reuse else workers))
    finally:
        for sock in sockets:
            sock.close()
