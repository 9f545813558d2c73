"""Hyper-parameter search benchmark: a TPE study on Beauty against the committed default config.

    LIVEREC_DATA=../shared/data OMP_NUM_THREADS=1 \
        python benchmarks/tune_beauty.py [configs/tune/beauty_tpe.json] [--out runs/tune_beauty]

The frozen study file names the base config (trial 0, enqueued, so the default is measured
under the same per-trial budget as every candidate), the search settings and any change to the
search space. The study (SQLite storage, one run directory per trial) lives in --out; running
the command again resumes it. Writes benchmarks/results/<name>.{json,md}, <name>_history.png,
<name>_importance.png and <name>_best.json (the winning RunConfig, ``liverec train --config``).
The test metrics of the best and the baseline trial are measured too (full ranking), because
the validation score that chose the winner is optimistic for it.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
from quality import git_commit  # the benchmark scripts' folder is on sys.path

from liverec.config import apply_overrides, from_dict, load_config
from liverec.evaluate.report import evaluate_run
from liverec.tune.report import render_markdown
from liverec.tune.search import TuneConfig, run_study
from liverec.tune.space import SearchSpace

RESULTS = Path(__file__).parent / "results"


def load_study_file(path: Path):
    spec = json.loads(path.read_text())
    base = apply_overrides(load_config(spec["base"]), spec.get("set", []))
    return spec, base, from_dict(TuneConfig, spec.get("tune", {}), "tune"), \
        SearchSpace.from_dict(spec.get("space"))


def test_metrics(out: Path, row: dict | None) -> dict | None:
    if row is None:
        return None
    run_dir = out / "trials" / f"trial_{row['number']:04d}"
    return evaluate_run(run_dir, baselines=())["model"]["test"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("study", nargs="?", default="configs/tune/beauty_tpe.json")
    p.add_argument("--out", default="runs/tune_beauty", help="study folder (storage, trials)")
    p.add_argument("--name", default="tune_beauty", help="results file stem")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    spec, base, tc, space = load_study_file(Path(args.study))
    out = Path(args.out)
    t0 = time.perf_counter()
    summary = run_study(base, out, tc, space)
    study_s = time.perf_counter() - t0
    best, baseline = summary["best"], summary["baseline"]
    payload = {
        "study_file": args.study, "commit": git_commit(), "study_wall_s": round(study_s, 1),
        "machine": {"threads": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__, "python": sys.version.split()[0]},
        "test": {"best": test_metrics(out, best), "baseline": test_metrics(out, baseline)},
        **summary,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    for key, suffix in (("history", "_history.png"), ("importance", "_importance.png"),
                        ("best_config", "_best.json")):
        if key in summary["files"]:
            shutil.copyfile(summary["files"][key], RESULTS / f"{args.name}{suffix}")
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(render(payload, args))
    print(render(payload, args))
    return 0


def render(payload: dict, args) -> str:
    lines = [f"# Hyper-parameter search `{args.name}` (commit {payload['commit']})", "",
             f"Study file `{payload['study_file']}`; study wall time "
             f"{payload['study_wall_s']:.0f} s on {payload['machine']['threads']} thread(s).", ""]
    tb, tl = payload["test"]["best"], payload["test"]["baseline"]
    if tb and tl:
        lines += ["Test metrics (full ranking) of the run directories of the best and the "
                  "baseline trial, each trained under the same per-trial budget:", "",
                  "| trial | HR@10 | NDCG@10 | HR@20 | NDCG@20 |", "|---|---|---|---|---|"]
        for label, row, m in (("best", payload["best"], tb), ("baseline", payload["baseline"], tl)):
            lines.append(f"| {label} (trial {row['number']}) | {m['hr@10']:.4f} | "
                         f"{m['ndcg@10']:.4f} | {m['hr@20']:.4f} | {m['ndcg@20']:.4f} |")
        lines.append("")
    return "\n".join(lines) + "\n" + render_markdown(payload).split("\n", 2)[2]


if __name__ == "__main__":
    sys.exit(main())
