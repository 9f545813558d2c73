"""``liverec serve --workers 2`` against one worker, same run, same Redis: keep-alive throughput
of ``GET /v1/recommend`` (must-show 5), plus the single-process checks (recommend vs /healthz
throughput; p99 at a fixed 500 req/s).

Both servers run at once (Redis store, databases 0 and 1 of one private redis-server); the
load alternates between them (one, two, one, two...) for ``--rounds`` rounds, and the figure
is the median of the per-round ratios. The client is ``wrk`` (C, one thread) when installed,
else the asyncio client of serve_common (which costs far more CPU per request on the same
cores: say so when comparing). The machine's load average is recorded before and after.

    PYTHONPATH=src python benchmarks/workers_bench.py --run-dir /tmp/redis-run --out workers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
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
SRC = Path(__file__).resolve().parents[1] / "src"
LUA = """
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/v1/recommend?user_id=wb-" .. (n %% %d) .. "&k=10")
end
"""


def start_redis(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly",
                             "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


def run_item_ids(run_dir: Path) -> list[str]:
    """The run's item ids (opaque strings, as the service knows them)."""
    import pyarrow.parquet as pq

    return [str(v) for v in pq.read_table(run_dir / "items.parquet", columns=["item"])
            .column("item").to_pylist()]


def seed(port: int, users: int, ids: list[str]) -> None:
    async def run():
        c = await Conn("127.0.0.1", port).open()
        for u in range(users):
            evs = [{"user_id": f"wb-{u}", "item_id": ids[(u * 7 + j) % min(200, len(ids))]}
                   for j in range(5)]
            status, body = await c.json("POST", "/v1/events", evs)
            if status != 200:
                raise RuntimeError(f"seeding failed: {status} {body}")
        c.close()

    asyncio.run(run())


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children so far (Linux /proc)."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return total + sum(cpu_s(int(k)) for k in kids.split())


def wrk(port: int, path_or_lua: str, conns: int, duration: float) -> dict:
    args = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency"]
    if path_or_lua.endswith(".lua"):
        args += ["-s", path_or_lua, f"http://127.0.0.1:{port}"]
    else:
        args += [f"http://127.0.0.1:{port}{path_or_lua}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"wrk failed: {out}")
    proc.returncode = 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)] if p99 else float("nan")
    return {"rps": rps, "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else "", "p99_ms":
            float(p99.group(1)) * scale if p99 else float("nan"),
            "client_cpu_s": usage.ru_utime + usage.ru_stime}


def py_closed(port: int, path: str, conns: int, duration: float) -> dict:
    async def run():
        cs = [await Conn("127.0.0.1", port).open() for _ in range(conns)]
        n, bad, stop = 0, 0, time.perf_counter() + duration

        async def loop(c):
            nonlocal n, bad
            while time.perf_counter() < stop:
                status, _ = await c.request("GET", path)
                n += 1
                bad += status != 200
        t0 = time.perf_counter()
        await asyncio.gather(*(loop(c) for c in cs))
        wall = time.perf_counter() - t0
        for c in cs:
            c.close()
        return {"rps": n / wall, "non_2xx": bad, "socket_errors": "", "p99_ms": float("nan")}

    return asyncio.run(run())


def fixed_rate(port: int, rate: float, duration: float, users: int) -> dict:
    async def run():
        conns: asyncio.Queue = asyncio.Queue()
        for _ in range(32):
            conns.put_nowait(await Conn("127.0.0.1", port).open())
        lat, bad = [], 0

        async def one(i: int, sched: float):
            nonlocal bad
            c = await conns.get()
            status, _ = await c.request("GET", f"/v1/recommend?user_id=wb-{i % users}&k=10")
            lat.append(time.perf_counter() - sched)
            bad += status != 200
            conns.put_nowait(c)

        t0, tasks = time.perf_counter(), []
        for i in range(int(rate * duration)):
            sched = t0 + i / rate
            if sched > time.perf_counter():
                await asyncio.sleep(sched - time.perf_counter())
            tasks.append(asyncio.ensure_future(one(i, sched)))
        await asyncio.gather(*tasks)
        while not conns.empty():
            conns.get_nowait().close()
        return {"requests": len(lat), "errors": bad, **percentiles(lat)}

    return asyncio.run(run())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--conns", type=int, default=32)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--out", default="workers")
    args = p.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    client = "wrk" if shutil.which("wrk") else "python-asyncio"
    env = {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    rport, p1, p2 = free_port(), free_port(), free_port()
    redis = start_redis(rport)
    tmp = Path(tempfile.mkdtemp(prefix="workers-bench-"))
    lua = tmp / "users.lua"
    lua.write_text(LUA % args.users)
    servers = []
    try:
        servers.append(start_server(args.run_dir, p1, "--store", f"redis://127.0.0.1:{rport}/0",
                                    env=env, log_path=tmp / "one.log"))
        servers.append(start_server(args.run_dir, p2, "--store", f"redis://127.0.0.1:{rport}/1",
                                    "--workers", "2", env=env, log_path=tmp / "two.log"))
        ids = run_item_ids(args.run_dir)
        seed(p1, args.users, ids)
        seed(p2, args.users, ids)
        load_before = os.getloadavg()

        def closed(port, what):
            target = str(lua) if what == "recommend" else "/healthz"
            if client == "wrk":
                server = servers[0] if port == p1 else servers[1]
                c0, r0 = cpu_s(server.pid), cpu_s(redis.pid)
                out = wrk(port, target, args.conns, args.duration)
                n = out["rps"] * args.duration
                out["cpu_us_per_request"] = {
                    "server": round(1e6 * (cpu_s(server.pid) - c0) / n, 1),
                    "redis": round(1e6 * (cpu_s(redis.pid) - r0) / n, 1),
                    "client": round(1e6 * out.pop("client_cpu_s") / n, 1)}
                return out
            path = "/v1/recommend?user_id=wb-1&k=10" if what == "recommend" else "/healthz"
            return py_closed(port, path, args.conns, args.duration)

        closed(p1, "recommend"), closed(p2, "recommend")  # warm every worker's cache
        rounds = []
        for _ in range(args.rounds):
            one = closed(p1, "recommend")
            two = closed(p2, "recommend")
            health = closed(p1, "healthz")
            rounds.append({"one_worker": one, "two_workers": two, "one_worker_healthz": health,
                           "ratio_two_over_one": two["rps"] / one["rps"],
                           "ratio_recommend_over_healthz": one["rps"] / health["rps"],
                           "loadavg_1m": os.getloadavg()[0]})
        fixed = fixed_rate(p1, args.rate, args.duration, args.users)
        load_after = os.getloadavg()
    finally:
        for s in servers:
            stop_server(s)
        redis.terminate()
        redis.wait(5)
    ratio = statistics.median(r["ratio_two_over_one"] for r in rounds)
    projection = None
    if client == "wrk":
        cost = {k: statistics.median(r["two_workers"]["cpu_us_per_request"][k] for r in rounds)
                for k in ("server", "redis", "client")}
        one_cost = statistics.median(r["one_worker"]["cpu_us_per_request"]["server"]
                                     for r in rounds)
        # on 2 idle cores: one worker is bound by its own core; two by both cores shared
        # with Redis and the client
        one_cap = min(1e6 / one_cost, 2e6 / (one_cost + cost["redis"] + cost["client"]))
        two_cap = 2e6 / sum(cost.values())
        projection = {"cpu_us_per_request_two_workers": cost,
                      "cpu_us_per_request_one_worker_server": one_cost,
                      "one_worker_req_s_on_2_idle_cores": round(one_cap),
                      "two_workers_req_s_on_2_idle_cores": round(two_cap),
                      "ratio": round(two_cap / one_cap, 2)}
    rh = statistics.median(r["ratio_recommend_over_healthz"] for r in rounds)
    report = {
        "what": "keep-alive GET /v1/recommend, --workers 2 vs 1 (Redis store), alternating "
                "rounds in one run; single-process recommend vs /healthz; p99 at a fixed rate",
        "client": client, "conns": args.conns, "duration_s": args.duration,
        "cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after,
        "rounds": rounds, "fixed_rate": {"rate": args.rate, **fixed},
        "projection_from_cpu_time": projection,
        "criteria": {
            "two_over_one_median": {"value": round(ratio, 3), "target": ">= 1.6",
                                    "pass": ratio >= 1.6},
            "recommend_over_healthz_median": {"value": round(rh, 3), "target": ">= 0.8",
                                              "pass": rh >= 0.8},
            "p99_ms_at_fixed_rate": {"value": fixed["p99_ms"], "target": "<= 10",
                                     "pass": fixed["p99_ms"] <= 10}}}
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# --workers 2 vs 1: keep-alive GET /v1/recommend ({client}, {args.conns} "
             f"connections, {args.duration:.0f} s per phase, {os.cpu_count()} CPUs)", "",
             f"Load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (the "
             "machine is shared with other jobs).", "",
             "| round | 1 worker req/s | 2 workers req/s | 2/1 | 1 worker /healthz req/s | "
             "recommend/healthz | load 1m |", "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rounds):
        lines.append(f"| {i + 1} | {r['one_worker']['rps']:.0f} | {r['two_workers']['rps']:.0f} "
                     f"| {r['ratio_two_over_one']:.2f} | {r['one_worker_healthz']['rps']:.0f} | "
                     f"{r['ratio_recommend_over_healthz']:.2f} | {r['loadavg_1m']:.1f} |")
    if projection:
        lines += ["", "CPU time per request (median over rounds, two workers): "
                  f"{projection['cpu_us_per_request_two_workers']} us; one worker's server "
                  f"{projection['cpu_us_per_request_one_worker_server']} us. On two idle cores "
                  f"that projects to {projection['one_worker_req_s_on_2_idle_cores']} req/s for "
                  f"one worker and {projection['two_workers_req_s_on_2_idle_cores']} for two "
                  f"({projection['ratio']}x): a projection from CPU time, not a measurement."]
    lines += [""]
    write_criteria_report(lines, report["criteria"], OUT / f"{args.out}.md")


if __name__ == "__main__":
    main()
