"""``liverec serve`` arguments and the checks made before uvicorn starts."""

from __future__ import annotations

import pytest

from liverec.cli import build_parser
from liverec.errors import ArtifactError, ConfigError
from liverec.serve.server import serve


def test_serve_arguments():
    args = build_parser().parse_args(["serve", "runs/x", "--port", "9000", "--workers", "2",
                                      "--store", "redis://h:1/0", "--api-key", "k", "--naive"])
    assert (args.run_dir, args.port, args.workers, args.store, args.api_key, args.naive) == \
        ("runs/x", 9000, 2, "redis://h:1/0", "k", True)


def test_serve_refuses_broken_run_dir(tmp_path):
    with pytest.raises(ArtifactError, match="run directory not found"):
        serve(tmp_path / "missing")


def test_serve_refuses_workers_without_shared_store(serve_run):
    with pytest.raises(ConfigError, match="needs a shared store"):
        serve(serve_run, workers=2, store="memory://")
