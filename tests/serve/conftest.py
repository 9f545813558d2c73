"""Service fixtures: a tiny model trained on the titled known-answer data, and app clients."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import time

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402
from tests.conftest import titled_cyclic_dataset  # noqa: E402

from liverec.config import DataConfig  # noqa: E402
from liverec.data.prepare import prepare  # noqa: E402
from liverec.serve.app import create_app  # noqa: E402


@pytest.fixture(scope="session")
def serve_run(tiny_run_config, tmp_path_factory):
    """A run directory: 40 items in families of 5 (attribute ``family:fN``), next = last + 1."""
    from liverec.train.loop import train

    data = prepare(titled_cyclic_dataset(), DataConfig(source="titled"))
    model = dataclasses.replace(tiny_run_config.model, n_items=40, d_model=16, d_ff=32)
    cfg = dataclasses.replace(tiny_run_config, model=model)
    out = tmp_path_factory.mktemp("serve") / "tiny"
    train(cfg, data, out)
    return out


@pytest.fixture(scope="session")
def serve_run_v2(serve_run, tmp_path_factory):
    """The same weights under another run directory name: another model version."""
    out = tmp_path_factory.mktemp("serve2") / "tiny-v2"
    shutil.copytree(serve_run, out)
    return out


@pytest.fixture
def make_client(serve_run, tmp_path_factory):
    """``make_client(**settings)`` -> a started TestClient (memory store unless given; reload
    takes runs from anywhere under the session's temporary folder)."""
    clients = []

    def make(**overrides) -> TestClient:
        overrides.setdefault("store", "memory://")
        overrides.setdefault("run_dir", serve_run)
        overrides.setdefault("models_root", tmp_path_factory.getbasetemp())
        client = TestClient(create_app(**overrides))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url():
    """LIVEREC_TEST_REDIS_URL (what .ci/run starts), else a private redis-server, else skip."""
    url = os.environ.get("LIVEREC_TEST_REDIS_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server) and "
                    "LIVEREC_TEST_REDIS_URL is not set")
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)
