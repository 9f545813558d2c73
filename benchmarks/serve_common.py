"""Shared by the service benchmarks: start/stop a ``liverec serve`` process and a minimal
keep-alive HTTP/1.1 client on asyncio streams (cheap enough not to be the bottleneck)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, port: int, *args: str, env: dict | None = None,
                 log_path: Path | None = None, timeout: float = 120) -> subprocess.Popen:
    """``liverec serve RUN_DIR --port PORT ARGS...``; returns once /healthz answers."""
    cmd = [sys.executable, "-m", "liverec", "serve", str(run_dir), "--port", str(port), *args]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not become ready in {timeout}s")


def stop_server(proc: subprocess.Popen, hard: bool = False) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Conn:
    """One keep-alive HTTP/1.1 connection (Content-Length responses only)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self) -> Conn:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def request(self, method: str, path: str, body: bytes | None = None,
                      headers: str = "") -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{headers}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed")
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    async def json(self, method: str, path: str, payload=None, headers: str = ""):
        body = None if payload is None else json.dumps(payload).encode()
        status, data = await self.request(method, path, body, headers)
        return status, (json.loads(data) if data else None)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def percentiles(lat_s: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds."""
    if not lat_s:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"),
                "max_ms": float("nan")}
    xs = sorted(lat_s)

    def q(p: float) -> float:
        return round(1000 * xs[min(len(xs) - 1, int(p * len(xs)))], 3)

    return {"p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99),
            "max_ms": round(1000 * xs[-1], 3)}


def write_criteria_report(lines: list[str], criteria: dict, path: Path) -> None:
    """Append the pass/fail table of ``criteria`` ({name: {value, target, pass}}) to the report
    ``lines``, write them to ``path`` (markdown) and print them."""
    lines = [*lines, "| criterion | value | target | pass |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['value']} | {v['target']} | {v['pass']} |" for k, v in criteria.items()]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
