"""What the dashboard reads: the static page, GET /v1/stats and GET /v1/model."""

from __future__ import annotations

import json
import math

import pytest
from fastapi.testclient import TestClient

from liverec.serve.app import create_app
from liverec.serve.routes.dashboard import compression_rows
from liverec.serve.stats import Snapshot, figures, quantile


@pytest.fixture
def client(dashboard_run):
    with TestClient(create_app(run_dir=dashboard_run, store="memory://")) as c:
        yield c


def test_page_and_assets_are_served(client):
    r = client.get("/ui", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"].endswith("/ui/")
    page = client.get("/ui/")
    assert page.status_code == 200 and "<title>liverec dashboard</title>" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN: everything is local
    assert client.get("/ui/app.js").status_code == 200
    assert client.get("/ui/app.css").headers["content-type"].startswith("text/css")


def test_stats_count_api_traffic_not_the_dashboard_polls(client):
    first = client.get("/v1/stats").json()
    assert first["window"]["api"]["requests"] == 0 and first["window"]["window_s"] is None
    assert client.post("/v1/events", json={"user_id": "a", "item_id": "I001"}).status_code == 200
    for _ in range(4):
        assert client.get("/v1/recommend", params={"user_id": "a"}).status_code == 200
    client.get("/v1/model")
    s = client.get("/v1/stats").json()
    w = s["window"]
    assert w["api"]["requests"] == 5 and w["recommend"]["requests"] == 4
    assert w["window_s"] > 0 and w["api"]["requests_per_s"] > 0
    assert 0 < w["recommend"]["p50_ms"] <= w["recommend"]["p99_ms"]
    assert w["cache_lookups"] == 4 and w["cache_hit_rate"] == 0.75  # one miss, then hits
    assert s["events"] == 1 and s["users"] == 1 and s["model_version"].startswith("shop@")
    assert s["recent_users"] == ["a"]
    again = client.get("/v1/stats").json()["window"]  # the window reaches back ~10 s
    assert again["api"]["requests"] == 5 and again["window_s"] > w["window_s"]


def test_histogram_quantiles_interpolate_within_buckets():
    b = {0.001: 10.0, 0.01: 90.0, 0.1: 100.0, math.inf: 100.0}
    assert quantile(b, 0.5) == pytest.approx(0.001 + 0.009 * 40 / 80)
    assert quantile(b, 0.99) == pytest.approx(0.01 + 0.09 * 9 / 10)
    assert quantile({0.1: 0.0, math.inf: 2.0}, 0.5) == 0.1  # beyond the last bound
    assert quantile({math.inf: 0.0}, 0.5) is None
    old = Snapshot(1.0, {"api": {0.001: 5.0, math.inf: 5.0}}, {"hit": 1.0, "miss": 1.0})
    new = Snapshot(3.0, {"api": {0.001: 9.0, math.inf: 11.0}}, {"hit": 4.0, "miss": 2.0})
    f = figures(new, old)
    assert f["api"]["requests"] == 6 and f["api"]["requests_per_s"] == 3.0
    assert f["cache_hit_rate"] == 0.75 and f["recommend"]["p50_ms"] is None


def test_model_card_reads_the_run_directory(client, dashboard_run):
    m = client.get("/v1/model").json()
    assert m["run"] == "shop" and m["model"]["d_model"] == 16 and m["data"] == "synthetic"
    metrics = json.loads((dashboard_run / "metrics.json").read_text())
    assert m["metrics"]["test"] == metrics["model"]["test"]
    assert set(m["metrics"]["baselines"]) == {"pop"}
    curve = client.get(m["training_curve"])
    assert curve.status_code == 200 and curve.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_compression_report_is_found_beside_the_run(dashboard_run, tmp_path):
    assert compression_rows(dashboard_run) is None
    out = dashboard_run.parent / "shop-compressed"
    out.mkdir()
    rows = {"fp32": {"run_dir": str(dashboard_run), "ndcg@20": 0.5, "weight_bytes": 100},
            "int8": {"run_dir": str(out / "int8"), "ndcg@20": 0.49, "weight_bytes": 30}}
    (out / "compression.json").write_text(json.dumps({"variants": rows}))
    try:
        found = compression_rows(dashboard_run)
        assert list(found) == ["fp32", "int8"] and found["int8"]["ndcg@20"] == 0.49
        assert compression_rows(tmp_path) is None  # another run's report is not this one's
    finally:
        (out / "compression.json").unlink()
        out.rmdir()


def test_recent_users_newest_first_without_repeats(client):
    for user in ("a", "b", "a", "c"):
        client.post("/v1/events", json={"user_id": user, "item_id": "I002"})
    client.post("/v1/events", json={"user_id": "d", "item_id": "I002", "event_id": "e1"})
    client.post("/v1/events", json={"user_id": "z", "item_id": "I002", "event_id": "e1"})
    assert client.get("/v1/stats").json()["recent_users"] == ["d", "c", "a", "b"]


def test_with_keys_the_page_is_served_but_its_data_needs_a_read_key(dashboard_run):
    with TestClient(create_app(run_dir=dashboard_run, store="memory://",
                               api_key="read:dash-reader-0123456789,dash-admin-0123456789")) as c:
        assert c.get("/ui/").status_code == 200 and c.get("/v1/model").status_code == 200
        r = c.post("/v1/events", json={"user_id": "a", "item_id": "I001"},
                   headers={"X-API-Key": "dash-admin-0123456789"})
        assert r.status_code == 200
        r = c.get("/v1/stats")
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert '"a"' not in r.text
        s = c.get("/v1/stats", headers={"X-API-Key": "dash-reader-0123456789"}).json()
        assert s["recent_users"] == ["a"]
