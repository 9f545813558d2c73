"""Baselines only (pop, item-kNN, ALS) under the evaluation protocol, no SASRec training; and a
check that the tie rule leaves a trained SASRec's figures alone.

    python benchmarks/baselines_beauty.py [--data beauty] [--sasrec-epochs 1]

Writes benchmarks/results/baselines_<data>.{json,md}: test HR/NDCG/MRR@{5,10,20} and
coverage@20 of each baseline (the protocol: full ranking, history masked, pessimistic ties,
non-finite scores last, repeat targets misses), beside the figures the previous protocol (rank =
items scored strictly above the target) recorded in quality_<data>_sasrec.json. With
``--sasrec-epochs N > 0`` it also trains the frozen SASRec config for N epochs (about a minute per
epoch on one thread) and counts, over every test case, the candidates whose score equals the
target's exactly, with HR/NDCG@10 under the strict and the pessimistic rule.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from liverec.config import DataConfig, load_config
from liverec.data.pipeline import load_and_prepare
from liverec.evaluate.metrics import all_metrics
from liverec.evaluate.protocol import PROTOCOL, mask_seen, model_score_fn, target_ranks
from liverec.evaluate.report import evaluate_baselines

RESULTS = Path(__file__).parent / "results"
COLS = ("hr@10", "hr@20", "ndcg@10", "ndcg@20", "mrr@20")


def tie_check(model, prepared, ks: tuple[int, ...] = (10, 20)) -> dict:
    """Ties between each test target and its candidates, and both rank rules' metrics."""
    _, hist, targets = prepared.eval_cases("test")
    fn = model_score_fn(model, model.cfg.max_len)
    strict, pessimistic, tied = [], [], []
    for s in range(0, len(targets), 1024):
        h = hist[s : s + 1024]
        t = torch.from_numpy(np.asarray(targets[s : s + 1024], dtype=np.int64))
        scores = mask_seen(fn(list(h)).float(), h)  # (B, N + 1)
        ts = scores.gather(1, t[:, None])  # (B, 1)
        strict.append((scores > ts).sum(1).double().numpy())
        pessimistic.append(target_ranks(scores, t).numpy())
        tied.append(((scores == ts).sum(1) - 1).clamp(min=0).numpy())
    n_tied = np.concatenate(tied)
    return {"cases": int(len(n_tied)), "cases_with_a_tie": int((n_tied > 0).sum()),
            "tied_candidates": int(n_tied.sum()),
            "strict": all_metrics(np.concatenate(strict), ks),
            "pessimistic": all_metrics(np.concatenate(pessimistic), ks)}


def sasrec_check(data: str, epochs: int) -> dict:
    from liverec.model.artifact import load_model
    from liverec.train.loop import train

    cfg = load_config(Path(__file__).parents[1] / "configs" / "beauty" / "sasrec.json")
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, source=data),
        train=dataclasses.replace(cfg.train, epochs=epochs, progress=False),
        eval=dataclasses.replace(cfg.eval, baselines=()))
    prepared = load_and_prepare(cfg.data)
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, prepared, Path(tmp) / "run")
        model, *_ = load_model(Path(tmp) / "run")
        return {"epochs": epochs, **tie_check(model, prepared)}


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="beauty")
    ap.add_argument("--sasrec-epochs", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    prepared = load_and_prepare(DataConfig(source=args.data))
    now = evaluate_baselines(prepared, ("pop", "itemknn", "als"), "test", (5, 10, 20))
    old_file = RESULTS / f"quality_{args.data}_sasrec.json"
    old = json.loads(old_file.read_text()) if old_file.is_file() else {}
    payload = {
        "commit": git_commit(), "data": {"source": args.data, **prepared.stats},
        "protocol": PROTOCOL, "baselines": now,
        "previous_protocol": {"rank": "number of unmasked items scored strictly above the target",
                              "source": old_file.name if old else None,
                              "commit": old.get("commit"), "baselines": old.get("baselines", {})},
    }
    if args.sasrec_epochs > 0:
        payload["sasrec_tie_check"] = sasrec_check(args.data, args.sasrec_epochs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"baselines_{args.data}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"baselines_{args.data}.md").write_text(render(payload))
    print(render(payload))
    return 0


def render(p: dict) -> str:
    d, rows = p["data"], p["baselines"]
    old = p["previous_protocol"]["baselines"]
    lines = [
        f"# Baselines under the evaluation protocol: {d['source']} (commit {p['commit']})\n",
        f"{d['users']} users, {d['items']} items, {d['test_cases']} test cases. "
        "Full ranking, history masked; ties: " + p["protocol"]["ties"].split(" (")[0] +
        "; non-finite scores rank last; repeat targets (already in the history) are misses.\n",
        "| model | " + " | ".join(c.upper() for c in COLS) + " | coverage@20 | seconds |",
        "|---|" + "---|" * (len(COLS) + 2),
    ]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.4f}" for c in COLS)
                     + f" | {m['coverage@20']:.4f} | {m['seconds']:.1f} |")
    if old:
        lines += ["", f"Previous protocol (strict rank, ties won by the target; "
                      f"`{p['previous_protocol']['source']}`, commit "
                      f"{p['previous_protocol']['commit']}):", "",
                  "| model | " + " | ".join(c.upper() for c in COLS) + " |",
                  "|---|" + "---|" * len(COLS)]
        for name, m in old.items():
            lines.append(f"| {name} | " + " | ".join(f"{m[c]:.4f}" for c in COLS) + " |")
    any_m = next(iter(rows.values()))
    lines += ["", f"Repeat targets masked: {int(any_m['repeat_targets'])} of "
                  f"{int(any_m['cases'])} ({any_m['repeat_share']:.2%})."]
    if "sasrec_tie_check" in p:
        s = p["sasrec_tie_check"]
        lines += ["", f"SASRec tie check (frozen config `configs/beauty/sasrec.json`, "
                      f"{s['epochs']} epoch(s)): {s['cases_with_a_tie']} of {s['cases']} test "
                      f"cases have a candidate scored exactly like the target "
                      f"({s['tied_candidates']} tied candidates in all); HR@10 "
                      f"{s['strict']['hr@10']:.4f} strict vs {s['pessimistic']['hr@10']:.4f} "
                      f"pessimistic, NDCG@10 {s['strict']['ndcg@10']:.4f} vs "
                      f"{s['pessimistic']['ndcg@10']:.4f}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
