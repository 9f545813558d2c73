"""Shared state and outages with real processes (must-shows 3 and 4).

Two ``liverec serve`` replicas (A, B) share one private redis-server:

- convergence: ``--trials`` times, an item is added through A (or a model reload is asked of
  A, alternating between two runs); from A's acknowledgement, B is polled on a keep-alive
  connection until it serves the item (GET /v1/items/{id} 200) or reports the new version
  (GET /readyz). p50/p99/max of those delays.
- freeze: Redis gets SIGSTOP for ``--freeze-s`` seconds while a client polls A's /healthz and
  another calls store-backed routes (recommend, events, users) on fresh connections; then
  SIGCONT and the time until A answers 200 again.

    PYTHONPATH=src python benchmarks/shared_bench.py --run-dir /tmp/redis-run \
        --other-run /tmp/redis-run2 --out shared_state
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from serve_common import (
    Conn,
    free_port,
    percentiles,
    start_server,
    stop_server,
    write_criteria_report,
)

OUT = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]


async def converge(a: int, b: int, trials: int, runs: list[Path]) -> dict:
    ca, cb = await Conn("127.0.0.1", a).open(), await Conn("127.0.0.1", b).open()
    item_delays, reload_delays, reload_s, failures = [], [], [], []
    for t in range(trials):
        item = f"conv-{os.getpid()}-{t}"
        status, body = await ca.json("POST", "/v1/items", {"item_id": item, "title": f"t{t}",
                                                           "attributes": ["category:eyes"]})
        t0 = time.perf_counter()
        if status != 200:
            failures.append(f"item {item}: {status} {body}")
            continue
        while (await cb.request("GET", f"/v1/items/{item}"))[0] != 200:
            if time.perf_counter() - t0 > 10:
                failures.append(f"item {item} not on B after 10 s")
                break
        item_delays.append(time.perf_counter() - t0)
    for t in range(trials):
        target = runs[t % 2]
        t_ask = time.perf_counter()
        # absolute: a relative run_dir is read under the server's models root
        status, body = await ca.json("POST", "/admin/reload", {"run_dir": str(target.resolve())})
        t0 = time.perf_counter()
        reload_s.append(t0 - t_ask)
        if status != 200:
            failures.append(f"reload {target}: {status} {body}")
            continue
        version = body["model_version"]
        # the reload call can outlast the server's keep-alive timeout (5 s): a fresh connection
        cb.close()
        cb = await Conn("127.0.0.1", b).open()
        while (await cb.json("GET", "/readyz"))[1].get("model_version") != version:
            if time.perf_counter() - t0 > 10:
                failures.append(f"B not on {version} after 10 s")
                break
        reload_delays.append(time.perf_counter() - t0)
    ca.close()
    cb.close()
    return {"trials": trials, "failures": failures,
            "item_seen_on_other_replica": percentiles(item_delays),
            "reload_seen_on_other_replica": percentiles(reload_delays),
            "reload_call_duration": percentiles(reload_s)}


async def _one(port: int, method: str, path: str, body=None) -> tuple[int, float]:
    t0 = time.perf_counter()
    c = await Conn("127.0.0.1", port).open()
    try:
        status, _ = await asyncio.wait_for(c.json(method, path, body), 30)
    finally:
        c.close()
    return status, time.perf_counter() - t0


async def freeze(port: int, redis: subprocess.Popen, seconds: float, item: str) -> dict:
    routes = [("GET", "/v1/recommend?user_id=fz-1&k=5", None),
              ("POST", "/v1/events", {"user_id": "fz-1", "item_id": item, "event_id": "fz"}),
              ("GET", "/v1/users/fz-1", None)]
    assert (await _one(port, *routes[1]))[0] == 200
    health, store = [], []
    redis.send_signal(signal.SIGSTOP)
    stop = time.perf_counter() + seconds
    hc = await Conn("127.0.0.1", port).open()

    async def poll_health():
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            status, _ = await hc.request("GET", "/healthz")
            health.append((status, time.perf_counter() - t0))
            await asyncio.sleep(0.01)

    async def poll_store():
        i = 0
        while time.perf_counter() < stop:
            store.append(await _one(port, *routes[i % len(routes)]))
            i += 1
            await asyncio.sleep(0.02)

    try:
        await asyncio.gather(poll_health(), poll_store())
    finally:
        redis.send_signal(signal.SIGCONT)
    t0 = time.perf_counter()
    while (await hc.request("GET", "/v1/recommend?user_id=fz-1&k=5"))[0] != 200:
        await asyncio.sleep(0.01)
    recovered = time.perf_counter() - t0
    hc.close()
    return {"frozen_s": seconds, "healthz": {"n": len(health),
                                             "statuses": sorted({s for s, _ in health}),
                                             **percentiles([t for _, t in health])},
            "store_routes": {"n": len(store), "statuses": sorted({s for s, _ in store}),
                             **percentiles([t for _, t in store])},
            "recovered_after_sigcont_s": round(recovered, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--other-run", type=Path, required=True)
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--freeze-s", type=float, default=5.0)
    p.add_argument("--out", default="shared_state")
    args = p.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="shared-bench-"))
    rport, a, b = free_port(), free_port(), free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    env = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    store = f"redis://127.0.0.1:{rport}/0"
    servers = []
    try:
        servers.append(start_server(args.run_dir, a, "--store", store, env=env,
                                    log_path=tmp / "a.log"))
        servers.append(start_server(args.run_dir, b, "--store", store, env=env,
                                    log_path=tmp / "b.log"))
        load = os.getloadavg()
        conv = asyncio.run(converge(a, b, args.trials, [args.other_run, args.run_dir]))
        item = pq.read_table(args.run_dir / "items.parquet", columns=["item"])["item"][0]
        frz = asyncio.run(freeze(a, redis, args.freeze_s, str(item)))
    finally:
        for s in servers:
            stop_server(s)
        redis.send_signal(signal.SIGCONT)
        redis.terminate()
        redis.wait(5)
    item99 = conv["item_seen_on_other_replica"]["p99_ms"]
    rel99 = conv["reload_seen_on_other_replica"]["p99_ms"]
    report = {
        "what": "two liverec serve processes sharing one Redis: convergence of items and "
                "reloads; Redis frozen with SIGSTOP",
        "cpus": os.cpu_count(), "loadavg_at_start": load, "convergence": conv, "freeze": frz,
        "criteria": {
            "item_p99_ms": {"value": item99, "target": "< 1000", "pass": item99 < 1000},
            "reload_p99_ms": {"value": rel99, "target": "< 1000", "pass": rel99 < 1000},
            "no_convergence_failures": {"value": len(conv["failures"]), "target": 0,
                                        "pass": not conv["failures"]},
            "healthz_p99_ms_frozen": {"value": frz["healthz"]["p99_ms"], "target": "< 50",
                                      "pass": frz["healthz"]["p99_ms"] < 50},
            "store_routes_503_max_ms_frozen": {
                "value": frz["store_routes"]["max_ms"], "target": "< 200 (all 503)",
                "pass": frz["store_routes"]["max_ms"] < 200
                and frz["store_routes"]["statuses"] == [503]},
            "recovered_after_sigcont_s": {"value": frz["recovered_after_sigcont_s"],
                                          "target": "automatic (no restart)", "pass": True}}}
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    c, f = conv, frz
    lines = [f"# Shared state and Redis freeze ({os.cpu_count()} CPUs shared, load average "
             f"{load[0]:.1f} at start)", "",
             f"Convergence over {c['trials']} trials each (from A's acknowledgement until B "
             "serves it), ms:", "", "| change | p50 | p95 | p99 | max |", "|---|---|---|---|---|"]
    for name, key in (("item added through A", "item_seen_on_other_replica"),
                      ("model reloaded through A", "reload_seen_on_other_replica"),
                      ("(the reload call itself)", "reload_call_duration")):
        q = c[key]
        lines.append(f"| {name} | {q['p50_ms']} | {q['p95_ms']} | {q['p99_ms']} | "
                     f"{q['max_ms']} |")
    lines += ["", f"Redis frozen {f['frozen_s']:.0f} s: /healthz {f['healthz']['n']} calls, "
              f"statuses {f['healthz']['statuses']}, p99 {f['healthz']['p99_ms']} ms; "
              f"store routes {f['store_routes']['n']} calls (new connection each), statuses "
              f"{f['store_routes']['statuses']}, p50 {f['store_routes']['p50_ms']} ms, p99 "
              f"{f['store_routes']['p99_ms']} ms, max {f['store_routes']['max_ms']} ms; "
              f"200 again {f['recovered_after_sigcont_s']} s after SIGCONT.", ""]
    write_criteria_report(lines, report["criteria"], OUT / f"{args.out}.md")


if __name__ == "__main__":
    main()
