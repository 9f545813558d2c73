"""Quality + training-speed benchmark: train a frozen config, evaluate, check the Python API.

    python benchmarks/quality.py configs/beauty/sasrec.json [--out runs/beauty] [--repeat 1]

Writes benchmarks/results/quality_<config name>.{json,md}: test metrics (model and baselines,
full ranking), wall time, time to the best validation epoch, time to first reach validation
NDCG@10 >= 0.040, and a check that ``liverec.load(run).recommend_batch`` reproduces the
test HR@20/NDCG@20 that ``liverec eval`` measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

import liverec
from liverec.config import load_config
from liverec.data.pipeline import load_and_prepare
from liverec.evaluate.metrics import MISS, all_metrics
from liverec.evaluate.report import evaluate_run
from liverec.train.loop import train

RESULTS = Path(__file__).parent / "results"


def time_to_reach(epochs: list[dict], metric: str, value: float) -> dict | None:
    for e in epochs:
        if "valid" in e and e["valid"][metric] >= value:
            return {"epoch": e["epoch"], "seconds": e["elapsed_s"]}
    return None


def api_check(run_dir: Path, prepared) -> dict:
    """Recompute test HR/NDCG@20 through the public API (external ids in, external ids out)."""
    m = liverec.load(run_dir)
    _, histories, targets = prepared.eval_cases("test")
    ids = prepared.vocab.ids
    hist_ext = [[str(x) for x in ids[h]] for h in histories]
    tgt_ext = [str(x) for x in ids[targets]]
    ranks = []
    for start in range(0, len(hist_ext), 1024):
        recs = m.recommend_batch(hist_ext[start : start + 1024], k=20)
        for rec, t in zip(recs, tgt_ext[start : start + 1024]):
            top = [i for i, _ in rec]
            ranks.append(top.index(t) if t in top else MISS)
    return all_metrics(np.array(ranks), (20,))


def trained(run_dir: Path) -> SimpleNamespace:
    """The training figures of a finished run (its train_log.json), as ``train`` returns them."""
    log = json.loads((run_dir / "train_log.json").read_text())
    return SimpleNamespace(wall_s=log["wall_s"], best_epoch=log["best_epoch"],
                           time_to_best_s=log["time_to_best_s"], stopped=log["stopped"],
                           epochs=log["epochs"], n_parameters=log["n_parameters"],
                           refit=log.get("refit") or {})


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--out", help="run directory (default runs/<config stem>)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--tag", default="", help="suffix for the results file")
    ap.add_argument("--run", help="a run already trained from this config (e.g. by `liverec "
                    "train --config ...`): evaluated and API-checked, not trained again; its "
                    "train_log.json gives the training figures")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from liverec.config import apply_overrides

    cfg = apply_overrides(load_config(args.config), args.overrides)
    name = Path(args.config).parent.name + "_" + Path(args.config).stem + args.tag
    out = Path(args.run or args.out or f"runs/{name}")
    t0 = time.perf_counter()
    prepared = load_and_prepare(cfg.data)
    prep_s = time.perf_counter() - t0
    result = trained(out) if args.run else train(cfg, prepared, out)
    metrics = evaluate_run(out)
    api = api_check(out, prepared)
    test = metrics["model"]["test"]
    payload = {
        "config": args.config,
        "overrides": args.overrides,
        "commit": git_commit(),
        "machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__, "python": sys.version.split()[0]},
        "data": metrics["data"],
        "prepare_s": prep_s,
        "train": {"wall_s": result.wall_s, "best_epoch": result.best_epoch,
                  "time_to_best_s": result.time_to_best_s, "stopped": result.stopped,
                  "epochs_run": len(result.epochs), "parameters": result.n_parameters,
                  "valid_ndcg10_ge_0.040": time_to_reach(result.epochs, "ndcg@10", 0.040),
                  "valid_ndcg10_ge_0.052": time_to_reach(result.epochs, "ndcg@10", 0.052),
                  "epochs": result.epochs, "refit": result.refit},
        "test": test,
        "valid": metrics["model"]["valid"],
        # after a refit on validation events (train.refit_epochs) "valid" is not held out;
        # this is the kept epoch's held-out score from before it
        "valid_held_out": metrics["model"].get("valid_held_out", metrics["model"]["valid"]),
        "baselines": metrics["baselines"],
        "api_check": {"hr@20": api["hr@20"], "ndcg@20": api["ndcg@20"],
                      "matches_eval": bool(np.isclose(api["hr@20"], test["hr@20"], atol=1e-4)
                                           and np.isclose(api["ndcg@20"], test["ndcg@20"],
                                                          atol=1e-4))},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"quality_{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"quality_{name}.md").write_text(render(payload, name))
    print(render(payload, name))
    return 0


def render(p: dict, name: str) -> str:
    t, tr = p["test"], p["train"]
    reach = tr["valid_ndcg10_ge_0.040"]
    lines = [
        f"# Quality benchmark `{name}` (commit {p['commit']})\n",
        f"Config `{p['config']}` {' '.join(p['overrides'])}; data {p['data']['source']} "
        f"({p['data']['users']} users, {p['data']['items']} items).\n",
        "| model | HR@5 | HR@10 | HR@20 | NDCG@5 | NDCG@10 | NDCG@20 | MRR@20 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = {"liverec SASRec": t, **p["baselines"]}
    for n, m in rows.items():
        lines.append(f"| {n} | " + " | ".join(f"{m[k]:.4f}" for k in (
            "hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr@20")) + " |")
    lines += [
        "",
        f"Training: {tr['epochs_run']} epochs, {tr['wall_s']:.0f} s wall (training + validation), "
        f"best validation epoch {tr['best_epoch']} at {tr['time_to_best_s']:.0f} s; "
        f"{tr['parameters']:,} parameters; {tr['stopped']}.",
        *([f"Refit on the validation events after model selection: {r['epochs']} epochs at "
           f"lr {r['lr']:g}, {r['wall_s']:.0f} s, {r['added_targets']:,} targets added; "
           + ("kept." if r["kept"] else f"not kept ({r['why']}).")]
          if (r := tr.get("refit") or {}) else []),
        f"Held-out validation (the kept epoch): NDCG@10 {p['valid_held_out']['ndcg@10']:.4f}, "
        f"NDCG@20 {p['valid_held_out']['ndcg@20']:.4f}, HR@20 "
        f"{p['valid_held_out']['hr@20']:.4f}.",
        "Validation NDCG@10 >= 0.040 first reached: "
        + (f"epoch {reach['epoch']}, {reach['seconds']:.0f} s." if reach else "never."),
        f"API check (liverec.load(...).recommend_batch, k=20): HR@20 {p['api_check']['hr@20']:.4f}"
        f", NDCG@20 {p['api_check']['ndcg@20']:.4f}; matches eval: "
        f"{p['api_check']['matches_eval']}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
