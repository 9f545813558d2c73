"""Flags through the shared change stream: replicas (workers) sharing one Redis hide an item
flagged through any of them, cached answers included, and one that starts later knows it."""

from __future__ import annotations

import time

import pytest
import redis


@pytest.fixture
def clean_redis(redis_url):
    redis.Redis.from_url(redis_url).flushdb()
    yield redis_url
    redis.Redis.from_url(redis_url).flushdb()


def _within(fn, timeout=2.0) -> float:
    t0 = time.monotonic()
    while not fn():
        assert time.monotonic() - t0 < timeout, f"not within {timeout} s"
        time.sleep(0.005)
    return time.monotonic() - t0


def _ids(client, **params) -> list[str]:
    r = client.get("/v1/recommend", params={"k": 10, **params})
    assert r.status_code == 200, r.text
    return [i["item_id"] for i in r.json()["items"]]


def test_a_flag_set_on_one_replica_hides_the_item_on_every_replica(make_client, clean_redis,
                                                                   tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[rules]\ndeny = ["12"]\n[mmr]\nlambda = 0.1\n')
    shared = {"store": clean_redis, "rerank": rules, "store_timeout_s": 2.0}  # a loaded box
    a, b = (make_client(**shared) for _ in range(2))
    for item in ("8", "9", "10"):
        assert a.post("/v1/events", json={"user_id": "s", "item_id": item}).status_code == 200
    first = _ids(b, user_id="s")
    assert first[0] == "11" and "12" not in first
    assert _ids(b, user_id="s") == first  # cached on b
    assert a.patch("/v1/items/11", json={"unsafe": True}).status_code == 200
    assert "11" not in _ids(a, user_id="s")
    waited = _within(lambda: "11" not in _ids(b, user_id="s"))
    assert b.get("/v1/items/11").json()["hidden"]
    # a new item flagged at creation on b is never shown by a; a later replica knows both
    assert b.post("/v1/items", json={"item_id": "recalled", "attributes": ["family:f2"],
                                     "available": False}).status_code == 200
    _within(lambda: a.get("/v1/items/recalled").status_code == 200)
    assert a.get("/v1/items/recalled").json()["hidden"]
    c = make_client(**shared)
    everything = _ids(c, user_id="s", k=60)
    assert not {"11", "12", "recalled"} & set(everything)
    assert len(everything) == 40 - 3 - 2  # seen 8-10; 11 flagged, 12 denied
    # and cleared again through c
    assert c.patch("/v1/items/11", json={"unsafe": False}).status_code == 200
    _within(lambda: _ids(a, user_id="s")[0] == "11" and _ids(b, user_id="s")[0] == "11")
    assert waited < 1.0


@pytest.mark.slow
def test_two_workers_take_the_file_and_share_flags(serve_run, clean_redis, tmp_path):
    """End to end on ``liverec serve --workers 2 --rerank FILE`` (the file reaches each worker
    through the environment; connections spread over both workers)."""
    import json
    import urllib.parse

    from tests.serve.servers import free_port, get, liverec_serve, stop, wait_ready

    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": {"deny": ["12"]}, "mmr": {"lambda": 0.1}}))
    port = free_port()
    proc = liverec_serve(serve_run, port, "--workers", "2", "--store", clean_redis,
                         "--rerank", str(rules), log=tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        for item in ("8", "9", "10"):
            body = json.dumps({"user_id": "w", "item_id": item}).encode()
            assert get(base + "/v1/events", method="POST", body=body)[0] == 200

        def answers() -> list[dict]:
            q = urllib.parse.urlencode({"user_id": "w", "k": 10})
            return [json.loads(get(f"{base}/v1/recommend?{q}")[2]) for _ in range(20)]

        assert {a["items"][0]["item_id"] for a in answers()} == {"11"}
        assert all(a["rerank"]["applied"] == ["flags", "deny", "mmr"] for a in answers())
        body = json.dumps({"unsafe": True}).encode()
        assert get(base + "/v1/items/11", method="PATCH", body=body)[0] == 200
        time.sleep(0.5)  # the other worker reads the change stream (milliseconds)
        assert not any({"11", "12"} & {i["item_id"] for i in a["items"]} for a in answers())
    finally:
        stop(proc)
