"""Every cache is bounded in bytes and reports it (case cache-memory-growth); filter masks come
from a per-attribute index; adding items is amortised; each fast path against its reference."""

from __future__ import annotations

import re

import numpy as np

from liverec.retrieval.exact import ExactRetriever
from liverec.serve.cache import ByteLRU, UserCache


def _metric(text: str, name: str, cache: str) -> float:
    m = re.search(rf'^{name}{{cache="{cache}"}} (\S+)$', text, re.M)
    assert m, f"{name}{{cache={cache}}} missing"
    return float(m.group(1))


def test_user_cache_stays_within_its_byte_budget():
    cache = UserCache(max_users=10**6, max_answers=8, max_bytes=100_000)
    for u in range(2000):
        for v in range(3):
            cache.put_answer(f"u{u}", 1, 0, f"user_id=u{u}&v={v}".encode(), b"x" * 300)
        cache.put_vector(f"u{u}", 1, 0, np.zeros(16, np.float32))
        assert cache.nbytes <= 100_000
    stats = cache.stats()
    assert stats["answers"]["evictions"] > 5000 and stats["vectors"]["evictions"] > 1000
    assert cache.answer("u1999", 1, b"user_id=u1999&v=2") == b"x" * 300  # newest kept
    assert cache.answer("u0", 1, b"user_id=u0&v=0") is None  # oldest evicted
    cache.put_answer("big", 1, 0, b"k", b"y" * 60_000)  # over a quarter: not kept
    assert cache.answer("big", 1, b"k") is None and cache.nbytes <= 100_000
    cache.invalidate("u1999")
    cache.clear()
    assert cache.nbytes == 0 and len(cache) == 0


def test_byte_lru():
    lru = ByteLRU(10_000)
    for i in range(100):
        lru.put(i, np.zeros(100, np.int64))  # 800 B + overhead each
    assert lru.nbytes <= 10_000 and lru.stats()["evictions"] == 100 - len(lru)
    assert lru.get(99) is not None and lru.get(0) is None


def test_anonymous_requests_cannot_grow_the_service(make_client):
    """Distinct unknown users and parameters (the case's traffic) stay within cache_bytes;
    cached answers equal fresh ones (the cache-off reference)."""
    budget = 150_000
    client = make_client(cache_bytes=budget)
    reference = make_client(cache=False)
    for c in (client, reference):
        c.post("/v1/events", json=[{"user_id": "known", "item_id": str(i)} for i in (3, 4)])
        c.post("/v1/events", json=[{"user_id": f"k{u}", "item_id": str(u % 40)}
                                   for u in range(50)])
    for i in range(400):
        u, v = divmod(i, 8)
        params = {"user_id": f"mem-{u}", "k": 40, **({"exclude": f"v{v}"} if v else {})}
        assert client.get("/v1/recommend", params=params).status_code == 200
    assert client.app.state.engine.cache.stats()["answers"]["entries"] == 0  # unknown users
    for i in range(400):  # known users, 8 variants each
        u, v = divmod(i, 8)
        params = {"user_id": f"k{u}", "k": 40, **({"exclude": f"v{v}"} if v else {})}
        assert client.get("/v1/recommend", params=params).status_code == 200
    for _ in range(2):  # miss, then a hit from the cache
        got = client.get("/v1/recommend", params={"user_id": "known", "k": 5}).json()
        assert got == reference.get("/v1/recommend", params={"user_id": "known", "k": 5}).json()
    text = client.get("/metrics").text
    assert _metric(text, "liverec_cache_bytes", "answers") + \
        _metric(text, "liverec_cache_bytes", "vectors") <= budget
    assert _metric(text, "liverec_cache_evictions_total", "answers") > 0
    assert _metric(text, "liverec_cache_entries", "vectors") >= 1
    for name in ("liverec_cache_bytes", "liverec_cache_entries", "liverec_cache_evictions_total"):
        _metric(text, name, "filter_masks")


def test_filter_masks_match_the_reference_and_are_bounded(make_client):
    client = make_client(mask_cache_bytes=2_000)
    handle = client.app.state.engine.handle
    attrs = ["family:f1", "17", "no-such-attribute", "family:f7"]
    for a in attrs:
        assert np.array_equal(handle.not_matching(a), handle.not_matching_reference(a))
    client.post("/v1/items", json={"item_id": "new", "attributes": ["family:f1"]})
    for a in attrs:
        assert np.array_equal(handle.not_matching(a), handle.not_matching_reference(a))
    for i in range(50):  # distinct filter values from anonymous requests
        r = client.get("/v1/recommend", params={"user_id": "a", "attribute": f"x{i}"})
        assert r.status_code == 200 and r.json()["items"] == []
    stats = handle.masks.stats()
    assert stats["bytes"] <= 2_000 and stats["evictions"] > 0
    got = client.post("/v1/recommend", json={"history": ["1"], "k": 10,
                                             "attribute": "family:f1"}).json()
    assert {i["item_id"] for i in got["items"]} <= {"5", "6", "7", "8", "9", "new"}


def test_adding_items_is_amortised_and_search_matches_a_rebuilt_index(client):
    handle = client.app.state.engine.handle
    buffers, table_rows = set(), len(handle.table)
    for i in range(100):
        r = client.post("/v1/items", json={"item_id": f"n{i}", "attributes": [f"family:f{i % 8}"]})
        assert r.status_code == 200
        buffers.add(id(handle._buf))
    assert len(handle.table) == table_rows + 100
    assert len(buffers) <= 3 and len(handle._buf) < 2 * len(handle.table)  # doubling
    rebuilt = ExactRetriever(skip_rows=1).build(np.array(handle.table))
    q = np.random.default_rng(0).normal(size=(4, handle.table.shape[1])).astype(np.float32)
    ids, scores = handle.retriever.search(q, 10, [np.array([3])] * 4)
    ref_ids, ref_scores = rebuilt.search(q, 10, [np.array([3])] * 4)
    assert np.array_equal(ids, ref_ids) and np.allclose(scores, ref_scores)


def test_exact_retriever_add_in_batches_matches_build():
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(50, 8)).astype(np.float32)
    grown = ExactRetriever(skip_rows=1).build(rows[:5])
    for start in range(5, 50, 7):
        got = grown.add(rows[start : start + 7])
        assert list(got) == list(range(start, min(start + 7, 50)))
    ref = ExactRetriever(skip_rows=1).build(rows)
    q = rng.normal(size=(3, 8)).astype(np.float32)
    assert np.array_equal(grown.search(q, 12)[0], ref.search(q, 12)[0])
    assert grown.n_rows == 50
