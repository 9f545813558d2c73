"""Compression benchmark: build every variant of a trained run and compare them in one run.

    python benchmarks/compress_bench.py configs/compress/beauty.json [--run-dir runs/beauty]

The config names the fp32 run directory and a CompressConfig. The run's own DataConfig gives
the test split (set LIVEREC_DATA=../shared/data for the named datasets). Writes the variant
run directories under <run_dir>-compressed/ and benchmarks/results/compress_<name>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from liverec.compress.report import compare, render_markdown, write_report
from liverec.compress.variants import CompressConfig, build_variants, prepare_for
from liverec.config import from_dict

RESULTS = Path(__file__).parent / "results"

TARGETS = (
    "int8: weights >= 3.5x smaller, NDCG@20 >= 99% of fp32, batch-1 p50 >= 1.5x faster",
    "distilled (<= 25% params): NDCG@20 >= 95% of the teacher, batch-1 p50 >= 2x faster",
    "structured50: NDCG@20 >= 97% of fp32 and measurably faster",
)


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def built_variants(out: Path) -> dict[str, Path]:
    """name -> run directory of the variants under ``out``, in the order they were built."""
    dirs = [d for d in out.iterdir() if (d / "config.json").is_file()] if out.is_dir() else []
    if not dirs:
        raise SystemExit(f"--reuse: no built variants under {out}")
    dirs.sort(key=lambda d: (d / "config.json").stat().st_mtime)
    return {d.name: d for d in dirs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="configs/compress/<name>.json")
    ap.add_argument("--run-dir", help="override the config's run_dir")
    ap.add_argument("--out", help="where to write the variants (default <run_dir>-compressed)")
    ap.add_argument("--reuse", action="store_true",
                    help="measure the variants already under --out (built by an earlier run of "
                         "this config) without rebuilding them, e.g. again on a quiet machine")
    args = ap.parse_args()
    raw = json.loads(Path(args.config).read_text())
    run_dir = Path(args.run_dir or raw["run_dir"])
    cc = from_dict(CompressConfig, raw.get("compress", {}), where="compress")
    name = Path(args.config).stem
    out = Path(args.out or f"{run_dir}-compressed")
    t0 = time.perf_counter()
    prepared = prepare_for(run_dir)
    if args.reuse:
        made = built_variants(out)
        build_s = None
    else:
        made = build_variants(run_dir, out, cc, prepared)
        build_s = time.perf_counter() - t0
    result = compare({"fp32": run_dir, **made}, prepared, cc.bench_histories, cc.repeats,
                     cc.throughput_batch, cc.throughput_repeats, cc.threads)
    result.update(config=args.config, run_dir=str(run_dir), commit=git_commit(),
                  build_s=build_s, targets=list(TARGETS),
                  machine={"platform": platform.platform(), "torch": torch.__version__,
                           "python": sys.version.split()[0]},
                  compression={n: json.loads((p / "config.json").read_text())["compression"]
                               for n, p in made.items()})
    paths = write_report(result, RESULTS, f"compress_{name}",
                         title=f"Compression benchmark `{name}` (commit {result['commit']})")
    print(render_markdown(result))
    print("targets: " + "; ".join(TARGETS))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
