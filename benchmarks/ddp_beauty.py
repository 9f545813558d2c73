"""Data-parallel benchmark: the same Beauty training on 1 and on 2 gloo processes (CPU).

    LIVEREC_DATA=../shared/data OMP_NUM_THREADS=1 \
        python benchmarks/ddp_beauty.py [configs/tune/ddp_beauty.json] [--out runs/ddp_beauty]

Each run is the real command line (``liverec train``; ``--nproc 2`` launches torchrun), with
the same config and global batch. Reported: test metrics (full ranking) of both, training
throughput (sequences/s: the global batch's sequences over the epoch's training time, median
over epochs), training time and the command's wall time (start-up, data, validation, test).
The config keeps its dropout, so the two runs draw different dropout masks: their metrics agree
statistically, not digit for digit (the dropout-free equivalence is tests/train/
test_distributed.py). Writes benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from quality import git_commit  # the benchmark scripts' folder is on sys.path

RESULTS = Path(__file__).parent / "results"


def run(nproc: int, spec: dict, out: Path) -> dict:
    sets = [arg for s in spec.get("set", []) for arg in ("--set", s)]
    cmd = [sys.executable, "-m", "liverec", "train", "--config", spec["base"], *sets,
           "--out", str(out), "--no-baselines"] + (["--nproc", str(nproc)] if nproc > 1 else [])
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    log = json.loads((out / "train_log.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    epochs = log["epochs"]
    return {"nproc": nproc, "command": " ".join(cmd[1:]), "wall_s": round(wall, 1),
            "train_s": round(sum(e["train_s"] for e in epochs), 1),
            "seq_per_s_median": statistics.median(e["seq_per_s"] for e in epochs),
            "seq_per_s": [e["seq_per_s"] for e in epochs],
            "loss": [e["loss"] for e in epochs],
            "valid_ndcg@10": [e["valid"]["ndcg@10"] for e in epochs if "valid" in e],
            "test": metrics["model"]["test"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", default="configs/tune/ddp_beauty.json")
    p.add_argument("--out", default="runs/ddp_beauty")
    p.add_argument("--name", default="ddp_beauty")
    args = p.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    runs = [run(n, spec, Path(args.out) / f"nproc{n}") for n in spec.get("nproc", [1, 2])]
    one = runs[0]
    for r in runs:
        r["throughput_vs_1"] = r["seq_per_s_median"] / one["seq_per_s_median"]
    payload = {"spec": args.spec, "commit": git_commit(),
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "torch": torch.__version__, "python": sys.version.split()[0],
                           "backend": "gloo", "threads_per_process": 1},
               "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(render(payload, args.name))
    print(render(payload, args.name))
    return 0


def render(payload: dict, name: str) -> str:
    lines = [f"# Data-parallel training `{name}` (commit {payload['commit']})", "",
             f"Spec `{payload['spec']}`; gloo on CPU, one thread per process, "
             f"{payload['machine']['cpus']} cores (shared machine: timings are noisy). "
             "Same config and global batch in every run.", "",
             "| processes | HR@10 | NDCG@10 | HR@20 | NDCG@20 | train seq/s (median) | "
             "vs 1 | train s | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in payload["runs"]:
        t = r["test"]
        lines.append(f"| {r['nproc']} | {t['hr@10']:.4f} | {t['ndcg@10']:.4f} | "
                     f"{t['hr@20']:.4f} | {t['ndcg@20']:.4f} | {r['seq_per_s_median']:.0f} | "
                     f"{r['throughput_vs_1']:.2f}x | {r['train_s']:.0f} | {r['wall_s']:.0f} |")
    lines += ["", "Validation NDCG@10 per epoch: " + "; ".join(
        f"{r['nproc']} proc " + ", ".join(f"{v:.4f}" for v in r["valid_ndcg@10"])
        for r in payload["runs"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
