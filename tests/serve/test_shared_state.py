"""Case multiworker-items-reload: replicas (workers or processes) sharing one Redis agree on the
catalogue and the model version; reload is coordinated (all load and check before any switches).
Case multiworker-keepalive-44ms: the workers' listening socket sets TCP_NODELAY."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
import uuid

import pytest
import redis
from tests.serve.servers import free_port, get, liverec_serve, stop, wait_ready

from liverec.errors import ArtifactError
from liverec.serve.server import bind_socket


@pytest.fixture
def clean_redis(redis_url):
    redis.Redis.from_url(redis_url).flushdb()
    yield redis_url
    redis.Redis.from_url(redis_url).flushdb()


def _eventually(fn, timeout=1.0):
    """Seconds until ``fn()`` is truthy (fails after ``timeout``)."""
    t0 = time.monotonic()
    while not fn():
        assert time.monotonic() - t0 < timeout, f"not within {timeout} s"
        time.sleep(0.005)
    return time.monotonic() - t0


def _version(client):
    return client.get("/readyz").json()["model_version"]


def test_items_added_anywhere_are_served_everywhere(make_client, clean_redis):
    a, b = make_client(store=clean_redis), make_client(store=clean_redis)
    waits = []
    for n in range(5):
        item = f"shared-{n}-{uuid.uuid4().hex[:6]}"
        r = a.post("/v1/items", json={"item_id": item, "title": "t", "attributes": ["family:f1"]})
        assert r.status_code == 200
        # an event on it through the other replica is accepted at once (it reads the catalogue)
        ev = b.post("/v1/events", json={"user_id": f"u{n}", "item_id": item})
        assert ev.status_code == 200, ev.text
        waits.append(_eventually(lambda item=item: b.get(f"/v1/items/{item}").status_code == 200))
        assert b.get(f"/v1/items/{item}").json()["title"] == "t"
    # an update through b reaches a
    b.post("/v1/items", json={"item_id": item, "title": "renamed"})
    _eventually(lambda: a.get(f"/v1/items/{item}").json()["title"] == "renamed")
    assert max(waits) < 1.0


def test_reload_is_coordinated_and_every_replica_follows(make_client, clean_redis, serve_run,
                                                         serve_run_v2):
    a, b = make_client(store=clean_redis), make_client(store=clean_redis)
    v1 = _version(a)
    assert _version(b) == v1
    r = a.post("/admin/reload", json={"run_dir": str(serve_run_v2)})
    assert r.status_code == 200, r.text
    v2 = r.json()["model_version"]
    assert v2 != v1 and _version(a) == v2
    _eventually(lambda: _version(b) == v2)
    rec = b.get("/v1/recommend", params={"user_id": "nobody"}).json()
    assert rec["model_version"] == v2  # answers say which version made them
    # a replica that starts now joins the others' version, not its command line's
    c = make_client(store=clean_redis, run_dir=serve_run)
    assert _version(c) == v2
    # back, through another replica
    assert b.post("/admin/reload", json={"run_dir": str(serve_run)}).status_code == 200
    for client in (a, b, c):
        _eventually(lambda client=client: _version(client) == v1)


def test_reload_refused_by_one_replica_switches_none(make_client, clean_redis, serve_run_v2):
    a, b = make_client(store=clean_redis), make_client(store=clean_redis)
    v1 = _version(a)
    shared_b = b.app.state.engine.shared

    async def refuse(run_dir, version, allow=False):
        raise ArtifactError(f"{run_dir}: cannot read it here")

    shared_b._load = refuse
    r = a.post("/admin/reload", json={"run_dir": str(serve_run_v2)})
    assert r.status_code == 409
    assert "cannot read it here" in r.json()["detail"] and shared_b.id in r.json()["detail"]
    time.sleep(0.1)
    assert _version(a) == v1 == _version(b)


def test_reload_of_a_broken_run_is_refused_before_anyone_prepares(make_client, clean_redis,
                                                                  tmp_path):
    a, b = make_client(store=clean_redis), make_client(store=clean_redis)
    v1 = _version(a)
    assert a.post("/admin/reload", json={"run_dir": str(tmp_path)}).status_code == 409
    assert _version(a) == v1 == _version(b)


def test_worker_socket_sets_nodelay_on_accepted_connections():
    """The 44 ms stall: uvicorn's worker socket had protocol 0, so asyncio left Nagle on."""
    sock = bind_socket("127.0.0.1", free_port())
    seen = {}

    async def main():
        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                s = transport.get_extra_info("socket")
                seen["nodelay"] = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname())
        await asyncio.sleep(0.05)
        writer.close()
        server.close()

    asyncio.run(main())
    assert seen == {"nodelay": 1}
    assert sock.proto == socket.IPPROTO_TCP


@pytest.mark.slow
def test_two_workers_agree_and_keep_alive_is_fast(serve_run, serve_run_v2, clean_redis,
                                                  tmp_path):
    """The cases end to end on a real ``liverec serve --workers 2``."""
    port = free_port()
    proc = liverec_serve(serve_run, port, "--workers", "2", "--store", clean_redis,
                         "--api-key", "SECRET", log=tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    key = {"X-API-Key": "SECRET"}
    try:
        wait_ready(base, proc)
        item = f"mw-{uuid.uuid4().hex[:6]}"
        body = json.dumps({"item_id": item, "title": "t", "attributes": ["family:f2"]}).encode()
        assert get(base + "/v1/items", method="POST", body=body, headers=key)[0] == 200
        assert {get(f"{base}/v1/items/{item}")[0] for _ in range(20)} == {200}
        ev = [get(base + "/v1/events", method="POST", headers=key, body=json.dumps(
            {"user_id": f"mw-u{i}", "item_id": item}).encode())[0] for i in range(20)]
        assert set(ev) == {200}
        body = json.dumps({"run_dir": str(serve_run_v2)}).encode()
        new = json.loads(get(base + "/admin/reload", method="POST", body=body,
                             headers=key)[2])["model_version"]
        versions = {json.loads(get(base + "/readyz")[2])["model_version"] for _ in range(20)}
        assert versions == {new}
        conn = http.client.HTTPConnection("127.0.0.1", port)
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            conn.request("GET", "/v1/recommend?user_id=mw-u1&k=5")
            r = conn.getresponse()
            r.read()
            times.append(time.perf_counter() - t0)
        conn.close()
        assert sorted(times)[10] < 0.02, times  # was ~44 ms per request
    finally:
        stop(proc)


def test_worker_sockets_share_the_port_and_the_connections():
    """One SO_REUSEPORT socket per worker: the kernel spreads connections over the workers
    (with one shared socket, the first worker awake accepted all 32 keep-alive connections)."""
    port = free_port()
    socks = [bind_socket("127.0.0.1", port, reuse_port=True) for _ in range(2)]
    counts = [0, 0]

    async def main():
        servers = []
        for i, sock in enumerate(socks):
            class Count(asyncio.Protocol):
                def connection_made(self, transport, i=i):
                    counts[i] += 1

            servers.append(await asyncio.get_running_loop().create_server(Count, sock=sock))
        writers = [(await asyncio.open_connection("127.0.0.1", port))[1] for _ in range(32)]
        await asyncio.sleep(0.1)
        for w in writers:
            w.close()
        for s in servers:
            s.close()

    asyncio.run(main())
    assert sum(counts) == 32 and min(counts) >= 4, counts


def test_one_reload_at_a_time(make_client, clean_redis, serve_run_v2):
    a = make_client(store=clean_redis)
    store = a.app.state.engine.store
    assert store.lock("reload", "someone-else", 5) is None
    r = a.post("/admin/reload", json={"run_dir": str(serve_run_v2)})
    assert r.status_code == 409 and "another reload is in progress" in r.json()["detail"]
    store.unlock("reload", "someone-else")
    assert a.post("/admin/reload", json={"run_dir": str(serve_run_v2)}).status_code == 200


def test_replicas_stage_before_they_vote_so_the_commit_is_a_swap(make_client, clean_redis,
                                                                 serve_run_v2, monkeypatch):
    """Each replica applies the shared catalogue and builds the re-ranking stage for the new
    run while preparing; after the commit, install() only swaps (no second staging)."""
    a, b = make_client(store=clean_redis), make_client(store=clean_redis)
    assert a.post("/v1/items", json={"item_id": "staged-1", "title": "t"}).status_code == 200
    engine_b = b.app.state.engine
    calls = []
    real_stage, real_install = engine_b.stage, engine_b.install
    monkeypatch.setattr(engine_b, "stage", lambda new: calls.append("stage") or real_stage(new))
    monkeypatch.setattr(engine_b, "install",
                        lambda new: calls.append(("install", len(engine_b._staged)))
                        or real_install(new))
    r = a.post("/admin/reload", json={"run_dir": str(serve_run_v2)})
    assert r.status_code == 200, r.text
    _eventually(lambda: _version(b) == r.json()["model_version"])
    assert calls == ["stage", ("install", 1)]  # staged while voting, installed from the stage
    assert not engine_b._staged
    assert b.get("/v1/items/staged-1").status_code == 200  # the new run has the added item
