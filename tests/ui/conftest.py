"""A tiny run on the synthetic shop (titles, categories, metrics.json) served by a real uvicorn."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from liverec.config import DataConfig, EvalConfig, SyntheticConfig  # noqa: E402


@pytest.fixture(scope="session")
def dashboard_run(tiny_run_config, tmp_path_factory) -> Path:
    """Trained and evaluated (metrics.json, training_curve.png) in a few seconds."""
    from liverec.data.pipeline import load_and_prepare
    from liverec.evaluate.report import evaluate_run
    from liverec.train.loop import train

    data = DataConfig(source="synthetic", cache=False,
                      synthetic=SyntheticConfig(n_users=300, n_items=60, n_categories=4,
                                                max_len=12))
    model = dataclasses.replace(tiny_run_config.model, n_items=0, d_model=16, d_ff=32)
    cfg = dataclasses.replace(tiny_run_config, name="dashboard", data=data, model=model,
                              eval=EvalConfig(ks=(5, 10), baselines=("pop",)))
    out = tmp_path_factory.mktemp("ui") / "shop"
    train(cfg, load_and_prepare(cfg.data), out)
    evaluate_run(out)
    return out

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

@contextlib.contextmanager
def _uvicorn(run_dir: Path, **settings):
    """``http://127.0.0.1:<port>``: uvicorn serving the run (memory store) in a thread."""
    import uvicorn

    from liverec.serve.app import create_app

    port = _free_port()
    app = create_app(run_dir=run_dir, store="memory://", torch_threads=1, **settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live_server(dashboard_run):
    with _uvicorn(dashboard_run) as url:
        yield url


RULES = {"rules": {"deny": ["I001"], "max_per_category": 3}, "mmr": {"lambda": 0.2}}


@pytest.fixture
def live_server_rules(dashboard_run, tmp_path):
    """The same with re-ranking rules: item I001 denied, at most 3 per category (of 4),
    MMR 0.2."""
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(RULES))
    with _uvicorn(dashboard_run, rerank=path) as url:
        yield url
