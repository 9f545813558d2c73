"""Tiny run directories for the web bundle (no training: the bundle must reproduce whatever
model it is given), and a stand-in for the built JavaScript runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from liverec.config import DataConfig, ModelConfig, RunConfig
from liverec.model import build_model
from liverec.model.artifact import save_artifact

N_ITEMS = 40


def make_run(out: Path, item_repr: str = "pq", seed: int = 0, n_items: int = N_ITEMS,
             extra: dict | None = None) -> Path:
    """A complete run of a seeded, untrained 1-layer model (d=16) with a titled catalogue."""
    cfg = RunConfig(name="edge", data=DataConfig(source="titled"), model=ModelConfig(
        n_items=n_items, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=12,
        item_repr=item_repr, pq_subspaces=8, pq_bits=4, dropout=0.0, attn_dropout=0.0,
        emb_dropout=0.0))
    torch.manual_seed(seed)
    model = build_model(cfg.model).eval()
    with torch.no_grad():  # a spread-out table: scores with clear gaps, like a trained one
        for p in model.items.parameters():
            p.normal_(0, 1.0)
    rng = np.random.default_rng(seed)
    items = pl.DataFrame({
        "item": [f"sku/{i:03d} é" for i in range(n_items)],  # ids are opaque strings
        "index": np.arange(1, n_items + 1),
        "title": [f"product {i} family{i // 5}" for i in range(n_items)],
        "text": [""] * n_items,
        "attributes": [[f"family:f{i // 5}"] for i in range(n_items)],
        "count": rng.integers(1, 50, n_items),
    })
    save_artifact(out, cfg, model, items, extra=extra, complete="test")
    return out


@pytest.fixture(scope="session")
def pq_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("edge") / "pq", "pq")


@pytest.fixture(scope="session")
def id_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("edge") / "id", "id", seed=1)


@pytest.fixture(scope="session")
def fake_runtime(tmp_path_factory) -> Path:
    """A directory shaped like ``clients/js/dist`` (runtime.json + the files it lists)."""
    dist = tmp_path_factory.mktemp("dist")
    names = ["liverec-edge.js", "core.js", "ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs",
             "ort-wasm-simd-threaded.wasm"]
    for n in names:
        (dist / n).write_bytes(b"\0asm" if n.endswith(".wasm") else b"export {};\n")
    (dist / "runtime.json").write_text(json.dumps(
        {"entry": "liverec-edge.js", "onnxruntime_web": "test", "files": names}))
    return dist
