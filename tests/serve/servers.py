"""Real processes for the scale-out tests: a private redis-server, a uvicorn server in a thread,
``liverec serve`` subprocesses. Each skips the test (with the reason) when its binary is absent."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNING: dict[str, object] = {}  # base URL -> uvicorn.Server of uvicorn_thread


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@contextlib.contextmanager
def redis_server(port: int | None = None, *args: str):
    """A private redis-server on ``port`` (a free one by default): yields (url, Popen)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no",
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            proc.wait(5)


@contextlib.contextmanager
def uvicorn_thread(app, port: int | None = None):
    """Serve ``app`` with uvicorn in a thread (real sockets, keep-alive): yields the base URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    RUNNING[base] = server
    try:
        yield base
    finally:
        RUNNING.pop(base, None)
        server.should_exit = True
        thread.join(15)


def kill_thread_server(base: str) -> None:
    """Stop a ``uvicorn_thread`` server at once: its connections close mid-request."""
    server = RUNNING[base]
    server.force_exit = True
    server.should_exit = True
    port = int(base.rsplit(":", 1)[1])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            time.sleep(0.02)
        except OSError:
            return
    raise TimeoutError(f"{base} still accepts connections")


def get(url: str, timeout: float = 5.0, method: str = "GET", body: bytes | None = None,
        headers: dict | None = None) -> tuple[int, dict, bytes, float]:
    """(status, headers, body, seconds) of one request on a new connection."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if body is not None:
        req.add_header("content-type", "application/json")
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read(), time.perf_counter() - t0
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read(), time.perf_counter() - t0


def liverec_serve(run_dir: Path, port: int, *args: str, env: dict | None = None,
                  log: Path | None = None) -> subprocess.Popen:
    """``python -m liverec serve RUN_DIR --port PORT ARGS`` (this checkout's src first)."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1",
               **(env or {})}
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "liverec", "serve", str(run_dir), "--port",
                             str(port), *args], stdout=out, stderr=subprocess.STDOUT,
                            env=environ)


def wait_ready(base: str, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if get(base + "/readyz", timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{base} not ready after {timeout} s")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def haproxy(replicas: list[str], port: int | None = None, tmp: Path | None = None):
    """HAProxy with ``deploy/haproxy.cfg`` in front of ``replicas`` (host:port, three):
    yields (base URL, stats socket path)."""
    binary = shutil.which("haproxy") or ("/usr/sbin/haproxy"
                                         if Path("/usr/sbin/haproxy").exists() else None)
    if binary is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    port = port or free_port()
    stats = str((tmp or Path("/tmp")) / f"liverec-haproxy-{port}.sock")
    env = {**os.environ, "LIVEREC_LB_BIND": f"127.0.0.1:{port}", "LIVEREC_LB_STATS": stats,
           **{f"LIVEREC_R{i + 1}": r for i, r in enumerate(replicas)}}
    proc = subprocess.Popen([binary, "-f", str(ROOT / "deploy" / "haproxy.cfg"), "-db"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port)
        # the stats socket can appear after the listener (seen on a loaded machine): wait for it
        deadline = time.monotonic() + 10
        while not Path(stats).exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                why = proc.stderr.read().decode() if proc.poll() is not None else "running"
                raise RuntimeError(f"haproxy made no stats socket {stats}: {why}")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}", stats
    finally:
        proc.terminate()
        proc.wait(5)


def lb_status(stats: str) -> dict[str, str]:
    """{server name: UP/DOWN/...} of the ``replicas`` backend, from HAProxy's stats socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(stats)
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    head = lines[0].lstrip("# ").split(",")
    out = {}
    for line in lines[1:]:
        row = dict(zip(head, line.split(",")))
        if row.get("pxname") == "replicas" and row.get("svname") not in ("BACKEND", None):
            out[row["svname"]] = row["status"]
    return out
