"""The service's side of the edge mode: the served run's bundle at /edge/ (gzip when accepted,
nothing outside the bundle) and the catalogue's additions at /v1/edge/items."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from liverec.edge.bundle import WebExportConfig, export_web

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")

from fastapi.testclient import TestClient  # noqa: E402

from liverec.serve.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def served(pq_run, fake_runtime, tmp_path_factory):
    run = tmp_path_factory.mktemp("served") / "pq"
    shutil.copytree(pq_run, run)
    export_web(run, run / "web", WebExportConfig(weights="fp32", runtime=str(fake_runtime)))
    return run


@pytest.fixture
def client(served):
    with TestClient(create_app(run_dir=served, store="memory://")) as c:
        yield c


def test_bundle_files_are_served_gzip_when_accepted(client, served):
    m = client.get("/edge/manifest.json")
    assert m.status_code == 200 and m.headers["content-type"].startswith("application/json")
    manifest = m.json()
    assert manifest["source"]["model_version"] == client.get("/v1/model").json()["model_version"]
    raw = (served / "web" / "items.codes.u8").read_bytes()
    plain = client.get("/edge/items.codes.u8", headers={"accept-encoding": "identity"})
    assert plain.content == raw and "content-encoding" not in plain.headers
    packed = client.get("/edge/items.codes.u8", headers={"accept-encoding": "gzip, br"})
    assert packed.headers["content-encoding"] == "gzip" and packed.content == raw  # decoded
    assert int(packed.headers["content-length"]) == manifest["files"]["items.codes.u8"][
        "gzip_bytes"]
    wasm = client.get("/edge/runtime/ort-wasm-simd-threaded.wasm")
    assert wasm.headers["content-type"] == "application/wasm"
    js = client.get("/edge/runtime/liverec-edge.js")
    assert js.headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize("path", ["../model.safetensors", "..%2Fconfig.json", "nope.bin",
                                  "items.codes.u8.gz", "runtime", ""])
def test_nothing_outside_the_bundle(client, path):
    r = client.get(f"/edge/{path}")
    assert r.status_code == 404, r.text


def test_a_run_without_a_bundle_says_how_to_make_one(pq_run, tmp_path):
    run = tmp_path / "bare"
    shutil.copytree(pq_run, run, ignore=shutil.ignore_patterns("web"))
    with TestClient(create_app(run_dir=run, store="memory://")) as c:
        r = c.get("/edge/manifest.json")
    assert r.status_code == 404 and "liverec export-web" in r.json()["detail"]


def test_added_items_come_with_their_vectors(client):
    first = client.get("/v1/edge/items").json()
    assert first["items"] == [] and first["n_rows"] == first["n_model"] + 1 == 41
    for i in range(3):
        r = client.post("/v1/items", json={"item_id": f"new/{i}", "title": f"new {i}",
                                           "attributes": ["family:f1"]})
        assert r.status_code == 200 and r.json()["index"] == 41 + i
    body = client.get("/v1/edge/items", params={"since": 42}).json()
    assert body["n_rows"] == 44 and [it["item_id"] for it in body["items"]] == ["new/1", "new/2"]
    assert body["items"][0]["index"] == 42 and body["items"][0]["title"] == "new 1"
    vec = np.array(body["items"][0]["vector"])
    assert vec.shape == (16,) and np.isfinite(vec).all()
    assert client.get("/v1/edge/items", params={"since": 0, "limit": 1}).json()["items"][0][
        "item_id"] == "new/0"  # rows of the model itself are in the bundle, never here
    for bad in ({"since": -1}, {"limit": 0}, {"limit": 1001}, {"since": "x"}):
        assert client.get("/v1/edge/items", params=bad).status_code == 422


def test_the_gzip_copy_is_what_the_manifest_counts(served):
    for name in ("encoder.onnx", "catalogue.json"):
        packed = (served / "web" / f"{name}.gz").read_bytes()
        assert gzip.decompress(packed) == (served / "web" / name).read_bytes()
