"""A tiny run on the synthetic shop (titles, categories, metrics.json) served by a real uvicorn."""

from __future__ import annotations

import dataclasses
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

@pytest.fixture
def live_server(dashboard_run):
    """``http://127.0.0.1:<port>``: uvicorn serving the run (memory store) in a thread."""
    import uvicorn

    from liverec.serve.app import create_app

    port = _free_port()
    app = create_app(run_dir=dashboard_run, store="memory://", torch_threads=1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
