"""Server memory under anonymous traffic (case cache-memory-growth), before and after.

For each source tree (``--before`` = another checkout's ``src``, e.g. main; ``--after`` = this
one's), start ``liverec serve RUN --store memory://``, run the case's ``repro.py`` (GET
/v1/recommend for distinct unknown users, k=200, 8 parameter variants per user, no key) for
``--rounds`` rounds of ``--n`` requests each with fresh users, and record the server's RSS
growth per round from repro.py's own report. Writes JSON + markdown.

usage: python benchmarks/serve_memory.py RUN_DIR --before ../main/src --out benchmarks/results/
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_common import start_server, stop_server  # noqa: E402

REPRO = Path(__file__).resolve().parents[2] / "shared/cases/service/cache-memory-growth/repro.py"
NOTE = ("Requests per round depend on the CPU share the server got (2 cores shared with "
        "other jobs). After: answers for users without events are not cached at all, and the "
        "answer, vector and filter-mask caches are bounded in bytes (64 MiB and 16 MiB by "
        "default).")
LINE = re.compile(r"(\d+) requests in ([\d.]+)s, mean answer (\d+) B; RSS (\d+) -> (\d+) MiB "
                  r"\(\+(-?\d+) MiB")


def measure(src: Path, run_dir: Path, port: int, n: int, rounds: int, repro: Path) -> dict:
    env = {"PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    proc = start_server(run_dir, port, "--store", "memory://", env=env)
    out = []
    try:
        for r in range(rounds):
            res = subprocess.run([sys.executable, str(repro), str(port), str(proc.pid), str(n),
                                  f"r{r}"], capture_output=True, text=True, check=True)
            m = LINE.search(res.stdout)
            if m is None:
                raise RuntimeError(f"unexpected repro output: {res.stdout!r}")
            done, secs, answer, r0, r1, grow = m.groups()
            out.append({"requests": int(done), "seconds": float(secs), "mean_answer_bytes":
                        int(answer), "rss_before_mib": int(r0), "rss_after_mib": int(r1),
                        "growth_mib": int(grow)})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        cache_lines = [ln for ln in metrics.splitlines() if ln.startswith("liverec_cache_")]
    finally:
        stop_server(proc)
    return {"src": str(src), "rounds": out, "cache_metrics": cache_lines,
            "total_requests": sum(r["requests"] for r in out),
            "total_growth_mib": sum(r["growth_mib"] for r in out)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--before", type=Path, required=True, help="src folder of the old code")
    p.add_argument("--after", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    p.add_argument("--n", type=int, default=12_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--port", type=int, default=18510)
    p.add_argument("--repro", type=Path, default=REPRO)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args()
    result = {"what": "server RSS growth under anonymous GET /v1/recommend (k=200, 8 variants "
                      "per unknown user), rounds of fresh users (case cache-memory-growth)",
              "run_dir": args.run_dir.name, "n_per_round": args.n,
              "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared)",
              "date": time.strftime("%Y-%m-%d", time.gmtime())}
    for name, src in (("before", args.before), ("after", args.after)):
        result[name] = measure(src.resolve(), args.run_dir, args.port, args.n, args.rounds,
                               args.repro)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Service memory under anonymous traffic (case cache-memory-growth)", "",
             f"{result['what']}; {args.n} requests per round (repro.py stops a round after "
             f"20 s), run `{result['run_dir']}`, {result['machine']}, {result['date']}.", "",
             "| code | round | requests | s | mean answer (B) | RSS before -> after (MiB) | "
             "growth (MiB) |", "|---|---|---|---|---|---|---|"]
    for name in ("before", "after"):
        for i, r in enumerate(result[name]["rounds"]):
            lines.append(f"| {name} | {i + 1} | {r['requests']} | {r['seconds']:.1f} | "
                         f"{r['mean_answer_bytes']} | {r['rss_before_mib']} -> "
                         f"{r['rss_after_mib']} | {r['growth_mib']:+d} |")
    lines += ["", NOTE, "", "Cache metrics after the last round (after):", "", "```",
              *result["after"]["cache_metrics"], "```", ""]
    (args.out / "serve_memory.md").write_text("\n".join(lines))
    print("\n".join(lines))  # noqa: T201


if __name__ == "__main__":
    main()
