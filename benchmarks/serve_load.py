"""Load benchmark of ``liverec serve`` on loopback: throughput and p50/p95/p99.

One run measures, against a server it starts (memory store, cache + micro-batching on):
``/healthz`` and ``GET /v1/recommend`` over many users at the same concurrency (closed loop),
a fixed-rate run (default 500 req/s, latency from each request's scheduled time, so queueing
counts), a mixed read/write run with a freshness check (after each acknowledged event the next
answer must report one more event seen and exclude the item), hot-swaps under load (no request
may fail), then the naive path (a second server with ``--naive``: no cache, no batching, full
recompute per request) at the same concurrency. The client runs in its own process(es).

Users are not in the run directory: the benchmark first posts events for ``--users`` users
(5-20 items each, drawn by training popularity), then measures.

    python benchmarks/serve_load.py --run-dir runs/beauty --users 20000 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import polars as pl
from serve_common import Conn, free_port, percentiles, start_server, stop_server

OUT = Path(__file__).parent / "results"


async def _closed(port: int, conc: int, duration: float, kind: str, users: list[str],
                  k: int, seed: int) -> dict:
    rng = random.Random(seed)
    conns = [await Conn("127.0.0.1", port).open() for _ in range(conc)]
    lat, errors, stop = [], 0, time.perf_counter() + duration

    todo = iter(users)  # kind "warm": every user once (cache misses: batching at work)

    def next_path() -> str | None:
        if kind == "healthz":
            return "/healthz"
        user = next(todo, None) if kind == "warm" else rng.choice(users)
        return None if user is None else f"/v1/recommend?user_id={user}&k={k}"

    async def worker(c: Conn) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            path = next_path()
            if path is None:
                break
            t0 = time.perf_counter()
            status, _ = await c.request("GET", path)
            lat.append(time.perf_counter() - t0)
            errors += status != 200

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    return {"requests": len(lat), "errors": errors, "wall_s": wall, "lat": lat}


async def _fixed_rate(port: int, rate: float, duration: float, users: list[str], k: int,
                      seed: int) -> dict:
    rng = random.Random(seed)
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(await Conn("127.0.0.1", port).open())
    lat, errors, tasks = [], 0, []

    async def one(sched: float) -> None:
        nonlocal errors
        c = await pool.get()
        status, _ = await c.request("GET", f"/v1/recommend?user_id={rng.choice(users)}&k={k}")
        lat.append(time.perf_counter() - sched)  # from the scheduled time: queueing counts
        errors += status != 200
        pool.put_nowait(c)

    t0 = time.perf_counter()
    for i in range(int(rate * duration)):
        sched = t0 + i / rate
        delay = sched - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(sched)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    while not pool.empty():
        pool.get_nowait().close()
    return {"requests": len(lat), "errors": errors, "wall_s": wall, "lat": lat}


async def _mixed(port: int, conc: int, duration: float, users: list[str], items: list[str],
                 k: int, write_share: float, seed: int) -> dict:
    rng = random.Random(seed)
    conns = [await Conn("127.0.0.1", port).open() for _ in range(conc)]
    lat, errors, writes, stale, stop = [], 0, 0, 0, time.perf_counter() + duration
    own = [users[i::conc] for i in range(conc)]  # each connection writes only its own users

    async def worker(c: Conn, mine: list[str]) -> None:
        nonlocal errors, writes, stale
        while time.perf_counter() < stop:
            user = rng.choice(mine)
            t0 = time.perf_counter()
            if rng.random() < write_share:
                _, before = await c.json("GET", f"/v1/recommend?user_id={user}&k={k}")
                item = rng.choice(items)
                status, _ = await c.json("POST", "/v1/events", {"user_id": user, "item_id": item})
                errors += status != 200
                writes += 1
                _, after = await c.json("GET", f"/v1/recommend?user_id={user}&k={k}")
                fresh = after["events_seen"] == before["events_seen"] + 1 and \
                    item not in [i["item_id"] for i in after["items"]]
                stale += not fresh
            else:
                status, _ = await c.request("GET", f"/v1/recommend?user_id={user}&k={k}")
                errors += status != 200
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c, m) for c, m in zip(conns, own)))
    wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    return {"requests": len(lat), "errors": errors, "wall_s": wall, "lat": lat,
            "writes": writes, "stale_reads": stale}


def client_phase(spec: dict) -> dict:
    """Run one phase in this (client) process."""
    kind = spec.pop("kind")
    if kind == "fixed":
        return asyncio.run(_fixed_rate(**spec))
    if kind == "mixed":
        return asyncio.run(_mixed(**spec))
    return asyncio.run(_closed(kind=kind, **spec))


def run_phase(pool: ProcessPoolExecutor, clients: int, spec: dict) -> dict:
    """Split a phase over client processes and merge their measurements."""
    specs = []
    for i in range(clients):
        s = dict(spec, seed=spec.get("seed", 0) + i)
        if "conc" in s:
            s["conc"] = max(1, spec["conc"] // clients)
        if "rate" in s:
            s["rate"] = spec["rate"] / clients
        specs.append(s)
    parts = list(pool.map(client_phase, specs))
    lat = [x for p in parts for x in p.pop("lat")]
    wall = max(p["wall_s"] for p in parts)
    out = {"requests": len(lat), "errors": sum(p["errors"] for p in parts),
           "throughput_rps": round(len(lat) / wall, 1), **percentiles(lat)}
    for key in ("writes", "stale_reads"):
        if key in parts[0]:
            out[key] = sum(p[key] for p in parts)
    return out


def seed_users(port: int, run_dir: Path, n_users: int, seed: int) -> tuple[list[str], list[str]]:
    """Post 5-20 popularity-weighted events for each of ``n_users`` users."""
    items = pl.read_parquet(run_dir / "items.parquet")
    ids = items["item"].cast(pl.Utf8).to_list()
    w = items["count"].to_numpy().astype(float) + 1 if "count" in items.columns else None
    rng = np.random.default_rng(seed)
    users = [f"bench-{seed}-{u}" for u in range(n_users)]
    events = [{"user_id": u, "item_id": ids[i]} for u in users
              for i in rng.choice(len(ids), rng.integers(5, 21), p=w / w.sum() if w is not None
                                  else None)]

    async def post() -> None:
        c = await Conn("127.0.0.1", port).open()
        for start in range(0, len(events), 500):
            status, body = await c.json("POST", "/v1/events", events[start : start + 500])
            assert status == 200, body
        c.close()

    asyncio.run(post())
    return users, ids


def reload_under_load(pool, port: int, args, users: list[str]) -> dict:
    """Hot-swap the model ``--reloads`` times while a closed-loop load runs."""
    spec = {"kind": "recommend", "port": port, "conc": args.concurrency,
            "duration": args.duration, "users": users, "k": args.k}
    loader = ThreadPoolExecutor(1)  # drives the client processes while this thread reloads
    fut = loader.submit(run_phase, pool, args.clients, spec)
    versions, refused = [], 0

    async def reloads() -> None:
        nonlocal refused
        c = await Conn("127.0.0.1", port).open()
        for _ in range(args.reloads):
            await asyncio.sleep(args.duration / (args.reloads + 1))
            # absolute: a relative run_dir is read under the server's models root
            status, body = await c.json("POST", "/admin/reload",
                                        {"run_dir": str(args.run_dir.resolve())})
            versions.append(body.get("model_version") if status == 200 else None)
            status, body = await c.json("POST", "/admin/reload", {"run_dir": "no-such-run"})
            refused += status == 409
        c.close()

    asyncio.run(reloads())
    out = fut.result()
    loader.shutdown()
    out.update(reloads=len(versions), reloads_ok=sum(v is not None for v in versions),
               broken_reloads_refused=refused)
    return out


def measure(args) -> dict:
    port, res = free_port(), {}
    log_path = Path(tempfile.gettempdir()) / f"{args.name}_server.log"
    server = start_server(args.run_dir, port, "--store", "memory://", log_path=log_path)
    ctx = get_context("spawn")
    try:
        users, items = seed_users(port, args.run_dir, args.users, args.seed)
        base = {"port": port, "users": users, "k": args.k}
        closed = {**base, "conc": args.concurrency, "duration": args.duration}
        with ProcessPoolExecutor(args.clients, mp_context=ctx) as pool:
            res["recommend_cold"] = run_phase(pool, args.clients,
                                              {**closed, "kind": "warm", "duration": 1e9})
            res["healthz"] = run_phase(pool, args.clients, {**closed, "kind": "healthz"})
            res["recommend"] = run_phase(pool, args.clients, {**closed, "kind": "recommend"})
            res["fixed_rate"] = run_phase(pool, args.clients, {
                **base, "kind": "fixed", "rate": args.rate, "duration": args.duration})
            res["mixed"] = run_phase(pool, args.clients, {
                **closed, "kind": "mixed", "items": items, "write_share": args.write_share})
            res["reload_under_load"] = reload_under_load(pool, port, args, users)
    finally:
        stop_server(server)
    naive = start_server(args.run_dir, port, "--store", "memory://", "--naive",
                         log_path=log_path)
    try:
        seed_users(port, args.run_dir, args.users, args.seed)
        with ProcessPoolExecutor(args.clients, mp_context=ctx) as pool:
            res["naive_recommend"] = run_phase(pool, args.clients,
                                               {**closed, "kind": "recommend"})
    finally:
        stop_server(naive)
    return res


def verdict(res: dict, rate: float) -> dict:
    rec, hz = res["recommend"]["throughput_rps"], res["healthz"]["throughput_rps"]
    naive = res["naive_recommend"]["throughput_rps"]
    rl = res["reload_under_load"]
    return {
        "recommend_vs_healthz": {"value": round(rec / hz, 3), "target": ">= 0.8",
                                 "pass": rec / hz >= 0.8},
        "p99_at_fixed_rate_ms": {"value": res["fixed_rate"]["p99_ms"], "target": "<= 10",
                                 "rate": rate, "pass": res["fixed_rate"]["p99_ms"] <= 10},
        "recommend_vs_naive": {"value": round(rec / naive, 2), "target": ">= 5",
                               "pass": rec / naive >= 5},
        "freshness": {"value": res["mixed"]["stale_reads"], "target": "0 stale reads",
                      "pass": res["mixed"]["stale_reads"] == 0 and res["mixed"]["writes"] > 0},
        "hot_swap": {"value": rl["errors"], "target": "0 failed requests, broken refused",
                     "pass": rl["errors"] == 0 and rl["reloads_ok"] == rl["reloads"]
                     and rl["broken_reloads_refused"] == rl["reloads"]},
    }


def markdown(report: dict) -> str:
    lines = [f"# Serve load: {report['run_dir']}", "",
             f"{report['setup']}", "",
             "| phase | requests | errors | req/s | p50 ms | p95 ms | p99 ms | max ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in report["results"].items():
        lines.append(f"| {name} | {r['requests']} | {r['errors']} | {r['throughput_rps']} | "
                     f"{r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['max_ms']} |")
    lines += ["", "| criterion | value | target | pass |", "|---|---:|---|---|"]
    for name, v in report["criteria"].items():
        lines.append(f"| {name} | {v['value']} | {v['target']} | {v['pass']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rate", type=float, default=500.0, help="fixed-rate phase, requests/s")
    p.add_argument("--clients", type=int, default=1, help="client processes")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--write-share", type=float, default=0.1)
    p.add_argument("--reloads", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="serve_load", help="results file stem")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    res = measure(args)
    report = {"run_dir": str(args.run_dir), "results": res,
              "criteria": verdict(res, args.rate),
              "setup": f"{args.users} users, {args.concurrency} connections, "
                       f"{args.duration:g}s per phase, {args.clients} client process(es), "
                       f"k={args.k}, memory store, loopback; latency of the fixed-rate phase "
                       f"is measured from each request's scheduled time",
              "args": {k: str(v) for k, v in vars(args).items()}}
    (OUT / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (OUT / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
