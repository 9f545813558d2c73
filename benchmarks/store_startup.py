"""Start time of the SQLite event store: full log replay (before) vs snapshot + log tail.

Builds an event log of ``--events`` events (``--users`` users, ``--items`` items, random
times) with the store itself, closes it (which writes the snapshot), appends ``--tail`` more
events without a snapshot (as after a kill -9), then times opening the store in a fresh
process, ``--repeat`` times each:

- ``before``: the old code (``--before``, e.g. main's ``src``): replays the whole log;
- ``after, no snapshot``: this code on a copy without its snapshot (the full-replay path);
- ``after``: this code, snapshot + tail.

Writes JSON + markdown. usage: python benchmarks/store_startup.py --before ../main/src
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
OPEN = """
import resource, sys, time
t0 = time.perf_counter()
from liverec.serve.stores import SQLiteStore
t1 = time.perf_counter()
s = SQLiteStore(sys.argv[1], max_history=int(sys.argv[2]))
t2 = time.perf_counter()
print(t2 - t1, s.stats()["events"], s.stats()["users"],
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def build(path: Path, n_events: int, n_users: int, n_items: int, tail: int, hist: int) -> None:
    sys.path.insert(0, str(SRC))
    from liverec.serve.stores import Event, SQLiteStore

    rnd = random.Random(0)

    def events(start: int, n: int):
        return [Event(f"user{rnd.randrange(n_users)}", f"I{rnd.randrange(n_items):05d}",
                      f"e{start + i}", 1.6e9 + rnd.randrange(10**7)) for i in range(n)]

    store = SQLiteStore(path, max_history=hist, snapshot_every=10**9)
    for start in range(0, n_events, 2000):
        store.append(events(start, min(2000, n_events - start)))
    store.close()  # writes the snapshot
    store = SQLiteStore(path, max_history=hist, snapshot_every=10**9)
    store.append(events(n_events, tail))
    store._db.close()  # no snapshot of the tail: as after a kill -9


def time_open(src: Path, path: Path, hist: int, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        tmp = Path(tempfile.mkdtemp()) / path.name  # opening may write a snapshot: a copy
        for f in path.parent.glob(path.name + "*"):
            shutil.copy(f, tmp.parent / f.name)
        out = subprocess.run([sys.executable, "-c", OPEN, str(tmp), str(hist)], check=True,
                             capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(src)}).stdout.split()
        runs.append({"seconds": float(out[0]), "events": int(out[1]), "users": int(out[2]),
                     "max_rss_mib": int(out[3]) / 1024})
        shutil.rmtree(tmp.parent)
    return {"src": str(src), "median_s": statistics.median(r["seconds"] for r in runs),
            "runs": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True, help="src folder of the old code")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--items", type=int, default=5_000)
    p.add_argument("--tail", type=int, default=2_000)
    p.add_argument("--max-history", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args()
    work = Path(tempfile.mkdtemp())
    db = work / "events.db"
    t0 = time.perf_counter()
    build(db, args.events, args.users, args.items, args.tail, args.max_history)
    built = time.perf_counter() - t0
    bare = work / "bare" / "events.db"
    bare.parent.mkdir()
    shutil.copy(db, bare)
    for f in work.glob("events.db-*"):
        shutil.copy(f, bare.parent / f.name)
    with sqlite3.connect(bare) as c:
        c.execute("DELETE FROM meta WHERE key = 'snapshot'")
    result = {"what": "seconds to open the SQLite store (state ready), fresh process",
              "events": args.events + args.tail, "tail_after_snapshot": args.tail,
              "users": args.users, "items": args.items, "max_history": args.max_history,
              "build_seconds": round(built, 1),
              "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared)",
              "date": time.strftime("%Y-%m-%d", time.gmtime()),
              "before": time_open(args.before.resolve(), db, args.max_history, args.repeat),
              "after_no_snapshot": time_open(SRC, bare, args.max_history, args.repeat),
              "after": time_open(SRC, db, args.max_history, args.repeat)}
    shutil.rmtree(work)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "store_startup.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [("before (full replay, old code)", "before"),
            ("after, snapshot removed (full replay)", "after_no_snapshot"),
            ("after (snapshot + tail)", "after")]
    lines = ["# SQLite store start time: full replay vs snapshot + log tail", "",
             f"{result['events']:,} events ({args.tail:,} after the snapshot), "
             f"{args.users:,} users, {args.items:,} items, max_history {args.max_history}; "
             f"median of {args.repeat} fresh processes; {result['machine']}, {result['date']}.",
             "", "| store | open (s), median | runs (s) |", "|---|---|---|"]
    for label, key in rows:
        r = result[key]
        secs = ", ".join(f"{x['seconds']:.2f}" for x in r["runs"])
        lines.append(f"| {label} | {r['median_s']:.2f} | {secs} |")
    lines.append("")
    (args.out / "store_startup.md").write_text("\n".join(lines))
    print("\n".join(lines))  # noqa: T201


if __name__ == "__main__":
    main()
