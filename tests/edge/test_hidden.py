"""Hidden items on the device: the ids flagged in items.parquet travel in the bundle
(catalogue.json ``hidden``, masked by the Python reference like the browser does), and the
service sends the live set (flags read live, the deployment's deny list) at GET /v1/edge/hidden
with an ETag, 304 while it is unchanged."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from liverec.edge.bundle import CATALOGUE, WebExportConfig, export_web
from liverec.edge.catalogue import flagged_ids

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")

from fastapi.testclient import TestClient  # noqa: E402

from liverec.edge.reference import BundleReference  # noqa: E402
from liverec.serve.app import create_app  # noqa: E402
from liverec.serve.model_handle import _row, is_flagged  # noqa: E402

UNSAFE, UNAVAILABLE, FLAGGED, OUT = 3, 7, 11, 13  # item numbers; OUT: unavailable = true


@pytest.fixture(scope="module")
def flagged_run(pq_run, fake_runtime, tmp_path_factory):
    """pq_run with flag columns (nulls included), its bundle in RUN/web."""
    run = tmp_path_factory.mktemp("flagged") / "pq"
    shutil.copytree(pq_run, run, ignore=shutil.ignore_patterns("web"))
    items = pl.read_parquet(run / "items.parquet")
    n = items.height
    items.with_columns(
        pl.Series("unsafe", [True if i == UNSAFE else None if i % 2 else False
                             for i in range(n)], dtype=pl.Boolean),
        pl.Series("available", [False if i == UNAVAILABLE else None for i in range(n)],
                  dtype=pl.Boolean),
        pl.Series("flagged", [i == FLAGGED for i in range(n)]),
        pl.Series("unavailable", [i == OUT for i in range(n)]),
    ).write_parquet(run / "items.parquet")
    export_web(run, run / "web", WebExportConfig(weights="fp32", runtime=str(fake_runtime)))
    return run


def sku(i: int) -> str:
    return f"sku/{i:03d} é"


def test_the_bundle_ships_the_flagged_ids_as_the_service_reads_them(flagged_run, pq_run):
    items = pl.read_parquet(flagged_run / "items.parquet")
    served = sorted(str(r["item"]) for r in items.to_dicts() if is_flagged(_row(r)))
    want = sorted(sku(i) for i in (UNSAFE, UNAVAILABLE, FLAGGED, OUT))
    assert flagged_ids(items) == served == want
    assert json.loads((flagged_run / "web" / CATALOGUE).read_text())["hidden"] == want
    assert flagged_ids(pl.read_parquet(pq_run / "items.parquet")) == []  # no flag columns

    ref = BundleReference(flagged_run / "web")
    n = len(ref.ids)
    for history in ([sku(0)], [sku(1), sku(20), sku(30)], []):
        got = [i for i, _ in ref.recommend(history, k=n)]
        assert not set(got) & (set(want) | set(history))
        assert len(got) == n - len(set(want) | set(history))  # every other item, once


@pytest.fixture
def client(flagged_run, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": {"deny": [sku(0), "gone/ü"]}}))
    with TestClient(create_app(run_dir=flagged_run, store="memory://", rerank=rules)) as c:
        yield c


def test_hidden_ids_follow_flags_and_the_deny_list_with_an_etag(client):
    first = client.get("/v1/edge/hidden")
    assert first.status_code == 200
    body = first.json()
    want = sorted([sku(0), "gone/ü", *(sku(i) for i in (UNSAFE, UNAVAILABLE, FLAGGED, OUT))])
    assert body["item_ids"] == want and body["n_hidden"] == 6
    assert body["model_version"] == client.get("/v1/model").json()["model_version"]
    assert first.headers["etag"] == f'"{body["version"]}"'
    # the service's own count: every catalogue item in the set is hidden there too
    assert client.get("/v1/rerank").json()["hidden_items"] == 5

    same = client.get("/v1/edge/hidden", headers={"if-none-match": first.headers["etag"]})
    assert same.status_code == 304 and same.content == b""
    assert same.headers["etag"] == first.headers["etag"]

    r = client.patch("/v1/items", params={"item_id": sku(5)}, json={"unsafe": True})
    assert r.status_code == 200 and r.json()["unsafe"] is True
    flagged = client.get("/v1/edge/hidden", headers={"if-none-match": first.headers["etag"]})
    assert flagged.status_code == 200 and sku(5) in flagged.json()["item_ids"]
    assert flagged.headers["etag"] != first.headers["etag"]

    client.post("/v1/items", json={"item_id": "new/1", "title": "n", "available": False})
    client.patch("/v1/items", params={"item_id": sku(5)}, json={"unsafe": False})
    client.patch("/v1/items", params={"item_id": sku(UNAVAILABLE)}, json={"available": True})
    now = client.get("/v1/edge/hidden").json()
    assert now["item_ids"] == sorted(set(want) - {sku(UNAVAILABLE)} | {"new/1"})
    recs = client.post("/v1/recommend", json={"history": [sku(1)], "k": 40}).json()["items"]
    assert not {i["item_id"] for i in recs} & set(now["item_ids"])


def test_the_route_is_documented_with_its_statuses(client):
    op = client.get("/openapi.json").json()["paths"]["/v1/edge/hidden"]["get"]
    assert {"200", "304", "503"} <= set(op["responses"])
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "EdgeHiddenOut")
