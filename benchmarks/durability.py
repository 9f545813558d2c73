"""Durability: kill -9 the server while clients stream events; after a restart every
acknowledged event must be in the store (SQLite log) and in its user's state.

Each round starts ``liverec serve`` on an SQLite store, streams events from several keep-alive
connections (each connection owns its users, events carry unique timestamps), kills the server
with SIGKILL at a random moment, restarts it on the same store and checks every event that got
a 200: its event id is in the log, and its (item, timestamp) is in ``GET /v1/users/{user}``.

    python benchmarks/durability.py --run-dir runs/beauty --rounds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import polars as pl
from serve_common import Conn, free_port, start_server, stop_server

OUT = Path(__file__).parent / "results"


async def stream(port: int, conn_id: int, items: list[str], acked: list, stop: threading.Event,
                 round_id: int) -> None:
    rng = random.Random(conn_id)
    try:
        c = await Conn("127.0.0.1", port).open()
        n = 0
        while not stop.is_set():
            n += 1
            ev = {"user_id": f"r{round_id}-c{conn_id}-u{n % 5}", "item_id": rng.choice(items),
                  "event_id": f"r{round_id}-c{conn_id}-{n}", "timestamp": conn_id * 1e6 + n}
            status, _ = await c.json("POST", "/v1/events", ev)
            if status == 200:
                acked.append(ev)
    except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
        return  # the server died under us: everything acknowledged so far is in ``acked``


def stream_until_killed(port: int, items: list[str], conns: int, round_id: int,
                        kill_after: float, proc) -> list[dict]:
    acked: list[dict] = []
    stop = threading.Event()

    async def run() -> None:
        tasks = [asyncio.ensure_future(stream(port, i, items, acked, stop, round_id))
                 for i in range(conns)]
        await asyncio.sleep(kill_after)
        stop_server(proc, hard=True)  # SIGKILL mid-stream
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(run())
    return acked


def check(port: int, db: Path, acked: list[dict]) -> dict:
    con = sqlite3.connect(db)
    ids = {r[0] for r in con.execute("SELECT event_id FROM events")}
    con.close()
    missing_log = [e["event_id"] for e in acked if e["event_id"] not in ids]
    missing_state = []

    async def states() -> None:
        c = await Conn("127.0.0.1", port).open()
        by_user: dict[str, list[dict]] = {}
        for e in acked:
            by_user.setdefault(e["user_id"], []).append(e)
        for user, evs in by_user.items():
            status, body = await c.json("GET", f"/v1/users/{quote(user)}")
            have = set() if status != 200 else {(h["item_id"], h["timestamp"])
                                                for h in body["history"]}
            missing_state.extend(e["event_id"] for e in evs
                                 if (e["item_id"], e["timestamp"]) not in have)
        c.close()

    asyncio.run(states())
    return {"acked": len(acked), "missing_in_log": len(missing_log),
            "missing_in_state": len(missing_state), "examples": (missing_log + missing_state)[:5]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--min-s", type=float, default=0.5, help="earliest kill after streaming")
    p.add_argument("--max-s", type=float, default=2.0, help="latest kill after streaming")
    p.add_argument("--name", default="durability")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    items = pl.read_parquet(args.run_dir / "items.parquet")["item"].cast(pl.Utf8).to_list()
    rng, rounds = random.Random(0), []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "events.db"
        # max_history above any user's event count: every acknowledged event stays visible
        env = {"LIVEREC_SERVE_MAX_HISTORY": "1000000"}
        for r in range(args.rounds):
            port = free_port()
            proc = start_server(args.run_dir, port, "--store", f"sqlite:///{db}", env=env)
            acked = stream_until_killed(port, items, args.connections, r,
                                        rng.uniform(args.min_s, args.max_s), proc)
            t0 = time.perf_counter()
            proc = start_server(args.run_dir, port, "--store", f"sqlite:///{db}", env=env)
            restart_s = time.perf_counter() - t0
            result = check(port, db, acked) | {"round": r, "restart_s": round(restart_s, 2)}
            stop_server(proc)
            rounds.append(result)
            print(json.dumps(result))
    ok = all(x["missing_in_log"] == 0 and x["missing_in_state"] == 0 for x in rounds)
    report = {"run_dir": str(args.run_dir), "rounds": rounds, "pass": ok,
              "acked_total": sum(x["acked"] for x in rounds), "store": "sqlite (WAL, FULL)",
              "connections": args.connections}
    (OUT / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"# Durability: kill -9 during event streaming ({args.rounds} rounds)", "",
          f"Run dir {args.run_dir}; SQLite store (WAL, synchronous=FULL); "
          f"{args.connections} streaming connections; kill after "
          f"{args.min_s}-{args.max_s}s; the state is rebuilt from the log at restart.", "",
          f"**{'PASS' if ok else 'FAIL'}**: {report['acked_total']} acknowledged events, "
          f"{sum(x['missing_in_log'] for x in rounds)} missing from the log, "
          f"{sum(x['missing_in_state'] for x in rounds)} missing from user state.", "",
          "| round | acked | missing in log | missing in state | restart s |",
          "|---:|---:|---:|---:|---:|"]
    md += [f"| {x['round']} | {x['acked']} | {x['missing_in_log']} | {x['missing_in_state']} | "
           f"{x['restart_s']} |" for x in rounds]
    (OUT / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md[:5]))


if __name__ == "__main__":
    main()
