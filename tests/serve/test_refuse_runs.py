"""Runs that cannot serve are refused at start and at reload, and the old model keeps serving
(cases reload-accepts-nan-table, reload-accepts-other-catalogue)."""

from __future__ import annotations

import re
import shutil

import polars as pl
import pytest
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file

from liverec.errors import ArtifactError
from liverec.serve.app import create_app


def _poisoned(src, out, key, rows):
    shutil.copytree(src, out)
    state = load_file(str(src / "model.safetensors"))
    state[key][rows] = float("nan")
    save_file(state, str(out / "model.safetensors"))
    return out


def _other_catalogue(src, out, rename=True, retitle=True):
    """The same weights over another catalogue: item '2' is another product, '39' is gone."""
    shutil.copytree(src, out)
    items = pl.read_parquet(src / "items.parquet")
    if retitle:
        items = items.with_columns(pl.when(pl.col("item") == "2").then(pl.lit("garden hose"))
                                   .otherwise(pl.col("title")).alias("title"))
    if rename:
        items = items.with_columns(pl.when(pl.col("item") == "39").then(pl.lit("z39"))
                                   .otherwise(pl.col("item")).alias("item"))
    items.write_parquet(out / "items.parquet")
    return out


@pytest.mark.parametrize("key, rows", [
    ("items.emb.weight", slice(5, 10)),  # the case: 5 item rows NaN
    ("blocks.1.ffn.2.bias", slice(0, 1)),  # every user vector NaN, the table finite
    ("pos.weight", slice(0, 1)),  # only histories as long as max_len are NaN
], ids=["item-rows", "layer", "long-histories"])
def test_non_finite_run_is_refused_at_reload_and_start(make_client, serve_run, tmp_path, key,
                                                       rows):
    bad = _poisoned(serve_run, tmp_path / "nan", key, rows)
    client = make_client()
    client.post("/v1/events", json={"user_id": "nan-check", "item_id": "20"})
    before = client.post("/v1/recommend", json={"history": ["7"], "k": 3}).json()
    r = client.post("/admin/reload", json={"run_dir": str(bad)})
    # liverec.load's own probe or the service's table/score check, whichever sees it first
    assert r.status_code == 409 and re.search("not finite|non-finite", r.json()["detail"]), r.text
    after = client.post("/v1/recommend", json={"history": ["7"], "k": 3}).json()
    assert after == before and len(after["items"]) == 3  # the old model keeps serving
    user = client.get("/v1/recommend", params={"user_id": "nan-check", "k": 3}).json()
    assert len(user["items"]) == 3 and user["model_version"] == before["model_version"]
    with pytest.raises(ArtifactError, match="not finite|non-finite"):
        with TestClient(create_app(run_dir=bad, store="memory://")):
            pass


def test_other_catalogue_is_refused_unless_allowed(make_client, serve_run, tmp_path):
    other = _other_catalogue(serve_run, tmp_path / "other")
    client = make_client()
    client.post("/v1/events", json=[{"user_id": "cat-u", "item_id": "38"},
                                    {"user_id": "cat-u", "item_id": "39"}])
    before = client.get("/v1/recommend", params={"user_id": "cat-u", "k": 2}).json()
    r = client.post("/admin/reload", json={"run_dir": str(other)})
    detail = r.json()["detail"]
    assert r.status_code == 409 and "allow_catalogue_change" in detail, r.text
    assert "'39'" in detail and "'2'" in detail
    assert client.get("/v1/items/2").json()["title"] == "product 2 family0"
    assert client.get("/v1/recommend", params={"user_id": "cat-u", "k": 2}).json() == before
    assert client.post("/v1/events", json={"user_id": "cat-u", "item_id": "39"}
                       ).status_code == 200
    ok = client.post("/admin/reload", json={"run_dir": str(other),
                                            "allow_catalogue_change": True})
    assert ok.status_code == 200
    assert client.get("/v1/items/2").json()["title"] == "garden hose"
    back = client.post("/admin/reload", json={"run_dir": str(serve_run)})  # the reverse too
    assert back.status_code == 409


def test_grown_catalogue_is_accepted(make_client, serve_run, tmp_path):
    """New ids are no change of meaning: a run whose catalogue only adds items swaps."""
    grown = tmp_path / "grown"
    shutil.copytree(serve_run, grown)
    client = make_client()
    client.post("/v1/events", json={"user_id": "g", "item_id": "3"})
    client.app.state.engine.handle.digests.pop("39")  # the served one lacked item '39'
    assert client.post("/admin/reload", json={"run_dir": str(grown)}).status_code == 200


def test_start_refuses_a_store_recorded_over_another_catalogue(make_client, serve_run,
                                                                tmp_path):
    url = f"sqlite:///{tmp_path / 'ev.db'}"
    first = make_client(store=url)
    first.post("/v1/events", json={"user_id": "s", "item_id": "39"})
    first.__exit__(None, None, None)
    other = _other_catalogue(serve_run, tmp_path / "other", rename=False)
    with pytest.raises(ArtifactError, match="name other items in it.*'2'"):
        with TestClient(create_app(run_dir=other, store=url)):
            pass
    allowed = make_client(run_dir=other, store=url, allow_catalogue_change=True)
    assert allowed.get("/v1/items/2").json()["title"] == "garden hose"
    allowed.__exit__(None, None, None)
    again = make_client(run_dir=other, store=url)  # the store now records the new catalogue
    assert again.get("/v1/users/s").json()["events_total"] == 1
