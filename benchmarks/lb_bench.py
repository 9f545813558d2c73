"""Three ``liverec serve`` replicas sharing one Redis behind HAProxy (``deploy/haproxy.cfg``)
on loopback (must-show 2): throughput of a bounded mixed load (reads + event writes) through
the balancer with three replicas beside one replica alone, then the same load while one
replica is killed with SIGKILL (and, later, another is stopped with SIGTERM: drain, then
exit): failed reads, and acknowledged events missing from Redis afterwards.

Reads are ``GET /v1/recommend`` (retried by HAProxy on another replica, never by the client:
a read counts as failed unless the client got a 200). Writes are ``POST /v1/events`` with an
``event_id``; the client retries a write that did not get a 200 with the same id (the store
keeps one copy) and counts it acknowledged on its 200. Redis runs with ``appendonly yes``,
``appendfsync always``.

    PYTHONPATH=src python benchmarks/lb_bench.py --run-dir /tmp/redis-run --out lb_smoke
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

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


def start_redis(port: int, folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--dir", str(folder),
                             "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


def start_haproxy(port: int, replicas: list[int], folder: Path) -> subprocess.Popen:
    env = {**os.environ, "LIVEREC_LB_BIND": f"127.0.0.1:{port}",
           "LIVEREC_LB_STATS": str(folder / "haproxy.sock"),
           **{f"LIVEREC_R{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(replicas)}}
    proc = subprocess.Popen(["haproxy", "-f", str(ROOT / "deploy" / "haproxy.cfg"), "-db"],
                            env=env, stdout=subprocess.DEVNULL,
                            stderr=open(folder / "haproxy.log", "ab"))
    time.sleep(2.0)  # two health checks
    return proc


async def mixed(port: int, conns: int, duration: float, users: int, items: list[str],
                write_share: float, seed: int, events: list | None = None) -> dict:
    """Closed-loop mixed load; ``events`` = [(at_s, callable)] run during it."""
    rng = random.Random(seed)
    stop = time.perf_counter() + duration
    reads, read_fail, acked, write_fail, lat_r, lat_w = 0, [], [], 0, [], []
    eid = [0]

    async def worker(w: int) -> None:
        nonlocal reads, write_fail
        c = await Conn("127.0.0.1", port).open()
        while time.perf_counter() < stop:
            try:
                if rng.random() < write_share:
                    eid[0] += 1
                    e = {"user_id": f"lb-{rng.randrange(users)}", "item_id": rng.choice(items),
                         "event_id": f"lb-{seed}-{w}-{eid[0]}"}
                    t0 = time.perf_counter()
                    for attempt in range(20):
                        try:
                            status, _ = await c.request("POST", "/v1/events",
                                                        json.dumps(e).encode())
                        except (ConnectionError, OSError, asyncio.IncompleteReadError):
                            c.close()
                            c = await Conn("127.0.0.1", port).open()
                            status = 0
                        if status == 200:
                            acked.append(e["event_id"])
                            lat_w.append(time.perf_counter() - t0)
                            break
                        write_fail += 1
                        await asyncio.sleep(0.05 * (attempt + 1))
                else:
                    t0 = time.perf_counter()
                    try:
                        status, _ = await c.request(
                            "GET", f"/v1/recommend?user_id=lb-{rng.randrange(users)}&k=10")
                    except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
                        read_fail.append(type(exc).__name__)
                        c.close()
                        c = await Conn("127.0.0.1", port).open()
                        continue
                    reads += 1
                    lat_r.append(time.perf_counter() - t0)
                    if status != 200:
                        read_fail.append(status)
            except (ConnectionError, OSError) as exc:
                read_fail.append(f"connect: {exc}")
                await asyncio.sleep(0.05)
        c.close()

    async def schedule() -> None:
        t0 = time.perf_counter()
        for at, fn in events or ():
            await asyncio.sleep(max(0.0, t0 + at - time.perf_counter()))
            fn()

    t0 = time.perf_counter()
    await asyncio.gather(schedule(), *(worker(w) for w in range(conns)))
    wall = time.perf_counter() - t0
    return {"wall_s": round(wall, 2), "reads": reads, "reads_failed": len(read_fail),
            "read_failures": [str(x) for x in read_fail[:20]], "writes_acked": len(acked),
            "write_attempts_failed": write_fail, "acked_ids": acked,
            "requests_per_s": round((reads + len(acked)) / wall, 1),
            "read_latency": percentiles(lat_r), "write_latency": percentiles(lat_w)}


def stored_ids(rport: int) -> set[str]:
    import redis

    r = redis.Redis(port=rport)
    return {json.loads(f[b"e"])[0] for _, f in r.xrange("liverec:events")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--duration", type=float, default=12.0)
    p.add_argument("--write-share", type=float, default=0.2)
    p.add_argument("--out", default="lb_smoke")
    args = p.parse_args()
    for binary in ("redis-server", "haproxy"):
        if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
            raise SystemExit(f"{binary} is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="lb-bench-"))
    env = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "LIVEREC_SERVE_DRAIN_S": "2"}
    rport, lb = free_port(), free_port()
    ports = [free_port() for _ in range(3)]
    import polars as pl

    items = [str(x) for x in pl.read_parquet(args.run_dir / "items.parquet")["item"].to_list()]
    redis = start_redis(rport, tmp)
    store = f"redis://127.0.0.1:{rport}/0"
    replicas, haproxy = [], None
    try:
        for i, port in enumerate(ports):
            replicas.append(start_server(args.run_dir, port, "--store", store, env=env,
                                         log_path=tmp / f"r{i + 1}.log"))
        haproxy = start_haproxy(lb, ports, tmp)
        load = os.getloadavg()
        run = lambda port, seed, ev=None: asyncio.run(mixed(  # noqa: E731
            port, args.conns, args.duration, args.users, items, args.write_share, seed, ev))
        run(lb, 0)  # warm-up: every replica's caches
        one = run(ports[0], 1)
        three = run(lb, 2)
        one_b = run(ports[0], 3)
        three_b = run(lb, 4)
        kill_at, term_at = args.duration * 0.3, args.duration * 0.65
        events = [(kill_at, lambda: replicas[1].send_signal(signal.SIGKILL)),
                  (term_at, lambda: replicas[2].send_signal(signal.SIGTERM))]
        chaos = run(lb, 5, events)
        time.sleep(0.5)
        stored = stored_ids(rport)
        acked_all = set()
        for res in (one, three, one_b, three_b, chaos):
            acked_all |= set(res["acked_ids"])
        lost = sorted(acked_all - stored)
        term_rc = replicas[2].wait(30)
    finally:
        if haproxy is not None:
            haproxy.terminate()
        for r in replicas:
            stop_server(r)
        redis.terminate()
        redis.wait(5)
    for res in (one, three, one_b, three_b, chaos):
        res.pop("acked_ids")
    rps1 = (one["requests_per_s"] + one_b["requests_per_s"]) / 2
    rps3 = (three["requests_per_s"] + three_b["requests_per_s"]) / 2
    report = {
        "what": "3 replicas + HAProxy (deploy/haproxy.cfg) vs 1 replica, mixed reads + event "
                "writes; then SIGKILL of one replica and SIGTERM (drain) of another mid-run",
        "cpus": os.cpu_count(), "loadavg_at_start": load, "conns": args.conns,
        "duration_s": args.duration, "write_share": args.write_share,
        "one_replica": [one, one_b], "three_replicas": [three, three_b],
        "kill_run": {**chaos, "sigkill_at_s": kill_at, "sigterm_at_s": term_at,
                     "sigterm_exit_code": term_rc},
        "acked_events_total": len(acked_all), "acked_events_lost": len(lost),
        "lost_ids": lost[:20],
        "criteria": {
            "failed_reads_in_kill_run": {"value": chaos["reads_failed"], "target": 0,
                                         "pass": chaos["reads_failed"] == 0},
            "acked_events_lost": {"value": len(lost), "target": 0, "pass": not lost},
            "throughput_three_over_one": {"value": round(rps3 / rps1, 2),
                                          "target": "reported (2 shared cores)",
                                          "pass": None}}}
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Three replicas behind HAProxy vs one ({os.cpu_count()} CPUs shared, load "
             f"average {load[0]:.1f} at start; {args.conns} connections, "
             f"{args.write_share:.0%} writes, {args.duration:.0f} s per run)", "",
             "| run | requests/s | reads | failed reads | writes acked | read p99 ms |",
             "|---|---|---|---|---|---|"]
    for name, r in (("1 replica (direct)", one), ("3 replicas (HAProxy)", three),
                    ("1 replica (direct), again", one_b), ("3 replicas (HAProxy), again", three_b),
                    ("3 replicas, kill -9 one, SIGTERM another", chaos)):
        lines.append(f"| {name} | {r['requests_per_s']} | {r['reads']} | {r['reads_failed']} "
                     f"| {r['writes_acked']} | {r['read_latency']['p99_ms']} |")
    lines += ["", f"Acknowledged events over all runs: {len(acked_all)}; missing from Redis "
              f"afterwards: {len(lost)}. The SIGTERM'd replica drained "
              f"({env['LIVEREC_SERVE_DRAIN_S']} s of /readyz 503), finished its requests and "
              f"exited with status {term_rc} "
              "(uvicorn re-raises the SIGTERM after its graceful shutdown).", ""]
    write_criteria_report(lines, report["criteria"], OUT / f"{args.out}.md")


if __name__ == "__main__":
    main()
