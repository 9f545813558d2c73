"""deploy/haproxy.cfg on loopback: three replicas sharing one Redis behind the real balancer;
health checks on /readyz take a dead or draining replica out, idempotent reads are retried on
another replica, so losing one replica mid-run fails no read and loses no acknowledged event.
(benchmarks/lb_bench.py runs the same with kill -9 on processes, under load.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis
from tests.serve.servers import (
    ROOT,
    get,
    haproxy,
    kill_thread_server,
    lb_status,
    redis_server,
    uvicorn_thread,
)

from liverec.serve.app import create_app


def _wait(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while not fn():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_haproxy_config_is_valid():
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    env = {"LIVEREC_LB_BIND": "127.0.0.1:19990", "LIVEREC_LB_STATS": "/tmp/x.sock",
           "LIVEREC_R1": "127.0.0.1:1", "LIVEREC_R2": "127.0.0.1:2", "LIVEREC_R3": "127.0.0.1:3"}
    out = subprocess.run([binary, "-c", "-f", str(ROOT / "deploy" / "haproxy.cfg")], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_three_replicas_behind_haproxy_lose_one(serve_run, tmp_path):
    with redis_server() as (url, _), \
         uvicorn_thread(create_app(run_dir=serve_run, store=url)) as r1, \
         uvicorn_thread(create_app(run_dir=serve_run, store=url)) as r2:
        app3 = create_app(run_dir=serve_run, store=url)
        with uvicorn_thread(app3) as r3, \
             haproxy([r.removeprefix("http://") for r in (r1, r2, r3)], tmp=tmp_path) \
                as (lb, stats):
            _wait(lambda: set(lb_status(stats).values()) == {"UP"}, 10, "replicas not UP")
            acked, failed_reads, stop = [], [], threading.Event()

            def reads():
                while not stop.is_set():
                    status = get(lb + "/v1/recommend?user_id=lb-u&k=5")[0]
                    if status != 200:
                        failed_reads.append(status)

            def writes():
                n = 0
                while not stop.is_set():
                    n += 1
                    body = json.dumps({"user_id": f"lb-w{n % 7}", "item_id": str(1 + n % 40),
                                       "event_id": f"lb-{n}"}).encode()
                    for _ in range(5):  # the client retries a write with its event_id
                        if get(lb + "/v1/events", method="POST", body=body)[0] == 200:
                            acked.append(f"lb-{n}")
                            break
                        time.sleep(0.05)

            threads = [threading.Thread(target=f) for f in (reads, reads, writes)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            kill_thread_server(r3)  # replica 3 goes away mid-run, connections and all
            time.sleep(2.0)
            stop.set()
            for t in threads:
                t.join(10)
            assert failed_reads == []
            assert lb_status(stats)["r3"].startswith("DOWN")
            assert len(acked) > 10
            stored = {json.loads(f[b"e"])[0]
                      for _, f in redis.Redis.from_url(url).xrange("liverec:events")}
            assert set(acked) <= stored  # no acknowledged event lost

