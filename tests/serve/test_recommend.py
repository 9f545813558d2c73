"""Recommendations through HTTP: freshness, fallback, cached == fresh, batched == single."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from liverec.serve.app import create_app


def _rec(client, user, **params):
    r = client.get("/v1/recommend", params={"user_id": user, **params})
    assert r.status_code == 200, r.text
    return r.json()


def _post(client, *events):
    r = client.post("/v1/events", json=list(events))
    assert r.status_code == 200, r.text
    return r.json()


def test_unknown_user_gets_popular_fallback(client):
    body = _rec(client, "nobody", k=5)
    assert body["fallback"] == "popular" and body["events_seen"] == 0
    assert len(body["items"]) == 5 and body["model_version"].startswith("tiny@")


def test_freshness_next_answer_includes_the_acknowledged_event(make_client):
    client = make_client(cache=True, batching=True, batch_window_ms=5)
    _post(client, {"user_id": "u1", "item_id": "3"}, {"user_id": "u1", "item_id": "4"})
    first = _rec(client, "u1", k=5)
    assert first["events_seen"] == 2 and _rec(client, "u1", k=5) == first  # cached
    top = first["items"][0]["item_id"]
    assert top == "5"  # the known answer: next = last + 1
    _post(client, {"user_id": "u1", "item_id": top})
    after = _rec(client, "u1", k=5)
    assert after["events_seen"] == 3  # computed from a history that includes the event
    assert top not in [i["item_id"] for i in after["items"]]  # seen items are excluded
    assert after["items"][0]["item_id"] == "6"
    assert after != first


def test_cached_equals_fresh_and_naive_reference(make_client):
    fast = make_client(cache=True, batching=True)
    naive = make_client(naive=True)
    events = [{"user_id": f"u{u}", "item_id": str((u + j) % 40)} for u in range(6)
              for j in range(4)]
    for c in (fast, naive):
        _post(c, *events)
    for u in range(6):
        miss = _rec(fast, f"u{u}", k=8)
        hit = _rec(fast, f"u{u}", k=8)
        ref = _rec(naive, f"u{u}", k=8)
        assert hit == miss
        assert [i["item_id"] for i in hit["items"]] == [i["item_id"] for i in ref["items"]]
        np.testing.assert_allclose([i["score"] for i in hit["items"]],
                                   [i["score"] for i in ref["items"]], rtol=1e-4, atol=1e-4)


async def _concurrent(app, users: list[str], k: int) -> list[dict]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            await c.post("/v1/events", json=[{"user_id": u, "item_id": str(i % 40)}
                                             for i, u in enumerate(users * 3)])
            rs = await asyncio.gather(*(c.get("/v1/recommend", params={"user_id": u, "k": k})
                                        for u in users))
            metrics = (await c.get("/metrics")).text
    assert all(r.status_code == 200 for r in rs)
    return [r.json() for r in rs], metrics


def test_batched_equals_single(serve_run):
    users = [f"b{u}" for u in range(24)]
    batched, metrics = asyncio.run(_concurrent(
        create_app(run_dir=serve_run, store="memory://", batch_window_ms=20, cache=False),
        users, 6))
    single, _ = asyncio.run(_concurrent(
        create_app(run_dir=serve_run, store="memory://", batching=False, cache=False),
        users, 6))
    sizes = [ln for ln in metrics.splitlines() if ln.startswith("liverec_batch_size_count")]
    assert sizes and float(sizes[0].split()[-1]) < len(users)  # requests shared passes
    for b, s in zip(batched, single):
        assert [i["item_id"] for i in b["items"]] == [i["item_id"] for i in s["items"]]
        np.testing.assert_allclose([i["score"] for i in b["items"]],
                                   [i["score"] for i in s["items"]], atol=1e-4)


def test_filters_exclude_and_attribute(client):
    _post(client, {"user_id": "f", "item_id": "3"})
    body = _rec(client, "f", k=5, exclude=["4", "5"])
    ids = [i["item_id"] for i in body["items"]]
    assert not {"3", "4", "5"} & set(ids)
    fam = _rec(client, "f", k=3, attribute="family:f2")
    assert {i["item_id"] for i in fam["items"]} <= {"10", "11", "12", "13", "14"}
    seen = _rec(client, "f", k=40, exclude_seen=False)
    assert "3" in [i["item_id"] for i in seen["items"]]
    assert client.get("/v1/recommend", params={"user_id": "f", "category": "a",
                                               "attribute": "b"}).status_code == 422


def test_anonymous_history(client):
    r = client.post("/v1/recommend", json={"history": ["7", "8"], "k": 3})
    assert r.status_code == 200 and r.json()["items"][0]["item_id"] == "9"
    r = client.post("/v1/recommend", json={"history": ["7", "nope", "gone"], "k": 3})
    assert r.status_code == 422 and "'nope'" in r.json()["detail"]
    assert r.json()["unknown"] == ["nope", "gone"]
    r = client.post("/v1/recommend", json={"history": ["7", "nope"], "unknown": "ignore"})
    assert r.status_code == 200


@pytest.mark.parametrize("retriever", ["hnsw", "ivf"])
def test_ann_retriever_serves(make_client, retriever):
    pytest.importorskip("faiss")
    client = make_client(retriever=retriever)
    _post(client, {"user_id": "a", "item_id": "1"})
    assert _rec(client, "a", k=3)["items"][0]["item_id"] == "2"
